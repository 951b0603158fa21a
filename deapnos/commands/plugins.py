"""``deapnos plugins``: list the installed plugins, where each came from and what it provides.

The rows and the table are :mod:`deapnos.plugin_table` (:func:`plugin_info`, :func:`describe`,
:func:`format_table`, importable from here); loading the plugins is :func:`deapnos.context.build_context`'s
job.  Details: docs/plugins.md, "Errors".
"""
from __future__ import annotations

import argparse
import sys

from ..plugin_table import describe, format_table, plugin_info, print_plugins  # noqa: F401  (importable from here)
from ..plugins import DISABLE_AUTOLOAD_ENV, add_plugin_options


def configure_parser(parser: argparse.ArgumentParser) -> None:
    add_plugin_options(parser)
    parser.add_argument("--json", action="store_true", help="print the list as JSON")


def run_command(args: argparse.Namespace) -> int:
    """List every plugin with its distribution, version and what it provides.  Returns 1 when a
    plugin failed to load or to answer, else 0."""
    from ..context import build_context
    pm = build_context(getattr(args, "plugins", None) or (), strict=False, eager=False).pm
    return print_plugins(pm, getattr(args, "json", False), DISABLE_AUTOLOAD_ENV)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m deapnos.commands.plugins",
                                     description="list installed plugins and what they provide")
    configure_parser(parser)
    return run_command(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
