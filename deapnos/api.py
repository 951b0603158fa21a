"""The Python API beside the CLI: :func:`run_search` (``deapnos run``) and :func:`compare`
(``deapnos evaluate``), each returning a result object.

``run_search`` goes through the same code path as ``deapnos run`` (:func:`deapnos.run.run_search_job`):
the same run folder, report.md, plots and exported winners.  ``compare`` uses the building blocks of
``deapnos evaluate`` (:mod:`deapnos.evaluate.compare`): the same tuning, table and intervals.
Usage: README.md, "Python API"; examples/python_api.py.
"""
from __future__ import annotations

import argparse
import time
import types
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["SearchResult", "CompareResult", "run_search", "compare"]


# ----------------------------------------------------------------------------------------------
# run_search
# ----------------------------------------------------------------------------------------------

@dataclass
class SearchResult:
    """A finished search.  ``leaderboard``: the final ranking (rows of the ``deapnos run`` table:
    ``rank``, ``label``, ``genome``, ``mean``, ``verdict``, ``baseline``, ...); ``validation``: the
    held-out validation (``validation.json``: ``tasks``, ``seeds``, ``reference``, ``rows``; {}
    when off); ``best``: the text of the best genome (the top non-baseline leaderboard row, else the
    hall of fame's best); ``run_dir``; ``report``: report.md (None with ``run.report = false``);
    ``backend``, ``workers``: what actually ran; ``status``: status.json."""
    run_dir: Path
    report: Path | None
    leaderboard: list[dict]
    validation: dict
    best: str | None
    backend: str | None = None
    workers: int | None = None
    status: dict = field(default_factory=dict, repr=False)
    _space: Any = field(default=None, repr=False)

    @property
    def best_genome(self):
        """:attr:`best` as a :class:`~deapnos.Genome` (read in the run's space, plugin primitives
        included), or None."""
        if self.best is None:
            return None
        from .space import Genome
        return Genome.parse(self.best, space=self._space)

    @property
    def winners(self) -> list[Path]:
        """The exported winners (standalone PyTorch modules) of the report."""
        folder = self.run_dir / "winners"
        return sorted(folder.glob("*.py")) if folder.is_dir() else []


def _override_text(key: str, value: Any) -> str:
    """``section.field=value`` with the value written as TOML, as on the command line."""
    from .search.config import _toml_value
    if not isinstance(key, str) or "." not in key:
        raise ValueError(f"overrides: key {key!r} must be 'section.field' (e.g. 'search.particles')")
    try:
        return f"{key}={_toml_value(value)}"
    except TypeError:
        raise ValueError(f"overrides: {key} = {value!r}: a {type(value).__name__} cannot be a config value "
                         "(use numbers, strings, booleans, lists and dicts of them)") from None


def _split_plugins(plugins) -> tuple[list[str], list[Any]]:
    """Plugin names (strings, and modules that can be imported by name: the workers import them
    too) and plugin objects (defined here, e.g. in a notebook: the serial backend only)."""
    import importlib.util
    if isinstance(plugins, (str, types.ModuleType)) or not isinstance(plugins, Sequence):
        plugins = [plugins]
    names, objects = [], []
    for p in plugins:
        if isinstance(p, str):
            names.append(p)
            continue
        name = p.__name__ if isinstance(p, types.ModuleType) else ""
        try:
            importable = bool(name) and name != "__main__" and importlib.util.find_spec(name) is not None
        except (ImportError, ValueError):
            importable = False
        if importable:
            names.append(name)
        else:
            objects.append(p)
    return names, objects


