"""``deapnos reproduce``: the paper's final comparison, on any task.

The published optimizers (A1-A5, Opt1-Opt10) against the paper's baselines, every one tuned by
``deapnos evaluate``'s grid (:mod:`deapnos.evaluate.compare`), on CIFAR-10 when its folder is found,
else on the embedded suite.  Provides :func:`configure_parser` and :func:`run_command`.
Details (options, budget, ``--compat``): docs/paper.md §9.
"""
from __future__ import annotations

import argparse
import logging
import sys
import time
from collections.abc import Mapping

log = logging.getLogger(__name__)

SUITE_TASKS = ("digits-hard", "ill-conditioned", "tabular", "stdlib-lm")
CIFAR10_TASK = "cifar10-convnet48"
REFERENCE = "torch:Adam"
# the paper's baselines in standard form; the reference comes first
PAPER_BASELINES = (REFERENCE, "torch:RMSprop", "torch:SGD", "torch:SGD(momentum=0.9, nesterov=True)",
                   "powersign", "addsign", "qhm")


def published() -> list[str]:
    """The zoo names of the paper's published optimizers: a1..a5 (AdamClip) and opt1..opt10."""
    from . import zoo
    return zoo.names(kind="adamclip") + zoo.names(kind="evolved")


def configure_parser(parser: argparse.ArgumentParser) -> None:
    from .plugins import add_plugin_options
    parser.add_argument("-t", "--task", action="append", metavar="NAME",
                        help=f"task (repeatable); default {CIFAR10_TASK} when CIFAR-10 is found, else "
                             f"{', '.join(SUITE_TASKS)}")
    parser.add_argument("--optimizers", metavar="NAME,NAME,...",
                        help="the published optimizers to run (default: a1..a5 and opt1..opt10)")
    parser.add_argument("--baselines", metavar="SPEC;SPEC;...",
                        help="baselines separated by ';' (default: " + "; ".join(PAPER_BASELINES) + ")")
    parser.add_argument("--seeds", type=int, default=3, help="seeds per optimizer, task and LR (default 3)")
    parser.add_argument("--seed", type=int, default=0, help="first seed (default 0)")
    parser.add_argument("--lrs", metavar="LR,LR,...", help="the LR grid (default: 10,1,0.1,0.01,1e-3,1e-4,1e-5)")
    parser.add_argument("--tuning", choices=("grid", "screen"), default="grid",
                        help="grid: full-length runs over the LR grid, LR chosen on validation (default); "
                             "screen: the search's LR screen")
    parser.add_argument("--epochs", type=int, help="full-run epochs (default: the task's)")
    parser.add_argument("--step-scale", type=float, default=1.0,
                        help="multiply steps per epoch, T and W (e.g. 0.2 for a quick look)")
    parser.add_argument("--no-decay", action="store_true",
                        help="finalOptimizers' default use_decay=False: the evolved decays and LR multipliers off")
    parser.add_argument("--compat", action="store_true",
                        help="the authors' released forms and noise model (Opt3 is refused)")
    parser.add_argument("--data-path", help="the data folder of the task(s) (CIFAR-10: the folder holding "
                                            "cifar-10-batches-py)")
    parser.add_argument("--device", help="cpu, cuda, cuda:1, ... (default: cuda when available)")
    parser.add_argument("--threads", type=int, help="torch threads during evaluation")
    parser.add_argument("--timeout", type=float, help="wall-clock seconds per evaluation")
    add_plugin_options(parser)
    parser.add_argument("--out", metavar="DIR", help="write results.json and curves.png here")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def default_tasks(tasks: Mapping, data_path: str | None = None) -> list[str]:
    """``[cifar10-convnet48]`` when that task is installed and its data is found, else the suite."""
    task = tasks.get(CIFAR10_TASK, None)
    if task is not None:
        if data_path:
            task = task.replace(data_path=data_path)
        try:
            task.check_available()
            return [CIFAR10_TASK]
        except Exception:   # noqa: BLE001 - no CIFAR-10 folder: the embedded suite
            pass
    return [n for n in SUITE_TASKS if n in tasks]


def build_specs(names, baselines, space, use_decay: bool = True, compat: bool = False):
    """(specs in table order: the reference, the other baselines, the published optimizers;
    ``{name: reason}`` of the refused ones)."""
    from . import zoo
    from .evaluate.protocol import OptimizerSpec, resolve_optimizer
    specs, refused = [], {}
    for name in list(baselines) + list(names):
        if name.lstrip().startswith("torch:"):
            specs.append(resolve_optimizer(name))
            continue
        try:
            genome = zoo.get(name, use_decay=use_decay, space=space, compat=compat)
        except zoo.CompatError as exc:
            refused[name] = str(exc)
            continue
        label = name if use_decay or zoo.info(name).no_decay_text is None else f"{name} (no decay)"
        specs.append(OptimizerSpec(name=label, genome=genome))
    return specs, refused


