"""Search scaling: the same small search, serial and with SCOOP on 2 workers, side by side.

Prints:

* wall time of the SCOOP run with 2 workers over the serial run (target: <= 0.65), end to end (the
  ``deapnos run`` command, SCOOP start-up included) and for the search alone (``summary.json``);
* the share of evaluation time spent on candidates later rejected: evaluations that failed
  (screened out by the LR screen, diverged, error, timeout), and, among the search's candidates, the
  ones never chosen by their particle;
* the dedup cache: lookups, canonical-key and fingerprint hits, hit rate, results reused;
* whether both runs wrote the same evaluation log (same seed -> same search, whatever the backend).

Usage: ``python benchmarks/search_scaling.py [--workers 2] [--keep DIR] [overrides ...]``.
The default search is the quickstart shrunk to about a minute of serial evaluation on one core.
Exit status 1 when the ratio exceeds the target.
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

SMALL = ["search.particles=4", "search.mutants=4", "search.timesteps=2", "search.init_factor=4",
         "search.attempts=2", "search.reeval_top=0", "elimination.candidates=2", "elimination.baselines=[\"adam\"]",
         'elimination.rungs=[{task="digits", seeds=[0, 1], keep=1.0}]', "run.report=false"]
TARGET = 0.65
VOLATILE = {"seconds", "worker", "device", "time"}


def run(run_dir: Path, backend: str, workers: int, overrides: list[str]) -> float:
    cmd = [sys.executable, "-m", "deapnos.cli", "run", "--config", "quickstart", "--run-dir", str(run_dir),
           "--backend", backend, "--workers", str(workers), *overrides]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        sys.stderr.write(proc.stdout + proc.stderr)
        raise SystemExit(f"{backend} run failed (exit {proc.returncode})")
    return wall


def log_rows(run_dir: Path) -> list[dict]:
    rows = [json.loads(x) for x in (run_dir / "evaluations.jsonl").read_text().splitlines() if x.strip()]
    return sorted(({k: v for k, v in r.items() if k not in VOLATILE} for r in rows), key=lambda r: r["seq"])


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--keep", metavar="DIR", help="keep both run folders under DIR")
    parser.add_argument("overrides", nargs="*", help="extra config overrides (section.field=value)")
    args = parser.parse_args(argv)
    from deapnos.report import log_stats
    from deapnos.search.store import RunStore
    overrides = SMALL + list(args.overrides)
    base = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="deapnos-scaling-"))
    base.mkdir(parents=True, exist_ok=True)
    print(f"search: quickstart with {' '.join(overrides)}")
    print(f"machine: {os.cpu_count()} CPU(s); run folders under {base}")
    walls, searches, stats = {}, {}, {}
    for backend, workers in (("serial", 1), ("scoop", args.workers)):
        run_dir = base / f"{backend}"
        walls[backend] = run(run_dir, backend, workers, overrides)
        summary = json.loads((run_dir / "summary.json").read_text())
        searches[backend] = summary["wall_seconds"]
        store = RunStore(run_dir)
        stats[backend] = (log_stats(store.read_log(), store.read_particles()), summary)
        print(f"  {backend:6s} x{workers}: {walls[backend]:7.1f} s end to end, {searches[backend]:7.1f} s search")
    ratio = walls["scoop"] / walls["serial"]
    ratio_search = searches["scoop"] / searches["serial"]
    st, summary = stats["serial"]
    cache = summary["cache"]
    same = log_rows(base / "serial") == log_rows(base / "scoop")
    print()
    print(f"wall time, SCOOP with {args.workers} workers / serial: {ratio:.3f} end to end "
          f"({ratio_search:.3f} for the search alone); target <= {TARGET}: {'PASS' if ratio <= TARGET else 'FAIL'}")
    print(f"evaluations: {st['trained']} trained, {st['cached']} answered by the cache, status {st['status']}")
    print(f"share of evaluation time on candidates later rejected: {st['failed_share']:.1%} on failed "
          f"evaluations (screened out / diverged / error / timeout); {st['not_chosen_share']:.1%} of the search "
          f"candidates' time on candidates never chosen by their particle")
    print(f"integrity rejections before training: {st['integrity_rejections']} ({st['integrity_seconds']:.2f} s); "
          f"duplicates rejected before training: {st['duplicates_rejected']}")
    print(f"dedup cache: {cache['lookups']} lookups, {cache['key_hits']} canonical-key hits, "
          f"{cache['fingerprint_hits']} fingerprint hits, hit rate {cache['hit_rate']:.3f}; "
          f"{cache['result_hits']} results reused")
    print(f"same evaluation log with both backends: {same}")
    return 0 if ratio <= TARGET and same else 1


if __name__ == "__main__":
    sys.exit(main())
