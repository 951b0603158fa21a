"""The search entry point: ``deapnos run`` and the file SCOOP runs on every worker.

Three ways in, one search:

* ``deapnos run [--workers N] [--backend scoop|pool|serial] [--config FILE] [--resume RUN_DIR]
  [overrides]`` from any folder.  With the SCOOP backend it launches
  ``python -m scoop -n N /abs/path/to/deapnos/run.py --run-dir RUN_DIR`` itself, waits, and reads the
  ``status.json`` the root wrote at the end: SCOOP exits 0 even when the program failed, so the
  wrapper exits non-zero with the error when the status is missing or not ``ok``.
* ``python -m scoop [-n N] deapnos.run [--config FILE] [overrides]`` from the project root: SCOOP wants
  a file path, and ``deapnos.run`` at the root is a small Python script that calls :func:`main`.
* ``python -m scoop [-n N] deapnos/run.py ...`` (the same file as a path).

SCOOP imports the entry file on every worker (as module ``SCOOP_WORKER``) and runs it as
``__main__`` only on the root.  So this module does nothing at import except, under SCOOP, preparing
the worker (one torch thread, one GPU claimed for the process' lifetime); only the root parses the
command line and runs the search.  Workers receive plain payloads and call
:func:`deapnos.distributed.evaluate_payload`, which builds plugins and space once per process.

Overrides are ``section.field=value`` (``search.particles=4``, ``run.seed=3``,
``elimination.baselines=["adam","sgd"]``).  Configs: ``quickstart`` (default), ``paper``, or a file.
"""
from __future__ import annotations

import argparse
import logging
import os
import subprocess
import sys
import time
import traceback
import uuid
from pathlib import Path

if __package__ in (None, ""):          # executed as a file (SCOOP, or `python deapnos/run.py`)
    _root = str(Path(__file__).resolve().parent.parent)
    if _root not in sys.path:
        sys.path.insert(0, _root)

from deapnos.distributed import BACKENDS, make_backend, under_scoop, worker_setup  # noqa: E402
from deapnos.search.config import (BUILTIN_CONFIGS, ConfigError, Config, apply_overrides,  # noqa: E402
                                   load_config, read_toml, validate)
from deapnos.search.store import CONFIG, RunStore, new_run_dir  # noqa: E402

log = logging.getLogger("deapnos.run")

ENTRY_FILE = Path(__file__).resolve()
RESUME_OVERRIDABLE = ("run.backend", "run.workers", "run.device", "run.torch_threads", "run.report",
                      "run.data_dir")


def scoop_worker_import() -> None:
    """What every SCOOP process does when it imports the entry file: one torch thread and, with
    GPUs, one GPU for its lifetime.  Nothing outside SCOOP."""
    if under_scoop():
        worker_setup(int(os.environ.get("DEAPNOS_TORCH_THREADS", "1")), os.environ.get("DEAPNOS_DEVICE", "auto"))


# ----------------------------------------------------------------------------------------------
# command line
# ----------------------------------------------------------------------------------------------

def configure_parser(parser: argparse.ArgumentParser) -> None:
    from deapnos.plugins import add_plugin_options
    parser.add_argument("--config", "-c", metavar="FILE",
                        help=f"TOML config: a file or a built-in name ({', '.join(BUILTIN_CONFIGS)}); "
                             "default quickstart")
    parser.add_argument("--resume", metavar="RUN_DIR", help="continue a killed run in RUN_DIR (finished "
                        "evaluations are not run again)")
    parser.add_argument("--run-dir", metavar="DIR", help="run in DIR (created; a DIR with a config continues)")
    parser.add_argument("--backend", choices=BACKENDS, help="map backend (config run.backend)")
    parser.add_argument("--workers", "-n", type=int, metavar="N", help="worker processes (config run.workers)")
    parser.add_argument("--algorithm", choices=("particles", "random"), help="config run.algorithm")
    parser.add_argument("--seed", type=int, help="config run.seed")
    parser.add_argument("--hostfile", metavar="FILE", help="SCOOP hostfile for a multi-host run "
                        "(lines 'hostname workers'); passed to python -m scoop")
    parser.add_argument("--no-report", action="store_true", help="do not write the report at the end")
    parser.add_argument("--log-level", default=None, help="logging level (INFO, DEBUG, ...)")
    add_plugin_options(parser)
    parser.add_argument("overrides", nargs="*", metavar="section.field=value",
                        help="config overrides, e.g. search.particles=4 search.timesteps=2")


