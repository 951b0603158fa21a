"""The run folder: config snapshot, evaluation log, checkpoint, hall of fame, status.

Provides :class:`RunStore` (every file of ``RUN_DIR``, written atomically or appended and flushed),
:class:`FolderLock` (``run.lock`` / ``writer.lock``), :func:`repair_tail` (cuts a torn last log line)
and :func:`read_jsonl`.  Nothing in a run folder is ever unpickled.  Layout, resume and safety:
docs/search.md, "The run folder and resume" and "What a run folder is safe for".
"""
from __future__ import annotations

import errno
import functools
import hashlib
import json
import logging
import os
import re
import socket
import stat
import time
from pathlib import Path

CONFIG = "config.toml"
LOG = "evaluations.jsonl"
PARTICLES = "particles.jsonl"
CHECKPOINT = "checkpoint.json"
LEGACY_CHECKPOINT = "checkpoint.pkl"
HALL_OF_FAME = "hall_of_fame.json"
ELIMINATION = "elimination.json"
STATUS = "status.json"
SUMMARY = "summary.json"
SEARCH_LOG = "search.log"
REPORT = "report.md"
RUN_LOCK = "run.lock"
WRITER_LOCK = "writer.lock"
QUARANTINE = "evaluations.quarantine.jsonl"    # bad log lines `deapnos repair` moved aside
CHECKPOINT_FORMAT = "deapnos.checkpoint"
CHECKPOINT_VERSION = 2
# files deapnos writes or reads in a run folder: each must be a regular file (never a link), each
# folder a real folder, so that nothing read or written through a run folder leaves it
RUN_FILES = (CONFIG, LOG, PARTICLES, CHECKPOINT, HALL_OF_FAME, ELIMINATION, STATUS, SUMMARY, SEARCH_LOG, REPORT,
             RUN_LOCK, WRITER_LOCK, "validation.json", QUARANTINE)
RUN_FOLDERS = ("plots", "winners")
MAX_JSON_BYTES = 1 << 30            # a JSON file of a run folder larger than this is not a deapnos file
MIN_FREE_BYTES = 64 << 20           # a run does not start with less free space than this in its folder
_PLAIN_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,63}")

log = logging.getLogger(__name__)


class StoreError(RuntimeError):
    """A run folder that cannot be used as it is; the message names the file and the way out."""


class RunLockError(StoreError):
    """The run folder is in use by another process (named in the message)."""

    def __init__(self, message: str, holder: dict | None = None):
        super().__init__(message)
        self.holder = holder or {}


class DiskError(StoreError):
    """A write to the run folder failed (disk full, I/O error); the message names the file and the
    way out (free space, then resume)."""


def write_error(path: Path, exc: OSError) -> StoreError:
    """The one-line error of a failed write to ``path``: the file, the cause in words and, for a
    file of a run folder, the resume command (nothing written before is lost)."""
    path = Path(path)
    code = exc.errno
    if code in (errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC)):
        cause = "the disk is full (no space left on device)"
    elif code == errno.EIO:
        cause = "an I/O error of the disk (EIO)"
    else:
        cause = exc.strerror or str(exc)
    if (path.parent / CONFIG).is_file():
        return DiskError(f"cannot write {path}: {cause}; what was written before is kept: free space, then "
                         f"continue with `deapnos run --resume {path.parent}`")
    return DiskError(f"cannot write {path}: {cause}")


def check_free_space(folder: Path, need: int = MIN_FREE_BYTES) -> None:
    """Refuse to start work in ``folder`` with less than ``need`` bytes free on its disk."""
    try:
        st = os.statvfs(folder)
    except (OSError, AttributeError):
        return                              # cannot tell (no statvfs): let the writes speak
    free = st.f_bavail * st.f_frsize
    if free < need:
        raise DiskError(f"{folder}: only {free >> 20} MiB free on its disk, less than the {need >> 20} MiB a run "
                        f"needs to start; free space or choose another folder")


