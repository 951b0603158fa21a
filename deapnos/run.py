"""``deapnos run``: the command line, the run folder and the search in this process.

:func:`run_search_job` is the one code path of ``deapnos run`` and :func:`deapnos.run_search`:
:func:`prepare` reads the config, checks it against the plugins and takes the run folder (its lock,
config.toml, a first checkpoint); then either :func:`deapnos.launch.launch_scoop` starts SCOOP, which
runs this module's :func:`main` on its origin, or :func:`execute` runs the search here.  The three
ways in: docs/search.md, "What deapnos run does with SCOOP".
"""
from __future__ import annotations

import argparse
import contextlib
import logging
import os
import shlex
import signal
import socket
import sys
import time
import traceback
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Any
from collections.abc import Mapping

from deapnos.distributed import BACKENDS, check_workers, evaluate_payload, make_backend, under_scoop, worker_setup
# the launcher's names, importable from here as before the split
from deapnos.launch import (ENTRY_FILE, FINAL_STATES, RUN_TOKEN_ENV, STOP_SIGNALS, RunInterrupted,  # noqa: F401
                            check_hostfile, check_late_workers, launch_scoop, mark_interrupted, print_interrupted,
                            resume_command, scoop_worker_import, signal_name, stop_signals, wait_for_job)
from deapnos.outcome import print_outcome, print_validation  # noqa: F401
from deapnos.processes import stop_group  # noqa: F401
from deapnos.search.config import (BUILTIN_CONFIGS, RESUME_OVERRIDABLE, ConfigError, Config,
                                   apply_overrides, config_fingerprint, config_from_dict, fingerprint_differences,
                                   load_config, parse_config)
from deapnos.search.store import (CONFIG, RUN_LOCK, WRITER_LOCK, FolderLock, RunLockError, RunStore,
                                  StoreError, check_run_dir_path, new_run_dir)

if TYPE_CHECKING:
    from deapnos.context import Context

log = logging.getLogger("deapnos.run")


def configure_parser(parser: argparse.ArgumentParser, argv: list[str] | None = None) -> None:
    """The options of ``deapnos run``; with ``argv``, also those of the plugins it loads
    (``deapnos_addoption``: autoloaded plugins and ``-p NAME``, as pytest reads ``-p`` early)."""
    from .argtypes import log_level, positive_float, positive_int
    from deapnos.plugins import add_plugin_options
    from deapnos.search.algorithms import ALGORITHMS
    parser.add_argument("--config", "-c", metavar="FILE",
                        help=f"TOML config: a file or a built-in name ({', '.join(BUILTIN_CONFIGS)}); "
                             "default quickstart")
    parser.add_argument("--resume", metavar="RUN_DIR", help="continue a killed run in RUN_DIR (finished "
                        "evaluations are not run again)")
    parser.add_argument("--run-dir", metavar="DIR", help="run in DIR (created; a DIR with a config continues)")
    parser.add_argument("--backend", metavar="NAME", help=f"map backend (config run.backend): "
                        f"{', '.join(BACKENDS.names())}, or one a plugin adds (see `deapnos plugins`)")
    parser.add_argument("--workers", "-n", type=positive_int, metavar="N", help="worker processes (config run.workers)")
    parser.add_argument("--algorithm", metavar="NAME", help=f"search algorithm (config run.algorithm): "
                        f"{', '.join(ALGORITHMS.names())}, or one a plugin adds")
    parser.add_argument("--seed", type=int, help="config run.seed")
    parser.add_argument("--hostfile", metavar="FILE", help="SCOOP hostfile for a multi-host run "
                        "(lines 'hostname workers'); passed to python -m scoop")
    parser.add_argument("--no-report", action="store_true", help="do not write the report at the end")
    parser.add_argument("--quiet", "-q", action="store_true", help="no live view (progress bar on a terminal, "
                        "progress log lines otherwise)")
    parser.add_argument("--progress-interval", type=positive_float, default=30.0, metavar="SECONDS",
                        help="off a terminal, a progress log line every SECONDS (default 30)")
    parser.add_argument("--log-level", default=None, type=log_level, help="logging level (INFO, DEBUG, ...)")
    add_plugin_options(parser)
    if argv is not None:
        _add_plugin_cli_options(parser, argv)
    parser.add_argument("overrides", nargs="*", metavar="section.field=value",
                        help="config overrides, e.g. search.particles=4 search.timesteps=2")


