"""The JSON-lines logs of a run folder (``evaluations.jsonl``, ``particles.jsonl``) checked end to
end: every line valid JSON of the known schema, seqs without duplicates or gaps, one config id; a
torn last line (a killed writer's) is the only thing cut off silently."""
from __future__ import annotations

import functools
import hashlib
import json
import logging
import os
import re
from pathlib import Path

from .files import LOG, PARTICLES, QUARANTINE, StoreError, _check_regular, _no_follow

log = logging.getLogger("deapnos.search.store")


def read_jsonl(path: Path, check=None, hint: str | None = None) -> list[dict]:
    """Records of a JSON-lines file (:func:`read_jsonl_lines` without the line numbers)."""
    return [rec for _, rec in read_jsonl_lines(path, check, hint)]


def read_jsonl_lines(path: Path, check=None, hint: str | None = None) -> list[tuple[int, dict]]:
    """``(line number, record)`` of every record of a JSON-lines file.  Only a torn tail (the lines
    after the last JSON line: what a killed writer leaves) is skipped; a line before it that is not
    JSON, not a JSON object, or that ``check(record)`` finds wrong (it returns the problem as text)
    raises :class:`StoreError` naming the file, the line, the problem and ``hint`` (the way out)."""
    path = Path(path)
    if not path.exists():
        return []
    _check_regular(path)
    if hint is None:
        hint = _line_hint(path)
    try:
        with open(path, "rb") as fh:
            lines = fh.read().split(b"\n")
    except OSError as exc:
        raise StoreError(f"cannot read {path}: {exc.strerror or exc}") from None
    parsed: list[tuple[int, object, str]] = []        # (line number, value or None, parse error)
    for n, raw in enumerate(lines, 1):
        line = raw.strip()
        if not line:
            continue
        try:
            parsed.append((n, json.loads(line), ""))
        except (ValueError, RecursionError) as exc:   # JSONDecodeError, bad UTF-8, absurd nesting
            parsed.append((n, None, str(exc).splitlines()[0][:120] if str(exc) else type(exc).__name__))
    while parsed and parsed[-1][2]:
        parsed.pop()                                  # the torn tail of a killed writer
    out: list[tuple[int, dict]] = []
    for n, rec, error in parsed:
        problem = f"not JSON ({error})" if error else "not a JSON object" if not isinstance(rec, dict) else \
            (check(rec) if check else None)
        if problem:
            raise StoreError(f"{path} line {n}: {problem}{hint}")
        out.append((n, rec))                          # type: ignore[arg-type]  # a dict: checked above
    return out


def _line_hint(path: Path) -> str:
    if path.name in (LOG, PARTICLES):
        return (f"; deapnos did not write this line: run `deapnos repair {path.parent}` to move the bad lines "
                f"aside (into {QUARANTINE}; the search re-runs what they held), or restore the file from a copy")
    return "; deapnos did not write this line: restore the file from a copy, or delete the line"


def check_log_sequence(path: Path, items: list[tuple[int, dict]], config_id: str | None = None) -> None:
    """The log as a whole: every record has an ``event`` and a sequence number ``seq`` (an integer
    >= 0) that no other record has, and all carry the same ``config_id`` (``config_id`` when given:
    the run's config).  Raises a one-line :class:`StoreError` naming the line and the way out."""
    hint = _line_hint(Path(path))
    first: dict[int, int] = {}
    seen_id: tuple[str, int] | None = None
    for n, rec in items:
        seq = rec.get("seq")
        if not isinstance(seq, int) or isinstance(seq, bool) or seq < 0:
            raise StoreError(f"{path} line {n}: field 'seq' is {seq!r}, not a sequence number (an integer >= 0)"
                             f"{hint}")
        if not isinstance(rec.get("event"), str):
            raise StoreError(f"{path} line {n}: no 'event' field (every record has one){hint}")
        if seq in first:
            raise StoreError(f"{path} line {n}: seq {seq} again (first on line {first[seq]}): a record logged "
                             f"twice{hint}")
        first[seq] = n
        cid = rec.get("config_id")
        if cid is None:
            continue                                  # written before records carried it
        if not isinstance(cid, str):
            raise StoreError(f"{path} line {n}: field 'config_id' is {cid!r}, not a string{hint}")
        want = config_id if config_id is not None else (seen_id[0] if seen_id else cid)
        if cid != want:
            where = "the run's config.toml and checkpoint" if config_id is not None else \
                f"line {seen_id[1] if seen_id else '?'}"
            raise StoreError(f"{path} line {n}: written under another config (config id {cid}, not {want} as "
                             f"{where}); one run keeps one config: if config.toml was edited, undo the edit (or "
                             f"start a new run with it), else run `deapnos repair {Path(path).parent}` to move "
                             f"the records of the other config aside")
        if seen_id is None:
            seen_id = (cid, n)


