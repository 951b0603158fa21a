"""The worker side of an evaluation: claim a device, evaluate one payload, and check that every
worker runs the origin's environment.

What crosses to a worker is a small dict of plain data (:func:`make_payload`); :func:`evaluate_with`
answers it with an ``EvalResult`` dict and never raises.  This layer loads no plugins: the plugin
manager, space and tasks come from a ``context_of(plugins, compat)`` handed down (:data:`ContextOf`),
which the top layer builds with :func:`deapnos.context.build_context`, as the run does: what the
backends map is :func:`deapnos.worker_entry.evaluate_payload`.  See docs/evaluation.md, "Workers".
"""
from __future__ import annotations

import logging
import os
import socket
import tempfile
import time
import traceback
from collections.abc import Callable, Mapping
from typing import Any, Protocol

from .ident import worker_id   # defined low (the protocol stamps results too); importable from here

log = logging.getLogger(__name__)

# Per-process worker state: the claimed device, torch threads, the environment fingerprints.
_WORKER: dict = {}


class WorkerContext(Protocol):
    """What a worker evaluates with (a :class:`deapnos.context.Context` is one; typed here because
    the context sits above this layer, which does not import it)."""

    @property
    def pm(self) -> Any: ...

    @property
    def space(self) -> Any: ...

    @property
    def tasks(self) -> Mapping[str, Any]: ...


#: ``context_of(plugins, compat)``: this process's :class:`WorkerContext` for a plugin list and the
#: compat flag, built once per process by the caller (:func:`deapnos.worker_entry.worker_context`).
#: A module-level function: SCOOP sends it to the workers by reference.
ContextOf = Callable[[tuple, bool], WorkerContext]


# ----------------------------------------------------------------------------------------------
# worker side
# ----------------------------------------------------------------------------------------------

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


def make_payload(genome_text: str, task: str, seed: int, protocol: dict | None = None,
                 plugins=(), compat: bool = False, device: str = "auto", threads: int = 1,
                 task_overrides: dict | None = None, data_dir: str = "", reference: float | None = None) -> dict:
    """What crosses to a worker: plain data only.  ``reference``: the reference's score on this task
    and seed, for the protocol's cut of hopeless full runs (``protocol.cut_factor``)."""
    out = {"genome": genome_text, "task": task, "seed": int(seed), "protocol": dict(protocol or {}),
           "plugins": list(plugins), "compat": bool(compat), "device": device, "threads": int(threads),
           "task_overrides": dict(task_overrides or {}), "data_dir": data_dir}
    if reference is not None:
        out["reference"] = float(reference)
    return out


def evaluate_with(payload: dict, context_of: ContextOf) -> dict:
    """Evaluate one genome on one task with one seed, in this worker, with the space and tasks of
    ``context_of(plugins, compat)`` (:data:`ContextOf`); returns an EvalResult dict.  Never raises:
    an exception (a plugin that fails to load too) becomes a result with status ``error`` naming it."""
    from .result import EvalResult
    t0 = time.time()
    try:
        state = worker_setup(payload.get("threads", 1), payload.get("device", "auto"))
        ctx = context_of(tuple(payload.get("plugins", ())), bool(payload.get("compat")))
        tasks = ctx.tasks
        from ..space.genome import Genome
        from . import protocol as _protocol
        overrides = dict(payload.get("task_overrides") or {})
        name = overrides.pop("base_task", None) or payload["task"]   # "NAME@x4": the horizon check's longer NAME
        if name not in tasks:
            raise KeyError(f"unknown task {name!r}; known tasks: {', '.join(sorted(tasks))}")
        text = payload["genome"]
        # a torch.optim baseline ("torch:Adam", "torch:SGD(momentum=0.9)") runs as it is
        genome = text if text.lstrip().startswith("torch:") else Genome.parse(text, space=ctx.space)
        task = tasks[name]
        if overrides:
            task = task.replace(**overrides)
        if payload.get("data_dir"):
            os.environ["DEAPNOS_DATA"] = payload["data_dir"]
        # the authors' protocol and noise model in compat mode, unless the payload says otherwise
        config = _protocol.protocol_config(payload.get("protocol", {}), bool(payload.get("compat")))
        result = _protocol.evaluate_genome(genome, task, seed=payload["seed"], config=config,
                                           device=state["device"], reference=payload.get("reference"))
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
        root = Path(__file__).resolve().parent.parent     # the deapnos package
        _WORKER["code"] = _file_digest(sorted(str(p) for p in root.rglob("*.py")), root)
    return _WORKER["code"]