def _add_plugin_cli_options(parser: argparse.ArgumentParser, argv: list[str]) -> None:
    """The options that plugins add (``deapnos_addoption``): the plugins named with ``-p`` in
    ``argv`` and the autoloaded ones; a plugin that fails to load is left to the run to report."""
    from deapnos.context import build_context
    from deapnos.plugins import add_options
    early = argparse.ArgumentParser(add_help=False)
    early.add_argument("-p", dest="plugins", action="append", default=[])
    known, _ = early.parse_known_args(argv)
    add_options(build_context(known.plugins, strict=False, eager=False).pm, parser)


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


def _lock_run_dir(run_dir: Path, locks: list, argv: list[str] | None = None) -> None:
    """Take the folder's run lock for this invocation, unless this is the SCOOP origin of a
    `deapnos run` launcher that holds it for its job (same token).  ``argv``: the command as typed,
    recorded in the lock for the message a second run gets.  Raises RunLockError naming the
    holder's pid and host."""
    lock = FolderLock(run_dir / RUN_LOCK)
    token = os.environ.get(RUN_TOKEN_ENV)
    if token and under_scoop() and lock.holder(retry=False).get("token") == token and lock.is_held():
        return
    command = " ".join(shlex.quote(str(a)) for a in argv)[:500] if argv else "deapnos.run_search(...)"
    locks.append(lock.acquire("deapnos run", token=uuid.uuid4().hex, command=command))


WORKSPACE_CONFIG = "deapnos.toml"      # the config `deapnos run` reads by default in a workspace (deapnos init)


def _override_keys(overrides: list[str], flags: bool = False) -> dict[str, str]:
    """``section.field`` -> how it was asked for: ``run.workers=4``, or with ``flags`` (the
    overrides :func:`_flag_overrides` made) ``--workers 4``."""
    names = {"run.backend": "--backend", "run.workers": "--workers", "run.algorithm": "--algorithm",
             "run.seed": "--seed"}
    out = {}
    for text in overrides:
        key, _, value = text.partition("=")
        key = key.strip()
        out[key] = f"{names[key]} {value.strip().strip(chr(34))}" if flags and key in names else text.strip()
    return out


def check_backend_flags(cfg: Config, given: dict[str, str]) -> None:
    """A worker count or backend asked for on the command line (or in run_search's overrides) that
    the run cannot honour is an error, never ignored.  ``given``: :func:`_override_keys`."""
    workers = given.get("run.workers")
    if workers is None or cfg.run.workers <= 1:
        return
    if cfg.run.backend == "serial":
        where = (given["run.backend"] if "run.backend" in given
                 else f"run.backend = 'serial' in {cfg.source or 'the config'}")
        raise ConfigError(f"{workers}: the serial backend ({where}) runs in one process; use the pool or "
                          "scoop backend (--backend pool, or run.backend=pool), or drop the worker count")
    if under_scoop():
        import scoop
        size = getattr(scoop, "SIZE", None)
        if size and size != cfg.run.workers:
            raise ConfigError(f"{workers}: under python -m scoop the worker count is SCOOP's -n ({size}); "
                              "drop it, or give it to SCOOP: python -m scoop -n N deapnos.run")


def check_plugin_objects(cfg: Config, objects) -> None:
    """Plugin objects (not names) live only in this process: only the serial backend can use them."""
    if objects and cfg.run.backend != "serial":
        name = getattr(objects[0], "__name__", None) or type(objects[0]).__name__
        raise ConfigError(f"plugins: {name!r} is a plugin object, which only the serial backend can use "
                          f"(run.backend is {cfg.run.backend!r}; its workers load plugins by module name): use "
                          "run.backend = 'serial', or put the plugin in an importable module and pass its name")


