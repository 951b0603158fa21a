"""Map backends (serial, local process pool, SCOOP) and the worker side of an evaluation.

``toolbox.map`` is the one seam between the search and the machines (DESIGN.md, "Distribution").
Every backend's ``map(fn, items, on_result=None)`` returns the results in input order, like the
built-in ``map``, and calls ``on_result(index, result)`` as each one arrives, so that the search can
log every finished evaluation at once even while others still run.

What crosses to a worker is small: a payload dict with the genome text, task name, seed, the
protocol config as a dict, and the plugin list (:func:`make_payload`).  The worker
(:func:`evaluate_payload`) builds the plugin manager, space and tasks once per process, runs
:func:`deapnos.evaluate.protocol.evaluate_genome` and returns the ``EvalResult`` as a dict; it never
raises.  Each worker process runs torch with one thread and, when GPUs exist, claims one GPU for
its lifetime (:func:`claim_device`).

SCOOP re-imports the entry file on every worker and exits 0 even when the program failed; see
``deapnos/run.py`` for the entry point and the ``deapnos run`` wrapper that checks the outcome.
"""
from __future__ import annotations

import logging
import os
import socket
import tempfile
import time
import traceback
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from typing import Callable

log = logging.getLogger(__name__)

BACKENDS = ("serial", "pool", "scoop")

# Per-process worker state (the plugin manager, space and tasks are built once per process).
_WORKER: dict = {}


# ----------------------------------------------------------------------------------------------
# worker side
# ----------------------------------------------------------------------------------------------

def worker_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def under_scoop() -> bool:
    try:
        import scoop
    except ImportError:
        return False
    return bool(getattr(scoop, "IS_RUNNING", False))


def _claim_index(count: int) -> int:
    """A per-host index for this process: the first free lock file in a folder shared by the
    workers of one launch (``DEAPNOS_RUN_TOKEN``, else the SCOOP broker port); pid otherwise."""
    token = os.environ.get("DEAPNOS_RUN_TOKEN")
    if not token and under_scoop():
        import scoop
        broker = getattr(scoop, "BROKER", None)
        token = f"scoop{getattr(broker, 'task_port', '')}" if broker is not None else None
    if not token:
        return os.getpid()
    folder = os.path.join(tempfile.gettempdir(), f"deapnos-devices-{token}")
    os.makedirs(folder, exist_ok=True)
    for i in range(4096):
        try:
            fd = os.open(os.path.join(folder, str(i)), os.O_CREAT | os.O_EXCL | os.O_WRONLY)
        except FileExistsError:
            continue
        os.write(fd, str(os.getpid()).encode())
        os.close(fd)
        return i
    return os.getpid()


def claim_device(preference: str = "auto", index: int | None = None) -> str:
    """The device this worker process uses for its lifetime: ``cpu``, or ``cuda:k`` with
    k = worker index mod the number of GPUs (``torch.cuda.set_device`` is called)."""
    if preference == "cpu":
        return "cpu"
    import torch
    if not torch.cuda.is_available():
        if preference == "cuda":
            raise RuntimeError("run.device = 'cuda' but torch sees no GPU")
        return "cpu"
    count = torch.cuda.device_count()
    if index is None:
        index = _claim_index(count)
    k = index % count
    torch.cuda.set_device(k)
    return f"cuda:{k}"


def worker_setup(threads: int = 1, device: str = "auto", index: int | None = None) -> dict:
    """Idempotent per-process set-up: torch threads and the claimed device."""
    if "device" not in _WORKER:
        import torch
        torch.set_num_threads(max(1, int(threads)))
        _WORKER["device"] = claim_device(device, index)
        _WORKER["threads"] = threads
        log.debug("worker %s uses %s with %d torch thread(s)", worker_id(), _WORKER["device"], threads)
    return _WORKER


