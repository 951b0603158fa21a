"""The search entry point: ``deapnos run`` and the file SCOOP runs on every worker.

Provides :func:`main` / :func:`run_command`: under SCOOP (on the root) they run the search; from the
command line with the SCOOP backend they launch ``python -m scoop`` on ``deapnos/scoop_entry/main.py`` and
check ``status.json``, since SCOOP exits 0 even when the program failed.  At import the module only
prepares a SCOOP worker.  The three ways in: docs/search.md, "What deapnos run does with SCOOP".
"""
from __future__ import annotations

import argparse
import contextlib
import logging
import os
import shlex
import signal
import socket
import subprocess
import sys
import threading
import time
import traceback
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Any
from collections.abc import Iterator, Mapping

from deapnos.evaluate.stats import difference_text
from deapnos.distributed import (BACKENDS, check_workers, make_backend, scoop_exit_with_launcher,
                                 under_scoop, worker_setup)
from deapnos.search.config import (BUILTIN_CONFIGS, RESUME_OVERRIDABLE, ConfigError, Config,
                                   apply_overrides, config_fingerprint, config_from_dict, fingerprint_differences,
                                   load_config, validate)
from deapnos.search.store import (CONFIG, RUN_LOCK, WRITER_LOCK, FolderLock, RunLockError, RunStore,
                                  StoreError, check_run_dir_path, new_run_dir)

if TYPE_CHECKING:
    from deapnos.context import Context

log = logging.getLogger("deapnos.run")

ENTRY_FILE = Path(__file__).resolve().parent / "scoop_entry" / "main.py"   # the file SCOOP runs
RUN_TOKEN_ENV = "DEAPNOS_RUN_LOCK_TOKEN"      # the `deapnos run` launcher's run lock, held for its SCOOP job
STOP_SIGNALS = tuple(getattr(signal, n) for n in ("SIGINT", "SIGTERM", "SIGHUP") if hasattr(signal, n))


def scoop_worker_import() -> None:
    """What every SCOOP process does when it imports the entry file: one torch thread and, with
    GPUs, one GPU for its lifetime; exit when its parent (or the `deapnos run` launcher of the job)
    dies.  Nothing outside SCOOP."""
    if under_scoop():
        scoop_exit_with_launcher()
        if "DEAPNOS_DEVICE" in os.environ:        # set by `deapnos run` for the processes it starts on this host
            worker_setup(int(os.environ.get("DEAPNOS_TORCH_THREADS", "1")), os.environ["DEAPNOS_DEVICE"])
        # else a worker on another host (ssh passes no environment) or of `python -m scoop` by hand: it
        # takes run.device and run.torch_threads from its first task (worker_setup in evaluate_payload)


# ----------------------------------------------------------------------------------------------
# stopping: SIGINT, SIGTERM, SIGHUP
# ----------------------------------------------------------------------------------------------

class RunInterrupted(KeyboardInterrupt):
    """A stop signal reached the launcher; the run is taken down and can be resumed."""

    def __init__(self, signum: int):
        self.signum = signum
        self.run_dir: Path | None = None      # set once the run folder is known
        super().__init__(signal_name(signum))


def signal_name(signum: int) -> str:
    try:
        return signal.Signals(signum).name
    except ValueError:
        return f"signal {signum}"