def environment_fingerprint(plugins, compat: bool, context_of: ContextOf) -> dict:
    """What must be the same on the origin and every worker: Python, deapnos (version and a digest
    of its code), plugin autoloading and the plugins this run loads (distribution, version, a digest
    of the module file; loaded by ``context_of``, :data:`ContextOf`); torch's version is compared
    too but only warned about.  A worker that cannot load the run's plugins says why in ``error``.
    (:func:`deapnos.worker_entry.environment_fingerprint` hands the run's ``context_of``.)"""
    import platform
    import sys
    key = ("fingerprint", tuple(plugins), bool(compat))
    if key in _WORKER:
        return _WORKER[key]
    import deapnos
    from .. import plugins as _plugins
    python = f"{platform.python_implementation()} {platform.python_version()}"
    fp: dict[str, Any] = {"host": socket.gethostname(), "python": python,
                          "deapnos": getattr(deapnos, "__version__", "?"), "deapnos_code": _code_digest(),
                          "autoload": _plugins._autoload_enabled(None), "plugins": {}, "torch": None, "error": None}
    try:
        import torch
        fp["torch"] = torch.__version__
        pm = context_of(tuple(plugins), bool(compat)).pm
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


def probe_worker(request: dict, context_of: ContextOf) -> dict:
    """The start-up check's task: this worker's id and :func:`environment_fingerprint`, after
    holding the worker for ``request['hold']`` seconds (so that the probes spread over the workers)."""
    worker_setup(request.get("threads", 1), request.get("device", "auto"))
    time.sleep(float(request.get("hold", 0.0)))
    return {"worker": worker_id(), "fingerprint": environment_fingerprint(request.get("plugins", ()),
                                                                          bool(request.get("compat")), context_of)}


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
                  wait: float | None = None, hold: float = 0.2, *, context_of: ContextOf) -> dict:
    """Before a SCOOP search starts: every worker reports its :func:`environment_fingerprint`; a
    worker whose Python, deapnos or plugins differ from the origin's stops the run with
    :class:`WorkerEnvironmentError` naming its host and the differences.  Waits up to ``wait``
    seconds (``DEAPNOS_WORKER_CHECK_WAIT``, default 60) for all ``backend.workers`` to answer;
    a worker that starts later is checked by its first evaluation (:class:`ScoopBackend`).
    ``context_of`` (:data:`ContextOf`) loads the plugins, here and on every worker.
    Returns ``{worker id: fingerprint}`` of the workers heard."""
    import functools
    if wait is None:
        wait = float(os.environ.get(WORKER_CHECK_WAIT_ENV, "60") or 60)
    mine = environment_fingerprint(plugins, compat, context_of)
    expected = max(1, int(getattr(backend, "workers", 1) or 1))
    seen = {worker_id(): mine}
    request = {"plugins": list(plugins), "compat": bool(compat), "hold": hold, "threads": int(threads),
               "device": device}
    deadline = time.monotonic() + wait
    while len(seen) < expected and time.monotonic() < deadline:
        # a partial of two module-level functions: it crosses to the workers by reference
        for answer in backend.map(functools.partial(probe_worker, context_of=context_of), [request] * (2 * expected)):
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
        backend.expect_environment(mine, seen, plugins, compat, context_of)
    return seen


def environment_message(origin_host: str, problems: dict) -> str:
    parts = [f"host {host}: {'; '.join(errors)}" for host, errors in sorted(problems.items())]
    return (f"the environment of {len(problems)} worker host(s) differs from the origin's ({origin_host}, 'here'): "
            + " | ".join(parts) + ". Every host needs the same Python, deapnos and plugins at the same paths, and "
            "the same DEAPNOS_* variables (docs/search.md, 'Several hosts')")


def call_reporting_environment(fn, item, plugins, compat, expected: dict | None, context_of: ContextOf):
    """A SCOOP task that also reports this worker's fingerprint with its first result (for workers
    that started after the start-up check).  With ``expected`` (the origin's fingerprint), a worker
    whose environment differs refuses the task and reports only its fingerprint: it does no work
    before the origin has checked it.  ``context_of``: as for :func:`environment_fingerprint`."""
    if _WORKER.get("reported"):
        return fn(item)
    _WORKER["reported"] = True
    mine = environment_fingerprint(plugins, compat, context_of)
    if expected is not None and environment_differences(expected, mine)[0]:
        return {_ENV_MARK: mine, "worker": worker_id(), "result": None, "refused": True}
    return {_ENV_MARK: mine, "worker": worker_id(), "result": fn(item)}


def __getattr__(name: str) -> Any:
    # evaluate_payload(payload) needs the plugins, which this layer does not load: it moved up
    if name == "evaluate_payload":
        raise AttributeError("deapnos.evaluate.worker.evaluate_payload moved to deapnos.worker_entry.evaluate_payload "
                             "(also deapnos.distributed.evaluate_payload); here: evaluate_with(payload, context_of)")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
