"""The seam for search algorithms: the registry, strategies over a run object, regularized evolution.

Regularized evolution runs for real (DEAP trees, tiny training on `digits`, the tiny config of
test_search_run.py); its oracle rebuilds the births from the evaluation log independently of the code:
the population is always the last P children, and every parent is the best of its sample.
"""
from __future__ import annotations

import json
import os
import signal
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from test_search_particles import FakeMap  # noqa: E402
from test_search_run import hof, log_rows, run_in_process, tiny_config  # noqa: E402
from test_signals import kill_serial_run_mid_way, resume  # noqa: E402

from deapnos.registry import Registry, UnknownNameError  # noqa: E402
from deapnos.search.algorithms import ALGORITHMS, Particles, RegularizedEvolution  # noqa: E402
from deapnos.search.config import config_from_dict  # noqa: E402
from deapnos.search.runner import SearchRun  # noqa: E402
from deapnos.search.store import RunStore, StoreError  # noqa: E402

P, S = 3, 2                       # population and sample of the real runs (tiny: 2 cycles per round)
REGULARIZED = ["run.algorithm=regularized", f"search.population={P}", f"search.sample={S}",
               "fitness.relative=false", "search.timesteps=2"]


# -- the registry and the seam --------------------------------------------------------------------

@pytest.fixture(scope="module")
def env():
    """The run's Context: the sphere plugin's checks, the built-in algorithms and zoo, no tasks."""
    from deapnos.context import build_context
    return build_context(["sphere"], autoload=False)


def fake_run(env, tmp_path, fake, *overrides, algorithms=None, name="run"):
    from deapnos.context import Context
    ctx = env if algorithms is None else Context.from_manager(env.pm, space=env.space, checks=env.checks,
                                                              tasks=env.tasks, algorithms=algorithms)
    cfg = config_from_dict({"search": {"particles": 2, "timesteps": 3, "mutants": 2, "init_factor": 2,
                                       "init_task": "digits", "task": "digits"},
                            "elimination": {"enabled": False}, "validation": {"enabled": False},
                            "fitness": {"relative": False}}, list(overrides))
    store = RunStore(tmp_path / name, create=True)
    return SearchRun(cfg, store, None, ctx, map_fn=fake), store


def test_the_builtin_registry():
    assert ALGORITHMS.names() == ["particles", "random", "regularized"]
    assert ALGORITHMS.get("regularized") is RegularizedEvolution
    with pytest.raises(UnknownNameError, match="search algorithm 'regularised'.*regularized"):
        ALGORITHMS.get("regularised")


def test_the_run_takes_its_strategy_from_the_given_registry(env, tmp_path):
    calls = []

    class Recording(Particles):
        def step(self, t):
            calls.append(t)
            super().step(t)

    reg = Registry("search algorithm")
    reg.register("particles", Recording)
    run, _ = fake_run(env, tmp_path, FakeMap(), algorithms=reg)
    assert type(run.algorithm) is Recording
    run.run()
    assert calls == [1, 2, 3]
    with pytest.raises(UnknownNameError, match="search algorithm 'regularized'"):
        fake_run(env, tmp_path, FakeMap(), "run.algorithm=regularized", algorithms=reg, name="other")


def test_the_old_signature_warns_and_still_runs(env, tmp_path):
    """SearchRun(cfg, store, backend, pm, space, checks, map_fn=..., algorithms=...): the form before
    the Context, deprecated; it runs the same search as the Context form."""
    new, _ = fake_run(env, tmp_path, FakeMap(), name="new")
    new.run()
    cfg = new.cfg
    store = RunStore(tmp_path / "old", create=True)
    with pytest.warns(DeprecationWarning, match=r"SearchRun\(cfg, store, backend, pm, space, .*is deprecated"):
        old = SearchRun(cfg, store, None, None, env.space, env.checks, map_fn=FakeMap(), algorithms=ALGORITHMS)
    assert old.space is env.space and old.checks is env.checks and type(old.algorithm) is Particles
    old.run()
    assert hof(tmp_path / "old") == hof(tmp_path / "new")
    with pytest.raises(TypeError, match="unexpected or repeated keyword argument 'colour'"):
        SearchRun(cfg, store, None, None, env.space, colour=1)


