"""``deapnos show`` and ``deapnos export``: look at a genome, take it into your own code."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

_TARGET_HELP = "a zoo name (see `deapnos show --list`), a genome file (.json or text) or genome text"


def _resolve(target: str, space=None, zoo_registry=None):
    """The genome a target names; a path that is not a regular file (a folder, ``/dev/zero``) is
    refused before anything reads it."""
    import os
    from . import resolve_genome
    if os.path.exists(target) and not os.path.isfile(target):
        raise ValueError(f"{target}: not a regular file; give a genome file (.json or text), a zoo name or "
                         "genome text")
    return resolve_genome(target, space=space, zoo_registry=zoo_registry)


def _read_target(command: str, args):
    """``(genome, zoo registry)`` of ``args.target``, read with the installed plugins and ``-p``
    (as ``deapnos evaluate`` reads its optimizers); None after a one-line error on stderr."""
    from .context import build_context
    from .plugins import PluginError, with_plugin_hint
    try:
        ctx = build_context(args.plugins, eager=False)
        space, zoo_registry = ctx.space, ctx.zoo
    except PluginError as exc:
        print(f"deapnos {command}: {exc}", file=sys.stderr)
        return None
    try:
        return _resolve(args.target, space, zoo_registry), zoo_registry
    except (ValueError, KeyError) as exc:       # GenomeParseError is a ValueError
        print(f"deapnos {command}: {with_plugin_hint(str(exc))}", file=sys.stderr)
        return None


def configure_show_parser(p: argparse.ArgumentParser) -> None:
    p.add_argument("target", nargs="?", help=_TARGET_HELP)
    p.add_argument("--list", action="store_true", help="list the zoo's optimizers and schedules")
    p.add_argument("--json", action="store_true", help="print the genome's JSON form only")
    from .plugins import add_plugin_options
    add_plugin_options(p)


def run_show_command(args) -> int:
    from . import zoo
    from .space.psets import MOMENTUM_DOC
    if args.list or not args.target:
        print("optimizers:", ", ".join(zoo.names()))
        print("LR schedules:", ", ".join(zoo.schedule_names()))
        return 0 if args.list else 2
    read = _read_target("show", args)
    if read is None:
        return 2
    genome, zoo_registry = read
    if args.json:
        print(genome.to_json())
        return 0
    if args.target in zoo.names(registry=zoo_registry):      # a built-in or plugin zoo entry
        print(f"{args.target}: {zoo.describe(args.target, registry=zoo_registry)}")
    print(f"text     : {genome.to_text()}")
    print(f"equation : {genome}")
    print(f"LaTeX    : {genome.to_latex()}")
    print(f"momentum : {genome.momentum}  ({MOMENTUM_DOC[genome.momentum]})")
    print(f"flip     : {genome.flip}")
    state = genome.state_needed()
    print(f"state    : {', '.join(state) if state else 'none'} "
          f"({len(state)} tensor(s) the size of the parameters)")
    _print_identity(genome, zoo_registry)
    return 0


def _print_identity(genome, zoo_registry) -> None:
    """What the genome is: its nearest zoo optimizer up to the LR, and its simplified form
    (docs/search.md, "What a winner is")."""
    from .identify import KNOWN_THRESHOLD, identify
    ident = identify(genome, zoo_registry)
    m = ident.nearest
    verdict = "the same optimizer" if m.is_known else f"below {KNOWN_THRESHOLD}: not a known optimizer"
    print(f"nearest  : {m.name or 'none'} (similarity {m.similarity:.4f}, {verdict}; "
          f"update ~ {m.scale:.3g} x {m.name or '-'})")
    print(f"simplest : {ident.simplified.to_text()}")


def configure_export_parser(p: argparse.ArgumentParser) -> None:
    p.add_argument("target", help=_TARGET_HELP)
    p.add_argument("-o", "--output", required=True, help="path of the .py module to write")
    p.add_argument("--class-name", default=None, help="name of the optimizer class (default: from the target)")
    from .plugins import add_plugin_options
    add_plugin_options(p)


def run_export_command(args) -> int:
    from .optim.export import ExportError, ExportNameError, export_source
    read = _read_target("export", args)
    if read is None:
        return 2
    genome = read[0]
    name = args.class_name or (Path(args.target).stem if Path(args.target).exists() else args.target)
    if "~" in name:
        name = "EvolvedOptimizer"
    import keyword

    from .optim.export import _class_name
    cls = _class_name(name)
    if not cls.isidentifier() or keyword.iskeyword(cls) or keyword.issoftkeyword(cls):
        print(f"deapnos export: --class-name {name!r} makes the class name {cls!r}, which Python cannot use (a "
              f"keyword); choose another, e.g. --class-name MyOptimizer", file=sys.stderr)
        return 2
    try:
        source = export_source(genome, name)
        compile(source, args.output, "exec")       # the module must import: never write one that does not
    except ExportError as exc:
        print(f"deapnos export: {exc}", file=sys.stderr)
        return 2 if isinstance(exc, ExportNameError) else 1
    except SyntaxError as exc:
        print(f"deapnos export: the module for class {cls!r} does not compile ({exc.msg}, line {exc.lineno}); "
              f"choose another --class-name", file=sys.stderr)
        return 2
    out = Path(args.output)
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(source, encoding="utf-8")
    except OSError as exc:
        print(f"deapnos export: cannot write {out}: {exc.strerror or exc}; choose another -o path", file=sys.stderr)
        return 1
    print(f"wrote {out} ({len(source.splitlines())} lines): `from {out.stem} import Optimizer`")
    return 0
