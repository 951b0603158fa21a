"""Search quality: the particle GA, random search and regularized evolution at the same budget,
judged on held-out tasks.

For each algorithm (``--algorithms``, default ``particles random regularized``) and each search seed,
one search with the quickstart config (the suite: selection on ``digits-hard`` + ``ill-conditioned``,
fitness relative to a tuned Adam) and the same slots per timestep; ``random`` fills each slot with a
fresh random genome instead of a mutant, ``regularized`` mutates the best of a random sample of its
population and retires the oldest (aging evolution), all with the same evaluator, retries, cache,
elimination and validation.  The winner (the
top of the leaderboard) is validated on the held-out suite tasks with 3 seeds against the tuned
Adam.  Prints per run: evaluations trained, wall seconds, the winner's held-out score (mean over
held-out tasks and seeds of ``score - adam's score``; for the suite's ``log_loss`` tasks, the log of
the loss ratio: > 0 beats Adam) with its 95% interval and verdict; then the mean per algorithm.

Usage: ``python benchmarks/search_quality.py [--seeds 0 1 2] [--algorithms A ...] [--workers 2] [--keep DIR]
[overrides ...]``
(about 4 minutes per search on 2 cores with the default budget; ``--quick`` shrinks it).
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

BUDGET = ["run.report=false", "validation.candidates=1", "elimination.candidates=2",
          'elimination.baselines=["adam"]']
QUICK = ["search.particles=3", "search.timesteps=2", "search.mutants=3", "search.init_factor=3",
         "search.reeval_top=0"]


def run(run_dir: Path, algorithm: str, seed: int, workers: int, overrides: list[str]) -> float:
    cmd = [sys.executable, "-m", "deapnos.cli", "run", "--config", "quickstart", "--run-dir", str(run_dir),
           "--backend", "pool", "--workers", str(workers), "--algorithm", algorithm, "--seed", str(seed),
           *overrides]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    if proc.returncode != 0:
        sys.stderr.write(proc.stdout[-3000:] + proc.stderr[-3000:])
        raise SystemExit(f"{algorithm} seed {seed} failed (exit {proc.returncode})")
    return time.perf_counter() - t0


def held_out(run_dir: Path) -> dict:
    val = json.loads((run_dir / "validation.json").read_text())
    if not val.get("rows"):
        raise SystemExit(f"{run_dir}: no held-out validation ({val.get('note')})")
    row = val["rows"][0]
    return {"tasks": val["tasks"], "label": row["label"], "genome": row["genome"], **row["overall"]}


def trained(run_dir: Path) -> int:
    rows = [json.loads(x) for x in (run_dir / "evaluations.jsonl").read_text().splitlines() if x.strip()]
    return sum(1 for r in rows if r.get("event") == "evaluation" and not r.get("cached")
               and r.get("kind") in ("init", "particle", "mutant", "random", "reeval"))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--algorithms", nargs="+", default=["particles", "random", "regularized"])
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--quick", action="store_true", help="a much smaller search (a smoke test)")
    parser.add_argument("--keep", metavar="DIR", help="keep the run folders under DIR")
    parser.add_argument("overrides", nargs="*", help="extra config overrides (section.field=value)")
    args = parser.parse_args(argv)
    overrides = BUDGET + (QUICK if args.quick else []) + list(args.overrides)
    base = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="deapnos-quality-"))
    base.mkdir(parents=True, exist_ok=True)
    print(f"search: quickstart with {' '.join(overrides)}")
    print(f"machine: {os.cpu_count()} CPU(s), load {os.getloadavg()[0]:.2f}; run folders under {base}")
    print(f"{'algorithm':11s} {'seed':>4s} {'evals':>6s} {'wall s':>7s}  {'held-out vs adam (95% CI)':28s} "
          f"verdict  winner")
    results: dict[str, list[float]] = {}
    for algorithm in args.algorithms:
        for seed in args.seeds:
            run_dir = base / f"{algorithm}-{seed}"
            wall = run(run_dir, algorithm, seed, args.workers, overrides)
            h = held_out(run_dir)
            diff = h.get("difference") or {}
            mean = diff.get("mean")
            ci = "-" if mean is None else (f"{mean:+.4f} ± {diff['ci95']:.4f}" if diff.get("ci95") is not None
                                           else f"{mean:+.4f}")
            results.setdefault(algorithm, []).append(mean if mean is not None else float("nan"))
            print(f"{algorithm:11s} {seed:4d} {trained(run_dir):6d} {wall:7.0f}  {ci:28s} {h['verdict']:8s} "
                  f"{h['genome'][:70]}", flush=True)
    print()
    print(f"held-out tasks: {', '.join(held_out(base / f'{args.algorithms[0]}-{args.seeds[0]}')['tasks'])}")
    for algorithm, values in results.items():
        ok = [v for v in values if v == v]
        best = max(ok) if ok else float("nan")
        print(f"{algorithm:11s} best held-out score {best:+.4f}, mean over {len(ok)} search seed(s) "
              f"{statistics.fmean(ok) if ok else float('nan'):+.4f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
