"""The refactor guard: a search with a fixed seed writes the evaluation log and hall of fame that
the code wrote before the architecture changed (tests/data/golden, made with the tiny config of
test_search_run.py on commit c999aa4).  Floats compare to 1e-9 relative, so that a different CPU
with the same arithmetic passes; everything else (order, genomes, keys, statuses) is exact.

Regenerate only for a change that is meant to alter the search: python tests/test_same_log.py OUT
"""
from __future__ import annotations

import json
import math
import os
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from test_search_run import hof, log_rows, run_in_process, tiny_config  # noqa: E402

GOLDEN = Path(__file__).resolve().parent / "data" / "golden"


def same(a, b, path="") -> list[str]:
    """Differences between two JSON values, floats to 1e-9 relative."""
    if isinstance(a, float) or isinstance(b, float):
        if isinstance(a, (int, float)) and isinstance(b, (int, float)) and \
                (math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-12) or (math.isnan(a) and math.isnan(b))):
            return []
        return [f"{path}: {a!r} != {b!r}"]
    if isinstance(a, dict) and isinstance(b, dict):
        out = [f"{path}.{k}: only in {'the golden' if k in a else 'this'} log" for k in sorted(set(a) ^ set(b))]
        for k in sorted(set(a) & set(b)):
            out += same(a[k], b[k], f"{path}.{k}")
        return out
    if isinstance(a, list) and isinstance(b, list):
        if len(a) != len(b):
            return [f"{path}: {len(a)} items != {len(b)}"]
        return [d for i, (x, y) in enumerate(zip(a, b)) for d in same(x, y, f"{path}[{i}]")]
    return [] if a == b else [f"{path}: {a!r} != {b!r}"]


def search(tmp: Path, algorithm: str) -> Path:
    old = os.environ.get("DEAPNOS_DISABLE_PLUGIN_AUTOLOAD")
    os.environ["DEAPNOS_DISABLE_PLUGIN_AUTOLOAD"] = "1"
    try:
        assert run_in_process(tmp / "run", tiny_config(tmp), f"run.algorithm={algorithm}") == 0
    finally:
        if old is None:
            del os.environ["DEAPNOS_DISABLE_PLUGIN_AUTOLOAD"]
        else:
            os.environ["DEAPNOS_DISABLE_PLUGIN_AUTOLOAD"] = old
    return tmp / "run"


@pytest.mark.parametrize("algorithm", ["particles", "random"])
def test_same_seed_writes_the_golden_log(algorithm, tmp_path):
    run = search(tmp_path, algorithm)
    golden = [json.loads(x) for x in (GOLDEN / f"tiny-{algorithm}.jsonl").read_text().splitlines()]
    diffs = same(golden, log_rows(run), "log")
    diffs += same(json.loads((GOLDEN / f"tiny-{algorithm}-hof.json").read_text()), hof(run), "hall_of_fame")
    assert not diffs, f"{len(diffs)} difference(s) from the golden {algorithm} search:\n" + "\n".join(diffs[:20])


def test_the_comparison_sees_a_changed_fitness():
    row = json.loads((GOLDEN / "tiny-particles.jsonl").read_text().splitlines()[-1])
    changed = dict(row, seq=row["seq"] + 1)
    assert same([row], [changed]) == [f"[0].seq: {row['seq']!r} != {row['seq'] + 1!r}"]
    assert same({"f": 0.5}, {"f": 0.5 + 1e-6}) and not same({"f": 0.5}, {"f": 0.5 + 1e-12})


if __name__ == "__main__":
    out = Path(sys.argv[1])
    for algo in ("particles", "random"):
        tmp = out / f"tmp-{algo}"
        tmp.mkdir(parents=True, exist_ok=True)
        run = search(tmp, algo)
        (out / f"tiny-{algo}.jsonl").write_text("".join(json.dumps(r, sort_keys=True) + "\n" for r in log_rows(run)))
        (out / f"tiny-{algo}-hof.json").write_text(json.dumps(hof(run), indent=1, sort_keys=True))
