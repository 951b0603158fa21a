"""What ``deapnos run`` prints when a search has finished: the run folder, the leaderboard with each
candidate's difference to the best reference, the held-out validation and where the report is."""
from __future__ import annotations

import sys
from pathlib import Path

from deapnos.evaluate.stats import difference_text
from deapnos.search.store import RunStore, StoreError


def print_outcome(run_dir: Path) -> None:
    try:
        status = RunStore(run_dir).read_status() or {}
    except StoreError as exc:
        print(f"warning: {exc}", file=sys.stderr)
        status = {}
    board = status.get("leaderboard") or []
    print(f"run folder: {run_dir}")
    if board:
        print(f"leaderboard on {board[0].get('task')} (absolute mean: final score over seeds; Δ: relative mean, "
              f"paired difference to {board[0].get('reference')} ± 95% interval):")
        for row in board:
            ci = row.get("vs_reference_ci")
            vs = ""
            if ci and not row["baseline"]:
                vs = f"  Δ {difference_text(ci)} ({row.get('verdict')})"
            mean = "failed" if row["mean"] is None else f"{row['mean']:.4f}"
            failed = f" (failed on {row['failed']} seed(s))" if row.get("failed") else ""
            print(f"  {row['rank']:2d}. {row['label']:10s} {mean}{vs}{failed}  {row['genome']}")
    print_validation(run_dir)
    if (run_dir / "report.md").exists():
        print(f"report: {run_dir / 'report.md'}")


def print_validation(run_dir: Path) -> None:
    """The held-out validation in a few lines (validation.json)."""
    try:
        val = RunStore(run_dir).read_json("validation.json", {}, kind=dict)
    except StoreError as exc:
        print(f"warning: {exc}", file=sys.stderr)
        return
    if not val.get("rows"):
        return
    print(f"held-out validation on {', '.join(val['tasks'])} (seeds {val['seeds']}): score minus the best tuned "
          f"reference's ({val['reference']}) per seed, relative mean ± 95% interval; 'better' only when the "
          "interval excludes zero")
    for row in val["rows"]:
        print(f"  {row['label']:10s} {difference_text(row['overall'].get('difference')):20s} "
              f"{row['overall']['verdict']}")
    h = val.get("horizon") or {}
    if h.get("rows"):
        holds = {True: "holds", False: "does not hold", None: "cannot be judged"}[h.get("ranking_holds")]
        print(f"horizon check at {h['factor']}x the steps: the ranking {holds}")
        for row in h["rows"]:
            print(f"  {row['label']:10s} {difference_text(row['overall'].get('difference')):20s} "
                  f"{row['overall']['verdict']}")
