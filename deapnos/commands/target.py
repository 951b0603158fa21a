"""The genome a ``deapnos show`` or ``deapnos export`` target names, read with the installed plugins and ``-p``."""
from __future__ import annotations

import sys

TARGET_HELP = "a zoo name (see `deapnos show --list`), a genome file (.json or text) or genome text"


def resolve_target(target: str, space=None, zoo_registry=None):
    """The genome a target names; a path that is not a regular file (a folder, ``/dev/zero``) is
    refused before anything reads it."""
    import os
    from .. import resolve_genome
    if os.path.exists(target) and not os.path.isfile(target):
        raise ValueError(f"{target}: not a regular file; give a genome file (.json or text), a zoo name or "
                         "genome text")
    return resolve_genome(target, space=space, zoo_registry=zoo_registry)


def read_target(command: str, args):
    """``(genome, zoo registry)`` of ``args.target``, read with the installed plugins and ``-p``
    (as ``deapnos evaluate`` reads its optimizers); None after a one-line error on stderr."""
    from ..context import build_context
    from ..plugins import PluginError, with_plugin_hint
    try:
        ctx = build_context(args.plugins, eager=False)
        space, zoo_registry = ctx.space, ctx.zoo
    except PluginError as exc:
        print(f"deapnos {command}: {exc}", file=sys.stderr)
        return None
    try:
        return resolve_target(args.target, space, zoo_registry), zoo_registry
    except (ValueError, KeyError) as exc:       # GenomeParseError is a ValueError
        print(f"deapnos {command}: {with_plugin_hint(str(exc))}", file=sys.stderr)
        return None