def preflight(cfg: Config, options=None, plugin_objects=()) -> Context:
    """The run's :class:`~deapnos.context.Context`, built in the launching process and checked
    against the config (task names, backend, algorithm, data) before any worker starts or any run
    folder is written.  Raises ConfigError or PluginError."""
    from deapnos.context import build_context
    check_plugin_objects(cfg, list(plugin_objects))
    if cfg.run.data_dir:     # where the tasks (and every worker started from here) look for data
        os.environ["DEAPNOS_DATA"] = cfg.run.data_dir
    ctx = build_context([*cfg.run.plugins, *plugin_objects], compat=cfg.run.compat)
    ctx.configure(cfg.plugin, options)
    ctx.check_config(cfg, launching=True)
    return ctx


def default_config(args) -> str | Path | Mapping | None:
    """``--config``, else ``./deapnos.toml`` of a workspace (``deapnos init``), else None (quickstart).
    A workspace's own plugin modules (its folder) become importable, as under ``python -m scoop``."""
    if getattr(args, "config", None) is not None:
        return args.config
    if getattr(args, "workspace", True) and Path(WORKSPACE_CONFIG).is_file():
        here = str(Path.cwd())
        if here not in sys.path:
            sys.path.insert(0, here)
            os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, (here, os.environ.get("PYTHONPATH"))))
        log.info("config: %s (this folder's workspace config; --config picks another)", WORKSPACE_CONFIG)
        return WORKSPACE_CONFIG
    return None


def prepare(args, locks: list | None = None, plugin_objects=()) -> tuple[Config, Path, Context]:
    """The config, run folder and checked :class:`~deapnos.context.Context` of this invocation;
    takes the folder's run lock (appended to ``locks``; released by the caller) before writing
    anything; writes ``config.toml`` and a first checkpoint holding the config's fingerprint for a
    new run.  Raises ConfigError, PluginError or StoreError (RunLockError)."""
    locks = [] if locks is None else locks
    user, flags = list(getattr(args, "overrides", None) or ()), _flag_overrides(args)
    overrides = user + flags
    given = {**_override_keys(user), **_override_keys(flags, flags=True)}
    plugins = [p for p in (getattr(args, "plugins", None) or [])]
    hostfile = getattr(args, "hostfile", None)
    existing = args.resume or (args.run_dir if args.run_dir and (Path(args.run_dir) / CONFIG).exists() else None)
    if existing:
        run_dir = Path(existing)
        if not run_dir.is_dir():
            raise ConfigError(f"--resume {run_dir}: " + ("no such folder" if not run_dir.exists() else
                              "not a folder") + "; give the run folder of the run to continue")
        if not (run_dir / CONFIG).is_file():
            raise ConfigError(f"--resume {run_dir}: no {CONFIG} there (not a deapnos run folder)")
        if args.config:
            raise ConfigError("--resume continues a run with its own config; do not pass --config")
        bad = [o for o in overrides if o.split("=", 1)[0].strip() not in RESUME_OVERRIDABLE]
        if bad:
            raise ConfigError(f"a resumed run keeps its config; only {', '.join(RESUME_OVERRIDABLE)} may change "
                              f"(got {bad[0]})")
        if plugins:
            raise ConfigError("a resumed run keeps its plugins (run.plugins of its config); do not pass -p")
        store = RunStore(run_dir)
        try:
            data = store.read_config()
        except StoreError as exc:
            raise ConfigError(str(exc)) from None
        data = apply_overrides(data, overrides)
        cfg = parse_config(data, source=str(run_dir / CONFIG))
        if under_scoop():
            cfg.run.backend = "scoop"
        check_hostfile(hostfile, cfg.run.backend)
        check_backend_flags(cfg, given)
        ctx = preflight(cfg, args, plugin_objects)
        _lock_run_dir(run_dir, locks, getattr(args, "_argv", None))
        doc = store.read_checkpoint()
        if doc is not None and doc.get("config") is not None:
            diff = fingerprint_differences(doc["config"], cfg)
            if diff:
                raise ConfigError(f"{run_dir / CONFIG} differs from the config this run was checkpointed under "
                                  f"({'; '.join(diff)}): a resumed run keeps its config (only "
                                  f"{', '.join(RESUME_OVERRIDABLE)} may change); undo the edit, or start a new "
                                  f"run with it: deapnos run --config {shlex.quote(str(run_dir / CONFIG))}")
        # the log is checked here too, so that a log of another config (or a corrupt one) stops the
        # run with one line and exit 2 before SCOOP starts
        store.bind_config(config_fingerprint(cfg))
        if overrides:
            store.write_config(cfg.to_toml())
        return cfg, run_dir, ctx
    source = default_config(args)
    if isinstance(source, Mapping):           # deapnos.run_search(config={...})
        cfg = config_from_dict(dict(source), overrides)
    else:
        cfg = load_config(source, overrides)
    if plugins:
        cfg.run.plugins = list(cfg.run.plugins) + [p for p in plugins if p not in cfg.run.plugins]
    if under_scoop():
        cfg.run.backend = "scoop"
    check_hostfile(hostfile, cfg.run.backend)
    check_backend_flags(cfg, given)
    ctx = preflight(cfg, args, plugin_objects)
    if args.run_dir:
        run_dir = check_run_dir_path(Path(args.run_dir), create=True)
    else:
        run_dir = new_run_dir(cfg.run.output_dir, cfg.run.name)
    store = RunStore(run_dir, create=True)
    store.check_files()
    _lock_run_dir(run_dir, locks, getattr(args, "_argv", None))
    store.write_config(cfg.to_toml())
    if store.read_checkpoint() is None:
        store.save_checkpoint(None, config=config_fingerprint(cfg))     # the fingerprint from the start
    return cfg, run_dir, ctx