def _flag_overrides(args) -> list[str]:
    out = []
    for flag, key in (("backend", "run.backend"), ("workers", "run.workers"), ("algorithm", "run.algorithm"),
                      ("seed", "run.seed")):
        value = getattr(args, flag, None)
        if value is not None:
            out.append(f"{key}={value!r}" if isinstance(value, str) else f"{key}={value}")
    if getattr(args, "no_report", False):
        out.append("run.report=false")
    return [o.replace("'", '"') for o in out]


def prepare(args) -> tuple[Config, Path]:
    """The config and run folder of this invocation; writes ``config.toml`` for a new run."""
    overrides = list(getattr(args, "overrides", None) or ()) + _flag_overrides(args)
    plugins = [p for p in (getattr(args, "plugins", None) or [])]
    existing = args.resume or (args.run_dir if args.run_dir and (Path(args.run_dir) / CONFIG).exists() else None)
    if existing:
        run_dir = Path(existing)
        if not (run_dir / CONFIG).exists():
            raise ConfigError(f"--resume {run_dir}: no {CONFIG} there (not a deapnos run folder)")
        if args.config:
            raise ConfigError("--resume continues a run with its own config; do not pass --config")
        bad = [o for o in overrides if not o.split("=", 1)[0].strip() in RESUME_OVERRIDABLE]
        if bad:
            raise ConfigError(f"a resumed run keeps its config; only {', '.join(RESUME_OVERRIDABLE)} may change "
                              f"(got {bad[0]})")
        if plugins:
            raise ConfigError("a resumed run keeps its plugins (run.plugins of its config); do not pass -p")
        data = apply_overrides(read_toml(run_dir / CONFIG), overrides)
        cfg = validate(data, source=str(run_dir / CONFIG))
        if overrides:
            RunStore(run_dir).write_config(cfg.to_toml())
        return cfg, run_dir
    cfg = load_config(args.config, overrides)
    if plugins:
        cfg.run.plugins = list(cfg.run.plugins) + [p for p in plugins if p not in cfg.run.plugins]
    if under_scoop():
        cfg.run.backend = "scoop"
    run_dir = Path(args.run_dir) if args.run_dir else new_run_dir(cfg.run.output_dir, cfg.run.name)
    store = RunStore(run_dir, create=True)
    store.write_config(cfg.to_toml())
    return cfg, run_dir


