"""What the map backends run on a worker, with the plugins loaded the way the run loads them.

A worker builds its plugin manager, space and tasks through :func:`deapnos.context.build_context`,
as the run does, once per plugin list and compat flag in each process (:func:`worker_context`), and
hands that Context down to the evaluate layer (:mod:`deapnos.evaluate.worker`, which loads no
plugins itself).  :func:`evaluate_payload` is what a search maps; :func:`environment_fingerprint`
and :func:`check_workers` are the start-up check of the workers with the same Context.  All are
module-level functions: SCOOP and process pools send them to the workers by reference, and the
import there brings this module, hence the context, along.  :mod:`deapnos.distributed` re-exports
them.  See docs/evaluation.md, "Workers".
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from .context import Context, build_context
from .evaluate import worker as _worker

# this process's Contexts, by (plugins, compat): a worker evaluates many payloads of one run
_CONTEXTS: dict[tuple, Context] = {}


def worker_context(plugins: Sequence[Any] = (), compat: bool = False) -> Context:
    """This process's Context for ``plugins`` (the payload's: names, or plugin objects in a serial
    run) and ``compat``, built once; parts are built on first use (a torch baseline needs no space)."""
    key = (tuple(plugins), bool(compat))
    ctx = _CONTEXTS.get(key)
    if ctx is None:
        ctx = _CONTEXTS[key] = build_context(key[0], compat=key[1], eager=False)
    return ctx


def evaluate_payload(payload: dict) -> dict:
    """Evaluate one payload (:func:`deapnos.evaluate.worker.make_payload`) in this process; returns
    an EvalResult dict and never raises (:func:`deapnos.evaluate.worker.evaluate_with`)."""
    return _worker.evaluate_with(payload, worker_context)


def environment_fingerprint(plugins: Sequence[Any] = (), compat: bool = False) -> dict:
    """This process's :func:`deapnos.evaluate.worker.environment_fingerprint`, its plugins loaded
    by :func:`worker_context`."""
    return _worker.environment_fingerprint(plugins, compat, worker_context)


def check_workers(backend, plugins: Sequence[Any] = (), compat: bool = False, threads: int = 1,
                  device: str = "auto", wait: float | None = None, hold: float = 0.2) -> dict:
    """:func:`deapnos.evaluate.worker.check_workers` with :func:`worker_context` on the origin and
    on every worker."""
    return _worker.check_workers(backend, plugins, compat, threads, device, wait, hold, context_of=worker_context)