def check_against_plugins(cfg: Config, ctx: Context, launching: bool = False) -> None:
    """The config against the run's plugins: :meth:`deapnos.context.Context.check_config`."""
    ctx.check_config(cfg, launching=launching)


def execute(cfg: Config, run_dir: Path, view: str = "auto", interval: float = 30.0,
            options: argparse.Namespace | None = None, ctx: Context | None = None, plugin_objects=()) -> int:
    """Run (or continue) the search in this process with the configured backend; writes
    ``status.json``; returns 0 on success, 1 on failure.  Holds the folder's writer lock while it
    runs; a stop (:class:`RunInterrupted`, KeyboardInterrupt) marks the run ``interrupted``, kills
    the backend's workers and propagates.  ``view``: the live view (:mod:`deapnos.live`): ``auto``
    (a bar on a terminal, a log line every ``interval`` seconds otherwise) or ``off``; its snapshot
    goes to ``status.json`` either way, for ``deapnos status``.  ``options``: the parsed command line,
    for plugin options (``context.options``).  ``ctx``: the Context :func:`preflight` built (else
    built here); ``plugin_objects``: plugins given as objects (``deapnos.run_search``), serial only.
    ``status.json`` records the backend and worker count that actually ran."""
    from deapnos.live import LiveView, SearchProgress, hof_best
    from deapnos.search.runner import SearchRun
    store = RunStore(run_dir, create=True)
    writer = FolderLock(run_dir / WRITER_LOCK)
    try:
        store.check_files()
        writer.acquire("the search's writer", wait=5.0)
    except StoreError as exc:          # RunLockError: another process writes here
        print(f"error: {exc}", file=sys.stderr)
        return 1
    store.remove_temporary()
    handler = QuietFileHandler(run_dir / "search.log")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    logging.getLogger("deapnos").addHandler(handler)
    if logging.getLogger("deapnos").level == logging.NOTSET:
        logging.getLogger("deapnos").setLevel(logging.INFO)
    backend = None
    stopped = finished = False
    live = None
    t0 = time.time()
    try:
        running: dict[str, Any] = {"pid": os.getpid(), "host": socket.gethostname(), "started": t0}
        store.write_status("running", **running)
        if ctx is None:
            ctx = preflight(cfg, options, plugin_objects)
        tasks = ctx.tasks
        if cfg.run.backend == "serial":
            worker_setup(cfg.run.torch_threads, cfg.run.device)
        backend = make_backend(cfg.run.backend, cfg.run.workers, cfg.run.torch_threads, cfg.run.device,
                               cfg.run.stall_timeout, backends=ctx.backends, context=ctx)
        running.update(backend=cfg.run.backend, workers=int(getattr(backend, "workers", 1) or 1))
        if cfg.run.backend == "serial" and cfg.run.workers > 1:
            log.warning("run.workers = %d has no effect: the serial backend runs in one process", cfg.run.workers)
        if hasattr(backend, "on_stall"):
            backend.on_stall = lambda message: stop_stalled(store, run_dir, message)
        if cfg.run.backend == "scoop":        # every worker: the origin's Python, deapnos and plugins
            check_workers(backend, cfg.run.plugins, cfg.run.compat, cfg.run.torch_threads, cfg.run.device)
        from deapnos.search.fitness import validation_tasks
        progress = SearchProgress(cfg, getattr(backend, "workers", 1),
                                  validation_tasks(cfg, tasks) if cfg.validation.enabled else [])
        search = SearchRun(cfg, store, backend, ctx, live=progress, evaluate_fn=evaluate_payload)
        if plugin_objects:     # objects cannot go into config.toml: the serial worker gets them directly
            search.evaluator.payload_base["plugins"] = [*cfg.run.plugins, *plugin_objects]
        progress.best_source = lambda: hof_best(search.hof)
        live = LiveView(progress, mode=view, interval=interval,
                        publish=lambda snap: store.write_status("running", **running, progress=snap))
        log.info("%s run in %s (backend %s, %d worker(s))", "resuming" if search.resumed else "starting", run_dir,
                 cfg.run.backend, getattr(backend, "workers", 1))
        with live, live.redirect_logging():
            summary = search.run()
            if cfg.run.backend == "scoop":
                check_late_workers(backend, cfg)
            progress.finish()
        outcome: dict[str, Any] = {"seconds": time.time() - t0, "best": summary.get("best"),
                                   "leaderboard": summary.get("leaderboard"), "backend": running["backend"],
                                   "workers": running["workers"]}
        store.write_status("ok", **outcome)
        finished = True
        if cfg.run.report:
            from deapnos.report import write_report
            try:
                write_report(run_dir, load_plugins=True,      # the run's own plugins, already loaded
                             plugins=list(plugin_objects))
            except Exception as exc:   # noqa: BLE001 - the search is done; say what failed
                raise RuntimeError(f"the search finished but writing the report failed: "
                                   f"{type(exc).__name__}: {exc}") from exc
        return 0
    except KeyboardInterrupt as exc:
        stopped = True
        if not finished:       # a stop while the report is written leaves a finished search "ok"
            name = signal_name(getattr(exc, "signum", signal.SIGINT))
            store.write_status("interrupted", f"stopped by {name}", signal=name, resume=resume_command(run_dir))
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
        if live is not None:
            live.stop()
        if backend is not None:
            backend.close(force=stopped)
        store.close()
        logging.getLogger("deapnos").removeHandler(handler)
        handler.close()
        writer.release()