@contextlib.contextmanager
def stop_signals() -> Iterator[None]:
    """While inside: SIGINT, SIGTERM and SIGHUP raise :class:`RunInterrupted` in the main thread,
    once (a second signal during the clean-up is remembered, not raised)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    seen: list[int] = []

    def handler(signum, frame):
        seen.append(signum)
        if len(seen) == 1:
            raise RunInterrupted(signum)

    old = {}
    try:
        for sig in STOP_SIGNALS:
            old[sig] = signal.signal(sig, handler)
        yield
    finally:
        for sig, h in old.items():
            signal.signal(sig, h)


def resume_command(run_dir: Path) -> str:
    return f"deapnos run --resume {shlex.quote(str(Path(run_dir).resolve()))}"


def mark_interrupted(run_dir: Path, signum: int) -> None:
    """status.json of a stopped run: ``interrupted``, the signal and the resume command (a
    finished run keeps its ``ok``)."""
    try:
        store = RunStore(run_dir)
        status = store.read_status() or {}
        if status.get("status") in ("ok", "interrupted"):
            return
        store.write_status("interrupted", f"stopped by {signal_name(signum)}", signal=signal_name(signum),
                           resume=resume_command(run_dir))
    except (OSError, StoreError) as exc:
        log.warning("could not write the interrupted status of %s: %s", run_dir, exc)


def print_interrupted(run_dir: Path | None, signum: int) -> int:
    where = f"; continue with: {resume_command(run_dir)}" if run_dir is not None else ""
    print(f"interrupted by {signal_name(signum)}: the run stopped (status 'interrupted'){where}", file=sys.stderr)
    return 128 + int(signum)


# ----------------------------------------------------------------------------------------------
# command line
# ----------------------------------------------------------------------------------------------

def configure_parser(parser: argparse.ArgumentParser, argv: list[str] | None = None) -> None:
    from .argtypes import log_level, positive_float, positive_int
    """The options of ``deapnos run``; with ``argv``, also those of the plugins it loads
    (``deapnos_addoption``: autoloaded plugins and ``-p NAME``, as pytest reads ``-p`` early)."""
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


def check_hostfile(path: str | None, backend: str) -> None:
    """A ``--hostfile`` that SCOOP can use: an existing regular file of ``hostname [workers]`` lines,
    with the scoop backend."""
    if not path:
        return
    if backend != "scoop":
        raise ConfigError(f"--hostfile {path}: a hostfile is for the scoop backend; add --backend scoop "
                          f"(this run's backend is {backend!r})")
    p = Path(path)
    how = "a SCOOP hostfile lists one host per line as 'hostname workers', e.g. 'node1 4'"
    if not p.exists():
        raise ConfigError(f"--hostfile {path}: no such file; {how}")
    if not p.is_file():
        raise ConfigError(f"--hostfile {path}: not a regular file; {how}")
    try:
        with open(p, "rb") as fh:
            raw = fh.read((1 << 20) + 1)
        text = raw.decode("utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"--hostfile {path}: cannot read it ({exc}); {how}") from None
    if len(raw) > 1 << 20:
        raise ConfigError(f"--hostfile {path}: larger than 1 MiB, not a hostfile; {how}")
    hosts = 0
    for n, line in enumerate(text.splitlines(), 1):
        parts = line.split()
        if not parts:
            continue
        if "[" in line or (len(parts) <= 2 and (len(parts) == 1 or parts[1].isdigit())):
            hosts += 1
            continue
        raise ConfigError(f"--hostfile {path} line {n}: {line.strip()!r} is not 'hostname workers'; {how}")
    if not hosts:
        raise ConfigError(f"--hostfile {path}: no host in it; {how}")


def _lock_run_dir(run_dir: Path, locks: list) -> None:
    """Take the folder's run lock for this invocation, unless this is the SCOOP origin of a
    `deapnos run` launcher that holds it for its job (same token).  Raises RunLockError naming the
    holder's pid and host."""
    lock = FolderLock(run_dir / RUN_LOCK)
    token = os.environ.get(RUN_TOKEN_ENV)
    if token and under_scoop() and lock.holder(retry=False).get("token") == token and lock.is_held():
        return
    command = " ".join(shlex.quote(a) for a in (["deapnos", "run"] + sys.argv[1:]))[:500]
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
    check_against_plugins(cfg, ctx, launching=True)
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
        cfg = validate(data, source=str(run_dir / CONFIG))
        if under_scoop():
            cfg.run.backend = "scoop"
        check_hostfile(hostfile, cfg.run.backend)
        check_backend_flags(cfg, given)
        ctx = preflight(cfg, args, plugin_objects)
        _lock_run_dir(run_dir, locks)
        doc = store.read_checkpoint()
        if doc is not None and doc.get("config") is not None:
            diff = fingerprint_differences(doc["config"], cfg)
            if diff:
                raise ConfigError(f"{run_dir / CONFIG} differs from the config this run was checkpointed under "
                                  f"({'; '.join(diff)}): a resumed run keeps its config (only "
                                  f"{', '.join(RESUME_OVERRIDABLE)} may change); undo the edit, or start a new "
                                  f"run with it: deapnos run --config {shlex.quote(str(run_dir / CONFIG))}")
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
    _lock_run_dir(run_dir, locks)
    store.write_config(cfg.to_toml())
    if store.read_checkpoint() is None:
        store.save_checkpoint(None, config=config_fingerprint(cfg))     # the fingerprint from the start
    return cfg, run_dir, ctx


