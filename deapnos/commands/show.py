"""``deapnos show``: a zoo optimizer or genome as text, equation, LaTeX, state, and what it is."""
from __future__ import annotations

import argparse

from .target import TARGET_HELP, read_target


def configure_parser(p: argparse.ArgumentParser) -> None:
    p.add_argument("target", nargs="?", help=TARGET_HELP)
    p.add_argument("--list", action="store_true", help="list the zoo's optimizers and schedules")
    p.add_argument("--json", action="store_true", help="print the genome's JSON form only")
    from ..plugins import add_plugin_options
    add_plugin_options(p)


def run_command(args) -> int:
    from .. import zoo
    from ..space.psets import MOMENTUM_DOC
    if args.list or not args.target:
        print("optimizers:", ", ".join(zoo.names()))
        print("LR schedules:", ", ".join(zoo.schedule_names()))
        return 0 if args.list else 2
    read = read_target("show", args)
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
    from ..identify import KNOWN_THRESHOLD, identify
    ident = identify(genome, zoo_registry)
    m = ident.nearest
    verdict = "the same optimizer" if m.is_known else f"below {KNOWN_THRESHOLD}: not a known optimizer"
    print(f"nearest  : {m.name or 'none'} (similarity {m.similarity:.4f}, {verdict}; "
          f"update ~ {m.scale:.3g} x {m.name or '-'})")
    print(f"simplest : {ident.simplified.to_text()}")