def _write_all(fd: int, data: bytes, path: Path) -> None:
    """Append ``data`` to ``fd`` whole or not at all: a failed write (disk full) is cut back off, so
    the file never keeps a torn line in its middle."""
    try:
        start = os.fstat(fd).st_size
    except OSError as exc:
        raise write_error(path, exc) from None
    view = memoryview(data)
    try:
        while view:
            view = view[os.write(fd, view):]
    except OSError as exc:
        try:
            os.ftruncate(fd, start)
        except OSError:
            pass
        raise write_error(path, exc) from None


def is_plain_name(name) -> bool:
    """A plain identifier (letters, digits, ``_``; not starting with a digit; at most 64 chars): what
    a name read from a run folder (a label) must be before it becomes part of a file name."""
    return isinstance(name, str) and _PLAIN_NAME.fullmatch(name) is not None


def _no_follow() -> int:
    return getattr(os, "O_NOFOLLOW", 0)


def _check_regular(path: Path) -> None:
    """``path`` is absent or a regular file, not a link, a device or a folder."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return
    if stat.S_ISLNK(st.st_mode):
        raise StoreError(f"{path} is a symbolic link; a run folder holds only its own regular files: "
                         f"replace it by the file itself (or remove it)")
    if not stat.S_ISREG(st.st_mode):
        raise StoreError(f"{path} is not a regular file; remove it (deapnos writes it anew)")


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write a whole file: a fresh temporary file (never through a link) then ``os.replace``, which
    replaces a link at ``path`` instead of writing where it points."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    try:
        os.unlink(tmp)
    except FileNotFoundError:
        pass
    except OSError as exc:
        raise write_error(path, exc) from None
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | _no_follow(), 0o644)
    except OSError as exc:
        raise write_error(path, exc) from None
    try:
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view):]
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except BaseException as exc:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        if isinstance(exc, OSError):
            raise write_error(path, exc) from None
        raise


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


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


def check_run_dir_path(run_dir: Path, create: bool) -> Path:
    """A usable run folder path: an existing folder, or (``create``) one that can be made.  Raises
    :class:`StoreError` naming the path and what to do."""
    run_dir = Path(run_dir)
    if run_dir.exists() and not run_dir.is_dir():
        raise StoreError(f"run folder {run_dir} is a file, not a folder: give a folder path (a new or an "
                         f"existing run folder)")
    if not run_dir.exists():
        if not create:
            raise StoreError(f"run folder {run_dir} does not exist")
        try:
            run_dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StoreError(f"cannot create the run folder {run_dir}: {exc.strerror or exc}; choose a folder "
                             f"you can write to") from None
    if not os.access(run_dir, os.W_OK | os.X_OK):
        raise StoreError(f"run folder {run_dir} is not writable; choose a folder you can write to")
    return run_dir


def new_run_dir(output_dir: str | Path, name: str) -> Path:
    """A fresh folder ``<output_dir>/<name>-<YYYYmmdd-HHMMSS>[-k]``; ``name`` must be a plain name
    (``run.name`` is checked when the config is read), so the folder stays inside ``output_dir``."""
    if not isinstance(name, str) or not re.fullmatch(r"[A-Za-z0-9_][A-Za-z0-9_-]{0,63}", name):
        raise StoreError(f"run name {name!r} is not a plain name (letters, digits, '_' and '-'); set run.name "
                         f"to one")
    base = Path(output_dir)
    if base.exists() and not base.is_dir():
        raise StoreError(f"output folder {base} (run.output_dir) is a file, not a folder; set run.output_dir "
                         f"to a folder")
    try:
        base.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise StoreError(f"cannot create the output folder {base} (run.output_dir): {exc.strerror or exc}; set "
                         f"run.output_dir to a folder you can write to") from None
    stamp = time.strftime("%Y%m%d-%H%M%S")
    for k in range(1000):
        path = base / (f"{name}-{stamp}" + (f"-{k}" if k else ""))
        try:
            path.mkdir()
            return path
        except FileExistsError:
            continue
        except OSError as exc:
            raise StoreError(f"cannot create a run folder under {base}: {exc.strerror or exc}") from None
    raise StoreError(f"cannot create a run folder under {base}")


# ----------------------------------------------------------------------------------------------
# one writer per run folder
# ----------------------------------------------------------------------------------------------

class FolderLock:
    """An exclusive ``fcntl.flock`` on a file of a run folder, held until :meth:`release` or the
    holder's death (the kernel drops it then; no stale lock survives a killed process).  The file
    holds the holder's pid, host, start time and command, for the message a second run gets."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self.fd: int | None = None
        self.info: dict = {}

    def _open(self) -> int:
        _check_regular(self.path)
        try:
            return os.open(self.path, os.O_RDWR | os.O_CREAT | _no_follow(), 0o644)
        except OSError as exc:
            raise StoreError(f"cannot open the lock file {self.path}: {exc.strerror or exc}") from None

    def holder(self, fd: int | None = None, retry: bool = True) -> dict:
        """What the lock file says about its holder ({} when unreadable)."""
        for _ in range(20 if retry else 1):      # the holder writes its record right after taking the lock
            try:
                if fd is not None:
                    raw = os.pread(fd, 65536, 0)
                else:
                    with open(self.path, "rb") as fh:
                        raw = fh.read(65536)
                data = json.loads(raw) if raw.strip() else None
            except (OSError, ValueError):
                data = None
            if isinstance(data, dict):
                return data
            time.sleep(0.05)
        return {}

    def is_held(self) -> bool:
        """Whether another open file description holds the lock now (probes without keeping it)."""
        import fcntl
        fd = self._open()
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                return True
            raise
        else:
            fcntl.flock(fd, fcntl.LOCK_UN)
            return False
        finally:
            os.close(fd)

    def acquire(self, role: str, wait: float = 0.0, **extra) -> FolderLock:
        """Take the lock (retrying for ``wait`` seconds) or raise :class:`RunLockError` naming the
        holder's pid and host."""
        import fcntl
        fd = self._open()
        deadline = time.monotonic() + wait
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except OSError as exc:
                if exc.errno not in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                    os.close(fd)
                    raise StoreError(f"cannot lock {self.path}: {exc.strerror or exc}") from None
                if time.monotonic() >= deadline:
                    holder = self.holder(fd)
                    os.close(fd)
                    raise RunLockError(lock_message(self.path.parent, holder), holder) from None
                time.sleep(0.2)
        self.info = {"pid": os.getpid(), "host": socket.gethostname(), "role": role, "since": time.time(),
                     "since_text": time.strftime("%Y-%m-%d %H:%M:%S"), **extra}
        data = json.dumps(self.info).encode()
        os.ftruncate(fd, 0)
        os.pwrite(fd, data, 0)
        self.fd = fd
        return self

    def release(self) -> None:
        if self.fd is None:
            return
        import fcntl
        try:
            os.ftruncate(self.fd, 0)
            fcntl.flock(self.fd, fcntl.LOCK_UN)
        finally:
            os.close(self.fd)
            self.fd = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.release()