def test_run_ctx_is_the_deprecated_name_of_mutation_ctx(env, tmp_path):
    from deapnos.search.mutation_context import MutationContext
    run, _ = fake_run(env, tmp_path, FakeMap())
    assert isinstance(run.mutation_ctx, MutationContext) and run.mutation_ctx.rng is run.rng
    with pytest.warns(DeprecationWarning, match="SearchRun.ctx is deprecated: use SearchRun.mutation_ctx"):
        assert run.ctx is run.mutation_ctx
    assert "mutate" not in vars(run.toolbox) and "individual" not in vars(run.toolbox)   # only `map` is used


class Declining:
    """Every evaluation scores lower than the one before: the oldest member is always the best."""

    def __init__(self):
        self.n = 0

    def __call__(self, fn, items, on_result=None):
        out = []
        for i, item in enumerate(items):
            self.n += 1
            res = {"genome": item["genome"], "task": item["task"], "seed": item["seed"], "status": "ok",
                   "fitness": 1.0 - 0.01 * self.n, "seconds": 0.0, "worker": "fake"}
            if on_result:
                on_result(i, res)
            out.append(res)
        return out


def test_aging_removes_the_oldest_even_when_it_is_the_best(env, tmp_path):
    run, store = fake_run(env, tmp_path, Declining(), "run.algorithm=regularized", "search.population=3",
                          "search.sample=3")
    run.run()
    pop = run.state.particles
    # 3 initial members + 3 timesteps x 2 rounds x 2 cycles = 15 births; the last 3 remain
    assert [p.index for p in pop] == [12, 13, 14] and run.state.algorithm == {"born": 15}
    best_ever = max(e["scores"]["0"] for e in run.hof.entries.values())
    assert best_ever > max(p.fitness for p in pop)       # a worst-first removal would have kept it
    # with S = P every parent is the best member, which is always the oldest one
    kids = [r for r in store.read_log() if r.get("kind") == "mutant" and r["event"] == "evaluation"]
    assert kids and all(r["parent"] == min(r["sample"]) for r in kids)
    # a resumed run continues the count
    again = SearchRun(run.cfg, store, None, env, map_fn=Declining())
    assert again.resumed and again.algorithm.born == 15 and [p.index for p in again.state.particles] == [12, 13, 14]


def test_a_checkpoint_from_before_the_new_fields_still_loads(env, tmp_path):
    run, store = fake_run(env, tmp_path, FakeMap(), "search.timesteps=1")
    run.run()
    doc = json.loads(store.path("checkpoint.json").read_text())
    assert "algorithm" not in doc["state"]                  # particles: the checkpoint as it was
    fields = doc["config"]["fields"]
    for key in ("search.population", "search.sample"):      # what an older deapnos wrote
        del fields[key]
    doc["config"]["sha256"] = "0" * 64
    store.path("checkpoint.json").write_text(json.dumps(doc))
    again = SearchRun(run.cfg, store, None, env, map_fn=FakeMap())
    assert again.resumed and again.state.timestep == 1
    # a field that an older run had at another value is still a different config
    fields["search.sample"] = 4
    store.path("checkpoint.json").write_text(json.dumps(doc))
    with pytest.raises(StoreError, match="search.sample: 4 -> 5"):
        SearchRun(run.cfg, store, None, env, map_fn=FakeMap())


def test_a_damaged_algorithm_state_names_the_field(env, tmp_path):
    run, store = fake_run(env, tmp_path, Declining(), "run.algorithm=regularized", "search.timesteps=1")
    run.run()
    doc = json.loads(store.path("checkpoint.json").read_text())
    doc["state"]["algorithm"] = {"born": "many"}
    store.path("checkpoint.json").write_text(json.dumps(doc))
    with pytest.raises(StoreError, match="checkpoint.json: field state.algorithm"):
        SearchRun(run.cfg, store, None, env, map_fn=Declining())


# -- regularized evolution for real ---------------------------------------------------------------

