"""The files of a run folder, one level down from :class:`~deapnos.search.store.RunStore`: their
names, the errors a store raises, atomic and checked writes, bounded reads, free space."""
from __future__ import annotations

import errno
import json
import os
import re
import stat
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