def lock_message(run_dir: Path, holder: dict) -> str:
    pid, host = holder.get("pid", "?"), holder.get("host", "?")
    role = holder.get("role") or "another deapnos run"
    since = f" since {holder['since_text']}" if holder.get("since_text") else ""
    return (f"run folder {run_dir} is in use by {role} (pid {pid} on host {host}{since}); one run writes to a "
            f"folder at a time: wait for it to end, or stop it (kill {pid} on {host}) and then resume with "
            f"`deapnos run --resume {run_dir}`")


# ----------------------------------------------------------------------------------------------
# the store
# ----------------------------------------------------------------------------------------------

class RunStore:
    """Reads and writes one run folder."""

    def __init__(self, run_dir: str | Path, create: bool = False):
        self.dir = Path(run_dir)
        if create:
            check_run_dir_path(self.dir, create=True)
            check_free_space(self.dir)          # a writer: refuse to start on a (nearly) full disk
        elif not self.dir.is_dir():
            raise StoreError(f"run folder {self.dir} does not exist" if not self.dir.exists() else
                             f"{self.dir} is not a folder; give a run folder")
        self._log: int | None = None               # the open evaluation log (a descriptor), from the first append
        self._particles: int | None = None
        self._logged_seqs: set[int] | None = None
        self._particle_keys: set | None = None
        # the id of the run's config (:func:`config_id`), stamped on every record appended; known from
        # the checkpoint read or written
        self.config_id: str | None = None
        self._log_ids: dict[str, int] | None = None     # config id -> first line of the log carrying it

    def path(self, name: str) -> Path:
        return self.dir / name

    def check_files(self) -> None:
        """Every file deapnos reads or writes here is a regular file and every folder a real one
        (a link could make a read or a write land outside the run folder)."""
        for name in RUN_FILES:
            _check_regular(self.path(name))
        for name in RUN_FOLDERS:
            p = self.path(name)
            if p.is_symlink() or (p.exists() and not p.is_dir()):
                raise StoreError(f"{p} must be a folder of the run, not a link or a file: remove it (deapnos "
                                 f"writes it anew)")

    def read_config(self) -> dict:
        """The run's ``config.toml`` as a TOML document (checked files first); one-line
        :class:`StoreError` when it cannot be read."""
        from .config import read_toml
        self.check_files()
        try:
            return read_toml(self.path(CONFIG))
        except UnicodeDecodeError as exc:
            raise StoreError(f"{self.path(CONFIG)}: not valid TOML (not UTF-8 text at byte {exc.start}); restore "
                             f"it from a copy of the run folder") from None

    def remove_temporary(self) -> None:
        """Remove what a killed atomic write left (``.NAME.tmpPID``); only the writer calls this."""
        for p in self.dir.glob(".*.tmp*"):
            if re.fullmatch(r"\..+\.tmp\d+", p.name) and not p.is_symlink() and p.is_file():
                try:
                    p.unlink()
                except OSError:
                    pass

    # -- config ---------------------------------------------------------------------------------

    def write_config(self, toml_text: str) -> None:
        atomic_write_text(self.path(CONFIG), toml_text)

    def has_config(self) -> bool:
        return self.path(CONFIG).exists()

    # -- the evaluation log -----------------------------------------------------------------------

    def _open(self, name: str) -> int:
        """Open a JSON-lines file for appending: never through a link; a torn tail is cut first."""
        path = self.path(name)
        _check_regular(path)
        try:
            repair_tail(path)
            return os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | _no_follow(), 0o644)
        except OSError as exc:
            raise write_error(path, exc) from None

    def append(self, record: dict) -> bool:
        """Append one record (stamped with the run's ``config_id``) and write it at once.  A record
        whose ``seq`` is already in the log (a resumed run replaying its last timestep) is not written
        again; returns whether it was.  A failed write (disk full) raises :class:`DiskError` and
        leaves no part of the line behind."""
        seq = record.get("seq")
        seqs = self.logged_seqs() if seq is not None else None
        if seqs is not None and seq in seqs:
            return False
        if self.config_id is not None and "config_id" not in record:
            record = {**record, "config_id": self.config_id}
        if self._log is None:
            self._log = self._open(LOG)
        data = (json.dumps(record, separators=(",", ":"), default=_json_default) + "\n").encode("utf-8")
        _write_all(self._log, data, self.path(LOG))
        if seqs is not None and seq is not None:
            seqs.add(seq)
        return True

    def logged_seqs(self) -> set[int]:
        if self._logged_seqs is None:
            self._logged_seqs = {r["seq"] for r in self.read_log() if "seq" in r}
        return self._logged_seqs

    def read_log_lines(self) -> list[tuple[int, dict]]:
        """``(line number, record)`` of the whole evaluation log, checked end to end (valid JSON, the
        record schema, one record per seq, one config: :func:`check_log_sequence`); only a torn last
        line is passed over.  Raises a one-line :class:`StoreError` naming the line and the way out."""
        path = self.path(LOG)
        items = read_jsonl_lines(path, check_log_record)
        check_log_sequence(path, items, self.config_id if self.config_id is not None else self._saved_config_id())
        ids: dict[str, int] = {}
        for n, rec in items:
            if isinstance(rec.get("config_id"), str):
                ids.setdefault(rec["config_id"], n)
        self._log_ids = ids
        return items

    def read_log(self) -> list[dict]:
        return [rec for _, rec in self.read_log_lines()]

    def _saved_config_id(self) -> str | None:
        """The config id of the checkpoint's fingerprint, read plainly (None when unknown)."""
        try:
            doc = _read_json_file(self.path(CHECKPOINT), "a deapnos checkpoint", "") \
                if self.path(CHECKPOINT).is_file() else None
        except StoreError:
            return None
        return config_id(doc.get("config")) if isinstance(doc, dict) else None

    def bind_config(self, fingerprint: dict) -> None:
        """Make ``fingerprint``'s config the run's: the log must hold no record of another config
        (else a one-line :class:`StoreError` naming the line and the way out); records appended from
        now on carry its id."""
        cid = config_id(fingerprint)
        if cid is None or cid == self.config_id:
            return
        if self._log_ids is None:
            self.config_id = None                 # read the log as it is, then compare
            self.read_log_lines()
        other = {k: n for k, n in (self._log_ids or {}).items() if k != cid}
        if other:
            line = min(other.values())
            raise StoreError(f"{self.path(LOG)} line {line}: written under another config than {self.path(CONFIG)} "
                             f"(config id {self._line_id(other, line)}, not {cid}); one run keeps one config: undo "
                             f"the edit of config.toml, or start a new run with it (deapnos run --config "
                             f"{self.path(CONFIG)})")
        self.config_id = cid

    @staticmethod
    def _line_id(ids: dict[str, int], line: int) -> str:
        return next(k for k, n in ids.items() if n == line)

    def result_cache(self) -> dict[tuple, dict]:
        """The log as a result cache: (representative key, task, seed) -> record of a finished evaluation."""
        out: dict[tuple, dict] = {}
        for r in self.read_log():
            rep = r.get("rep") or r.get("key")
            if r.get("event") != "evaluation" or rep is None:
                continue
            out.setdefault((rep, r["task"], int(r["seed"])), r)
        return out

    def append_particles(self, rows: list[dict]) -> None:
        """Append particle rows; a (timestep, particle) already there (a replayed timestep) is skipped."""
        if self._particle_keys is None:
            self._particle_keys = {(r.get("timestep"), r.get("particle")) for r in self.read_particles()}
        if self._particles is None:
            self._particles = self._open(PARTICLES)
        new = []
        for row in rows:
            k = (row.get("timestep"), row.get("particle"))
            if k in self._particle_keys:
                continue
            new.append((k, json.dumps(row, separators=(",", ":"), default=_json_default) + "\n"))
        if new:
            _write_all(self._particles, "".join(line for _, line in new).encode("utf-8"), self.path(PARTICLES))
            self._particle_keys.update(k for k, _ in new)

    def read_particles(self) -> list[dict]:
        return read_jsonl(self.path(PARTICLES), check_particle_row)

    # -- checkpoint -------------------------------------------------------------------------------

    def save_checkpoint(self, state: dict | None, config: dict | None = None) -> None:
        """Write the search state (plain JSON data, or None before the search starts) and the
        config fingerprint atomically.  The log lines written so far reach the disk first, so a
        checkpoint never refers to records a crash could still lose."""
        if config is not None:
            self.bind_config(config)
        for fd, name in ((self._log, LOG), (self._particles, PARTICLES)):
            if fd is not None:
                try:
                    os.fsync(fd)
                except OSError as exc:
                    raise write_error(self.path(name), exc) from None
        doc = {"format": CHECKPOINT_FORMAT, "version": CHECKPOINT_VERSION, "config": config, "state": state}
        try:
            data = json.dumps(doc, separators=(",", ":"), allow_nan=True)
        except (TypeError, ValueError) as exc:
            raise StoreError(f"the search state cannot be written as JSON: {exc}") from None
        atomic_write_text(self.path(CHECKPOINT), data)

    def read_checkpoint(self) -> dict | None:
        """The checkpoint document ({format, version, config, state}), or None when there is none.
        Refuses an old pickled checkpoint and a damaged one, with what to do."""
        path = self.path(CHECKPOINT)
        legacy = self.path(LEGACY_CHECKPOINT)
        if not path.exists() and (legacy.exists() or legacy.is_symlink()):
            raise StoreError(
                f"{legacy} is a pickled checkpoint of an older deapnos; it is never loaded, because unpickling "
                f"a file can run code. To continue this run, move it away (mv {legacy} {legacy}.old) and run "
                f"`deapnos run --resume {self.dir}` again: the search replays from its start and takes every "
                f"evaluation already in {LOG} from there, so nothing is trained twice")
        if not path.exists() and not path.is_symlink():
            return None
        damaged = (f"; move it away (mv {path} {path}.damaged) and run `deapnos run --resume {self.dir}` again: "
                   f"the search replays from its start and takes every evaluation already in {LOG} from there")
        doc = _read_json_file(path, "a deapnos checkpoint", damaged)
        if not isinstance(doc, dict) or doc.get("format") != CHECKPOINT_FORMAT:
            raise StoreError(f"{path} is not a deapnos checkpoint (field 'format' is not "
                             f"{CHECKPOINT_FORMAT!r}){damaged}")
        version = doc.get("version")
        if not _is_int(version) or version != CHECKPOINT_VERSION:
            raise StoreError(f"{path}: checkpoint version {version!r} is not {CHECKPOINT_VERSION} (written by "
                             f"another deapnos version){damaged}")
        from .run_files import check_checkpoint
        problem = check_checkpoint(doc)         # every field's type, as declared (CheckpointFile)
        if problem:
            raise StoreError(f"{path}: {problem}{damaged}")
        if self.config_id is None and doc.get("config") is not None:
            self.config_id = config_id(doc["config"])
        if isinstance(doc.get("state"), dict):
            from .state import state_problem
            fields_ = (doc.get("config") or {}).get("fields")
            timesteps = fields_.get("search.timesteps") if isinstance(fields_, dict) else None
            problem = state_problem(doc["state"], timesteps if _is_int(timesteps) else None, self.read_log())
            if problem:
                raise StoreError(f"{path}: {problem}{damaged}")
        doc["damaged_hint"] = damaged
        return doc

    def load_checkpoint(self) -> dict | None:
        """The saved search state (plain data), or None when the run has no checkpoint yet."""
        doc = self.read_checkpoint()
        return None if doc is None else doc.get("state")

    # -- JSON artefacts ---------------------------------------------------------------------------

    def write_json(self, name: str, data) -> None:
        atomic_write_text(self.path(name), json.dumps(data, indent=2, default=_json_default) + "\n")

    def read_json(self, name: str, default=None, kind=None):
        """A JSON file of the run folder, or ``default`` when absent; a damaged one, or one whose top
        level is not ``kind`` (dict or list), raises :class:`StoreError` naming it."""
        path = self.path(name)
        if not path.exists() and not path.is_symlink():
            return default
        data = _read_json_file(path, "a deapnos file", "; restore it from a copy or remove it",
                               too_large_hint="; remove it")
        if kind is not None and not isinstance(data, kind):
            raise StoreError(f"{path}: expected a JSON {'object' if kind is dict else 'array'}, found "
                             f"{type(data).__name__}; restore it from a copy or remove it")
        return data

    def write_status(self, status: str, error: str = "", **extra) -> None:
        """Write ``status.json``.  On a full disk a final status (failed, interrupted) still lands:
        a short form is written over the old file's own bytes, so the run never stays "running"."""
        from .run_files import status_fields
        doc = {"status": status, "error": error, "time": time.time(), **extra}
        unknown = sorted(set(doc) - set(status_fields()))
        if unknown:     # a field status.json does not declare (run_files.StatusFile): the reader would refuse it
            raise ValueError(f"{self.path(STATUS)}: unknown field {unknown[0]} (declare it in StatusFile)")
        try:
            self.write_json(STATUS, doc)
        except DiskError:
            if status == "running" or not self._overwrite_in_place(STATUS, {k: doc[k] for k in ("status", "error",
                                                                                                "time")}):
                raise

    def _overwrite_in_place(self, name: str, doc: dict) -> bool:
        """Write ``doc`` into the blocks the file ``name`` already has (padded with spaces, which JSON
        allows): needs no free space.  Returns whether it fit."""
        path = self.path(name)
        try:
            fd = os.open(path, os.O_WRONLY | _no_follow())
        except OSError:
            return False
        try:
            size = os.fstat(fd).st_size
            data = json.dumps(doc, separators=(",", ":"), default=_json_default).encode("utf-8")
            if len(data) > size:
                doc = {**doc, "error": str(doc.get("error", ""))[:max(0, size - len(data) + 100)]}
                data = json.dumps(doc, separators=(",", ":"), default=_json_default).encode("utf-8")
            if len(data) > size:
                return False
            os.pwrite(fd, data + b" " * (size - len(data)), 0)
            return True
        except OSError:
            return False
        finally:
            os.close(fd)

    def read_status(self) -> dict | None:
        """``status.json`` (None when absent), checked against its schema (:class:`~deapnos.search.
        run_files.StatusFile`); a one-line :class:`StoreError` naming the file and the field."""
        from .run_files import check_status
        doc = self.read_json(STATUS, kind=dict)
        problem = None if doc is None else check_status(doc)
        if problem:
            raise StoreError(f"{self.path(STATUS)}: {problem}; restore it from a copy or remove it")
        return doc

    def close(self) -> None:
        """Close the open logs; never raises (every line was written whole, or cut back off)."""
        for fd in (self._log, self._particles):
            if fd is not None:
                try:
                    os.close(fd)
                except OSError:
                    pass
        self._log = self._particles = None


def _read_json_file(path: Path, what: str, hint: str, too_large_hint: str | None = None):
    """The JSON document in the regular file ``path``, bounded in size; a one-line :class:`StoreError`
    naming the file (``what`` it should be, and ``hint``: the way out) when it cannot be read."""
    _check_regular(path)
    try:
        if path.stat().st_size > MAX_JSON_BYTES:
            raise StoreError(f"{path} is larger than {MAX_JSON_BYTES} bytes: not {what}"
                             f"{hint if too_large_hint is None else too_large_hint}")
        return json.loads(path.read_bytes())
    except (ValueError, RecursionError) as exc:
        raise StoreError(f"{path} is damaged (not JSON: {str(exc).splitlines()[0][:200]}){hint}") from None
    except OSError as exc:
        raise StoreError(f"cannot read {path}: {exc.strerror or exc}") from None


def _json_default(obj):
    if isinstance(obj, (set, tuple)):
        return list(obj)
    if hasattr(obj, "to_dict"):
        return obj.to_dict()
    if isinstance(obj, Path):
        return str(obj)
    return str(obj)
