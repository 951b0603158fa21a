"""Map backends (serial, local process pool, SCOOP).

Provides :class:`SerialBackend`, :class:`PoolBackend`, :class:`ScoopBackend` and :func:`make_backend`;
every backend's ``map(fn, items, on_result=None)`` returns results in input order and reports each as
it arrives.  The worker side is :mod:`deapnos.evaluate.worker`; what a search maps is
:func:`deapnos.worker_entry.evaluate_payload`.  :mod:`deapnos.context` registers this module as a
built-in plugin (``deapnos:backends``), so it imports nothing above the context;
:mod:`deapnos.distributed` re-exports its names.  Details: docs/plugins.md (backends),
docs/search.md, "What deapnos run does with SCOOP".
"""
from __future__ import annotations

import logging
import os
import socket
import threading
import time
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from typing import Any
from collections.abc import Callable

from deapnos.evaluate.worker import (_ENV_MARK, _WORKER, ContextOf, WorkerEnvironmentError,
                                     call_reporting_environment, environment_differences, environment_message,
                                     under_scoop, worker_setup)
from deapnos.hookspecs import hookimpl
from deapnos.processes import alive, set_death_signal
from deapnos.registry import Registry

log = logging.getLogger(__name__)

# ----------------------------------------------------------------------------------------------
# backends
# ----------------------------------------------------------------------------------------------

class SerialBackend:
    """In-process map (tests, debugging)."""
    name = "serial"

    def __init__(self, workers: int = 1, threads: int = 1, device: str = "auto"):
        self.workers = 1
        self.threads, self.device = threads, device

    def map(self, fn: Callable, items, on_result: Callable | None = None) -> list:
        out = []
        for i, item in enumerate(items):
            r = fn(item)
            if on_result is not None:
                on_result(i, r)
            out.append(r)
        return out

    def close(self, force: bool = False):
        pass


# ----------------------------------------------------------------------------------------------
# processes that end with the run
# ----------------------------------------------------------------------------------------------

def exit_with_parent(watch_pids=(), interval: float = 0.5) -> None:
    """Make this worker process exit when its parent dies, and when any of ``watch_pids`` (the
    ``deapnos run`` launcher of a SCOOP job, whose workers are its grandchildren) is gone.

    On Linux the kernel sends SIGKILL at the parent's death (``prctl(PR_SET_PDEATHSIG)`` through
    ctypes); everywhere, a daemon thread polls ``getppid()`` and the watched pids and calls
    ``os._exit``.  A worker holds no state of its own (results go back to the search, which logs
    them); the SCOOP origin, which writes the log, may leave a torn last line, which the next run cuts
    off before appending.  Idempotent."""
    if "watchdog" in _WORKER:
        return
    import signal
    parent = os.getppid()
    set_death_signal(signal.SIGKILL)          # where there is no prctl, the thread below still watches
    watch = [int(p) for p in watch_pids if p]
    if parent == 1 or not all(alive(p) for p in watch):     # already orphaned before we looked
        os._exit(1)

    def watchdog():
        while True:
            time.sleep(interval)
            if os.getppid() != parent or not all(alive(p) for p in watch):
                os._exit(1)

    _WORKER["watchdog"] = threading.Thread(target=watchdog, name="deapnos-parent-watchdog", daemon=True)
    _WORKER["watchdog"].start()


def scoop_exit_with_launcher() -> None:
    """For every process of a SCOOP job (origin and workers): exit when the parent dies and, when
    ``deapnos run`` launched the job on this host (``DEAPNOS_LAUNCHER_PID``/``_HOST``), when that
    launcher or SCOOP's own launcher (the leader of the job's process group) is gone."""
    watch = []
    launcher = os.environ.get("DEAPNOS_LAUNCHER_PID", "")
    if launcher.isdigit() and os.environ.get("DEAPNOS_LAUNCHER_HOST") == socket.gethostname():
        watch.append(int(launcher))
        leader = os.getpgid(0)
        if leader not in (os.getpid(), int(launcher)):
            watch.append(leader)
    exit_with_parent(watch)


def _pool_init(counter, threads, device, launcher=None, group=None):
    """Set-up of a pool worker: its own process group shared by the pool (the launcher takes the
    group down when it stops), SIGINT left to the launcher, exit when the launcher dies."""
    import signal
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    with counter.get_lock():
        index = counter.value
        counter.value += 1
        if group is not None:
            try:
                if group.value:
                    os.setpgid(0, group.value)
                else:
                    os.setpgid(0, 0)
                    group.value = os.getpid()
            except OSError:            # the group's leader is gone: a group of its own
                os.setpgid(0, 0)
    if launcher is not None:
        exit_with_parent([launcher])
    worker_setup(threads, device, index)


