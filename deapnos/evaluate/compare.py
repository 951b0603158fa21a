"""Comparing optimizers fairly on tasks, with confidence intervals: what ``deapnos evaluate``
(:mod:`deapnos.commands.evaluate`) and ``deapnos.compare`` (:mod:`deapnos.api`) run and print.

Every optimizer gets the same tuning (a grid of LRs chosen on validation, the search's LR screen, or
one fixed LR); :func:`summarize` gives mean ± 95% interval and the paired difference to the
reference with a verdict, :func:`format_table` prints it.  Details: docs/evaluation.md, "Comparing
optimizers fairly".
"""
from __future__ import annotations

import dataclasses
import json
import logging
import math
import statistics
import sys
import time
from collections import Counter
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING

from .result import EvalResult
from .stats import difference_text, interval, versus

if TYPE_CHECKING:   # .protocol imports torch: loaded when a command runs, not for `--help`
    from .protocol import ProtocolConfig

DEFAULT_GRID = (10.0, 1.0, 1e-1, 1e-2, 1e-3, 1e-4, 1e-5)

log = logging.getLogger(__name__)


def find_tasks(names: list[str], installed: Mapping) -> dict:
    """The tasks ``names`` names, from ``installed`` (a context's ``tasks``); an unknown name is a
    SystemExit with the command's one-line message."""
    unknown = [n for n in names if n not in installed]
    if unknown:
        raise SystemExit(f"deapnos evaluate: unknown task(s) {', '.join(map(repr, unknown))}; installed: "
                         f"{', '.join(sorted(installed)) or 'none'}")
    return {n: installed[n] for n in names}


def summarize(results: list[EvalResult], reference: str | None = None) -> list[dict]:
    """One row per (task, optimizer) in first-seen order: the ok seeds' fitness as mean, sample std
    and 95% interval, statuses, and (with ``reference``, an optimizer name) the paired difference to
    the reference per seed with its verdict.  A seed that failed while the reference trained makes
    the verdict ``worse``."""
    groups: dict[tuple[str, str], list[EvalResult]] = {}
    for r in results:
        groups.setdefault((r.task, r.optimizer or r.genome), []).append(r)
    rows = []
    for (task, opt), rs in groups.items():
        fits = [r.fitness for r in rs if r.ok and r.fitness is not None]
        finals = [r.final_accuracy for r in rs if r.ok and r.final_accuracy is not None]
        iv = interval(fits) if fits else None
        rows.append({
            "task": task, "optimizer": opt, "n": len(rs), "n_ok": len(fits),
            "fitness_mean": iv.mean if iv else None,
            "fitness_std": iv.std if iv else None,
            "fitness_ci95": (iv.half_width if iv and math.isfinite(iv.half_width) else None),
            **(_versus(rs, groups.get((task, reference))) if reference and opt != reference
               else {"vs_reference": None, "verdict": "reference" if opt == reference else None}),
            "final_mean": statistics.fmean(finals) if finals else None,
            "lrs": sorted({r.lr for r in rs if r.lr is not None}),
            "statuses": dict(Counter(r.status for r in rs)),
            "seconds_mean": statistics.fmean(r.seconds for r in rs),
            "messages": sorted({r.message for r in rs if r.message}),
        })
    return rows


def _versus(rs: list[EvalResult], refs: list[EvalResult] | None) -> dict:
    if not refs:
        return {"vs_reference": None, "verdict": None}
    diff, verdict, _ = versus({r.seed: r.fitness if r.ok else None for r in rs},
                              {r.seed: r.fitness if r.ok else None for r in refs})
    return {"vs_reference": diff.to_dict() if diff else None, "verdict": verdict}