def _unknown_task(path: str, name: str, tasks) -> ConfigError:
    """A one-line error for a task name that no loaded plugin provides: close matches first."""
    import difflib
    close = difflib.get_close_matches(str(name), list(tasks), n=3)
    guess = f" (did you mean {', '.join(close)}?)" if close else ""
    known = ", ".join(sorted(tasks)) or "none (no task plugin loaded)"
    return ConfigError(f"config field {path} = {name!r}: no such task{guess}; allowed values: {known}")


def check_against_plugins(cfg: Config, ctx: Context, launching: bool = False) -> None:
    """Config fields that name plugin things, against the run's :class:`~deapnos.context.Context`:
    backend, algorithm, tasks, checks, protocol fields, baselines, ``[plugin.NAME]`` sections.
    Reads ``$DEAPNOS_DATA`` for the data check; changes nothing.  ([protocol] is checked when the
    config is read: :meth:`~deapnos.evaluate.protocol.ProtocolConfig.from_dict`.)  ``launching``:
    the check of a launcher that starts SCOOP itself, before any worker exists."""
    from deapnos.plugins import TASK_KINDS
    checks, tasks = ctx.checks, ctx.tasks
    for path, name, registry in (("run.backend", cfg.run.backend, ctx.backends),
                                 ("run.algorithm", cfg.run.algorithm, ctx.algorithms)):
        if name not in registry:
            raise ConfigError(f"config field {path} = {name!r}: {registry.unknown(name)}")
    known = ", ".join(sorted(tasks)) or "none (no task plugin loaded)"
    named = [("search.init_task", n) for n in cfg.search.init_tasks] + [("search.task", n) for n in cfg.search.tasks]
    named += [("validation.tasks", n) for n in cfg.validation.tasks]
    named += [(f"elimination.rungs[{i}].task", rung.task) for i, rung in enumerate(cfg.elimination.rungs)]
    for path, name in named:
        if name not in tasks:
            raise _unknown_task(path, name, tasks)
        if getattr(tasks[name], "kind", None) not in TASK_KINDS.values():
            raise ConfigError(f"config field {path} = {name!r}: task kind {getattr(tasks[name], 'kind', None)!r} "
                              f"is neither of {', '.join(TASK_KINDS.values())} (a task comes from "
                              f"deapnos_surrogates or deapnos_fitness_tasks)")
    if not cfg.fitness.relative:
        # raw scores rank failures (-1) below every trained candidate only when scores stay above -1
        raw = [n for n in cfg.search.tasks if tasks[n].metric == "log_loss"]
        if raw:
            raise ConfigError(f"config field fitness.relative = false: task {raw[0]!r} scores -ln(loss), which "
                              "can fall below a failure's -1; use fitness.relative = true")
    from deapnos.search.fitness import reference_problem       # the run's zoo: built-ins and plugin entries
    if reference_problem(cfg.fitness.reference, ctx.zoo):
        raise ConfigError(reference_problem(cfg.fitness.reference, ctx.zoo))
    for name in cfg.tasks:
        if name not in tasks:
            raise ConfigError(f"config section [tasks.{name}]: no such task; allowed values: {known}")
    for name in cfg.search.integrity_checks:
        if name not in checks:
            raise ConfigError(f"config field search.integrity_checks: {name!r} is not installed; allowed values: "
                              f"{', '.join(sorted(checks)) or 'none'}")
    from deapnos.search.elimination import baseline_problem
    for name in cfg.elimination.baselines:
        problem = baseline_problem(name, cfg.run.compat, ctx.zoo)
        if problem:
            raise ConfigError(f"config field elimination.baselines: {problem}")
    from deapnos.search.fitness import validation_tasks
    used = cfg.search.init_tasks + cfg.search.tasks + [r.task for r in cfg.elimination.rungs]
    used += validation_tasks(cfg, tasks) if cfg.validation.enabled else []
    for name in dict.fromkeys(used):
        task = tasks[name].replace(**cfg.tasks[name]) if name in cfg.tasks else tasks[name]
        try:
            task.check_available()
        except Exception as exc:   # noqa: BLE001 - TaskDataError or a plugin's own: names the path and how to get it
            raise ConfigError(f"{exc} (config: run.data_dir or [tasks.\"{name}\"] data_path)") from None
    if cfg.run.backend == "scoop" and not under_scoop() and not launching:
        raise ConfigError("run.backend = 'scoop' needs SCOOP: use `deapnos run` (it launches SCOOP) or "
                          "`python -m scoop -n N deapnos.run ...`")


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
    handler = logging.FileHandler(run_dir / "search.log")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    logging.getLogger("deapnos").addHandler(handler)
    if logging.getLogger("deapnos").level == logging.NOTSET:
        logging.getLogger("deapnos").setLevel(logging.INFO)
    backend = None
    stopped = False
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
        search = SearchRun(cfg, store, backend, ctx, live=progress)
        if plugin_objects:     # objects cannot go into config.toml: the serial worker gets them directly
            search.evaluator.payload_base["plugins"] = [*cfg.run.plugins, *plugin_objects]
        progress.best_source = lambda: hof_best(search.hof)
        live = LiveView(progress, mode=view, interval=interval,
                        publish=lambda snap: store.write_status("running", **running, progress=snap))
        log.info("%s run in %s (backend %s, %d worker(s))", "resuming" if search.resumed else "starting", run_dir,
                 cfg.run.backend, getattr(backend, "workers", 1))
        with live, live.redirect_logging():
            summary = search.run()
            progress.finish()
        outcome: dict[str, Any] = {"seconds": time.time() - t0, "best": summary.get("best"),
                                   "leaderboard": summary.get("leaderboard"), "backend": running["backend"],
                                   "workers": running["workers"]}
        store.write_status("ok", **outcome)
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