def run_search(config: str | Path | Mapping | None = None, overrides: Mapping[str, Any] | None = None,
               plugins: Any = (), *, run_dir: str | Path | None = None, resume: str | Path | None = None,
               quiet: bool = True) -> SearchResult:
    """Run a search as ``deapnos run`` does and return its :class:`SearchResult`.

    ``config``: None (the quickstart preset), a preset name (``quickstart``, ``paper``,
    ``authors-code``), a TOML file, or a dict of sections (``{"search": {"particles": 4}}``).
    ``overrides``: ``{"section.field": value}`` with Python values, exactly like
    ``section.field=value`` on the command line (``{"run.workers": 2, "search.task": ["digits"]}``).
    ``plugins``: plugin names, modules or objects (a module of functions with ``@deapnos.hookimpl``,
    or an instance of a class with such methods).  A module that can be imported by name is passed
    by name, so every backend's workers load it; any other object (a class defined in a notebook)
    lives only in this process, so it needs ``run.backend = 'serial'``.  ``run_dir``: the run folder
    (default: a new one under ``run.output_dir``); ``resume``: continue a stopped run.  ``quiet``: no
    live view (log lines only).  Raises :class:`deapnos.run.RunError` (one line; ``code`` is the
    exit code ``deapnos run`` would give) or KeyboardInterrupt (the run can be resumed)."""
    from .run import RunError, run_search_job
    from .search.config import DEFAULT_CONFIG
    names, objects = _split_plugins(plugins)
    texts = [_override_text(k, v) for k, v in (overrides or {}).items()]
    if resume is not None and config is not None:
        raise RunError("resume continues a run with its own config; do not pass config", 2)
    args = argparse.Namespace(config=None if resume is not None else (DEFAULT_CONFIG if config is None else
                                                                      config),
                              resume=None if resume is None else str(resume),
                              run_dir=None if run_dir is None else str(run_dir), backend=None, workers=None,
                              algorithm=None, seed=None, hostfile=None, no_report=False, quiet=quiet,
                              progress_interval=30.0, log_level=None, plugins=names, overrides=texts,
                              workspace=False)
    folder = run_search_job(args, plugin_objects=objects)
    return read_search_result(folder, plugins=[*names, *objects])


def read_search_result(run_dir: str | Path, plugins: Sequence[Any] = ()) -> SearchResult:
    """The :class:`SearchResult` of a finished run folder (``plugins``: to read plugin primitives)."""
    from .search.store import RunStore
    run_dir = Path(run_dir)
    store = RunStore(run_dir)
    status = store.read_status() or {}
    board = list(status.get("leaderboard") or [])
    validation = store.read_json("validation.json", {}, kind=dict) or {}
    top = next((row for row in board if not row.get("baseline")), None)
    best = top.get("genome") if top else (status.get("best") or {}).get("genome")
    report = run_dir / "report.md"
    space = None
    try:
        from .context import build_context
        cfg = store.read_config()
        space = build_context([*cfg.get("run", {}).get("plugins", []), *plugins], strict=False, eager=False,
                              compat=bool(cfg.get("run", {}).get("compat", False))).space
    except Exception:   # noqa: BLE001 - the paper's space still reads most genomes
        space = None
    return SearchResult(run_dir=run_dir, report=report if report.exists() else None, leaderboard=board,
                        validation=validation, best=best, backend=status.get("backend"),
                        workers=status.get("workers"), status=status, _space=space)


# ----------------------------------------------------------------------------------------------
# compare
# ----------------------------------------------------------------------------------------------

@dataclass
class CompareResult:
    """What ``deapnos evaluate`` prints and writes.  ``rows``: one per (task, optimizer): mean,
    95% interval, paired difference to the reference (``vs_reference``) and ``verdict``;
    ``results``: the runs at each chosen LR; ``runs``: every run; ``chosen_lr``: by
    ``"task | optimizer"``; ``table``: the printed table; ``doc``: results.json's document."""
    rows: list[dict]
    results: list
    runs: list
    chosen_lr: dict
    reference: str
    tuning: str
    seeds: list[int]
    device: str
    table: str
    doc: dict = field(repr=False, default_factory=dict)

    def row(self, optimizer: str, task: str | None = None) -> dict:
        """The summary row of ``optimizer`` (on ``task``; default: the first task)."""
        for r in self.rows:
            if r["optimizer"] == optimizer and (task is None or r["task"] == task):
                return r
        raise KeyError(f"no row for optimizer {optimizer!r}" + (f" on task {task!r}" if task else ""))


