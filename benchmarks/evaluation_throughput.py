"""Evaluations per core-minute: today's evaluation protocol against the new one, side by side.

The quickstart's evaluation workload: the candidates it judges first (its initial population, drawn
as the search draws it: benchmarks/quickstart_candidates.py), on the quickstart's tasks
(``digits-hard``, ``ill-conditioned``), seed 0, one thread, with its references (``adam`` and
``momentum``; a candidate's verdict is its score minus the best of them, as in the search).
Protocols, one column each (they alternate per evaluation, so that machine noise hits all alike):

- ``today``: every LR of the grid gets the full screening run; the full run starts again at the
  chosen LR; every full run goes to its end (``screen_schedule="grid"``, ``reuse_screen=False``,
  ``cut_factor=None``).
- ``halving``: successive halving over the grid (every LR one epoch, the best third the full
  screening run, each started again).
- ``new``: the default protocol: halving whose survivors and full run go on from their screening
  runs (``reuse_screen``), and a full run that cannot catch up with the reference stops
  (``cut_factor``, the reference's score given as in a search).
- ``new+batched`` (``--k K``, 7 by default, the quickstart's ``batch_lrs``; ``--k 0`` leaves it out):
  ``new`` with the first rung's LRs K at a time in one batched run, whose members go on as the
  sequential runs would.

Prints evaluations per core-minute of each (with the training epochs and validation passes an
evaluation makes: where its time goes), their ratio over ``today``, and how often each agrees with
``today`` on the chosen LR, the status, and the sign of the score against the reference.

    python benchmarks/evaluation_throughput.py [--quick] [--n 30] [--genomes adam a1 ...] [--k 7]
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

REFERENCES = ("adam", "momentum")


def _sign(x: float | None) -> int:
    return 0 if x is None or abs(x) < 1e-9 else (1 if x > 0 else -1)


def count_work() -> dict:
    """Counts, from now on, the training epochs that runs of :class:`Training` make, the epochs of
    batched runs (one per epoch, whatever its K), and the validation passes, into the returned dict:
    where an evaluation's time goes."""
    from deapnos.evaluate import batched, training
    work = {"epochs": 0, "batched": 0, "validations": 0}
    go_on, validate, train_batched = training.Training.go_on, training.validate, batched.train_batched

    def counted_go_on(run, *args, **kwargs):
        done = run.epochs_done
        try:
            return go_on(run, *args, **kwargs)
        finally:
            work["epochs"] += run.epochs_done - done

    def counted_validate(*args, **kwargs):
        work["validations"] += 1
        return validate(*args, **kwargs)

    def counted_train_batched(*args, **kwargs):
        outcomes, finals = train_batched(*args, **kwargs)
        work["batched"] += max(len(o.curve) for o in outcomes)
        return outcomes, finals
    training.Training.go_on = counted_go_on          # type: ignore[method-assign]
    training.validate = counted_validate
    batched.train_batched = counted_train_batched
    return work


def protocols(k: int | None):
    from deapnos.evaluate.protocol import ProtocolConfig
    out = {"today": ProtocolConfig(screen_schedule="grid", reuse_screen=False, cut_factor=None),
           "halving": ProtocolConfig(screen_schedule="halving", reuse_screen=False, cut_factor=None),
           "new": ProtocolConfig()}
    if k:
        out["new+batched"] = ProtocolConfig(batch_lrs=k)
    # today's protocol spelled out, field by field: the defaults changed under it once (halving)
    assert out["today"].screen_schedule == "grid" and not out["today"].reuse_screen and not out["today"].cut_factor
    assert out["new"].screen_schedule == "halving" and out["new"].reuse_screen and out["new"].cut_factor
    return out


