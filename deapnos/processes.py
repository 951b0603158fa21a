"""Processes on this host: is a pid (still) the process we think it is, the kernel's death signal,
and taking down a process group.  Standard library only; used by the map backends, the SCOOP
launcher and ``deapnos status``."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable

PR_SET_PDEATHSIG = 1          # linux/prctl.h
START_SLACK_S = 2.0           # a process that started this long after a run began is another process


def _stat_fields(pid: int) -> list[bytes] | None:
    """The fields of ``/proc/PID/stat`` after the command name (which may hold spaces)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            return fh.read().rsplit(b")", 1)[1].split()
    except (OSError, IndexError):
        return None


def started_at(pid: int) -> float | None:
    """When process ``pid`` started (seconds since the epoch), from ``/proc``; None where that
    cannot be told (no ``/proc``, no such process)."""
    fields = _stat_fields(pid)
    if fields is None or len(fields) < 20:
        return None
    try:
        with open("/proc/stat", "rb") as fh:
            boot = next(float(line.split()[1]) for line in fh if line.startswith(b"btime "))
        return boot + int(fields[19]) / os.sysconf("SC_CLK_TCK")
    except (OSError, StopIteration, ValueError, IndexError):
        return None


def alive(pid: int, since: float | None = None) -> bool:
    """Whether process ``pid`` exists and is not a zombie (dead, not yet reaped).  With ``since``
    (when the process we mean was known to run, seconds since the epoch), a process under the same
    pid that started later is another one: the pid was reused, ours is gone."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    fields = _stat_fields(pid)
    if fields is not None and fields and fields[0] in (b"Z", b"X"):
        return False
    if since is not None:
        start = started_at(pid)
        if start is not None and start > since + START_SLACK_S:
            return False
    return True


def set_death_signal(sig: int = signal.SIGKILL) -> bool:
    """Linux: have the kernel send ``sig`` to this process when its parent dies
    (``prctl(PR_SET_PDEATHSIG)``).  Returns False where that is not available."""
    prctl = death_signal_call()
    if prctl is None:
        return False
    prctl(PR_SET_PDEATHSIG, int(sig), 0, 0, 0)
    return True


def death_signal_call() -> Callable[..., int] | None:
    """libc's ``prctl`` (Linux), looked up ahead, e.g. before a fork whose child calls it."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        import ctypes
        return ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None


def group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def stop_group(proc: subprocess.Popen, grace: float = 5.0) -> None:
    """Take down the process group of ``proc`` (its leader): SIGTERM, then SIGKILL after ``grace``
    seconds; returns when the group is empty (or after another 10 s)."""
    pgid = proc.pid
    for sig, wait_s in ((signal.SIGTERM, grace), (signal.SIGKILL, 10.0)):
        try:
            os.killpg(pgid, sig)
        except ProcessLookupError:
            pass
        deadline = time.monotonic() + wait_s
        while time.monotonic() < deadline:
            proc.poll()                  # reap the leader, so that the group can empty
            if not group_alive(pgid):
                proc.poll()
                return
            time.sleep(0.05)
    proc.poll()