@functools.lru_cache(maxsize=1)
def _default_fields() -> dict:
    from .config import config_fingerprint, config_from_dict
    return config_fingerprint(config_from_dict({}))["fields"]


def config_id(fingerprint) -> str | None:
    """The short id every log record carries of the config it ran under: a SHA-256 over the
    fingerprint's fields (:func:`deapnos.search.config.config_fingerprint`) that differ from the
    defaults, so a field added to deapnos later (at its default) does not change it.  None when the
    fingerprint is unreadable."""
    fields_ = fingerprint.get("fields") if isinstance(fingerprint, dict) else None
    if not isinstance(fields_, dict):
        return None
    defaults = _default_fields()
    kept = {k: v for k, v in fields_.items() if k not in defaults or defaults[k] != v}
    text = json.dumps(kept, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def check_log_record(rec: dict) -> str | None:
    """The problem of an evaluation-log record, or None: the fields resume and the report rely on."""
    if "seq" in rec and not _is_int(rec["seq"]):
        return f"field 'seq' is {rec['seq']!r}, not an integer"
    if "event" in rec and not isinstance(rec["event"], str):
        return f"field 'event' is {rec['event']!r}, not a string"
    for key in ("rep", "key", "genome", "status", "kind", "message", "worker"):
        if rec.get(key) is not None and not isinstance(rec[key], str):
            return f"field {key!r} is {rec[key]!r}, not a string"
    if rec.get("event") == "evaluation" and (rec.get("rep") or rec.get("key")):     # a result resume reuses
        if not isinstance(rec.get("task"), str):
            return f"an evaluation record needs a string 'task', found {rec.get('task')!r}"
        if not _is_int(rec.get("seed")):
            return f"an evaluation record needs an integer 'seed', found {rec.get('seed')!r}"
    for key in ("seconds", "fitness"):
        v = rec.get(key)
        if v is not None and (isinstance(v, bool) or not isinstance(v, (int, float))):
            return f"field {key!r} is {v!r}, not a number"
    return None


def check_particle_row(rec: dict) -> str | None:
    for key in ("timestep", "particle"):
        if key in rec and not _is_int(rec[key]):
            return f"field {key!r} is {rec[key]!r}, not an integer"
    return None


def _last_good_end(buf: bytes, whole: bool) -> int | None:
    """Offset just past the last complete line of ``buf`` that ends with a newline and is empty or
    valid JSON; None when only the first (possibly partial) line is left and ``whole`` is false."""
    ends = [m.end() for m in re.finditer(rb"\n", buf)]
    starts = [0] + ends
    # candidate lines: [starts[k], ends[k]) for each newline; the first is partial unless whole
    for k in range(len(ends) - 1, -1, -1):
        if k == 0 and not whole:
            return None
        line = buf[starts[k]:ends[k]].strip()
        if not line:
            return ends[k]
        try:
            json.loads(line)
        except (ValueError, RecursionError):
            continue
        return ends[k]
    return 0 if whole else None


def _is_json_object(raw: bytes) -> bool:
    try:
        return isinstance(json.loads(raw.strip()), dict)
    except (ValueError, RecursionError):
        return False


def repair_tail(path: Path) -> int:
    """Cut a JSON-lines file back to its last complete line (a line ending in a newline that is
    JSON), dropping what a killed writer left after it: a torn record, a NUL-padded tail.  Only
    the tail is touched.  Returns the number of bytes cut."""
    path = Path(path)
    try:
        fd = os.open(path, os.O_RDWR | _no_follow())
    except FileNotFoundError:
        return 0
    try:
        size = os.fstat(fd).st_size
        if size == 0:
            return 0
        chunk, keep = 1 << 16, None
        while keep is None:
            start = max(0, size - chunk)
            buf = os.pread(fd, size - start, start)
            cut = _last_good_end(buf, whole=(start == 0))
            if cut is not None:
                keep = start + cut
            chunk *= 4
        rest = os.pread(fd, size - keep, keep) if keep < size else b""
        if rest and b"\n" not in rest and _is_json_object(rest):
            os.pwrite(fd, b"\n", size)      # a whole record that lost only its newline: keep it
            return 0
        if keep < size:
            os.ftruncate(fd, keep)
            os.fsync(fd)
            log.warning("%s: cut %d byte(s) after the last complete line (a torn write of a killed run)",
                        path, size - keep)
        return size - keep
    finally:
        os.close(fd)
