"""The text of ``stdlib-lm``: a fixed list of the standard library's ``.py`` sources, as characters.

Provides :data:`TRAIN_FILES`, :data:`VAL_FILES`, :func:`read_sources` (from ``sysconfig``'s stdlib folder
or ``options["stdlib_dir"]``; a missing file is a :class:`TaskDataError`), :func:`encode` (ASCII code
points, anything else 0: :data:`VOCAB` = 128) and :func:`windows` (non-overlapping ``context + 1``
characters).  Details: docs/evaluation.md, "The embedded suite".
"""
from __future__ import annotations

import sysconfig
from pathlib import Path

import numpy as np

from deapnos.evaluate.tasks import TaskDataError

VOCAB = 128
TRAIN_FILES = ("textwrap.py", "heapq.py", "bisect.py", "fractions.py", "calendar.py", "csv.py",
               "shlex.py", "queue.py", "glob.py", "copy.py", "contextlib.py")
VAL_FILES = ("string.py", "fnmatch.py")


def stdlib_dir() -> Path:
    """The running interpreter's standard-library folder."""
    return Path(sysconfig.get_paths()["stdlib"])


def read_sources(folder, names, task_name: str = "stdlib-lm") -> str:
    """The files ``names`` of ``folder`` joined by blank lines; :class:`TaskDataError` if one is missing."""
    folder = Path(folder)
    missing = [n for n in names if not (folder / n).is_file()]
    if missing:
        raise TaskDataError(
            f"task {task_name!r}: the standard-library folder {str(folder)!r} lacks {', '.join(missing)}. "
            "The task trains on Python sources shipped with every CPython 3.10-3.13 install; point "
            "options['stdlib_dir'] at a folder holding them (default: sysconfig.get_paths()['stdlib']).")
    parts = [(folder / n).read_text(encoding="utf-8", errors="replace") for n in names]
    return "\n\n".join(parts)


def encode(text: str) -> np.ndarray:
    """int64 codes: ASCII code points, every other character 0."""
    codes = np.frombuffer(text.encode("utf-32-le"), dtype=np.uint32).astype(np.int64)
    codes[codes >= VOCAB] = 0
    return codes


def windows(codes: np.ndarray, context: int, limit: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Non-overlapping (input, target) windows of ``context`` characters; with ``limit``, at most that
    many, evenly spaced over the text."""
    n = (len(codes) - 1) // context
    if n < 1:
        raise ValueError(f"a text of {len(codes)} characters is shorter than one window of {context} + 1")
    x = codes[: n * context].reshape(n, context)
    y = codes[1: n * context + 1].reshape(n, context)
    if limit is not None and limit < n:
        keep = np.linspace(0, n - 1, limit).round().astype(np.int64)
        x, y = x[keep], y[keep]
    return x, y


def lm_arrays(folder=None, context: int = 64, val_windows: int | None = None, task_name: str = "stdlib-lm"):
    """``(x_train, y_train, x_val, y_val)`` int64 windows of the stdlib text in ``folder``."""
    folder = Path(folder) if folder is not None else stdlib_dir()
    train = encode(read_sources(folder, TRAIN_FILES, task_name))
    val = encode(read_sources(folder, VAL_FILES, task_name))
    xt, yt = windows(train, context)
    xv, yv = windows(val, context, val_windows)
    return xt, yt, xv, yv