def compare(optimizers: str | Sequence[str], task: str | Sequence[str] = "digits-hard", seeds: int = 3, *,
            reference: str | None = None, tuning: str = "grid", lrs: Sequence[float] | None = None,
            lr: float | None = None, seed: int = 0, epochs: int | None = None, step_scale: float = 1.0,
            plugins: Any = (), device: str | None = None, threads: int | None = None,
            timeout: float | None = None, shuffle: bool = True, test: bool = False,
            integrity: bool = False, data_path: str | None = None, out: str | Path | None = None,
            progress: bool = False) -> CompareResult:
    """Compare optimizers as ``deapnos evaluate`` does, with the same tuning for everyone.

    ``optimizers``: zoo names, genome files, genome text or ``torch:NAME(k=v)``; ``reference``: the
    one the others are compared with (default: the first).  ``tuning``: ``grid`` (full runs over
    ``lrs``, default 10 ... 1e-5, LR chosen on validation) or ``screen``; ``lr``: one fixed LR, no
    tuning.  The other keywords are the command's options (``--epochs``, ``--step-scale``, ...);
    ``out``: also write results.json and curves.png there.  Raises ValueError for a bad argument."""
    from .context import build_context
    from .evaluate import compare as C
    from .plugins import notify
    from .evaluate.protocol import ProtocolConfig, default_device, resolve_optimizer
    opts = [optimizers] if isinstance(optimizers, str) else list(optimizers)
    names = [task] if isinstance(task, str) else list(task)
    if not opts:
        raise ValueError("optimizers: give at least one (a zoo name, genome file, genome text or torch:NAME)")
    if seeds < 1:
        raise ValueError("seeds must be >= 1")
    if tuning not in ("grid", "screen"):
        raise ValueError(f"tuning {tuning!r}: grid or screen")
    plugin_names, objects = _split_plugins(plugins)
    ctx = build_context([*plugin_names, *objects], eager=False)
    space, zoo_registry = ctx.space, ctx.zoo
    try:
        tasks = C.find_tasks(names, ctx.tasks)
    except SystemExit as exc:          # the command's one-line message
        raise ValueError(str(exc)) from None
    checks = ctx.checks if integrity else None
    specs = [resolve_optimizer(s, space, zoo_registry) for s in opts]
    ref = resolve_optimizer(reference, space, zoo_registry) if reference else specs[0]
    if ref.name not in [s.name for s in specs]:
        specs.insert(0, ref)
    grid_lrs = C.parse_lrs(",".join(f"{float(v)!r}" for v in lrs) if lrs is not None else None)
    if data_path:
        tasks = {n: t.replace(data_path=data_path) for n, t in tasks.items()}
    for t in tasks.values():
        t.check_available()
    config = ProtocolConfig(lr=lr, epochs=epochs, step_scale=step_scale, num_threads=threads, timeout_s=timeout,
                            shuffle=shuffle, evaluate_test=test)
    how = "fixed" if lr is not None else tuning
    dev = device or default_device()
    seed_list = list(range(seed, seed + seeds))
    grid = grid_lrs if how == "grid" else (None,)
    t0 = time.perf_counter()
    runs, results, chosen = C.run_jobs(
        tasks, specs, seed_list, config, grid, dev, checks=checks, no_progress=not progress,
        on_result=lambda r: notify(ctx.pm, "deapnos_evaluation_finished", result=r))
    rows = C.summarize(results, reference=ref.name)
    doc = {"format": "deapnos.evaluate", "version": 2, "device": dev, "seeds": seed_list, "tuning": how,
           "lrs": list(grid) if how == "grid" else None, "chosen_lr": chosen, "reference": ref.name,
           "seconds": time.perf_counter() - t0, "config": config.to_dict(),
           "tasks": {n: t.summary() for n, t in tasks.items()},
           "summary": rows, "results": [r.to_dict() for r in results], "runs": [r.to_dict() for r in runs]}
    if out is not None:
        C.write_outputs(out, doc, results)
    return CompareResult(rows=rows, results=results, runs=runs, chosen_lr=chosen, reference=ref.name, tuning=how,
                         seeds=seed_list, device=dev, table=C.format_table(rows), doc=doc)
