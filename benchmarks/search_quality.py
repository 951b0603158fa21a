"""Search quality: the particle GA (cold and warm start), random search and regularized evolution at
the same evaluation budget, judged on held-out tasks against the best tuned reference.

For each algorithm (``--algorithms``, default ``particles particles-warm random regularized``) and each
search seed (at least 3 for an interval), one search with the quickstart config (selection on
``digits-hard`` + ``ill-conditioned``, fitness relative to the best of the tuned references, Adam and
SGD with momentum) and the same slots per timestep: the same number of evaluations.  ``particles``
starts cold (a random initial population), ``particles-warm`` puts ``WARM`` (zoo genomes) and
mutants of them into it; ``random`` fills each slot with a fresh random genome instead of a mutant,
``regularized`` mutates the best of a random sample of its population and retires the oldest (aging
evolution); all use the same evaluator, retries, cache, elimination and validation.  The winner (the
top of the leaderboard) is validated on the held-out suite tasks with 3 seeds against the best
reference per seed.  Prints per run: evaluations trained, wall seconds, the winner's held-out score
(mean over held-out tasks and seeds of ``score - best reference's score``; for the suite's
``log_loss`` tasks the log of the loss ratio: > 0 beats the references) with its 95% interval and
verdict; then a table per algorithm: the mean held-out score over the search seeds with its 95%
interval (t over the seeds), the best, and how many winners were ``better``.

Usage: ``python benchmarks/search_quality.py [--seeds 0 1 2] [--algorithms A ...] [--workers 2] [--keep DIR]
[overrides ...]``
(about 1.5-3 minutes per search on 2 cores with the default budget, so about 30 minutes for the full
table; ``--quick`` shrinks each search to a smoke test).
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

# the horizon check is left out: it asks a different question (does the ranking hold at 4x the steps)
BUDGET = ["run.report=false", "validation.candidates=1", "elimination.candidates=2", "validation.horizon_factor=0"]
WARM = '["adam", "momentum"]'
ALGORITHMS = {"particles": ("particles", ["search.seed_genomes=[]"]),
              "particles-warm": ("particles", [f"search.seed_genomes={WARM}"]),
              "random": ("random", ["search.seed_genomes=[]"]),
              "regularized": ("regularized", ["search.seed_genomes=[]"])}
QUICK = ["search.particles=3", "search.timesteps=2", "search.mutants=3", "search.init_factor=3",
         "search.reeval_top=0"]


def run(run_dir: Path, variant: str, seed: int, workers: int, overrides: list[str]) -> float:
    algorithm, extra = ALGORITHMS[variant]
    cmd = [sys.executable, "-m", "deapnos.cli", "run", "--config", "quickstart", "--run-dir", str(run_dir),
           "--backend", "pool", "--workers", str(workers), "--algorithm", algorithm, "--seed", str(seed),
           *extra, *overrides]
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


def table(results: dict[str, list[float]], verdicts: dict[str, list[str]]) -> str:
    """The comparison: per algorithm, the mean held-out score over the search seeds ± 95% interval."""
    from deapnos.evaluate.stats import interval
    lines = ["| algorithm | search seeds | held-out vs best reference: mean ± 95% CI | best | winners better |",
             "|---|---|---|---|---|"]
    for algorithm, values in results.items():
        ok = [v for v in values if v == v]
        # a winner that failed on a held-out seed has no difference: counted, not averaged
        seeds = f"{len(values)}" + (f" ({len(values) - len(ok)} winner(s) failed a held-out seed)"
                                    if len(ok) < len(values) else "")
        better = sum(1 for v in verdicts.get(algorithm, []) if v == "better")
        if not ok:
            lines.append(f"| {algorithm} | {seeds} | - | - | {better}/{len(values)} |")
            continue
        iv = interval(ok)
        ci = f"{iv.mean:+.4f} ± {iv.half_width:.4f}" if iv.n > 1 else f"{iv.mean:+.4f} (1 seed)"
        lines.append(f"| {algorithm} | {seeds} | {ci} | {max(ok):+.4f} | {better}/{len(values)} |")
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--algorithms", nargs="+", default=list(ALGORITHMS), choices=list(ALGORITHMS))
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
    print(f"{'algorithm':14s} {'seed':>4s} {'evals':>6s} {'wall s':>7s}  {'held-out vs best ref (95% CI)':30s} "
          f"verdict  winner")
    results: dict[str, list[float]] = {}
    verdicts: dict[str, list[str]] = {}
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
            verdicts.setdefault(algorithm, []).append(h["verdict"])
            print(f"{algorithm:14s} {seed:4d} {trained(run_dir):6d} {wall:7.0f}  {ci:30s} {h['verdict']:8s} "
                  f"{h['genome'][:70]}", flush=True)
    print()
    print(f"held-out tasks: {', '.join(held_out(base / f'{args.algorithms[0]}-{args.seeds[0]}')['tasks'])}")
    print(table(results, verdicts))
    return 0


if __name__ == "__main__":
    sys.exit(main())
