"""``deapnos show`` and ``deapnos export``: look at a genome, take it into your own code."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .space import GenomeParseError
from .space.psets import MOMENTUM_DOC

_TARGET_HELP = "a zoo name (see `deapnos show --list`), a genome file (.json or text) or genome text"


def _resolve(target: str):
    from . import resolve_genome
    return resolve_genome(target)


def configure_show_parser(p: argparse.ArgumentParser) -> None:
    p.add_argument("target", nargs="?", help=_TARGET_HELP)
    p.add_argument("--list", action="store_true", help="list the zoo's optimizers and schedules")
    p.add_argument("--json", action="store_true", help="print the genome's JSON form only")


def run_show_command(args) -> int:
    from . import zoo
    if args.list or not args.target:
        print("optimizers:", ", ".join(zoo.names()))
        print("LR schedules:", ", ".join(zoo.schedule_names()))
        return 0 if args.list else 2
    try:
        genome = _resolve(args.target)
    except (GenomeParseError, ValueError, KeyError) as exc:
        print(f"deapnos show: {exc}", file=sys.stderr)
        return 2
    if args.json:
        print(genome.to_json())
        return 0
    if args.target in zoo.names():
        print(f"{args.target}: {zoo.describe(args.target)}")
    print(f"text     : {genome.to_text()}")
    print(f"equation : {genome}")
    print(f"LaTeX    : {genome.to_latex()}")
    print(f"momentum : {genome.momentum}  ({MOMENTUM_DOC[genome.momentum]})")
    print(f"flip     : {genome.flip}")
    state = genome.state_needed()
    print(f"state    : {', '.join(state) if state else 'none'} "
          f"({len(state)} tensor(s) the size of the parameters)")
    return 0


def configure_export_parser(p: argparse.ArgumentParser) -> None:
    p.add_argument("target", help=_TARGET_HELP)
    p.add_argument("-o", "--output", required=True, help="path of the .py module to write")
    p.add_argument("--class-name", default=None, help="name of the optimizer class (default: from the target)")


def run_export_command(args) -> int:
    from .optim.export import ExportError, export_source
    try:
        genome = _resolve(args.target)
    except (GenomeParseError, ValueError, KeyError) as exc:
        print(f"deapnos export: {exc}", file=sys.stderr)
        return 2
    name = args.class_name or (Path(args.target).stem if Path(args.target).exists() else args.target)
    if "~" in name:
        name = "EvolvedOptimizer"
    try:
        source = export_source(genome, name)
    except ExportError as exc:
        print(f"deapnos export: {exc}", file=sys.stderr)
        return 1
    out = Path(args.output)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(source, encoding="utf-8")
    print(f"wrote {out} ({len(source.splitlines())} lines): `from {out.stem} import Optimizer`")
    return 0
