"""``deapnos evaluate``: compare optimizers fairly on tasks, with confidence intervals.

    deapnos evaluate -O adam -O opt10 -O "torch:SGD(momentum=0.9)" --task digits-hard --seeds 3

Every optimizer gets the same tuning (``--tuning grid|screen`` or ``--lr``); the table gives mean ± 95%
interval and the paired difference to the reference with a verdict.  The comparison itself is
:mod:`deapnos.evaluate.compare`; this module reads the command line and loads the plugins through
the run's Context.  Details: docs/evaluation.md, "Comparing optimizers fairly".
"""
from __future__ import annotations

import argparse
import sys
import time

from ..evaluate.compare import (duration_text, estimate_seconds, find_tasks, format_table, parse_lrs, run_count,
                                run_jobs, summarize, write_outputs)


def configure_parser(parser: argparse.ArgumentParser) -> None:
    from ..argtypes import non_negative_int, positive_float, positive_int
    from ..listargs import ListAppend
    from ..plugins import add_plugin_options
    parser.add_argument("-O", "--optimizer", action=ListAppend, required=True, metavar="SPEC",
                        help="zoo name, genome file, genome text or torch:NAME[(k=v,...)]; repeat, or separate "
                             "with commas (commas inside parentheses stay), to compare")
    parser.add_argument("--reference", metavar="SPEC",
                        help="the optimizer the others are compared with (default: the first --optimizer)")
    parser.add_argument("--tuning", choices=("grid", "screen"), default="grid",
                        help="grid: full-length runs over the LR grid, LR chosen on validation (default); "
                             "screen: the search's cheap LR screen")
    parser.add_argument("--lrs", metavar="LR,LR,...",
                        help="the LR grid of --tuning grid (default: 10,1,0.1,0.01,1e-3,1e-4,1e-5)")
    parser.add_argument("-t", "--task", action=ListAppend, metavar="NAME",
                        help="task name (surrogate or fitness task); repeatable or comma-separated; "
                             "default: digits-hard")
    parser.add_argument("--seeds", type=positive_int, default=3,
                        help="number of seeds per optimizer, task and LR (default 3: a 95%% interval needs 2+)")
    parser.add_argument("--seed", type=non_negative_int, default=0, help="first seed (default 0)")
    parser.add_argument("--out", metavar="DIR", help="write results.json and curves.png here")
    parser.add_argument("--device", help="cpu, cuda, cuda:1, ... (default: cuda when available)")
    add_plugin_options(parser)
    parser.add_argument("--lr", type=positive_float, help="one fixed peak LR for everyone: no tuning")
    parser.add_argument("--epochs", type=positive_int, help="full-run epochs (default: the task's, 40)")
    parser.add_argument("--step-scale", type=positive_float, default=1.0,
                        help="multiply steps per epoch, T and W (e.g. 0.1 for a quick look)")
    parser.add_argument("--data-path", help="the task's data folder (overrides its environment variable)")
    parser.add_argument("--threads", type=positive_int, help="torch threads during evaluation")
    parser.add_argument("--timeout", type=positive_float, help="wall-clock seconds per evaluation")
    parser.add_argument("--no-shuffle", action="store_true", help="the paper's fixed batch order")
    parser.add_argument("--integrity", action="store_true", help="run the installed integrity checks first")
    parser.add_argument("--test", action="store_true", help="also score the final model on the test split")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")



