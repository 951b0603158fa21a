"""What SCOOP's entry files run: ``deapnos/scoop_entry/main.py`` (the file ``deapnos run --backend
scoop`` hands to SCOOP), the project root's ``deapnos.run`` and the ``deapnos.run`` that
``deapnos init`` writes into a workspace.

SCOOP takes the path of a file, imports it on every worker and runs it as ``__main__`` on the origin.
Importing this package prepares a SCOOP worker (:func:`deapnos.launch.scoop_worker_import`);
:func:`run_entry` runs the search on the origin.  ``main.py`` sits in a folder of its own, so that the folder SCOOP
puts first on ``sys.path`` holds no module that could shadow another.
"""
from __future__ import annotations

import logging
import os
import signal
import sys

from deapnos.distributed import under_scoop
from deapnos.launch import RUN_TOKEN_ENV, scoop_worker_import
from deapnos.run import main

scoop_worker_import()      # on every process of the job, when SCOOP imports the entry file


def run_entry(argv: list[str] | None = None) -> None:
    """The ``__main__`` of an entry file: run ``deapnos run`` with the command line.  Outside SCOOP
    it exits with the run's code.  Under ``python -m scoop`` started by hand a failed run makes
    SCOOP exit non-zero (SCOOP itself always exits 0: :func:`fail_scoop_job`); under ``deapnos
    run``, which launched SCOOP, the launcher reads the outcome from ``status.json``."""
    rc = main(argv)
    if not under_scoop():
        raise SystemExit(rc)
    if rc and not os.environ.get("DEAPNOS_RUN_TOKEN") and not os.environ.get(RUN_TOKEN_ENV):
        fail_scoop_job(rc)
    # rc 0: return; SCOOP shows a SystemExit of the origin as an error


def _parent_is_scoop_launch() -> bool:
    try:
        with open(f"/proc/{os.getppid()}/cmdline", "rb") as fh:
            return b"scoop.launch" in fh.read()
    except OSError:
        return False


def fail_scoop_job(rc: int) -> None:
    """End a failed SCOOP job with a non-zero exit code.  SCOOP's launcher exits with the code of
    the process that started the origin (``scoop.launch``), which itself always exits 0; ending that
    process with SIGTERM makes ``python -m scoop`` exit non-zero (-15, seen by the shell as 241).
    The workers exit with it (they watch their parent).  Where the parent cannot be recognised
    (no ``/proc``), nothing is done: ``deapnos status RUN_DIR`` tells the outcome."""
    if not _parent_is_scoop_launch():
        return
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os.kill(os.getppid(), signal.SIGTERM)
    os._exit(rc)
