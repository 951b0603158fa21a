"""``deapnos status RUN_DIR [--json]``: the live view of a search, from its run folder alone.

Provides :func:`collect` (the state, phase, rate, ETA, best, rejections and workers of a running or
finished search, replayed from ``evaluations.jsonl`` into :class:`~deapnos.live.SearchProgress`) and
:func:`run_command`.  It only reads: no lock, no file opened for writing, no link followed.  The command
loads the installed plugins (and ``-p``) to know a run's held-out tasks; it never imports a module a
run folder names unless that module is an installed plugin.  Details: docs/search.md, "Watching a search".
"""
from __future__ import annotations

import json
import os
import shlex
import socket
import time
from pathlib import Path

from .live import SearchProgress, format_view
from .search.store import (CHECKPOINT, CONFIG, HALL_OF_FAME, LOG, PARTICLES, SUMMARY, RunStore, StoreError,
                           _check_regular, _no_follow)

STALE_AFTER = 120.0      # seconds without a published snapshot after which a running search is called quiet


def read_records(path: Path) -> list[dict]:
    """The complete records of a JSON-lines file that another process may be appending to: a last
    line without its newline is left out, a line that is not a JSON object skipped."""
    path = Path(path)
    try:
        _check_regular(path)
        fd = os.open(path, os.O_RDONLY | _no_follow())
    except FileNotFoundError:
        return []
    except OSError as exc:
        raise StoreError(f"cannot read {path}: {exc.strerror or exc}") from None
    with os.fdopen(fd, "rb") as fh:
        data = fh.read()
    lines = data.split(b"\n")
    if lines and lines[-1]:
        lines = lines[:-1]              # being written
    out = []
    for raw in lines:
        raw = raw.strip()
        if not raw:
            continue
        try:
            rec = json.loads(raw)
        except (ValueError, RecursionError):
            continue
        if isinstance(rec, dict):
            out.append(rec)
    return out


def _json(store: RunStore, name: str, kind, notes: list):
    try:
        return store.read_json(name, kind=kind)
    except StoreError as exc:
        notes.append(str(exc))
        return None


def _alive(pid, since=None) -> bool | None:
    """Whether pid runs on this host and is the process that started at ``since`` or before (a
    reused pid is not); None: cannot tell."""
    if not isinstance(pid, int) or pid <= 0:
        return None
    from .processes import alive
    return alive(pid, since if isinstance(since, (int, float)) else None)


def _validation_tasks(cfg, plugins, notes: list) -> list[str] | None:
    """The held-out tasks of the run's plan when its config does not name them: the installed
    suite tasks (installed plugins, the run's installed ``run.plugins`` and ``plugins``); None:
    unknown (plugins not asked for, or not loadable)."""
    if plugins is None or cfg is None or not cfg.validation.enabled or cfg.validation.tasks:
        return None
    try:
        from .context import build_context
        from .plugins import installed_only
        from .search.fitness import validation_tasks
        ctx = build_context([*installed_only(cfg.run.plugins), *plugins], strict=False, eager=False)
        notes.extend(f"plugin {name} not loaded: {message}" for name, message in ctx.pm.failed.items())
        return validation_tasks(cfg, ctx.tasks)
    except Exception as exc:   # noqa: BLE001 - plugin code; the view goes on without the count
        notes.append(f"plugins: {exc}")
        return None