def run_command(args: argparse.Namespace) -> int:
    from ..argtypes import writable_folder_problem
    from ..context import build_context
    from ..evaluate.protocol import ProtocolConfig, default_device, resolve_optimizer
    from ..plugins import notify
    if args.seeds < 1:
        print("deapnos evaluate: --seeds must be >= 1", file=sys.stderr)
        return 2
    if args.out and (problem := writable_folder_problem(args.out)):    # before hours of training, not after
        print(f"deapnos evaluate: --out {args.out}: {problem}", file=sys.stderr)
        return 2
    try:
        ctx = build_context(args.plugins, eager=False)     # each part asked in this order, errors caught here
        space, zoo_registry = ctx.space, ctx.zoo           # plugin primitives, zoo entries
        tasks = find_tasks(args.task or ["digits-hard"], ctx.tasks)
        checks = ctx.checks if args.integrity else None
    except SystemExit as exc:
        print(exc, file=sys.stderr)
        return 2
    except Exception as exc:  # noqa: BLE001 - a broken plugin: say which
        print(f"deapnos evaluate: {exc}", file=sys.stderr)
        return 2
    try:
        specs = [resolve_optimizer(s, space, zoo_registry) for s in args.optimizer]
        reference = resolve_optimizer(args.reference, space, zoo_registry) if args.reference else specs[0]
        lrs = parse_lrs(args.lrs)
    except (ValueError, TypeError, OSError) as exc:
        print(f"deapnos evaluate: {exc}", file=sys.stderr)
        return 2
    if reference.name not in [s.name for s in specs]:
        specs.insert(0, reference)
    if args.data_path:
        tasks = {n: t.replace(data_path=args.data_path) for n, t in tasks.items()}
    for task in tasks.values():       # a missing dataset: say so once, before any run
        try:
            task.check_available()
        except Exception as exc:  # noqa: BLE001 - TaskDataError names the path and how to get the data
            print(f"deapnos evaluate: {exc}", file=sys.stderr)
            return 2
    config = ProtocolConfig(lr=args.lr, epochs=args.epochs, step_scale=args.step_scale, num_threads=args.threads,
                            timeout_s=args.timeout, shuffle=not args.no_shuffle, evaluate_test=args.test)
    tuning = "fixed" if args.lr is not None else args.tuning
    device = args.device or default_device()
    seeds = list(range(args.seed, args.seed + args.seeds))
    grid = lrs if tuning == "grid" else (None,)
    n_runs = run_count(len(tasks), len(specs), len(grid), len(seeds))
    try:
        guess = f"about {duration_text(estimate_seconds(tasks, specs, grid, len(seeds), config, device))}"
    except Exception as exc:  # noqa: BLE001 - a plugin task that cannot be timed: no estimate, still run
        guess = f"no estimate ({exc})"
    print(f"deapnos evaluate: {n_runs} runs ({len(specs)} optimizer(s) x {len(grid)} LR(s) x {len(seeds)} seed(s) "
          f"x {len(tasks)} task(s)) on {device}, {guess} (from two short timed runs)",
          file=sys.stderr, flush=True)
    t0 = time.perf_counter()
    runs, results, chosen = run_jobs(
        tasks, specs, seeds, config, grid, device, checks=checks, no_progress=args.no_progress,
        on_result=lambda r: notify(ctx.pm, "deapnos_evaluation_finished", result=r))
    rows = summarize(results, reference=reference.name)
    print(format_table(rows))
    print(f"tuning: {tuning}" + (f" over LRs {', '.join(f'{v:g}' for v in grid)}, chosen on validation"
                                 if tuning == "grid" else "") +
          f"; {len(seeds)} seed(s); Δ: paired difference to {reference.name} per seed, mean ± 95% interval; "
          "'better' only when the interval excludes zero")
    for r in results:
        if r.status == "error":
            print(f"error: {r.optimizer} on {r.task} (seed {r.seed}): {r.message}", file=sys.stderr)
    if args.out:
        doc = {"format": "deapnos.evaluate", "version": 2, "device": device, "seeds": seeds, "tuning": tuning,
               "lrs": list(grid) if tuning == "grid" else None, "chosen_lr": chosen, "reference": reference.name,
               "seconds": time.perf_counter() - t0, "config": config.to_dict(),
               "tasks": {n: t.summary() for n, t in tasks.items()},
               "summary": rows, "results": [r.to_dict() for r in results], "runs": [r.to_dict() for r in runs]}
        write_outputs(args.out, doc, results)
    return 1 if any(r.status == "error" for r in results) else 0
