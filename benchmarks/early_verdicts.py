"""How early a candidate's verdict shows: its best curve against the reference's curve at the same epoch.

The issue of a cheaper LR search asked for a rule that stops a candidate "when its curve falls
hopelessly behind the reference's curve at the same step".  This measures how much such a rule could
save on the quickstart's tasks without cutting a winner.  For each candidate (the quickstart's first
``--n`` random genomes, drawn as its search draws them, and zoo optimizers, which are closer to the
references) on each task, seed 0:

* its verdict: its fitness under the full-grid protocol (every LR screened, no cut) minus the best
  reference's (``adam``, ``momentum``), as a search scores it; a *winner* ends at or above it;
* its curve: one full run at every LR of the grid, validated after every epoch; at epoch e its
  *best showing* is the best validation score of any LR whose run is still alive (the most any rule
  can know of it then);
* the gap at epoch e: the best showing minus the best reference's validation score at epoch e.

Per task and epoch it prints how many winners and losers are behind the reference then (gap < 0):
the rule "stop a candidate behind the reference's curve at epoch e" cuts those; and the smallest gap
of a winner with how many losers lie below it: the losers that a rule "behind the reference by more
than the worst winner was" could have cut at that epoch without cutting any winner here (a real
rule needs a margin below that, so it cuts fewer).

    python benchmarks/early_verdicts.py [--n 30] [--tasks digits-hard ill-conditioned]

(about 4 minutes on one core).
"""
from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

REFERENCES = ("adam", "momentum")
ZOO = ["sgd", "nesterov", "rmsprop", "qhm", "powersign", "addsign", "signsgd", "signum", "lion", "adamw",
       "a1", "opt1", "opt5", "opt10"]


def best_showing(runs: list, epoch: int) -> float | None:
    """The best validation score at ``epoch`` (0-based) over the runs still alive then."""
    values = [r.curve[epoch]["val_score"] for r in runs
              if r.status == "ok" and len(r.curve) > epoch and r.curve[epoch].get("val_score") is not None
              and math.isfinite(r.curve[epoch]["val_score"])]
    return max(values) if values else None


def main(argv=None) -> int:
    import torch

    from deapnos.context import build_context
    from deapnos.evaluate.protocol import ProtocolConfig, evaluate_genome
    from quickstart_candidates import initial_population
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=30, help="how many of the quickstart's candidates")
    ap.add_argument("--tasks", nargs="+", default=["digits-hard", "ill-conditioned"])
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    tasks = build_context().tasks
    genomes = initial_population(args.n) + ZOO
    full_grid = ProtocolConfig(screen_schedule="grid", cut_factor=0)
    grid = full_grid.screen_lrs_a + full_grid.screen_lrs_b
    for name in args.tasks:
        task = tasks[name]
        refs = [evaluate_genome(r, task, seed=0, config=full_grid, device="cpu") for r in REFERENCES]
        ref = max(refs, key=lambda r: r.fitness if r.fitness is not None else -math.inf)
        ref_curve = [c["val_score"] for c in ref.curve]
        rows = []
        for genome in genomes:
            verdict = evaluate_genome(genome, task, seed=0, config=full_grid, device="cpu")
            if verdict.status != "ok":
                continue            # screened out or diverged: no score to compare
            runs = [evaluate_genome(genome, task, seed=0, config=ProtocolConfig(lr=lr, cut_factor=0), device="cpu")
                    for lr in grid]
            gaps = []
            for e in range(len(ref_curve)):
                shown = best_showing(runs, e)
                gaps.append(None if shown is None else shown - ref_curve[e])
            rows.append((genome, verdict.fitness - ref.fitness, gaps))
        winners = [r for r in rows if r[1] >= 0]
        losers = [r for r in rows if r[1] < 0]
        print(f"{name}: reference {ref.genome} (lr {ref.lr:g}, {ref.fitness:+.4f}); {len(winners)} winners and "
              f"{len(losers)} losers among {len(rows)} candidates that trained")
        print(f"  {'epoch':>5s} {'reference':>10s} {'winners behind':>15s} {'losers behind':>14s} "
              f"{'worst winner gap':>17s} {'losers below it':>16s}")
        for e in range(len(ref_curve)):
            wgaps = [w[2][e] for w in winners if w[2][e] is not None]
            floor = min(wgaps) if wgaps else math.inf
            below = sum(1 for g in losers if g[2][e] is None or g[2][e] < floor)
            behind_w = sum(1 for w in winners if w[2][e] is None or w[2][e] < 0)
            behind_l = sum(1 for g in losers if g[2][e] is None or g[2][e] < 0)
            print(f"  {e + 1:5d} {ref_curve[e]:10.4f} {behind_w:8d} of {len(winners):<3d} "
                  f"{behind_l:7d} of {len(losers):<3d} {floor:17.4f} {below:9d} of {len(losers)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
