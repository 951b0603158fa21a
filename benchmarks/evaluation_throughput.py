"""Evaluations per core-minute: today's full-grid LR screen against successive halving, side by side.

The quickstart's evaluation workload: each candidate genome (``--genomes``; default the zoo's
baselines and the paper's optimizers, the kind of genomes a search judges) on each of the
quickstart's tasks (``digits-hard``, ``ill-conditioned``), seed 0, one thread, once with
``screen_schedule = "grid"`` (every LR of the grid gets the full screening run) and once with
``"halving"`` (every LR one epoch, the best third the full screening run).  The two protocols
alternate per evaluation so that machine noise hits both alike.

Prints evaluations per core-minute of each, their ratio, and how often the new path agrees with the
old one on the chosen LR, the status, and the sign of the score against the reference (``adam``
evaluated by the same protocol on the same task and seed).

    python benchmarks/evaluation_throughput.py [--quick] [--genomes adam a1 ...]
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

GENOMES = ["adam", "momentum", "sgd", "rmsprop", "nesterov", "a1", "a2", "a3", "opt1", "opt2", "opt4", "opt5",
           "opt7", "opt8", "opt9", "opt10"]
QUICK = ["adam", "momentum", "a1", "opt10"]
REFERENCE = "adam"


def _sign(x: float | None) -> int:
    return 0 if x is None or abs(x) < 1e-9 else (1 if x > 0 else -1)


def main(argv=None) -> int:
    import torch

    from deapnos import plugins
    from deapnos.evaluate.protocol import ProtocolConfig, evaluate_genome
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--genomes", nargs="+", default=None)
    ap.add_argument("--tasks", nargs="+", default=["digits-hard", "ill-conditioned"])
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--k", type=int, default=7, help="LRs per batched run")
    ap.add_argument("--quick", action="store_true", help=f"only {', '.join(QUICK)}")
    args = ap.parse_args(argv)
    genomes = args.genomes or (QUICK if args.quick else GENOMES)
    torch.set_num_threads(1)
    tasks = plugins.all_tasks(plugins.get_plugin_manager())
    # batched: the screen's LRs in one vmapped run (deapnos/evaluate/batched.py); models vmap cannot
    # run (digits-hard's batch norm) fall back to one run per LR
    configs = {"grid": ProtocolConfig(), "halving": ProtocolConfig(screen_schedule="halving"),
               "batched": ProtocolConfig(batch_lrs=args.k),
               "halving+batched": ProtocolConfig(screen_schedule="halving", batch_lrs=args.k)}
    schedules = tuple(configs)
    seconds = {s: 0.0 for s in schedules}
    results: dict[tuple, dict] = {}
    for task_name in args.tasks:
        for genome in genomes:
            for s in schedules:
                t0 = time.process_time()     # CPU time of this process: core-seconds on one thread
                results[(task_name, genome, s)] = evaluate_genome(genome, tasks[task_name], seed=args.seed,
                                                                   config=configs[s], device="cpu")
                seconds[s] += time.process_time() - t0
    n = len(args.tasks) * len(genomes)
    rate = {s: 60.0 * n / seconds[s] for s in schedules}
    print(f"{'task':16s} {'genome':8s} " + " ".join(f"{s:>16s}" for s in schedules))
    agree = {s: {"lr": 0, "status": 0, "sign": 0} for s in schedules[1:]}
    for task_name in args.tasks:
        ref = {s: results[(task_name, REFERENCE, s)] if REFERENCE in genomes else
               evaluate_genome(REFERENCE, tasks[task_name], seed=args.seed, config=configs[s], device="cpu")
               for s in schedules}
        for genome in genomes:
            r = {s: results[(task_name, genome, s)] for s in schedules}
            rel = {s: (r[s].fitness - ref[s].fitness if r[s].fitness is not None and ref[s].fitness is not None
                       else None) for s in schedules}
            for s in schedules[1:]:
                agree[s]["lr"] += r["grid"].lr == r[s].lr
                agree[s]["status"] += r["grid"].status == r[s].status
                agree[s]["sign"] += _sign(rel["grid"]) == _sign(rel[s])
            cells = [f"{r[s].lr or 0:g}:{rel[s]:+.4f}" if rel[s] is not None else r[s].status for s in schedules]
            print(f"{task_name:16s} {genome:8s} " + " ".join(f"{c:>16s}" for c in cells))
    print(f"\n{n} evaluations each, one thread")
    for s in schedules:
        print(f"  {s:16s} {seconds[s]:7.1f} core-s  {rate[s]:6.1f} evaluations per core-minute")
    for s in schedules[1:]:
        print(f"  {s} / grid: ratio {rate[s] / rate['grid']:.2f}, agreement "
              + ", ".join(f"{k} {100 * v / n:.0f}%" for k, v in agree[s].items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