def _environment(plugins: tuple, compat: bool):
    """(plugin manager, space, tasks) of this process for a plugin list, built once."""
    key = ("env", plugins, compat)
    env = _WORKER.get(key)
    if env is None:
        from deapnos import plugins as _plugins
        pm = _plugins.get_plugin_manager(extra_plugins=plugins)
        space = _plugins.build_space(pm, compat=compat)
        tasks = _plugins.all_tasks(pm)
        env = _WORKER[key] = (pm, space, tasks)
    return env


def make_payload(genome_text: str, task: str, seed: int, protocol: dict | None = None,
                 plugins=(), compat: bool = False, device: str = "auto", threads: int = 1,
                 task_overrides: dict | None = None, data_dir: str = "") -> dict:
    """What crosses to a worker: plain data only."""
    return {"genome": genome_text, "task": task, "seed": int(seed), "protocol": dict(protocol or {}),
            "plugins": list(plugins), "compat": bool(compat), "device": device, "threads": int(threads),
            "task_overrides": dict(task_overrides or {}), "data_dir": data_dir}


def evaluate_payload(payload: dict) -> dict:
    """Evaluate one genome on one task with one seed, in this worker; returns an EvalResult dict.
    Never raises: an exception becomes a result with status ``error`` naming it."""
    from deapnos.evaluate.result import EvalResult
    t0 = time.time()
    try:
        state = worker_setup(payload.get("threads", 1), payload.get("device", "auto"))
        pm, space, tasks = _environment(tuple(payload.get("plugins", ())), bool(payload.get("compat")))
        from deapnos.evaluate import protocol as _protocol
        from deapnos.space.genome import Genome
        name = payload["task"]
        if name not in tasks:
            raise KeyError(f"unknown task {name!r}; known tasks: {', '.join(sorted(tasks))}")
        text = payload["genome"]
        # a torch.optim baseline ("torch:Adam", "torch:SGD(momentum=0.9)") runs as it is
        genome = text if text.lstrip().startswith("torch:") else Genome.parse(text, space=space)
        task = tasks[name]
        if payload.get("task_overrides"):
            task = task.replace(**payload["task_overrides"])
        if payload.get("data_dir"):
            os.environ["DEAPNOS_DATA"] = payload["data_dir"]
        protocol = dict(payload.get("protocol", {}))
        if payload.get("compat"):       # the authors' protocol and noise model, unless the config says otherwise
            for key, value in _protocol.COMPAT_PROTOCOL.items():
                protocol.setdefault(key, value)
        config = _protocol.ProtocolConfig(**protocol)
        result = _protocol.evaluate_genome(genome, task, seed=payload["seed"], config=config,
                                           device=state["device"])
        out = result.to_dict()
    except Exception as exc:   # noqa: BLE001 - a worker must answer
        tb = traceback.format_exc(limit=4)
        out = EvalResult(genome=payload.get("genome", ""), task=payload.get("task", ""),
                         seed=int(payload.get("seed", 0)), status="error",
                         message=f"{type(exc).__name__}: {exc}\n{tb}").to_dict()
    out["worker"] = worker_id()
    if not out.get("seconds"):
        out["seconds"] = time.time() - t0
    return out


# ----------------------------------------------------------------------------------------------
# what a remote worker needs: the origin's Python, deapnos and plugins (checked at start)
# ----------------------------------------------------------------------------------------------

#: seconds the origin waits at start for every SCOOP worker to answer the environment check
WORKER_CHECK_WAIT_ENV = "DEAPNOS_WORKER_CHECK_WAIT"
_ENV_MARK = "__deapnos_worker_environment__"


class WorkerEnvironmentError(RuntimeError):
    """A worker's Python, deapnos or plugins differ from the origin's; the message names the host
    and the differences."""


def _file_digest(paths, root=None) -> str:
    import hashlib
    h = hashlib.sha256()
    for p in paths:
        try:
            data = open(p, "rb").read()
        except OSError:
            data = b"<unreadable>"
        h.update(os.path.relpath(p, root).encode() if root else b"")
        h.update(len(data).to_bytes(8, "little") + data)
    return h.hexdigest()[:16]


