"""The refactor guard, portable across machines.

Trained floats differ in their last bits from one CPU to the next, and training amplifies that until a
search takes another path; so nothing here compares a trained number with a file.
- tests/data/golden/draws.json holds only what no training touches: the random genomes and the mutants
  a seeded search draws (pure RNG and tree building).  It fails when a change alters the draws.
- The whole search (log and hall of fame) is checked by running it twice on the machine under test.

Regenerate the golden draws only for a change that is meant to alter them (a new primitive, a new
operator): python tests/test_same_log.py
"""
from __future__ import annotations

import json
import random
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from test_search_run import hof, log_rows, run_in_process, tiny_config  # noqa: E402

GOLDEN = Path(__file__).resolve().parent / "data" / "golden" / "draws.json"
PARENTS = ("adam", "opt10", "signsgd")


def draws(seed: int = 5, n: int = 24) -> dict:
    """Random genomes and mutants of zoo parents drawn from ``seed`` in the default search space."""
    from deapnos import zoo
    from deapnos.search.config import load_config
    from deapnos.search.mutation import MutationContext, make_mutant, random_genome
    from deapnos.space import builtin_space

    cfg = load_config("quickstart")
    space = builtin_space(False)
    ctx = MutationContext(space, random.Random(seed), cfg.mutation, cfg.init, tuple(cfg.search.momentum_kinds),
                          False)
    randoms = [random_genome(ctx).to_text() for _ in range(n)]
    mutants = {}
    for name in PARENTS:
        if name not in zoo.names():
            continue
        parent = zoo.get(name, space=space)
        out = []
        for _ in range(n // 3):
            child, op, _ = make_mutant(parent, ctx)
            out.append([op, child.to_text() if child is not None else None])
        mutants[name] = out
    return {"seed": seed, "random": randoms, "mutants": mutants}


def test_the_seeded_draws_match_the_golden_file():
    golden = json.loads(GOLDEN.read_text(encoding="utf-8"))
    now = draws(golden["seed"], len(golden["random"]))
    assert now["random"] == golden["random"]
    assert now["mutants"] == golden["mutants"]


def test_the_draws_depend_on_the_seed():
    assert draws(5, 6)["random"] != draws(6, 6)["random"]


@pytest.mark.parametrize("algorithm", ["random"])
def test_same_seed_same_search_on_this_machine(algorithm, tmp_path, monkeypatch):
    """Determinism: the same seed twice gives the same log and hall of fame, record for record.
    (particles: test_search_run.py::test_same_seed_same_log_serial; regularized: test_search_algorithms.py)"""
    monkeypatch.setenv("DEAPNOS_DISABLE_PLUGIN_AUTOLOAD", "1")
    runs = []
    for name in ("a", "b"):
        assert run_in_process(tmp_path / name, tiny_config(tmp_path), f"run.algorithm={algorithm}") == 0
        runs.append(tmp_path / name)
    first, second = (log_rows(r) for r in runs)
    assert len(first) > 10 and first == second
    assert hof(runs[0]) == hof(runs[1])


if __name__ == "__main__":
    GOLDEN.parent.mkdir(parents=True, exist_ok=True)
    GOLDEN.write_text(json.dumps(draws(), indent=1) + "\n", encoding="utf-8")
    print(f"wrote {GOLDEN}")
