"""A test plugin (tests/test_stop_and_status.py): once the search of the run folder
``$DEAPNOS_TEST_GATED_RUN`` has written status "ok", building its genome space (which the report
does) waits, so that a test can stop the run while its report is being written."""
from __future__ import annotations

import json
import os
import time
from pathlib import Path

from deapnos import hookimpl


@hookimpl
def deapnos_add_primitives(space):
    run = os.environ.get("DEAPNOS_TEST_GATED_RUN")
    if not run:
        return
    try:
        status = json.loads((Path(run) / "status.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return
    if status.get("status") == "ok":
        (Path(run) / "report-gate.txt").write_text(str(os.getpid()), encoding="utf-8")
        time.sleep(120)
