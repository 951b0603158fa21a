"""Who this process is, for the evaluation log and the environment check (``host:pid``).

Below both the worker and the protocol, which stamp results with it."""
from __future__ import annotations

import os
import socket


def worker_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"