def _code_digest() -> str:
    """A digest of deapnos's own source files (catches another checkout with the same version)."""
    if "code" not in _WORKER:
        from pathlib import Path
        root = Path(__file__).resolve().parent
        _WORKER["code"] = _file_digest(sorted(str(p) for p in root.rglob("*.py")), root)
    return _WORKER["code"]


def environment_fingerprint(plugins=(), compat: bool = False) -> dict:
    """What must be the same on the origin and every worker: Python, deapnos (version and a digest
    of its code), plugin autoloading and the plugins this run loads (distribution, version, a digest
    of the module file); torch's version is compared too but only warned about.  A worker that
    cannot load the run's plugins says why in ``error``."""
    import platform
    import sys
    key = ("fingerprint", tuple(plugins), bool(compat))
    if key in _WORKER:
        return _WORKER[key]
    import deapnos
    from deapnos import plugins as _plugins
    fp = {"host": socket.gethostname(), "python": f"{platform.python_implementation()} {platform.python_version()}",
          "deapnos": getattr(deapnos, "__version__", "?"), "deapnos_code": _code_digest(),
          "autoload": _plugins._autoload_enabled(None), "plugins": {}, "torch": None, "error": None}
    try:
        import torch
        fp["torch"] = torch.__version__
        pm, _, _ = _environment(tuple(plugins), bool(compat))
        for name, src in sorted(getattr(pm, "sources", {}).items()):
            module = sys.modules.get(src.module or "")
            path = getattr(module, "__file__", None)
            fp["plugins"][name] = {"dist": src.dist, "version": src.version,
                                   "code": _file_digest([path]) if path else None}
    except Exception as exc:   # noqa: BLE001 - reported by the origin, naming this host
        text = str(exc).strip().splitlines()
        fp["error"] = f"{type(exc).__name__}: {text[0] if text else ''}"[:400]
    _WORKER[key] = fp
    return fp


def probe_worker(request: dict) -> dict:
    """The start-up check's task: this worker's id and :func:`environment_fingerprint`, after
    holding the worker for ``request['hold']`` seconds (so that the probes spread over the workers)."""
    worker_setup(request.get("threads", 1), request.get("device", "auto"))
    time.sleep(float(request.get("hold", 0.0)))
    return {"worker": worker_id(), "fingerprint": environment_fingerprint(request.get("plugins", ()),
                                                                          bool(request.get("compat")))}


def environment_differences(mine: dict, theirs: dict) -> tuple[list[str], list[str]]:
    """(differences that stop a run, differences only warned about) between the origin's
    fingerprint (``mine``, "here") and a worker's ("there")."""
    errors, warnings = [], []
    if theirs.get("error"):
        errors.append(f"the run's plugins do not load there: {theirs['error']}")
    if mine.get("python") != theirs.get("python"):
        errors.append(f"Python {mine.get('python')} here, {theirs.get('python')} there")
    if mine.get("deapnos") != theirs.get("deapnos"):
        errors.append(f"deapnos {mine.get('deapnos')} here, {theirs.get('deapnos')} there")
    elif mine.get("deapnos_code") != theirs.get("deapnos_code"):
        errors.append(f"deapnos {mine.get('deapnos')} on both, but its code differs (another checkout, or "
                      f"edited files)")
    if mine.get("autoload") != theirs.get("autoload"):
        how = lambda on: "on" if on else "off (DEAPNOS_DISABLE_PLUGIN_AUTOLOAD=1)"   # noqa: E731
        errors.append(f"plugin autoloading is {how(mine.get('autoload'))} here, {how(theirs.get('autoload'))} there")
    if not theirs.get("error"):
        here, there = mine.get("plugins") or {}, theirs.get("plugins") or {}
        extra, missing = sorted(set(there) - set(here)), sorted(set(here) - set(there))
        if extra:
            errors.append(f"plugins loaded there but not here: {', '.join(extra)}")
        if missing:
            errors.append(f"plugins loaded here but not there: {', '.join(missing)}")
        for name in sorted(set(here) & set(there)):
            a, b = here[name], there[name]
            va, vb = " ".join(filter(None, (a.get("dist"), a.get("version")))), \
                " ".join(filter(None, (b.get("dist"), b.get("version"))))
            if va != vb:
                errors.append(f"plugin {name}: {va or 'no distribution'} here, {vb or 'no distribution'} there")
            elif a.get("code") != b.get("code"):
                errors.append(f"plugin {name}: {va or 'same module'} on both, but its code differs")
    if mine.get("torch") != theirs.get("torch") and theirs.get("torch"):
        warnings.append(f"torch {mine.get('torch')} here, {theirs.get('torch')} there")
    return errors, warnings


