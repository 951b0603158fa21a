"""``deapnos repair RUN_DIR``: move the bad lines of a run's logs aside, so that the run can resume.

A line of ``evaluations.jsonl`` is bad when it is not JSON, not a record of the known schema, a
second record with a seq already logged, or a record of another config than the run's.  Bad lines
go, with their line number and the problem, to ``evaluations.quarantine.jsonl`` (never deleted);
the log is rewritten atomically with the good lines.  When the checkpoint no longer agrees with the
log, it is moved aside too (``checkpoint.json.damaged``): the resumed search then replays from its
start, takes every good record from the log and re-runs what the bad lines held.  Details:
docs/search.md, "Run folders: checked end to end".
"""
from __future__ import annotations

import json
import os
import sys
from pathlib import Path

from .search.store import (CHECKPOINT, CONFIG, LOG, PARTICLES, QUARANTINE, RUN_LOCK, WRITER_LOCK, FolderLock,
                           RunStore, StoreError, atomic_write_bytes, check_log_record, check_particle_row,
                           config_id, write_error)


def _run_config_id(store: RunStore) -> str | None:
    """The config id of the run's ``config.toml`` (None when it cannot be read without plugins)."""
    from .search.config import config_fingerprint, parse_config, read_toml
    try:
        return config_id(config_fingerprint(parse_config(read_toml(store.path(CONFIG)),
                                                         source=str(store.path(CONFIG)))))
    except Exception:   # noqa: BLE001 - a config needing plugins: fall back on the checkpoint's id
        return store._saved_config_id()


def _problem(rec, check, seen: dict, key, want_id: str | None) -> str | None:
    if not isinstance(rec, dict):
        return "not a JSON object"
    problem = check(rec)
    if problem or key is None:
        return problem
    k = key(rec)
    if isinstance(k, str):
        return k                                    # the key function found a problem
    if k in seen:
        return f"seq {k[0]} again (first on line {seen[k]})"
    cid = rec.get("config_id")
    if cid is not None and want_id is not None and cid != want_id:
        return f"written under another config (config id {cid!r}, the run's is {want_id})"
    return None


def _log_key(rec: dict):
    seq = rec.get("seq")
    if not isinstance(seq, int) or isinstance(seq, bool) or seq < 0:
        return f"field 'seq' is {seq!r}, not a sequence number (an integer >= 0)"
    if not isinstance(rec.get("event"), str):
        return "no 'event' field"
    return (seq,)


def split_lines(path: Path, check, key=None, want_id: str | None = None) -> tuple[list[bytes], list[dict]]:
    """The good lines of a JSON-lines file and the quarantine rows of its bad ones."""
    try:
        lines = path.read_bytes().split(b"\n") if path.is_file() else []
    except OSError as exc:
        raise StoreError(f"cannot read {path}: {exc.strerror or exc}") from None
    keep: list[bytes] = []
    bad: list[dict] = []
    seen: dict = {}
    for n, raw in enumerate(lines, 1):
        if not raw.strip():
            continue
        try:
            rec = json.loads(raw.strip())
            problem = _problem(rec, check, seen, key, want_id)
        except (ValueError, RecursionError) as exc:
            problem, rec = f"not JSON ({str(exc).splitlines()[0][:120]})", None
        if problem:
            bad.append({"file": path.name, "line": n, "problem": problem,
                        "text": raw.decode("utf-8", errors="replace")[:100_000]})
            continue
        if key is not None:
            seen.setdefault(key(rec), n)
        keep.append(raw.rstrip(b"\r") + b"\n")
    return keep, bad


def repair_run(run_dir: str | Path) -> dict:
    """Quarantine the bad lines of ``run_dir``'s logs (module docstring); returns what was done:
    ``{"quarantined": n, "lines": [(file, line, problem)], "checkpoint_moved": bool}``.  Takes the
    folder's locks, so it never runs beside a search; raises :class:`StoreError` (one line)."""
    store = RunStore(run_dir)
    if not store.path(CONFIG).is_file():
        raise StoreError(f"{store.dir}: no {CONFIG} there; not a deapnos run folder")
    store.check_files()
    locks = [FolderLock(store.path(RUN_LOCK)).acquire("deapnos repair"),
             FolderLock(store.path(WRITER_LOCK)).acquire("deapnos repair")]
    try:
        want = _run_config_id(store)
        log_keep, log_bad = split_lines(store.path(LOG), check_log_record, _log_key, want)
        part_keep, part_bad = split_lines(store.path(PARTICLES), check_particle_row)
        bad = log_bad + part_bad
        out = {"quarantined": len(bad), "lines": [(b["file"], b["line"], b["problem"]) for b in bad],
               "checkpoint_moved": False}
        if not bad:
            return out
        qpath = store.path(QUARANTINE)
        old = qpath.read_bytes() if qpath.is_file() else b""
        atomic_write_bytes(qpath, old + b"".join(json.dumps(b).encode() + b"\n" for b in bad))
        if log_bad:
            atomic_write_bytes(store.path(LOG), b"".join(log_keep))
        if part_bad:
            atomic_write_bytes(store.path(PARTICLES), b"".join(part_keep))
        try:
            RunStore(run_dir).read_checkpoint()
        except StoreError:
            ck = store.path(CHECKPOINT)
            try:
                os.replace(ck, ck.with_name(ck.name + ".damaged"))
            except OSError as exc:
                raise write_error(ck, exc) from None
            out["checkpoint_moved"] = True
        return out
    finally:
        for lock in reversed(locks):
            lock.release()


def configure_parser(parser) -> None:
    parser.add_argument("run_dir", metavar="RUN_DIR", help="the run folder whose logs to repair")


def run_command(args) -> int:
    try:
        out = repair_run(args.run_dir)
    except StoreError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if not out["quarantined"]:
        print(f"{args.run_dir}: every line of {LOG} and {PARTICLES} is sound; nothing to repair")
        return 0
    for name, line, problem in out["lines"]:
        print(f"{name} line {line}: {problem}: moved to {QUARANTINE}")
    if out["checkpoint_moved"]:
        print(f"{CHECKPOINT} no longer agreed with the log: moved to {CHECKPOINT}.damaged (the search replays "
              f"from its start, taking every logged result)")
    print(f"continue with: deapnos run --resume {args.run_dir}")
    return 0