def _search(run_dir: Path, tmp: Path) -> Path:
    old = os.environ.get("DEAPNOS_DISABLE_PLUGIN_AUTOLOAD")
    os.environ["DEAPNOS_DISABLE_PLUGIN_AUTOLOAD"] = "1"
    try:
        assert run_in_process(run_dir, tiny_config(tmp), *REGULARIZED) == 0
    finally:
        if old is None:
            del os.environ["DEAPNOS_DISABLE_PLUGIN_AUTOLOAD"]
        else:
            os.environ["DEAPNOS_DISABLE_PLUGIN_AUTOLOAD"] = old
    return run_dir


@pytest.fixture(scope="module")
def regularized(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("reg")
    return _search(tmp / "run", tmp)


def births(rows: list[dict]) -> list[dict]:
    """Every member ever made, in birth order, from the log alone: the initial genomes by index,
    then per (timestep, round, slot) the last candidate evaluated (fitness -1 when it failed)."""
    evals = [r for r in rows if r["event"] == "evaluation"]
    out = [r for r in sorted((r for r in evals if r.get("kind") == "init"), key=lambda r: r["index"])]
    last: dict = {}
    for r in evals:
        if r.get("kind") == "mutant":
            k = (r["timestep"], r["round"], r["slot"])
            if k not in last or r["attempt"] > last[k]["attempt"]:
                last[k] = r
    out += [last[k] for k in sorted(last)]
    return [{"birth": i, "genome": r["genome"], "row": r,
             "fitness": r["fitness"] if r["status"] == "ok" and r["fitness"] is not None else -1.0}
            for i, r in enumerate(out)]


def test_regularized_population_is_the_last_p_children(regularized):
    rows = log_rows(regularized)
    born = births(rows)
    assert len(born) == P + 2 * 2 * 2                      # tiny: 2 timesteps x 2 rounds x 2 cycles
    parts = [json.loads(x) for x in (regularized / "particles.jsonl").read_text().splitlines()]
    for t in (0, 1, 2):
        members = sorted((r for r in parts if r["timestep"] == t), key=lambda r: r["particle"])
        n = P + 4 * t                                      # births up to the end of timestep t
        want = born[n - P:n]
        assert [m["particle"] for m in members] == [b["birth"] for b in want]
        assert [m["genome"] for m in members] == [b["genome"] for b in want]
        assert [m["fitness"] for m in members] == pytest.approx([b["fitness"] for b in want])
    state = json.loads((regularized / "checkpoint.json").read_text())["state"]
    assert state["algorithm"] == {"born": len(born)}
    assert [p["genome"] for p in state["particles"]] == [b["genome"] for b in born[-P:]]


def test_regularized_parent_is_the_best_of_its_sample(regularized):
    rows = log_rows(regularized)
    born = births(rows)
    kids = [b for b in born if b["row"].get("kind") == "mutant"]
    for kid in kids:
        r = kid["row"]
        before = P + 2 * (2 * (r["timestep"] - 1) + r["round"] - 1)    # births before this round
        sample = r["sample"]
        assert len(sample) == len(set(sample)) == S
        assert all(before - P <= i < before for i in sample), (sample, before)      # drawn from the population
        fit = [born[i]["fitness"] for i in sample]
        assert r["parent"] == sample[fit.index(max(fit))]
        assert kid["genome"] != born[r["parent"]]["genome"]
    # the samples are random, not always the same members
    assert len({tuple(k["row"]["sample"]) for k in kids}) > 1


def test_regularized_same_seed_same_log(regularized, tmp_path):
    again = _search(tmp_path / "again", tmp_path)
    assert log_rows(again) == log_rows(regularized)
    assert hof(again) == hof(regularized)


@pytest.mark.slow      # about 20 s; SIGKILL and resume of the particle GA run in the fast suite
def test_regularized_resumes_after_sigkill(regularized, tmp_path):
    run_dir = tmp_path / "killed"
    proc = kill_serial_run_mid_way(tmp_path, run_dir, *REGULARIZED)
    assert proc.returncode == -signal.SIGKILL
    assert len(log_rows(run_dir)) < len(log_rows(regularized))
    r = resume(run_dir)
    assert r.returncode == 0, r.stderr
    assert log_rows(run_dir) == log_rows(regularized)
    assert hof(run_dir) == hof(regularized)
    assert json.loads((run_dir / "summary.json").read_text())["evaluator"]["resumed"] >= 1