def check_workers(backend, plugins=(), compat: bool = False, threads: int = 1, device: str = "auto",
                  wait: float | None = None, hold: float = 0.2) -> dict:
    """Before a SCOOP search starts: every worker reports its :func:`environment_fingerprint`; a
    worker whose Python, deapnos or plugins differ from the origin's stops the run with
    :class:`WorkerEnvironmentError` naming its host and the differences.  Waits up to ``wait``
    seconds (``DEAPNOS_WORKER_CHECK_WAIT``, default 60) for all ``backend.workers`` to answer;
    a worker that starts later is checked by its first evaluation (:class:`ScoopBackend`).
    Returns ``{worker id: fingerprint}`` of the workers heard."""
    if wait is None:
        wait = float(os.environ.get(WORKER_CHECK_WAIT_ENV, "60") or 60)
    mine = environment_fingerprint(plugins, compat)
    expected = max(1, int(getattr(backend, "workers", 1) or 1))
    seen = {worker_id(): mine}
    request = {"plugins": list(plugins), "compat": bool(compat), "hold": hold, "threads": int(threads),
               "device": device}
    deadline = time.monotonic() + wait
    while len(seen) < expected and time.monotonic() < deadline:
        for answer in backend.map(probe_worker, [request] * (2 * expected)):
            seen.setdefault(answer["worker"], answer["fingerprint"])
    here = mine.get("host") or socket.gethostname()
    problems: dict[str, list[str]] = {}
    for wid, fp in seen.items():
        errors, warnings = environment_differences(mine, fp)
        host = fp.get("host") or wid.rsplit(":", 1)[0]
        if errors:
            problems.setdefault(host, errors)
        for w in warnings:
            log.warning("worker %s on host %s: %s", wid, host, w)
    if problems:
        raise WorkerEnvironmentError(environment_message(here, problems))
    if len(seen) < expected:
        log.warning("%d of %d SCOOP workers answered the environment check within %.0f s (hosts %s); the others "
                    "are checked by their first evaluation (%s sets the wait)", len(seen), expected, wait,
                    ", ".join(sorted({fp.get('host', '?') for fp in seen.values()})), WORKER_CHECK_WAIT_ENV)
    else:
        log.info("environment check: %d worker(s) on %s match the origin (%s)", len(seen),
                 ", ".join(sorted({fp.get('host', '?') for fp in seen.values()})), here)
    if hasattr(backend, "expect_environment"):
        backend.expect_environment(mine, seen, plugins, compat)
    return seen


def environment_message(origin_host: str, problems: dict) -> str:
    parts = [f"host {host}: {'; '.join(errors)}" for host, errors in sorted(problems.items())]
    return (f"the environment of {len(problems)} worker host(s) differs from the origin's ({origin_host}, 'here'): "
            + " | ".join(parts) + ". Every host needs the same Python, deapnos and plugins at the same paths, and "
            "the same DEAPNOS_* variables (docs/search.md, 'Several hosts')")


