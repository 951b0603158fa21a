"""The schemas of a run folder's JSON files that deapnos reads back: ``checkpoint.json`` and
``status.json``, declared once as TypedDicts and checked by :mod:`deapnos.schema`.

:func:`check_checkpoint` and :func:`check_status` return ``None`` or the one-line problem
(``field state.seq = 'x': expected an integer``); :class:`~deapnos.search.store.RunStore` turns it
into a :class:`~deapnos.search.store.StoreError` naming the file and the way out.
"""
from __future__ import annotations

from typing import Any, Literal, TypedDict

from ..schema import JSON_RULES, SchemaError, fields_of, parse
from .state_data import StateData

class Fingerprint(TypedDict):
    """:func:`~deapnos.search.config.config_fingerprint`: the fields that change the search and their hash."""
    sha256: str
    fields: dict[str, Any]


class CheckpointFile(TypedDict):
    """``checkpoint.json``: the format tag, its version, the config fingerprint and the search state
    (None before the search starts)."""
    format: str
    version: int
    config: Fingerprint | None
    state: StateData | None


class _StatusRequired(TypedDict):
    status: Literal["starting", "running", "ok", "failed", "interrupted"]
    error: str
    time: float


class StatusFile(_StatusRequired, total=False):
    """``status.json`` (RunStore.write_status): the state of the run, and what each state adds.  On a
    full disk a final status is written in its short form (status, error, time)."""
    pid: int                                    # running: the search's process and host (starting: the launcher's)
    host: str
    started: float
    backend: str                                # running, ok: what ran
    workers: int
    progress: dict[str, Any]                    # running: the live view's snapshot (SearchProgress.snapshot)
    seconds: float                              # ok: the outcome
    best: dict[str, Any] | None
    leaderboard: list[dict[str, Any]] | None
    signal: str                                 # interrupted: the signal
    resume: str                                 # interrupted, failed: the command that continues the run
    traceback: str                              # failed


def _problem(tp: Any, data: Any) -> str | None:
    try:
        parse(tp, data, "", JSON_RULES)
    except SchemaError as exc:
        return exc.describe()
    return None


def check_checkpoint(doc: Any) -> str | None:
    """The first problem of a checkpoint document against :class:`CheckpointFile` (None: it fits)."""
    return _problem(CheckpointFile, doc)


def check_status(doc: Any) -> str | None:
    """The first problem of a status document against :class:`StatusFile` (None: it fits)."""
    return _problem(StatusFile, doc)


def status_fields() -> list[str]:
    """Every field ``status.json`` may hold."""
    return fields_of(StatusFile)
