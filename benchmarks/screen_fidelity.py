"""What the cheap LR screen costs against the full grid: chosen-LR agreement and fitness regret.

For each genome (``--genomes``, default the zoo's simple optimizers) on each task (default the
quickstart's ``digits-hard`` and ``ill-conditioned``), with seed 0:

* the full grid: one full run at every LR of the screen's grid; the best is the one whose model at
  the end of the schedule scores best on validation (the score the search ranks by);
* the cheap screen as the search runs it (short screening runs; ``--choice validation``, the default,
  or ``progress``, the old rule on training loss), then its full run.

Prints, per pair, both chosen LRs and the regret (grid best minus the screen's fitness), then the
agreement rate and the mean regret.  Usage: ``python benchmarks/screen_fidelity.py [--choice both]``
(about 2 minutes on one core).
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

GENOMES = ["adam", "momentum", "sgd", "rmsprop", "nesterov", "qhm", "powersign", "addsign"]


def main(argv=None) -> int:
    import torch

    from deapnos import plugins
    from deapnos.evaluate.protocol import ProtocolConfig, evaluate_genome
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--genomes", nargs="+", default=GENOMES)
    parser.add_argument("--tasks", nargs="+", default=["digits-hard", "ill-conditioned"])
    parser.add_argument("--choice", choices=("validation", "progress", "both"), default="both")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    tasks = plugins.all_tasks(plugins.get_plugin_manager())
    choices = ["validation", "progress"] if args.choice == "both" else [args.choice]
    base = ProtocolConfig()
    grid = list(base.screen_lrs_a) + list(base.screen_lrs_b)
    t0 = time.perf_counter()
    stats: dict[str, list] = {c: [] for c in choices}
    print(f"{'task':16s} {'genome':10s} {'grid lr':>8s} " + " ".join(f"{c + ' lr':>14s} {'regret':>8s}"
                                                               for c in choices))
    for task_name in args.tasks:
        task = tasks[task_name]
        for genome in args.genomes:
            full = {}
            for lr in grid:
                r = evaluate_genome(genome, task, seed=args.seed, config=ProtocolConfig(lr=lr), device="cpu")
                if r.status == "ok" and r.fitness is not None:
                    full[lr] = r.fitness
            if not full:
                print(f"{task_name:16s} {genome:10s} no LR of the grid trained")
                continue
            best_lr = max(full, key=lambda v: full[v])
            line = f"{task_name:16s} {genome:10s} {best_lr:8g} "
            for c in choices:
                r = evaluate_genome(genome, task, seed=args.seed, config=ProtocolConfig(screen_choice=c),
                                    device="cpu")
                if r.status != "ok" or r.lr is None:
                    line += f"{r.status:>14s} {'-':>8s} "
                    stats[c].append((False, None))
                    continue
                regret = full[best_lr] - full.get(r.lr, r.fitness)
                stats[c].append((r.lr == best_lr, regret))
                line += f"{r.lr:14g} {regret:8.4f} "
            print(line, flush=True)
    print()
    for c in choices:
        rows = stats[c]
        agree = sum(1 for a, _ in rows if a)
        regrets = [x for _, x in rows if x is not None]
        print(f"screen choosing on {c:10s}: same LR as the full grid in {agree}/{len(rows)} pairs; regret "
              f"(grid best - screen's, final validation score) mean {statistics.fmean(regrets):.4f}, "
              f"max {max(regrets):.4f}" if regrets else f"{c}: nothing trained")
    print(f"({time.perf_counter() - t0:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