def format_table(rows: list[dict]) -> str:
    header = ("task", "optimizer", "fitness (mean ± 95% CI)", "Δ vs reference", "verdict", "final", "ok",
              "lr chosen", "s/eval", "status")
    lines = []
    for r in rows:
        if r["fitness_mean"] is None:
            fit = "-"
        elif r.get("fitness_ci95") is None:
            fit = f"{r['fitness_mean']:.4f} (1 seed)"
        else:
            fit = f"{r['fitness_mean']:.4f} ± {r['fitness_ci95']:.4f}"
        delta = difference_text(r.get("vs_reference"))
        final = f"{r['final_mean']:.4f}" if r["final_mean"] is not None else "-"
        lrs = ",".join(f"{v:g}" for v in r["lrs"]) or "-"
        status = " ".join(f"{k}:{v}" for k, v in r["statuses"].items())
        opt = r["optimizer"] if len(r["optimizer"]) <= 40 else r["optimizer"][:37] + "..."
        lines.append((r["task"], opt, fit, delta, r.get("verdict") or ("reference" if r.get("reference") else "-"),
                      final, f"{r['n_ok']}/{r['n']}", lrs, f"{r['seconds_mean']:.1f}", status))
    widths = [max(len(str(x)) for x in col) for col in zip(header, *lines)]
    fmt = "  ".join(f"{{:<{w}}}" for w in widths)
    out = [fmt.format(*header), fmt.format(*("-" * w for w in widths))]
    out += [fmt.format(*line) for line in lines]
    return "\n".join(out)