def collect(run_dir: str | Path, now: float | None = None, plugins=None) -> dict:
    """The view's snapshot (:meth:`SearchProgress.snapshot`) of the run in ``run_dir``, plus
    ``run_dir``, ``state`` (starting: SCOOP is starting; running, stopped, finished, failed,
    interrupted, not started),
    ``pid``, ``host``, ``message``, ``resume``, ``timesteps_done`` and ``notes`` (files that could
    not be read).  ``plugins``: None loads none; a list (``-p``) loads the installed plugins and
    those, to count the held-out validation tasks.  Raises StoreError when ``run_dir`` is not a
    run folder."""
    from .search.store import load_run_config
    now = time.time() if now is None else now
    run_dir = Path(run_dir)
    store = RunStore(run_dir)
    if not store.path(CONFIG).is_file():
        raise StoreError(f"{run_dir}: no {CONFIG} there; not a deapnos run folder")
    notes: list[str] = []
    try:
        cfg = load_run_config(store)        # the loader report uses: one line naming the file on failure
    except Exception as exc:   # noqa: BLE001 - the view goes on without a plan
        cfg = None
        text = str(exc)
        notes.append(text if str(store.path(CONFIG)) in text else f"{store.path(CONFIG)}: {text}")
    try:
        status = store.read_status() or {}  # checked against its schema (search/run_files.py)
    except StoreError as exc:
        notes.append(str(exc))
        status = {}
    checkpoint = _json(store, CHECKPOINT, dict, notes) or {}
    state_doc = checkpoint.get("state")
    state_doc = state_doc if isinstance(state_doc, dict) else {}
    summary = _json(store, SUMMARY, dict, notes) or {}
    hof = _json(store, HALL_OF_FAME, list, notes) or []
    live = status.get("progress") if status.get("status") == "running" else None
    live = live if isinstance(live, dict) else None

    workers = (live or {}).get("workers", {}).get("available") or \
        (cfg.run.workers if cfg is not None and cfg.run.backend != "serial" else 1)
    # the held-out tasks: from the run's own files where they say it (the live plan, validation.json);
    # loading the plugins to find them (seconds: they import torch) only where they do not
    live_plan = live.get("plan") if live and isinstance(live.get("plan"), dict) else None
    if live_plan is not None:
        held_out = None
    else:
        done = _json(store, "validation.json", dict, notes) or {}
        held_out = done.get("tasks") if isinstance(done.get("tasks"), list) else \
            _validation_tasks(cfg, plugins, notes)
    progress = SearchProgress(cfg, workers, validation_tasks=held_out, clock=lambda: now)
    if live_plan is not None:
        progress.plan = dict(live_plan)
        progress.rungs = sum(1 for k in progress.plan if str(k).startswith("rung:"))
    try:
        records = read_records(store.path(LOG))
        particles = read_records(store.path(PARTICLES))
    except StoreError as exc:
        notes.append(str(exc))
        records, particles = [], []
    for rec in records:
        progress.replay(rec)
    notes.extend(_integrity_notes(store))
    if hof and isinstance(hof[0], dict) and hof[0].get("mean") is not None:
        top = hof[0]
        progress.best_source = lambda: {"fitness": top["mean"], "genome": top.get("genome", "?"),
                                        "seeds": top.get("n") or len(top.get("scores") or {}) or 1}

    state = status.get("status")
    pid, host = status.get("pid"), status.get("host")
    out_state, message = "not started", ""
    if state == "ok" or state_doc.get("phase") == "done" and state not in ("running", "starting"):
        out_state = "finished"
        progress.finish()
    elif state in ("running", "starting"):
        alive = _alive(pid, status.get("started")) if host == socket.gethostname() else None
        if alive is False:
            out_state = "stopped"
            message = (f"status.json says {state}, but its process (pid {pid} on {host}) is gone: the run was "
                       f"killed")
        else:
            out_state = state
    elif state in ("failed", "interrupted"):
        out_state = state
        message = status.get("error") or ""
    elif records:
        out_state = "stopped"
        message = "no status.json"

    started = status.get("started")
    if out_state == "finished":
        elapsed = summary.get("wall_seconds") or status.get("seconds") or state_doc.get("elapsed")
    elif out_state == "running" and isinstance(started, (int, float)):
        elapsed = now - started
    else:
        elapsed = state_doc.get("elapsed")
    elapsed = float(elapsed) if isinstance(elapsed, (int, float)) else 0.0
    progress.started = now - elapsed
    if out_state == "running" and live:
        progress.rate_override = live.get("rate_per_min")
        progress.in_flight = int(((live.get("workers") or {}).get("busy")) or 0)
        lp = live.get("phase") or {}
        if lp.get("key") == progress.phase and isinstance(lp.get("planned"), int):
            progress.announced[progress.phase] = lp["planned"]
    elif out_state == "running":
        progress.in_flight = 0
    else:
        progress.in_flight = 0
        if elapsed > 0 and progress.evaluated:
            progress.rate_override = progress.evaluated / elapsed * 60.0
    snap = progress.snapshot(now)
    if out_state == "running" and not live:
        snap["workers"]["busy"] = None               # not published (yet)
    if out_state not in ("running", "finished"):
        snap["eta_phase_s"] = snap["eta_run_s"] = None
    updated = (live or {}).get("updated")
    resume = status.get("resume") or (f"deapnos run --resume {shlex.quote(str(run_dir.resolve()))}"
                                      if out_state in ("stopped", "interrupted") else None)
    snap.update({"run_dir": str(run_dir), "state": out_state, "pid": pid, "host": host, "message": message,
                 "resume": resume, "updated_ago_s": (now - updated) if isinstance(updated, (int, float)) else None,
                 "timesteps_done": max((r.get("timestep", 0) for r in particles if isinstance(r.get("timestep"), int)),
                                       default=0),
                 "notes": notes})
    return snap


def header(snap: dict) -> str:
    from .live import duration
    state = snap["state"]
    text = f"{snap['run_dir']}: {state}"
    if state == "running":
        ago = snap.get("updated_ago_s")
        text += f" (pid {snap.get('pid')} on {snap.get('host')}"
        text += (f", progress updated {duration(ago)} ago" + (", quiet since" if ago > STALE_AFTER else "")
                 if ago is not None else ", no progress published yet") + ")"
    elif state == "starting":
        text += f" (launched by pid {snap.get('pid')} on {snap.get('host')}: SCOOP is starting its workers)"
    if snap.get("message"):
        text += f": {snap['message']}"
    if snap.get("resume"):
        text += f"; continue with: {snap['resume']}"
    return text


def configure_parser(parser) -> None:
    parser.add_argument("run_dir", metavar="RUN_DIR", help="a run folder (in progress or finished)")
    parser.add_argument("--json", action="store_true", help="print the view as JSON (for scripts)")
    from .plugins import add_plugin_options
    add_plugin_options(parser)


def run_command(args) -> int:
    import sys
    try:
        snap = collect(args.run_dir, plugins=list(getattr(args, "plugins", None) or []))
    except StoreError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps(snap, indent=2, sort_keys=True, default=str))
        return 0
    print(header(snap))
    for line in format_view(snap):
        print(f"  {line}")
    for note in snap["notes"]:
        print(f"  note: {note}")
    return 0


def _integrity_notes(store: RunStore) -> list[str]:
    """The first problem of the log checked end to end, then of the checkpoint against it (a torn
    last line, a writer mid-line, is not one): what a resume would stop on, with the way out."""
    for check in (store.read_log_lines, store.read_checkpoint):
        try:
            check()
        except StoreError as exc:
            return [str(exc)]
    return []