class QuietFileHandler(logging.FileHandler):
    """The run's search.log: a write that fails (a full disk) is said once on stderr, in one line,
    instead of a traceback per log record; the store reports the disk fault itself."""

    failed = False

    def handleError(self, record: logging.LogRecord) -> None:
        if not self.failed:
            self.failed = True
            exc = sys.exc_info()[1]
            print(f"warning: cannot write {self.baseFilename}: {getattr(exc, 'strerror', None) or exc}; "
                  "the search goes on without its log file", file=sys.stderr)

    def close(self) -> None:
        try:
            super().close()          # flushes: fails again on a full disk, after closing the file
        except OSError:
            pass


def stop_stalled(store: RunStore, run_dir: Path, message: str) -> None:
    """End a run whose workers went silent (called from the backend's watchdog thread): record the
    failure with the resume command, then leave at once, since the main thread waits inside SCOOP
    for a result that will never come.  The evaluation log and the checkpoint are already on disk."""
    store.write_status("failed", f"{message}; continue with: {resume_command(run_dir)}",
                       resume=resume_command(run_dir))
    logging.shutdown()
    os._exit(1)


class RunError(Exception):
    """A search that could not start or did not finish.  ``code``: the exit code of ``deapnos run``
    (1 the search failed or the folder is in use, 2 a bad config, command line or run folder);
    ``printed``: the message was already shown (the SCOOP launcher prints its own)."""

    def __init__(self, message: str, code: int, run_dir: Path | None = None, printed: bool = False):
        super().__init__(message)
        self.code, self.run_dir, self.printed = code, run_dir, printed