def plot_curves(results: list[EvalResult], path: Path) -> None:
    """Validation score per epoch, one panel per task, one colour per optimizer (every seed drawn)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    tasks = list(dict.fromkeys(r.task for r in results))
    opts = list(dict.fromkeys(r.optimizer or r.genome for r in results))
    colours = {o: f"C{i % 10}" for i, o in enumerate(opts)}
    fig, axes = plt.subplots(1, len(tasks), figsize=(6 * len(tasks), 4.2), squeeze=False)
    for ax, task in zip(axes[0], tasks):
        labelled = set()
        for r in results:
            if r.task != task or not r.curve:
                continue
            opt = r.optimizer or r.genome
            steps = [c["step"] for c in r.curve]
            scores = [c.get("val_score", c.get("val_acc")) for c in r.curve]
            short = opt if len(opt) <= 40 else opt[:37] + "..."
            label = None if opt in labelled else short
            labelled.add(opt)
            ax.plot(steps, scores, color=colours[opt], alpha=0.85, lw=1.4, label=label,
                    ls="-" if r.ok else ":")
        ax.set_title(task)
        ax.set_xlabel("step")
        ax.set_ylabel("validation score")
        ax.grid(alpha=0.3)
        if labelled:
            ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def choose_grid_lr(by_lr: dict[float, list[EvalResult]]) -> float:
    """The LR of a grid whose runs trained on the most seeds, then with the best mean validation
    score over them; ties go to the larger LR (the grid's order)."""
    def key(lr):
        fits = [r.fitness for r in by_lr[lr] if r.ok and r.fitness is not None]
        return (len(fits), statistics.fmean(fits) if fits else -math.inf)
    return max(by_lr, key=key)


def parse_lrs(text: str | None) -> tuple[float, ...]:
    if not text:
        return DEFAULT_GRID
    try:
        lrs = tuple(float(v) for v in text.split(",") if v.strip())
    except ValueError:
        raise ValueError(f"--lrs {text!r}: expected numbers separated by commas, e.g. 1e-1,1e-2,1e-3") from None
    if not lrs or any(not (math.isfinite(v) and v > 0) for v in lrs):
        raise ValueError(f"--lrs {text!r}: every LR must be a positive number")
    return lrs


def run_jobs(tasks: dict, specs: list, seeds: list[int], config: ProtocolConfig, grid, device, *,
             checks=None, desc: str = "evaluate", no_progress: bool = False, on_result=None):
    """Every optimizer on every task and seed, at every LR of ``grid`` (``(None,)``: the config's own
    LR rule), with a progress bar.  Returns ``(runs, results, chosen)``: every run; the runs at each
    (task, optimizer)'s chosen LR (:func:`choose_grid_lr`; all runs when there is no grid); and the
    chosen LRs by ``"task | optimizer"``."""
    from tqdm import tqdm

    from .protocol import evaluate_genome
    jobs = [(t, s, lr, seed) for t in tasks.values() for s in specs for lr in grid for seed in seeds]
    runs: list[EvalResult] = []
    with tqdm(total=len(jobs), desc=desc, unit="run", disable=no_progress, file=sys.stderr) as bar:
        for task, spec, lr, seed in jobs:
            bar.set_postfix_str(f"{task.name} {spec.name[:30]} " + (f"lr {lr:g} " if lr else "") + f"seed {seed}")
            cfg = config if lr is None else dataclasses.replace(config, lr=lr)
            r = evaluate_genome(spec, task, seed=seed, config=cfg, device=device, integrity_checks=checks)
            runs.append(r)
            if on_result is not None:
                on_result(r)
            bar.update(1)
    if grid == (None,):
        return runs, runs, {}
    results, chosen = [], {}
    for task in tasks.values():
        for spec in specs:
            by_lr = {lr: [r for r, (t, s, job_lr, _) in zip(runs, jobs) if t is task and s is spec and job_lr == lr]
                     for lr in grid}
            lr = choose_grid_lr(by_lr)
            chosen[f"{task.name} | {spec.name}"] = lr
            results += by_lr[lr]
    return runs, results, chosen


def time_run(task, spec, config: ProtocolConfig, device: str) -> tuple[float, float]:
    """``(fixed seconds per run, seconds per epoch)`` of a real evaluation of ``spec`` on ``task``
    (data and model built, training and validation), from two timed runs of 1 and 2 epochs at a
    fixed LR: what the estimate scales up."""
    from .protocol import evaluate_genome
    took = []
    for epochs in (1, 2):
        cfg = dataclasses.replace(config, epochs=epochs, lr=config.lr or 1e-3, timeout_s=None, evaluate_test=False)
        t0 = time.perf_counter()
        evaluate_genome(spec, task, seed=0, config=cfg, device=device)
        took.append(time.perf_counter() - t0)
    per_epoch = max(took[1] - took[0], 0.0)
    return max(took[0] - per_epoch, 0.0), per_epoch


def run_count(n_tasks: int, n_specs: int, n_lrs: int, n_seeds: int) -> int:
    """Training runs of an evaluation: optimizers x LRs x seeds x tasks (``--tuning screen`` and
    ``--lr``: one LR entry, whose runs screen LRs inside)."""
    return n_tasks * n_specs * n_lrs * n_seeds


def estimate_seconds(tasks: dict, specs: list | int, grid, n_seeds: int, config: ProtocolConfig, device: str,
                     timer=time_run) -> float:
    """Seconds the runs will take: per task, runs x (fixed seconds + epochs x seconds per epoch),
    measured on a real evaluation of the first optimizer (``timer(task, spec, config, device)``,
    see :func:`time_run`).  A ``--tuning screen`` run adds its screening epochs (one run per screen
    LR, shorter epochs).  ``specs`` may be a count: then Adam is timed."""
    from .protocol import Budget
    n_specs, timed = (specs, "adam") if isinstance(specs, int) else (len(specs), specs[0])
    total = 0.0
    for task in tasks.values():
        cfg = config.for_task(task)
        b = Budget.of(task, cfg)
        epochs = float(b.epochs)
        if grid == (None,) and config.lr is None:    # screen: the LR screen before the full run
            epochs += ((len(cfg.screen_lrs_a) + len(cfg.screen_lrs_b)) * b.screen_epochs
                       * b.screen_steps_per_epoch / b.steps_per_epoch)
        fixed, per_epoch = timer(task, timed, config, device)
        total += run_count(1, n_specs, len(grid), n_seeds) * (fixed + epochs * per_epoch)
    return total


def duration_text(seconds: float) -> str:
    return (f"{seconds / 3600:.1f} h" if seconds >= 3600 else f"{seconds / 60:.1f} min" if seconds >= 60
            else f"{seconds:.0f} s")


def write_outputs(out: str | Path, doc: dict, results: list[EvalResult]) -> None:
    """``results.json`` (``doc``) and ``curves.png`` under ``out``; a failed plot loses nothing."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(json.dumps(doc, indent=1, default=_json_default))
    try:
        plot_curves(results, out / "curves.png")
    except Exception as exc:  # noqa: BLE001 - a plot must not lose the results
        log.warning("could not draw the curves: %s", exc)
    print(f"wrote {out / 'results.json'} and {out / 'curves.png'}")


def _json_default(obj):
    if isinstance(obj, float) and not math.isfinite(obj):
        return str(obj)
    if isinstance(obj, (set, tuple)):
        return list(obj)
    return str(obj)