class PoolBackend:
    """A local process pool (``spawn`` start method: safe with torch and CUDA)."""
    name = "pool"

    def __init__(self, workers: int = 2, threads: int = 1, device: str = "auto"):
        import multiprocessing as mp
        ctx = mp.get_context("spawn")
        self.workers = workers
        self._counter = ctx.Value("i", 0)
        self._group = ctx.Value("i", 0)          # process group of the pool's workers
        self._pool = ProcessPoolExecutor(max_workers=workers, mp_context=ctx, initializer=_pool_init,
                                         initargs=(self._counter, threads, device, os.getpid(), self._group))

    def map(self, fn: Callable, items, on_result: Callable | None = None) -> list:
        items = list(items)
        futures = {self._pool.submit(fn, item): i for i, item in enumerate(items)}
        out = [None] * len(items)
        pending = set(futures)
        while pending:
            done, pending = wait(pending, return_when=FIRST_COMPLETED)
            for fut in sorted(done, key=lambda f: futures[f]):
                i = futures[fut]
                out[i] = fut.result()
                if on_result is not None:
                    on_result(i, out[i])
        return out

    def close(self, force: bool = False):
        """Shut the pool down; ``force`` (a stopped run): kill its process group and every worker
        now instead of waiting for running evaluations."""
        if force:
            import signal
            procs = list((getattr(self._pool, "_processes", None) or {}).values())
            group = self._group.value
            members = []
            for proc in procs:
                try:
                    members.append(os.getpgid(proc.pid))
                except OSError:
                    pass
            if group and group in members:        # still the pool's group (never a reused id)
                try:
                    os.killpg(self._group.value, signal.SIGKILL)
                except OSError:
                    pass
            for proc in procs:
                try:
                    proc.kill()
                except Exception:   # noqa: BLE001 - already gone
                    pass
            self._pool.shutdown(wait=False, cancel_futures=True)
            for proc in procs:
                proc.join(timeout=5)
            return
        self._pool.shutdown(wait=True, cancel_futures=True)


class ScoopBackend:
    """SCOOP futures; only inside ``python -m scoop`` (the origin evaluates too)."""
    name = "scoop"

    def __init__(self, workers: int | None = None, threads: int = 1, device: str = "auto",
                 stall_timeout: float = 0.0):
        if not under_scoop():
            raise RuntimeError("the scoop backend needs the program to run under SCOOP: use "
                               "`deapnos run --backend scoop` (it launches SCOOP) or "
                               "`python -m scoop -n N deapnos.run ...`")
        import scoop
        self.workers = getattr(scoop, "SIZE", workers) or workers
        # the origin evaluates futures too: set it up like every worker
        worker_setup(threads, device)
        # (origin fingerprint, plugins, compat, the workers' Context builder) after check_workers
        self._expected: tuple[dict, tuple, bool, ContextOf] | None = None
        self._checked: set[str] = set()
        self.stall_timeout = float(stall_timeout)
        #: called with a message when no result came for too long; the run sets one that records
        #: the failure and ends the process (SCOOP cannot take back a future it lost)
        self.on_stall: Callable[[str], None] | None = None
        self._pending = 0
        self._last_result = time.monotonic()
        self._slowest = 0.0
        self._watchdog: threading.Thread | None = None

    def expect_environment(self, fingerprint: dict, checked, plugins, compat, context_of: ContextOf) -> None:
        """After :func:`~deapnos.evaluate.worker.check_workers`: a worker not checked then reports its
        fingerprint with its first result, and one that differs stops the run
        (WorkerEnvironmentError).  ``context_of`` builds the Context a worker fingerprints (it
        crosses to the workers by reference)."""
        self._expected = (fingerprint, tuple(plugins), bool(compat), context_of)
        self._checked.update(checked)

    def unheard(self) -> int:
        """How many of the job's workers have not been checked (none answered from them yet)."""
        return max(0, int(self.workers or 1) - len(self._checked))

    def _verify(self, answer: dict):
        wid, fp = answer.get("worker", "?"), answer[_ENV_MARK]
        if wid not in self._checked or answer.get("refused"):
            # only map() after expect_environment() asks the workers for their fingerprint
            assert self._expected is not None, "a worker fingerprint came before expect_environment()"
            expected = self._expected[0]
            errors, warnings = environment_differences(expected, fp)
            host = fp.get("host") or wid.rsplit(":", 1)[0]
            if errors:
                raise WorkerEnvironmentError(environment_message(expected.get("host", "?"), {host: errors}))
            for w in warnings:
                log.warning("worker %s on host %s: %s", wid, host, w)
            self._checked.add(wid)
        return answer["result"]

    def stall_limit(self) -> float:
        """Seconds without any result after which the run is declared stalled: ``stall_timeout``,
        or three times the slowest evaluation seen if that is longer; 0 means never."""
        if self.stall_timeout <= 0:
            return 0.0
        return max(self.stall_timeout, 3.0 * self._slowest)

    def _watch(self) -> None:
        # A host that dies can take a future with it that SCOOP never sends again (seen with a
        # host killed mid-evaluation): without this the origin would wait forever.
        while True:
            limit = self.stall_limit()
            time.sleep(max(0.2, min(5.0, limit / 10)))
            idle = time.monotonic() - self._last_result
            if self._pending and limit and idle > limit:
                message = (f"no result from any SCOOP worker for {idle:.0f} s while {self._pending} evaluation(s) "
                           f"were out (run.stall_timeout = {self.stall_timeout:g} s): a host may be gone")
                log.error("%s", message)
                if self.on_stall is not None:
                    self.on_stall(message)
                return

    def _start_watchdog(self) -> None:
        if self.stall_timeout > 0 and self._watchdog is None:
            self._watchdog = threading.Thread(target=self._watch, name="deapnos-stall-watchdog", daemon=True)
            self._watchdog.start()

    def map(self, fn: Callable, items, on_result: Callable | None = None) -> list:
        from scoop import futures
        items = list(items)
        self._last_result = time.monotonic()
        self._pending = len(items)
        self._start_watchdog()
        if self._expected is not None:
            expected, plugins, compat, context_of = self._expected
            fs = [futures.submit(call_reporting_environment, fn, item, plugins, compat, expected, context_of)
                  for item in items]
        else:
            fs = [futures.submit(fn, item) for item in items]
        index = {id(f): i for i, f in enumerate(fs)}
        out: list[Any] = [None] * len(items)
        for fut in futures.as_completed(fs):
            i = index[id(fut)]
            out[i] = fut.result()
            if isinstance(out[i], dict) and _ENV_MARK in out[i]:
                out[i] = self._verify(out[i])
            self._pending -= 1
            self._last_result = time.monotonic()
            if isinstance(out[i], dict) and isinstance(out[i].get("seconds"), (int, float)):
                self._slowest = max(self._slowest, float(out[i]["seconds"]))
            if on_result is not None:
                on_result(i, out[i])
        self._pending = 0
        return out

    def close(self, force: bool = False):
        pass


