"""Launching and stopping a search: the SCOOP job that ``deapnos run`` starts, and stop signals.

``deapnos run`` with the SCOOP backend does not run the search itself: :func:`launch_scoop` starts
``python -m scoop`` on ``deapnos/scoop_entry/main.py`` in a process group of its own, takes the group
down on a stop signal (SIGINT, SIGTERM, SIGHUP) and reads the outcome from ``status.json``, since
SCOOP exits 0 even when the program failed.  :func:`scoop_worker_import` is what every process of
the job does when SCOOP imports the entry file.  The three ways in: docs/search.md, "What deapnos run
does with SCOOP".
"""
from __future__ import annotations

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
import uuid
from pathlib import Path
from typing import TYPE_CHECKING
from collections.abc import Iterator

from deapnos.distributed import check_workers, scoop_exit_with_launcher, under_scoop, worker_setup
from deapnos.processes import death_signal_call, stop_group, PR_SET_PDEATHSIG
from deapnos.search.config import ConfigError
from deapnos.search.store import REPORT, WRITER_LOCK, FolderLock, RunStore, StoreError

if TYPE_CHECKING:
    from deapnos.search.config import Config

log = logging.getLogger("deapnos.run")

ENTRY_FILE = Path(__file__).resolve().parent / "scoop_entry" / "main.py"   # the file SCOOP runs
RUN_TOKEN_ENV = "DEAPNOS_RUN_LOCK_TOKEN"      # the `deapnos run` launcher's run lock, held for its SCOOP job
STOP_SIGNALS = tuple(getattr(signal, n) for n in ("SIGINT", "SIGTERM", "SIGHUP") if hasattr(signal, n))
FINAL_STATES = ("ok", "failed", "interrupted")
STARTING = "starting"         # status.json while SCOOP starts, before the search writes "running"


def scoop_worker_import() -> None:
    """What every SCOOP process does when it imports the entry file: one torch thread and, with
    GPUs, one GPU for its lifetime; exit when its parent (or the `deapnos run` launcher of the job)
    dies.  Nothing outside SCOOP."""
    if under_scoop():
        scoop_exit_with_launcher()
        if "DEAPNOS_DEVICE" in os.environ:        # set by `deapnos run` for the processes it starts on this host
            worker_setup(int(os.environ.get("DEAPNOS_TORCH_THREADS", "1")), os.environ["DEAPNOS_DEVICE"])
        # else a worker on another host (ssh passes no environment) or of `python -m scoop` by hand: it
        # takes run.device and run.torch_threads from its first task (worker_setup in evaluate_with)
        _shorten_scoop_warnings()


class _Shorten(logging.Filter):
    """SCOOP logs a lost future with the whole request it resends (1.5 KB on one line): keep the
    first ``limit`` characters, which name the future."""

    def __init__(self, limit: int = 200):
        super().__init__()
        self.limit = limit

    def filter(self, record: logging.LogRecord) -> bool:
        text = record.getMessage()
        if len(text) > self.limit:
            record.msg, record.args = f"{text[:self.limit]}... ({len(text) - self.limit} more characters)", None
        return True


def _shorten_scoop_warnings() -> None:
    import scoop
    logger = getattr(scoop, "logger", None)
    if isinstance(logger, logging.Logger) and not any(isinstance(f, _Shorten) for f in logger.filters):
        logger.addFilter(_Shorten())


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
    """The one line of a stopped run (the resume command; for a search that had finished, how to
    write its report), and the exit code 128 + N."""
    name = signal_name(signum)
    status = _read_status(run_dir) if run_dir is not None else {}
    if run_dir is not None and status.get("status") == "ok":
        missing = "" if (Path(run_dir) / REPORT).exists() else (
            f", but {Path(run_dir) / REPORT} was not written; write it with: "
            f"deapnos report {shlex.quote(str(Path(run_dir).resolve()))}")
        print(f"interrupted by {name} after the search finished (status 'ok'){missing}", file=sys.stderr)
    else:
        where = f"; continue with: {resume_command(run_dir)}" if run_dir is not None else ""
        print(f"interrupted by {name}: the run stopped (status 'interrupted'){where}", file=sys.stderr)
    return 128 + int(signum)


def _read_status(run_dir: Path) -> dict:
    try:
        return RunStore(run_dir).read_status() or {}
    except (OSError, StoreError):
        return {}


# ----------------------------------------------------------------------------------------------
# the SCOOP job
# ----------------------------------------------------------------------------------------------

def check_late_workers(backend, cfg: Config) -> None:
    """At the end of a SCOOP search, the workers never heard from (they started after the start-up
    check and got no task) are checked now: a run never ends "ok" beside a worker whose environment
    differs (WorkerEnvironmentError).  Waits at least 30 s for them."""
    unheard = getattr(backend, "unheard", lambda: 0)()
    if not unheard:
        return
    from deapnos.evaluate.worker import WORKER_CHECK_WAIT_ENV
    wait = max(30.0, float(os.environ.get(WORKER_CHECK_WAIT_ENV, "60") or 60))
    log.info("checking the environment of %d SCOOP worker(s) not heard from during the search", unheard)
    check_workers(backend, cfg.run.plugins, cfg.run.compat, cfg.run.torch_threads, cfg.run.device, wait=wait)


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


def _die_with_launcher(parent: int):
    """``preexec_fn`` of the SCOOP launcher: the kernel kills it when this launcher dies (Linux,
    ``prctl(PR_SET_PDEATHSIG)``; the function is looked up here, before the fork)."""
    prctl = death_signal_call()

    def preexec():
        signal.pthread_sigmask(signal.SIG_UNBLOCK, STOP_SIGNALS)
        if prctl is not None:
            prctl(PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0)
        if os.getppid() != parent:
            os._exit(1)
    return preexec


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
    # "starting" replaces the outcome of an earlier job (which must not be read as this one's) and
    # tells `deapnos status` that SCOOP is starting, until the search writes "running"
    store.write_status(STARTING, pid=os.getpid(), host=socket.gethostname(), started=time.time())
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
        if written.get("status") == "ok" and (not cfg.run.report or (run_dir / REPORT).exists()):
            return 0          # finished, with its report: the stop came during the last clean-up
        return print_interrupted(run_dir, signum)
    finally:
        if proc is not None and proc.poll() is None:
            stop_group(proc)
    status = store.read_status()
    if status is None or status.get("status") == STARTING:
        print(f"error: the SCOOP run exited with code {returncode} before the search wrote its status to "
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