def check_against_plugins(cfg: Config, pm, checks: dict, tasks: dict) -> None:
    """Config fields that name plugin things: tasks, checks, protocol fields, baselines."""
    import dataclasses

    from deapnos import zoo
    from deapnos.evaluate.protocol import ProtocolConfig
    known = ", ".join(sorted(tasks)) or "none (no task plugin loaded)"
    for path, name in (("search.init_task", cfg.search.init_task), ("search.task", cfg.search.task)):
        if name not in tasks:
            raise ConfigError(f"config field {path} = {name!r}: allowed values: {known}")
    for i, rung in enumerate(cfg.elimination.rungs):
        if rung.task not in tasks:
            raise ConfigError(f"config field elimination.rungs[{i}].task = {rung.task!r}: allowed values: {known}")
    for name in cfg.tasks:
        if name not in tasks:
            raise ConfigError(f"config section [tasks.{name}]: no such task; allowed values: {known}")
    for name in cfg.search.integrity_checks:
        if name not in checks:
            raise ConfigError(f"config field search.integrity_checks: {name!r} is not installed; allowed values: "
                              f"{', '.join(sorted(checks)) or 'none'}")
    fields = [f.name for f in dataclasses.fields(ProtocolConfig)]
    for key in cfg.protocol:
        if key not in fields:
            raise ConfigError(f"unknown config field protocol.{key} (allowed: {', '.join(fields)})")
    try:
        ProtocolConfig(**cfg.protocol)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"config section [protocol]: {exc}") from None
    for name in cfg.elimination.baselines:
        if name not in zoo.names():
            raise ConfigError(f"config field elimination.baselines: {name!r} is not a zoo optimizer; allowed "
                              f"values: {', '.join(zoo.names())}")
    used = [cfg.search.init_task, cfg.search.task] + [r.task for r in cfg.elimination.rungs]
    if cfg.run.data_dir:
        os.environ["DEAPNOS_DATA"] = cfg.run.data_dir
    for name in dict.fromkeys(used):
        task = tasks[name].replace(**cfg.tasks[name]) if name in cfg.tasks else tasks[name]
        try:
            task.check_available()
        except Exception as exc:   # TaskDataError: names the path and how to get the data
            raise ConfigError(f"{exc} (config: run.data_dir or [tasks.\"{name}\"] data_path)") from None
    if cfg.run.backend == "scoop" and not under_scoop():
        raise ConfigError("run.backend = 'scoop' needs SCOOP: use `deapnos run` (it launches SCOOP) or "
                          "`python -m scoop -n N deapnos.run ...`")


def execute(cfg: Config, run_dir: Path) -> int:
    """Run (or continue) the search in this process with the configured backend; writes
    ``status.json``; returns 0 on success, 1 on failure."""
    from deapnos import plugins as _plugins
    from deapnos.search.particles import ParticleSearch
    store = RunStore(run_dir, create=True)
    handler = logging.FileHandler(run_dir / "search.log")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    logging.getLogger("deapnos").addHandler(handler)
    if logging.getLogger("deapnos").level == logging.NOTSET:
        logging.getLogger("deapnos").setLevel(logging.INFO)
    backend = None
    t0 = time.time()
    try:
        store.write_status("running", pid=os.getpid())
        pm = _plugins.get_plugin_manager(cfg.run.plugins)
        space = _plugins.build_space(pm, compat=cfg.run.compat)
        checks = _plugins.integrity_checks(pm)
        tasks = _plugins.all_tasks(pm)
        check_against_plugins(cfg, pm, checks, tasks)
        if cfg.run.backend == "serial":
            worker_setup(cfg.run.torch_threads, cfg.run.device)
        backend = make_backend(cfg.run.backend, cfg.run.workers, cfg.run.torch_threads, cfg.run.device)
        search = ParticleSearch(cfg, store, backend, pm, space, checks)
        log.info("%s run in %s (backend %s, %d worker(s))", "resuming" if search.resumed else "starting", run_dir,
                 cfg.run.backend, getattr(backend, "workers", 1))
        summary = search.run()
        outcome = {"seconds": time.time() - t0, "best": summary.get("best"),
                   "leaderboard": summary.get("leaderboard")}
        store.write_status("ok", **outcome)
        if cfg.run.report:
            from deapnos.report import write_report
            try:
                write_report(run_dir)
            except Exception as exc:   # noqa: BLE001 - the search is done; say what failed
                raise RuntimeError(f"the search finished but writing the report failed: "
                                   f"{type(exc).__name__}: {exc}") from exc
        return 0
    except KeyboardInterrupt:
        store.write_status("interrupted", "interrupted")
        raise
    except BaseException as exc:   # noqa: BLE001 - the status file must say what happened
        msg = f"{type(exc).__name__}: {exc}"
        store.write_status("failed", msg, traceback=traceback.format_exc())
        log.error("search failed: %s", msg)
        log.debug("%s", traceback.format_exc())
        if isinstance(exc, (SystemExit,)):
            raise
        return 1
    finally:
        if backend is not None:
            backend.close()
        store.close()
        logging.getLogger("deapnos").removeHandler(handler)
        handler.close()


