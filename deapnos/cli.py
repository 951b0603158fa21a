"""The ``deapnos`` command: run | evaluate | show | export | report | status | reproduce | plugins | repair | init.

Each subcommand lives in one module, named in :data:`COMMANDS`: the module that owns its job (run,
report, status, reproduce, repair, init), else its own module under deapnos/commands/ (show,
export, evaluate, plugins); this file only wires them.  A module provides
``configure_parser(parser)`` and ``run_command(args) -> int``.
"""
from __future__ import annotations

import argparse
import importlib
import inspect
import logging
import sys

#: command -> (its module, its help line).  The one place that says where each command lives.
COMMANDS = {
    "run": ("deapnos.run", "run an optimizer search (SCOOP, process pool or serial)"),
    # the comparison itself is deapnos.evaluate.compare (also deapnos.compare, the Python API)
    "evaluate": ("deapnos.commands.evaluate", "compare optimizers on a task under the paper's protocol"),
    "show": ("deapnos.commands.show", "show a zoo optimizer or genome file: text, LaTeX, state"),
    "export": ("deapnos.commands.export", "export a genome as a standalone PyTorch optimizer module"),
    "report": ("deapnos.report", "write the markdown report of a search run"),
    "status": ("deapnos.status", "show a search's progress from its run folder (running or finished)"),
    "reproduce": ("deapnos.reproduce", "the paper's final comparison (published optimizers and LR schedules vs "
                  "baselines) on its tasks where their data is found, else on a named stand-in"),
    # the plugin manager itself is deapnos.plugins
    "plugins": ("deapnos.commands.plugins", "list installed plugins and what they provide"),
    "repair": ("deapnos.repair", "move the bad lines of a run's logs aside (into a quarantine file) so it can resume"),
    "init": ("deapnos.workspace", "write a workspace: SCOOP's entry file deapnos.run, a config, a task template"),
}


class OneLineParser(argparse.ArgumentParser):
    """An argument error is one line on stderr (what is wrong, and where the help is), exit 2:
    argparse's default prints the whole usage block above it."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def build_parser(command: str | None = None, argv: list[str] | None = None) -> argparse.ArgumentParser:
    """The parser; only ``command``'s module is imported to add its options (fast start-up, and
    one broken plugin module never takes the other commands down).  A command whose
    ``configure_parser`` takes ``argv`` gets it, to add the options of the plugins it names."""
    parser = OneLineParser(prog="deapnos", description="Neural Optimizer Search with DEAP and PyTorch.")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (module, help_text) in COMMANDS.items():
        p = sub.add_parser(name, help=help_text, description=help_text)
        p.set_defaults(_module=module, _name=name)
        if name == command:
            mod = importlib.import_module(module)
            configure = getattr(mod, f"configure_{name}_parser", None) or mod.configure_parser
            if argv is not None and "argv" in inspect.signature(configure).parameters:
                configure(p, argv=argv)
            else:
                configure(p)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    command = next((a for a in argv if not a.startswith("-")), None)
    parser = build_parser(command if command in COMMANDS else None, argv)
    args = parser.parse_args(argv)
    args._argv = ["deapnos", *argv]          # as typed, for the run lock's record of the command
    import warnings
    warnings.filterwarnings("default", message="deapnos", category=DeprecationWarning)   # old spellings: say so
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(levelname)s %(name)s: %(message)s")
    if not args.command:
        parser.print_help()
        return 2
    mod = importlib.import_module(args._module)
    run = getattr(mod, f"run_{args._name}_command", None) or mod.run_command
    try:
        return int(run(args) or 0)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