def main(argv=None) -> int:
    import torch

    from deapnos.context import build_context
    from deapnos.evaluate.protocol import evaluate_genome
    from quickstart_candidates import initial_population
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--genomes", nargs="+", default=None, help="candidates (default: the quickstart's first N)")
    ap.add_argument("--n", type=int, default=30, help="how many of the quickstart's candidates")
    ap.add_argument("--tasks", nargs="+", default=["digits-hard", "ill-conditioned"])
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--k", type=int, default=7, help="also the new protocol with K LRs per batched run "
                    "(the quickstart's batch_lrs; 0: leave it out)")
    ap.add_argument("--quick", action="store_true", help="the first 10 candidates")
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    candidates = args.genomes or initial_population(10 if args.quick else args.n)
    tasks = build_context().tasks
    configs = protocols(args.k)
    names = tuple(configs)
    seconds = {s: 0.0 for s in names}
    counted = {s: 0 for s in names}

    work = count_work()
    epochs = {s: 0 for s in names}
    passes = {s: 0 for s in names}
    stacked = {s: 0 for s in names}

    def timed(s, genome, task, reference=None):
        before = dict(work)
        t0 = time.process_time()     # CPU time of this process: core-seconds on one thread
        r = evaluate_genome(genome, tasks[task], seed=args.seed, config=configs[s], device="cpu",
                            reference=reference)
        seconds[s] += time.process_time() - t0
        counted[s] += 1
        epochs[s] += work["epochs"] - before["epochs"]
        stacked[s] += work["batched"] - before["batched"]
        passes[s] += work["validations"] - before["validations"]
        return r

    from deapnos.evaluate.protocol import ProtocolConfig
    for task in args.tasks:     # untimed: imports and first-call costs (sklearn's import is ~2 s) hit no protocol
        evaluate_genome("adam", tasks[task], seed=args.seed, config=ProtocolConfig(step_scale=0.2), device="cpu")
    rows = []
    agree = {s: {"lr": 0, "status": 0, "sign": 0} for s in names[1:]}
    for task in args.tasks:
        # the references first, as a search tunes them before its candidates; they count as evaluations
        best = {}
        for s in names:
            refs = [timed(s, name, task) for name in REFERENCES]
            best[s] = max(r.fitness for r in refs if r.fitness is not None)
        for i, genome in enumerate(candidates):
            r = {s: timed(s, genome, task, reference=best[s]) for s in names}
            rel = {s: r[s].fitness - best[s] if r[s].fitness is not None else None for s in names}
            for s in names[1:]:
                agree[s]["lr"] += r["today"].lr == r[s].lr
                agree[s]["status"] += r["today"].status == r[s].status
                agree[s]["sign"] += _sign(rel["today"]) == _sign(rel[s])
            rows.append((task, i, {s: (r[s].status, r[s].lr, rel[s], "cut" in (r[s].message or "")) for s in names}))

    print(f"{'task':16s} {'#':>3s} " + " ".join(f"{s:>22s}" for s in names))
    for task, i, cells in rows:
        text = []
        for s in names:
            status, lr, rel, cut = cells[s]
            text.append(f"{lr or 0:g}:{rel:+.3f}{' cut' if cut else ''}" if rel is not None else status)
        print(f"{task:16s} {i:3d} " + " ".join(f"{c:>22s}" for c in text))
    n = len(rows)
    print(f"\n{n} candidate evaluations (+ {len(REFERENCES) * len(args.tasks)} of the references) per protocol, "
          "one thread")
    rate = {s: 60.0 * counted[s] / seconds[s] for s in names}
    for s in names:
        print(f"  {s:12s} {seconds[s]:7.1f} core-s  {rate[s]:6.1f} evaluations per core-minute  "
              f"(per evaluation: {epochs[s] / counted[s]:.1f} training epochs of paused-or-not runs, "
              f"{passes[s] / counted[s]:.1f} validation passes"
              + (f", {stacked[s] / counted[s]:.1f} epochs of batched runs" if stacked[s] else "") + ")")
    for s in names[1:]:
        print(f"  {s} / today: ratio {rate[s] / rate['today']:.2f}, agreement "
              + ", ".join(f"{k} {100 * v / n:.0f}%" for k, v in agree[s].items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