def call_reporting_environment(fn, item, plugins=(), compat=False):
    """A SCOOP task that also reports this worker's fingerprint with its first result (for workers
    that started after the start-up check)."""
    result = fn(item)
    if _WORKER.get("reported"):
        return result
    _WORKER["reported"] = True
    return {_ENV_MARK: environment_fingerprint(plugins, compat), "worker": worker_id(), "result": result}


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

_PR_SET_PDEATHSIG = 1


def _alive(pid: int) -> bool:
    """Whether process ``pid`` exists and is not a zombie (dead, not yet reaped)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            state = fh.read().rsplit(b")", 1)[1].split()[0]
        return state not in (b"Z", b"X")
    except (OSError, IndexError):
        return True


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
    import sys
    import threading
    parent = os.getppid()
    if sys.platform.startswith("linux"):
        try:
            import ctypes
            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(_PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0)
        except (OSError, AttributeError):      # no prctl: the thread below still watches
            pass
    watch = [int(p) for p in watch_pids if p]
    if parent == 1 or not all(_alive(p) for p in watch):     # already orphaned before we looked
        os._exit(1)

    def watchdog():
        while True:
            time.sleep(interval)
            if os.getppid() != parent or not all(_alive(p) for p in watch):
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
        self._expected = None            # (origin fingerprint, plugins, compat) after check_workers
        self._checked: set[str] = set()
        self.stall_timeout = float(stall_timeout)
        #: called with a message when no result came for too long; the run sets one that records
        #: the failure and ends the process (SCOOP cannot take back a future it lost)
        self.on_stall: Callable[[str], None] | None = None
        self._pending = 0
        self._last_result = time.monotonic()
        self._slowest = 0.0
        self._watchdog = None

    def expect_environment(self, fingerprint: dict, checked, plugins=(), compat=False) -> None:
        """After :func:`check_workers`: a worker not checked then reports its fingerprint with its
        first result, and one that differs stops the run (WorkerEnvironmentError)."""
        self._expected = (fingerprint, tuple(plugins), bool(compat))
        self._checked.update(checked)

    def _verify(self, answer: dict):
        wid, fp = answer.get("worker", "?"), answer[_ENV_MARK]
        if wid not in self._checked:
            errors, warnings = environment_differences(self._expected[0], fp)
            host = fp.get("host") or wid.rsplit(":", 1)[0]
            if errors:
                raise WorkerEnvironmentError(environment_message(self._expected[0].get("host", "?"), {host: errors}))
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
            import threading
            self._watchdog = threading.Thread(target=self._watch, name="deapnos-stall-watchdog", daemon=True)
            self._watchdog.start()

    def map(self, fn: Callable, items, on_result: Callable | None = None) -> list:
        from scoop import futures
        items = list(items)
        self._last_result = time.monotonic()
        self._pending = len(items)
        self._start_watchdog()
        if self._expected is not None:
            _, plugins, compat = self._expected
            fs = [futures.submit(call_reporting_environment, fn, item, plugins, compat) for item in items]
        else:
            fs = [futures.submit(fn, item) for item in items]
        index = {id(f): i for i, f in enumerate(fs)}
        out = [None] * len(items)
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


def make_backend(name: str, workers: int = 1, threads: int = 1, device: str = "auto",
                 stall_timeout: float = 0.0):
    if name == "serial":
        return SerialBackend(workers, threads, device)
    if name == "pool":
        return PoolBackend(workers, threads, device)
    if name == "scoop":
        return ScoopBackend(workers, threads, device, stall_timeout)
    raise ValueError(f"unknown backend {name!r}; allowed: {', '.join(BACKENDS)}")


def toolbox_with_map(backend, toolbox=None):
    """A DEAP toolbox whose ``map`` is the backend's (the one seam)."""
    from deap import base
    toolbox = toolbox or base.Toolbox()
    toolbox.register("map", backend.map)
    return toolbox