def run_command(args: argparse.Namespace) -> int:
    from . import plugins, zoo
    from .evaluate.compare import format_table, parse_lrs, run_jobs, summarize, write_outputs
    from .evaluate.protocol import default_device, protocol_config

    def fail(msg: str) -> int:
        print(f"deapnos reproduce: {msg}", file=sys.stderr)
        return 2

    if args.seeds < 1:
        return fail("--seeds must be >= 1")
    try:
        lrs = parse_lrs(args.lrs)
        pm = plugins.get_plugin_manager(extra_plugins=args.plugins)
        space = plugins.build_space(pm, compat=args.compat)
        installed = plugins.all_tasks(pm)
    except Exception as exc:  # noqa: BLE001 - a bad grid or a broken plugin: say which
        return fail(str(exc))
    names = [n.strip() for n in args.optimizers.split(",") if n.strip()] if args.optimizers else published()
    baselines = ([b.strip() for b in args.baselines.split(";") if b.strip()] if args.baselines
                 else list(PAPER_BASELINES))
    unknown = [n for n in names if n not in zoo.names()]
    if unknown:
        return fail(f"unknown zoo optimizer(s) {', '.join(map(repr, unknown))}; zoo: {', '.join(zoo.names())}")
    from .search.elimination import baseline_problem
    bad = [p for p in map(baseline_problem, baselines) if p]
    if bad:
        return fail(bad[0])
    task_names = args.task or default_tasks(installed, args.data_path)
    missing = [n for n in task_names if n not in installed]
    if missing or not task_names:
        return fail(f"unknown task(s) {', '.join(map(repr, missing))}; installed: {', '.join(sorted(installed))}")
    tasks = {n: installed[n].replace(data_path=args.data_path) if args.data_path else installed[n]
             for n in task_names}
    for task in tasks.values():
        try:
            task.check_available()
        except Exception as exc:  # noqa: BLE001 - TaskDataError names the path and how to get the data
            return fail(str(exc))
    specs, refused = build_specs(names, baselines, space, use_decay=not args.no_decay, compat=args.compat)
    reference = specs[0].name
    config = protocol_config({"epochs": args.epochs, "step_scale": args.step_scale, "num_threads": args.threads,
                              "timeout_s": args.timeout}, args.compat)
    device = args.device or default_device()
    seeds = list(range(args.seed, args.seed + args.seeds))
    grid = lrs if args.tuning == "grid" else (None,)
    print(f"reproducing the paper's final comparison: {len(specs)} optimizers on {', '.join(tasks)}; "
          f"{len(tasks) * len(specs) * len(grid) * len(seeds)} training runs", file=sys.stderr)
    t0 = time.perf_counter()
    runs, results, chosen = run_jobs(tasks, specs, seeds, config, grid, device, desc="reproduce",
                                     no_progress=args.no_progress)
    rows = summarize(results, reference=reference)
    print(format_table(rows))
    print(f"tuning: {args.tuning}" + (f" over LRs {', '.join(f'{v:g}' for v in grid)}, chosen on validation"
                                      if args.tuning == "grid" else "")
          + f"; {len(seeds)} seed(s); Δ: paired difference to {reference} per seed, mean ± 95% interval; "
            "'better' only when the interval excludes zero" + ("; compat: the authors' released forms" if args.compat
                                                                else ""))
    for name, why in refused.items():
        print(f"refused: {name}: {why}")
    for r in results:
        if r.status == "error":
            print(f"error: {r.optimizer} on {r.task} (seed {r.seed}): {r.message}", file=sys.stderr)
    if args.out:
        doc = {"format": "deapnos.reproduce", "version": 1, "device": device, "seeds": seeds, "tuning": args.tuning,
               "lrs": list(grid) if args.tuning == "grid" else None, "chosen_lr": chosen, "reference": reference,
               "compat": bool(args.compat), "refused": refused, "seconds": time.perf_counter() - t0,
               "config": config.to_dict(), "summary": rows, "results": [r.to_dict() for r in results],
               "runs": [r.to_dict() for r in runs]}
        write_outputs(args.out, doc, results)
    return 1 if any(r.status == "error" for r in results) else 0