def stop_stalled(store: RunStore, run_dir: Path, message: str) -> None:
    """End a run whose workers went silent (called from the backend's watchdog thread): record the
    failure with the resume command, then leave at once, since the main thread waits inside SCOOP
    for a result that will never come.  The evaluation log and the checkpoint are already on disk."""
    store.write_status("failed", f"{message}; continue with: {resume_command(run_dir)}",
                       resume=resume_command(run_dir))
    logging.shutdown()
    os._exit(1)


def _die_with_launcher(parent: int):
    """``preexec_fn`` of the SCOOP launcher: the kernel kills it when this launcher dies (Linux,
    ``prctl(PR_SET_PDEATHSIG)``; the function is looked up here, before the fork)."""
    prctl = None
    if sys.platform.startswith("linux"):
        try:
            import ctypes
            prctl = ctypes.CDLL(None).prctl
        except (OSError, AttributeError):
            prctl = None

    def preexec():
        signal.pthread_sigmask(signal.SIG_UNBLOCK, STOP_SIGNALS)
        if prctl is not None:
            prctl(1, int(signal.SIGKILL), 0, 0, 0)
        if os.getppid() != parent:
            os._exit(1)
    return preexec


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def stop_group(proc: subprocess.Popen, grace: float = 5.0) -> None:
    """Take down the process group of ``proc`` (its leader): SIGTERM, then SIGKILL after ``grace``
    seconds; returns when the group is empty (or after another 10 s)."""
    pgid = proc.pid
    for sig, wait_s in ((signal.SIGTERM, grace), (signal.SIGKILL, 10.0)):
        try:
            os.killpg(pgid, sig)
        except ProcessLookupError:
            pass
        deadline = time.monotonic() + wait_s
        while time.monotonic() < deadline:
            proc.poll()                  # reap the leader, so that the group can empty
            if not _group_alive(pgid):
                proc.poll()
                return
            time.sleep(0.05)
    proc.poll()