def launch_scoop(cfg: Config, run_dir: Path, hostfile: str | None = None, verbose: bool = False) -> int:
    """Run the search under SCOOP in a child process and check its outcome (status.json)."""
    store = RunStore(run_dir)
    status_path = store.path("status.json")
    if status_path.exists():
        status_path.unlink()
    cmd = [sys.executable, "-m", "scoop", "-n", str(cfg.run.workers)]
    if hostfile:
        cmd += ["--hostfile", str(Path(hostfile).resolve())]
    cmd += [str(ENTRY_FILE), "--run-dir", str(run_dir.resolve())]
    if verbose:
        cmd += ["--log-level", "DEBUG"]
    env = dict(os.environ)
    env["DEAPNOS_RUN_TOKEN"] = uuid.uuid4().hex
    env["DEAPNOS_TORCH_THREADS"] = str(cfg.run.torch_threads)
    env["DEAPNOS_DEVICE"] = cfg.run.device
    log.info("launching: %s", " ".join(cmd))
    try:
        proc = subprocess.run(cmd, env=env)
    except KeyboardInterrupt:
        print(f"interrupted; continue with: deapnos run --resume {run_dir}", file=sys.stderr)
        return 130
    status = store.read_status()
    if status is None:
        print(f"error: the SCOOP run exited with code {proc.returncode} before the search wrote "
              f"{status_path} (see the output above); continue with: deapnos run --resume {run_dir}",
              file=sys.stderr)
        return 1
    if status.get("status") != "ok":
        print(f"error: the search failed: {status.get('error') or status.get('status')}", file=sys.stderr)
        if status.get("traceback"):
            print(status["traceback"], file=sys.stderr)
        return 1
    return 0


def print_outcome(run_dir: Path) -> None:
    store = RunStore(run_dir)
    status = store.read_status() or {}
    board = status.get("leaderboard") or []
    print(f"run folder: {run_dir}")
    if board:
        print("leaderboard (mean score over seeds):")
        for row in board:
            vs = row.get("vs_reference")
            vs = f"  {vs:+.4f} vs {row['reference']}" if vs is not None and not row["baseline"] else ""
            print(f"  {row['rank']:2d}. {row['label']:10s} {row['mean']:.4f} +- {row['std']:.4f}{vs}  {row['genome']}")
    if (run_dir / "report.md").exists():
        print(f"report: {run_dir / 'report.md'}")


def run_command(args) -> int:
    if getattr(args, "log_level", None):
        logging.getLogger("deapnos").setLevel(args.log_level.upper())
    try:
        cfg, run_dir = prepare(args)
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if cfg.run.backend == "scoop" and not under_scoop():
        rc = launch_scoop(cfg, run_dir, getattr(args, "hostfile", None),
                          verbose=logging.getLogger("deapnos").isEnabledFor(logging.DEBUG))
    else:
        rc = execute(cfg, run_dir)
        if rc:
            status = RunStore(run_dir).read_status() or {}
            print(f"error: the search failed: {status.get('error', '?')}", file=sys.stderr)
    launched_by_wrapper = under_scoop() and os.environ.get("DEAPNOS_RUN_TOKEN")
    if rc == 0 and not launched_by_wrapper:
        print_outcome(run_dir)
    return rc


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="deapnos run", description="run an optimizer search")
    configure_parser(parser)
    args = parser.parse_args(argv)
    if not logging.getLogger().handlers:
        logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    if args.log_level:
        logging.getLogger("deapnos").setLevel(args.log_level.upper())
    return run_command(args)


scoop_worker_import()

if __name__ == "__main__":
    from deapnos.run import main as _main   # the package module, not this file's __main__ copy
    _rc = _main()
    if not under_scoop():     # under SCOOP a SystemExit shows up as a worker traceback; status.json tells
        sys.exit(_rc)