def run_search_job(args, plugin_objects=()) -> Path:
    """The one code path of ``deapnos run`` and :func:`deapnos.run_search`: the config and run
    folder (:func:`prepare`), then SCOOP launched from here or the search run in this process.
    Returns the run folder of a finished search; raises :class:`RunError`, or :class:`RunInterrupted`
    (``run_dir`` set; the run is marked interrupted and can be resumed).  ``plugin_objects``: plugins
    given as objects rather than names (serial backend only)."""
    if getattr(args, "log_level", None):
        logging.getLogger("deapnos").setLevel(args.log_level.upper())
    from deapnos.plugins import PluginError
    locks: list[FolderLock] = []
    run_dir = None
    guard = contextlib.nullcontext() if under_scoop() else stop_signals()
    try:
        with guard:
            try:
                cfg, run_dir, ctx = prepare(args, locks, plugin_objects)
            except RunLockError as exc:
                raise RunError(str(exc), 1) from None
            except (ConfigError, StoreError, PluginError) as exc:
                raise RunError(str(exc), 2) from None
            if cfg.run.backend == "scoop" and not under_scoop():
                try:
                    rc = launch_scoop(cfg, run_dir, getattr(args, "hostfile", None),
                                      verbose=logging.getLogger("deapnos").isEnabledFor(logging.DEBUG),
                                      lock=locks[0] if locks else None, quiet=getattr(args, "quiet", False),
                                      interval=getattr(args, "progress_interval", 30.0))
                except StoreError as exc:
                    raise RunError(str(exc), 1, run_dir) from None
                if rc:
                    raise RunError(f"the SCOOP run failed (exit code {rc}): see {run_dir / 'status.json'}", rc,
                                   run_dir, printed=True)
            else:
                rc = execute(cfg, run_dir, view="off" if getattr(args, "quiet", False) else "auto",
                             interval=getattr(args, "progress_interval", 30.0), options=args, ctx=ctx,
                             plugin_objects=plugin_objects)
                if rc:
                    try:
                        status = RunStore(run_dir).read_status() or {}
                    except StoreError:
                        status = {}
                    if status.get("status") == "failed":
                        raise RunError(f"the search failed: {status.get('error', '?')}", rc, run_dir)
                    raise RunError(f"the search did not run: see {run_dir / 'status.json'}", rc, run_dir,
                                   printed=True)     # execute printed why (the folder is in use)
            return run_dir
    except RunInterrupted as exc:
        if run_dir is not None and locks:
            mark_interrupted(run_dir, exc.signum)
        exc.run_dir = run_dir
        raise
    finally:
        for lock in locks:
            lock.release()


def run_command(args) -> int:
    """``deapnos run``: returns the exit code (0 ok, 1 the search failed or the folder is in use,
    2 a bad config, command line or run folder, 128+N stopped by signal N)."""
    try:
        run_dir = run_search_job(args)
    except RunError as exc:
        if not exc.printed:
            print(f"error: {exc}", file=sys.stderr)
        return exc.code
    except RunInterrupted as exc:
        return print_interrupted(exc.run_dir, exc.signum)
    if not (under_scoop() and os.environ.get("DEAPNOS_RUN_TOKEN")):     # the launcher prints it
        print_outcome(run_dir)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="deapnos run", description="run an optimizer search")
    configure_parser(parser, sys.argv[1:] if argv is None else argv)
    args = parser.parse_args(argv)
    args._argv = ["deapnos", "run", *(sys.argv[1:] if argv is None else argv)]
    if not logging.getLogger().handlers:
        logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    if args.log_level:
        logging.getLogger("deapnos").setLevel(args.log_level.upper())
    return run_command(args)


if __name__ == "__main__":      # python -m deapnos.run
    sys.exit(main())