FINAL_STATES = ("ok", "failed", "interrupted")


def wait_for_job(proc: subprocess.Popen, store: RunStore, grace: float = 30.0) -> int:
    """Wait for the SCOOP job; once the search has written its outcome, give the job ``grace``
    seconds to exit, then end its process group (SCOOP can wait forever on a host that died)."""
    final_since = None
    while True:
        try:
            return proc.wait(timeout=1.0)
        except subprocess.TimeoutExpired:
            pass
        try:
            state = (store.read_status() or {}).get("status")
        except StoreError:
            state = None
        if state not in FINAL_STATES:
            final_since = None
        elif final_since is None:
            final_since = time.monotonic()
        elif time.monotonic() - final_since > grace:
            log.warning("the SCOOP job wrote its outcome (%s) but did not exit within %.0f s: ending it", state, grace)
            stop_group(proc)
            return proc.wait()


def launch_scoop(cfg: Config, run_dir: Path, hostfile: str | None = None, verbose: bool = False,
                 lock: FolderLock | None = None, quiet: bool = False, interval: float = 30.0) -> int:
    """Run the search under SCOOP in a child process group and check its outcome (status.json).

    The SCOOP job runs in a process group of its own; a stop signal (SIGINT, SIGTERM, SIGHUP)
    takes the whole group down, marks the run ``interrupted`` and prints the resume command.  Every
    process of the job also exits when this launcher dies (even by SIGKILL)."""
    run_dir = Path(run_dir).resolve()
    store = RunStore(run_dir)
    status_path = store.path("status.json")
    # a writer left by a launcher killed with SIGKILL exits within a second or so (its processes
    # watch the launcher): wait for it rather than start a second writer beside it
    FolderLock(run_dir / WRITER_LOCK).acquire("a check of deapnos run", wait=15.0).release()
    if status_path.exists():
        status_path.unlink()
    cmd = [sys.executable, "-m", "scoop", "-n", str(cfg.run.workers)]
    if hostfile:
        cmd += ["--hostfile", str(Path(hostfile).resolve())]
    cmd += [str(ENTRY_FILE), "--run-dir", str(run_dir)]
    if verbose:
        cmd += ["--log-level", "DEBUG"]
    cmd += ["--quiet"] if quiet else ["--progress-interval", str(interval)]
    env = dict(os.environ)
    env["DEAPNOS_RUN_TOKEN"] = uuid.uuid4().hex
    env["DEAPNOS_TORCH_THREADS"] = str(cfg.run.torch_threads)
    env["DEAPNOS_DEVICE"] = cfg.run.device
    env["DEAPNOS_LAUNCHER_PID"] = str(os.getpid())
    env["DEAPNOS_LAUNCHER_HOST"] = socket.gethostname()
    if lock is not None and lock.info.get("token"):
        env[RUN_TOKEN_ENV] = lock.info["token"]
    log.info("launching: %s", " ".join(cmd))
    proc = None
    try:
        # no stop signal between the fork and knowing the child's pid (it would orphan the job)
        signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS)
        try:
            proc = subprocess.Popen(cmd, env=env, process_group=0, preexec_fn=_die_with_launcher(os.getpid()))
        finally:
            signal.pthread_sigmask(signal.SIG_UNBLOCK, STOP_SIGNALS)
        returncode = wait_for_job(proc, store)
    except KeyboardInterrupt as exc:
        signum = getattr(exc, "signum", signal.SIGINT)
        if proc is not None:
            stop_group(proc)
        mark_interrupted(run_dir, signum)
        written = store.read_status() or {}
        if written.get("status") == "ok":
            return 0
        return print_interrupted(run_dir, signum)
    finally:
        if proc is not None and proc.poll() is None:
            stop_group(proc)
    status = store.read_status()
    if status is None:
        print(f"error: the SCOOP run exited with code {returncode} before the search wrote "
              f"{status_path} (see the output above); continue with: {resume_command(run_dir)}",
              file=sys.stderr)
        return 1
    state = status.get("status")
    if state == "running":
        print(f"error: the SCOOP origin (pid {status.get('pid', '?')}) ended while the search was running, without "
              f"writing its outcome (SCOOP exit code {returncode}; see the output above and "
              f"{run_dir / 'search.log'}); continue with: {resume_command(run_dir)}", file=sys.stderr)
        return 1
    if state == "interrupted":
        print(f"error: the search was interrupted ({status.get('error') or 'stopped'}); continue with: "
              f"{resume_command(run_dir)}", file=sys.stderr)
        return 1
    if state != "ok":
        print(f"error: the search failed: {status.get('error') or state}", file=sys.stderr)
        if status.get("traceback") and verbose:
            print(status["traceback"], file=sys.stderr)
        return 1
    return 0


