"""``run.lock`` and ``writer.lock``: one run and one writer per run folder (``flock``, dropped by the
kernel when the holder dies), with the holder's pid, host, start time and command for the message a
second run gets."""
from __future__ import annotations

import errno
import json
import os
import socket
import time
from pathlib import Path

from .files import RunLockError, StoreError, _check_regular, _no_follow


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