# A backend factory is called with keywords ``workers``, ``threads``, ``device``, ``stall_timeout``,
# ``context`` (the run's deapnos.context.Context, or None) and returns an object with
# ``map(fn, items, on_result=None)``, ``workers`` and ``close(force=False)``.
BackendFactory = Callable[..., Any]


def _serial(workers: int = 1, threads: int = 1, device: str = "auto", stall_timeout: float = 0.0, context=None):
    return SerialBackend(workers, threads, device)


def _pool(workers: int = 1, threads: int = 1, device: str = "auto", stall_timeout: float = 0.0, context=None):
    return PoolBackend(workers, threads, device)


def _scoop(workers: int = 1, threads: int = 1, device: str = "auto", stall_timeout: float = 0.0, context=None):
    return ScoopBackend(workers, threads, device, stall_timeout)


#: the built-in map backends; plugins add theirs through ``deapnos_map_backends`` into a run's copy
BACKENDS: Registry[BackendFactory] = Registry("map backend")
BACKENDS.register("serial", _serial)
BACKENDS.register("pool", _pool)
BACKENDS.register("scoop", _scoop)


@hookimpl
def deapnos_map_backends() -> dict[str, BackendFactory]:
    """The built-in map backends (:data:`BACKENDS`, never changed), as a plugin: deapnos.context
    registers this module (``deapnos:backends``), as pytest registers its default plugins."""
    return dict(BACKENDS.items())


def make_backend(name: str, workers: int = 1, threads: int = 1, device: str = "auto",
                 stall_timeout: float = 0.0, backends: Registry[BackendFactory] | None = None, context=None):
    """The backend ``name`` of ``backends`` (a run's registry; default: the built-ins), given the
    run's ``context``.  An unknown name raises :class:`~deapnos.registry.UnknownNameError` listing
    the known ones."""
    factory = (BACKENDS if backends is None else backends).get(name)
    return factory(workers=workers, threads=threads, device=device, stall_timeout=stall_timeout, context=context)


def toolbox_with_map(backend, toolbox=None):
    """A DEAP toolbox whose ``map`` is the backend's (the one seam)."""
    from deap import base
    toolbox = toolbox or base.Toolbox()
    toolbox.register("map", backend.map)
    return toolbox