def print_outcome(run_dir: Path) -> None:
    try:
        status = RunStore(run_dir).read_status() or {}
    except StoreError as exc:
        print(f"warning: {exc}", file=sys.stderr)
        status = {}
    board = status.get("leaderboard") or []
    print(f"run folder: {run_dir}")
    if board:
        print(f"leaderboard on {board[0].get('task')} (absolute mean: final score over seeds; Δ: relative mean, "
              f"paired difference to {board[0].get('reference')} ± 95% interval):")
        for row in board:
            ci = row.get("vs_reference_ci")
            vs = ""
            if ci and not row["baseline"]:
                vs = f"  Δ {difference_text(ci)} ({row.get('verdict')})"
            mean = "failed" if row["mean"] is None else f"{row['mean']:.4f}"
            failed = f" (failed on {row['failed']} seed(s))" if row.get("failed") else ""
            print(f"  {row['rank']:2d}. {row['label']:10s} {mean}{vs}{failed}  {row['genome']}")
    print_validation(run_dir)
    if (run_dir / "report.md").exists():
        print(f"report: {run_dir / 'report.md'}")


def print_validation(run_dir: Path) -> None:
    """The held-out validation in a few lines (validation.json)."""
    try:
        val = RunStore(run_dir).read_json("validation.json", {}, kind=dict)
    except StoreError as exc:
        print(f"warning: {exc}", file=sys.stderr)
        return
    if not val.get("rows"):
        return
    print(f"held-out validation on {', '.join(val['tasks'])} (seeds {val['seeds']}): score minus the best tuned "
          f"reference's ({val['reference']}) per seed, relative mean ± 95% interval; 'better' only when the "
          "interval excludes zero")
    for row in val["rows"]:
        print(f"  {row['label']:10s} {difference_text(row['overall'].get('difference')):20s} "
              f"{row['overall']['verdict']}")
    h = val.get("horizon") or {}
    if h.get("rows"):
        holds = {True: "holds", False: "does not hold", None: "cannot be judged"}[h.get("ranking_holds")]
        print(f"horizon check at {h['factor']}x the steps: the ranking {holds}")
        for row in h["rows"]:
            print(f"  {row['label']:10s} {difference_text(row['overall'].get('difference')):20s} "
                  f"{row['overall']['verdict']}")


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
    if not logging.getLogger().handlers:
        logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    if args.log_level:
        logging.getLogger("deapnos").setLevel(args.log_level.upper())
    return run_command(args)


scoop_worker_import()

if __name__ == "__main__":      # python -m deapnos.run
    sys.exit(main())
