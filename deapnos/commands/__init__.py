"""The ``deapnos`` commands that have no room of their own, one module each: :mod:`.show`,
:mod:`.export`, :mod:`.evaluate` and :mod:`.plugins` (:mod:`.target`: the genome show and export
read).  Commands that own a room live there (``deapnos run`` in deapnos/run.py, ...);
deapnos/cli.py's ``COMMANDS`` says where each one is.

The names deapnos/commands.py had (show and export) stay importable from here.
"""
from __future__ import annotations

from .export import configure_parser as configure_export_parser
from .export import run_command as run_export_command
from .show import _print_identity  # noqa: F401  (the helpers' old private names, for old imports)
from .show import configure_parser as configure_show_parser
from .show import run_command as run_show_command
from .target import TARGET_HELP as _TARGET_HELP  # noqa: F401
from .target import read_target as _read_target  # noqa: F401
from .target import resolve_target as _resolve  # noqa: F401

__all__ = ["configure_export_parser", "configure_show_parser", "run_export_command", "run_show_command"]
