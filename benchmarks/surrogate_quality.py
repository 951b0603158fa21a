"""Can a surrogate task rank optimizers?  Seed noise against the spread between zoo optimizers.

For each task and each zoo optimizer, the *tuned* score: full-length runs of
``evaluate_genome(name, task, seed=s, config=ProtocolConfig(lr=LR))`` over the LR grid
10, 1, 1e-1, 1e-2, 1e-3, 1e-4, 1e-5 with seed 0; seed 1 is added at the two best LRs of seed 0, and the
LR with the best mean fitness (best validation score of the run; a failure counts as -inf) is kept.
Then, per task:

* noise: the sample std of adam's fitness over 5 seeds (0-4) at its tuned LR;
* the tuned score of each optimizer (mean over its seeds at its tuned LR; adam: over 5 seeds);
* spread: the sample std of the optimizers' tuned scores;  ratio = spread / noise (target >= 3);
* adam val acc: adam's best validation accuracy (mean over its 5 seeds), to show the task is not
  solved; ceiling: for the generated tasks, -ln(the generating teacher's own validation loss), the best
  score attainable on average;
* seconds per evaluation: the mean wall time of adam's full runs at its tuned LR.

    python benchmarks/surrogate_quality.py [--tasks digits-hard,stdlib-lm] [--quick] [--threads 1]

``--quick`` uses the grid 1, 1e-1, 1e-2, 1e-3, 1e-4, 3 adam seeds and one seed for the others (a
smoke run; its noise estimate is rough).

Measured (one shared CPU core, ``--threads 1``, full mode, Python 3.11, torch 2.14, 144 s in all; see
docs/evaluation.md, "The embedded suite")::

                      digits-hard         stdlib-lm   ill-conditioned           tabular
    optimizer        score     lr      score     lr      score     lr      score     lr
    adam            +0.028    0.1     -0.970  0.001     +0.011   0.01     +0.176   0.01
    sgd             -0.021      1     -0.990    0.1     -0.229      1     +0.125      1
    momentum        -0.140    0.1     -0.905    0.1     -0.250    0.1     +0.109    0.1
    nesterov        -0.103    0.1     -0.884    0.1     -0.212    0.1     +0.127    0.1
    rmsprop         +0.128    0.1     -0.976  0.001     +0.025   0.01     +0.175   0.01
    qhm             +0.093     10     -0.958      1     -0.209      1     +0.142      1
    powersign       +0.121      1     -0.969    0.1     -0.246    0.1     +0.022    0.1
    addsign         +0.112      1     -1.003    0.1     -0.275    0.1     +0.108      1

    task                 noise   spread   ratio  adam val acc   ceiling  s / eval
    digits-hard         0.0254   0.1053     4.1         0.675         -      0.18
    stdlib-lm           0.0022   0.0412    19.0         0.389         -      1.59
    ill-conditioned     0.0045   0.1199    26.9         0.625    +0.582      0.26
    tabular             0.0054   0.0487     9.0         0.660    +0.430      0.19

digits-hard is the weakest: its noise is the initialisation of a small ConvNet (with 10 adam seeds the
noise is 0.025 and the ratio 4.3).
"""
from __future__ import annotations

import argparse
import math
import statistics
import time

import torch

SUITE = ("digits-hard", "stdlib-lm", "ill-conditioned", "tabular")
OPTIMIZERS = ("adam", "sgd", "momentum", "nesterov", "rmsprop", "qhm", "powersign", "addsign")
GRID = (10.0, 1.0, 1e-1, 1e-2, 1e-3, 1e-4, 1e-5)
QUICK_GRID = (1.0, 1e-1, 1e-2, 1e-3, 1e-4)


def get_tasks(names):
    from deapnos.plugins import all_tasks, get_plugin_manager
    known = all_tasks(get_plugin_manager())
    missing = [n for n in names if n not in known]
    if missing:
        raise SystemExit(f"unknown task(s) {', '.join(missing)}; known: {', '.join(sorted(known))}")
    return [known[n] for n in names]


def run(name, task, lr, seed):
    """(fitness or -inf, best val accuracy or nan, seconds) of one full run at a fixed LR."""
    from deapnos.evaluate.protocol import ProtocolConfig, evaluate_genome
    r = evaluate_genome(name, task, seed=seed, config=ProtocolConfig(lr=lr), device="cpu")
    if not r.ok or r.fitness is None:
        return -math.inf, math.nan, r.seconds
    accs = [c["val_acc"] for c in r.curve if c.get("val_acc") is not None]
    return r.fitness, (max(accs) if accs else math.nan), r.seconds


