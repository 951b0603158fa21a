"""``deapnos export``: a genome as a standalone PyTorch optimizer module, to take into your own code."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .target import TARGET_HELP, read_target


def configure_parser(p: argparse.ArgumentParser) -> None:
    p.add_argument("target", help=TARGET_HELP)
    p.add_argument("-o", "--output", required=True, help="path of the .py module to write")
    p.add_argument("--class-name", default=None, help="name of the optimizer class (default: from the target)")
    from ..plugins import add_plugin_options
    add_plugin_options(p)


def run_command(args) -> int:
    from ..optim.export import ExportError, ExportNameError, export_source
    read = read_target("export", args)
    if read is None:
        return 2
    genome = read[0]
    name = args.class_name or (Path(args.target).stem if Path(args.target).exists() else args.target)
    if "~" in name:
        name = "EvolvedOptimizer"
    import keyword

    from ..optim.export import _class_name
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