def mean(xs):
    return sum(xs) / len(xs) if xs else -math.inf


def tune(name, task, grid, seeds_at_best: int, top: int = 2):
    """Best LR and its per-seed (fitness, accuracy, seconds) runs."""
    runs = {lr: [run(name, task, lr, 0)] for lr in grid}
    if seeds_at_best > 1:
        ranked = sorted(grid, key=lambda lr: -runs[lr][0][0])[:top]
        for lr in ranked:
            if math.isfinite(runs[lr][0][0]):
                runs[lr] += [run(name, task, lr, s) for s in range(1, seeds_at_best)]
    best = max(grid, key=lambda lr: mean([f for f, _, _ in runs[lr]]))
    return best, runs[best]


def measure(task, optimizers, grid, other_seeds: int, adam_seeds: int) -> dict:
    rows = {}
    for name in optimizers:
        t0 = time.perf_counter()
        lr, runs = tune(name, task, grid, other_seeds)
        if name == "adam":
            runs = runs + [run(name, task, lr, s) for s in range(len(runs), adam_seeds)]
        scores = [f for f, _, _ in runs]
        rows[name] = {"lr": lr, "scores": scores, "score": mean(scores),
                      "acc": mean([a for _, a, _ in runs]), "sec": mean([s for _, _, s in runs])}
        print(f"  {name:<10} lr {lr:<6g} score {rows[name]['score']:+.4f} "
              f"({', '.join(f'{s:+.4f}' for s in scores)})  [{time.perf_counter() - t0:.0f} s]", flush=True)
    return rows


def score_ceiling(task) -> float:
    """-ln(the teacher's loss) for generated tasks that know it (``info["bayes_loss"]``), else nan."""
    bayes = task.build_data("cpu", 0).info.get("bayes_loss")
    return -math.log(bayes) if bayes else math.nan


def summary(task_name: str, rows: dict) -> dict:
    adam = rows["adam"]
    noise = statistics.stdev(adam["scores"]) if len(adam["scores"]) > 1 else math.nan
    finite = [r["score"] for r in rows.values() if math.isfinite(r["score"])]
    spread = statistics.stdev(finite) if len(finite) > 1 else math.nan
    return {"task": task_name, "noise": noise, "spread": spread,
            "ratio": spread / noise if noise > 0 else math.inf, "adam_acc": adam["acc"], "sec": adam["sec"]}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tasks", default=",".join(SUITE), help="comma-separated task names")
    ap.add_argument("--optimizers", default=",".join(OPTIMIZERS), help="comma-separated zoo names (adam first)")
    ap.add_argument("--quick", action="store_true", help="smaller LR grid, fewer seeds")
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    names = [n.strip() for n in args.tasks.split(",") if n.strip()]
    optimizers = [n.strip() for n in args.optimizers.split(",") if n.strip()]
    if "adam" not in optimizers:
        optimizers.insert(0, "adam")
    grid, other_seeds, adam_seeds = (QUICK_GRID, 1, 3) if args.quick else (GRID, 2, 5)
    all_rows, sums = {}, []
    t_start = time.perf_counter()
    for task in get_tasks(names):
        print(f"{task.name}: {task.summary()}", flush=True)
        all_rows[task.name] = measure(task, optimizers, grid, other_seeds, adam_seeds)
        sums.append({**summary(task.name, all_rows[task.name]), "ceiling": score_ceiling(task)})

    print()
    print("tuned scores (log_loss = -ln val loss, higher is better; mean over seeds at the best LR)")
    print(f"{'':<11}" + "".join(f"{n:>18}" for n in all_rows))
    print(f"{'optimizer':<11}" + f"{'score':>11}{'lr':>7}" * len(all_rows))
    for name in optimizers:
        print(f"{name:<11}" + "".join(f"{rows[name]['score']:>+11.3f}{rows[name]['lr']:>7g}"
                                      for rows in all_rows.values()))
    print()
    print(f"{'task':<17}{'noise':>9}{'spread':>9}{'ratio':>8}{'adam val acc':>14}{'ceiling':>10}"
          f"{'s / eval':>10}")
    for s in sums:
        ceil = f"{s['ceiling']:+.3f}" if math.isfinite(s["ceiling"]) else "-"
        print(f"{s['task']:<17}{s['noise']:>9.4f}{s['spread']:>9.4f}{s['ratio']:>8.1f}{s['adam_acc']:>14.3f}"
              f"{ceil:>10}{s['sec']:>10.2f}")
    print(f"(ceiling: -ln of the generating teacher's own validation loss, the best score attainable on "
          f"average; total {time.perf_counter() - t_start:.0f} s)")


if __name__ == "__main__":
    main()
