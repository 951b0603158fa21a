"""The particle algorithm's bookkeeping with a fake evaluator (no training): slots, retries, moves,
aging, restarts, compat, acceptance, hall of fame, random search."""
from __future__ import annotations

import hashlib
import json

import pytest
import torch

from deapnos.context import Context
from deapnos.search.config import config_from_dict
from deapnos.search.runner import SearchRun
from deapnos.search.store import RunStore

torch.set_num_threads(1)


def _h(text: str) -> float:
    return int(hashlib.sha256(text.encode()).hexdigest()[:8], 16) / 0xFFFFFFFF


class FakeMap:
    """Scores a genome by a hash of its text; ``fail`` of them (by hash) are screened out."""

    def __init__(self, fail=0.0, constant=None, seed_noise=None):
        self.fail, self.constant, self.calls, self.items = fail, constant, 0, 0
        self.seed_noise = seed_noise

    def __call__(self, fn, items, on_result=None):
        self.calls += 1
        out = []
        for i, item in enumerate(items):
            self.items += 1
            u = _h(item["genome"] + f"/{item['seed']}")
            if self.seed_noise is not None:      # a genome's quality plus a little seed noise
                u = (1 - self.seed_noise) * _h(item["genome"]) + self.seed_noise * u
            ok = u >= self.fail
            res = {"genome": item["genome"], "task": item["task"], "seed": item["seed"],
                   "status": "ok" if ok else "screened_out", "seconds": 0.0, "worker": "fake",
                   "fitness": (self.constant if self.constant is not None else u) if ok else None}
            if on_result:
                on_result(i, res)
            out.append(res)
        return out


@pytest.fixture(scope="module")
def env():
    from deapnos import plugins
    pm = plugins.get_plugin_manager(["sphere"], autoload=False)
    space = plugins.build_space(pm)
    return pm, space, plugins.integrity_checks(pm)


def search(env, tmp_path, fake, *overrides, name="run"):
    pm, space, checks = env
    cfg = config_from_dict({"search": {"particles": 3, "timesteps": 4, "mutants": 3, "init_factor": 2,
                                       "init_task": "digits", "task": "digits"},
                            "elimination": {"enabled": False}, "fitness": {"relative": False}},
                           list(overrides))
    store = RunStore(tmp_path / name, create=True)
    ctx = Context.from_manager(pm, space=space, checks=checks, tasks={})
    return SearchRun(cfg, store, None, ctx, map_fn=fake), store


def rows(store, t=None):
    out = store.read_particles()
    return [r for r in out if t is None or r["timestep"] == t]


def test_one_map_per_round_and_slot_retries(env, tmp_path):
    fake = FakeMap(fail=0.4)
    s, store = search(env, tmp_path, fake, "search.attempts=3")
    s.run()
    log = store.read_log()
    mutants = [r for r in log if r.get("kind") == "mutant" and r["event"] == "evaluation"]
    # slots: every (timestep, particle, slot) has 1..3 attempts; retries only after a failure
    by_slot = {}
    for r in mutants:
        by_slot.setdefault((r["timestep"], r["particle"], r["slot"]), []).append(r)
    assert len(by_slot) == 4 * 3 * 3
    for attempts in by_slot.values():
        attempts.sort(key=lambda r: r["attempt"])
        assert [r["attempt"] for r in attempts] == list(range(1, len(attempts) + 1))
        assert all(r["status"] != "ok" for r in attempts[:-1])
        assert attempts[-1]["status"] == "ok" or len(attempts) == 3
    assert any(len(a) > 1 for a in by_slot.values())
    # the init batch, then per timestep at most `attempts` maps (+ re-evaluation maps when enabled)
    assert fake.calls <= 1 + 4 * 3


def test_particle_moves_to_its_best_child(env, tmp_path):
    s, store = search(env, tmp_path, FakeMap(), "search.max_age=0")
    s.run()
    log = [r for r in store.read_log() if r["event"] == "evaluation" and r.get("kind") == "mutant"]
    for t in range(1, 5):
        for row in rows(store, t):
            scores = row["child_scores"]
            best = max(range(len(scores)), key=lambda k: (scores[k], -k))
            assert row["chosen"] == best and row["moved"]
            child = [r for r in log if r["timestep"] == t and r["particle"] == row["particle"] and r["slot"] == best]
            assert child[-1]["genome"] == row["genome"] and row["fitness"] == scores[best]


def test_aging_restarts_a_stuck_particle(env, tmp_path):
    # every genome scores the same: nothing ever improves, so every particle ages out
    s, store = search(env, tmp_path, FakeMap(constant=0.5), "search.max_age=1")
    s.run()
    restarted = [r for r in rows(store) if r.get("restarted")]
    assert restarted, "no particle restarted"
    for r in restarted:
        assert r["age"] > 1 and r["restarts"] >= 1 and r["fitness"] == 0.5 and r["restart_genome"] != r["genome"]
        assert r["timestep"] < 4            # never after the last timestep
    log = store.read_log()
    # a restarted particle is evaluated in the next timestep, with its new genome
    own = {(x["timestep"], x["particle"]): x["genome"] for x in log if x.get("kind") == "particle"}
    for r in restarted:
        assert own[(r["timestep"] + 1, r["particle"])] == r["restart_genome"]


def test_restart_from_the_hall_of_fame(env, tmp_path):
    s, store = search(env, tmp_path, FakeMap(constant=0.5), "search.max_age=1", "search.restart=hof")
    parents = []
    real = s.new_mutant

    def spy(parent, meta):
        if meta["kind"] == "restart":
            parents.append(parent.to_text())
        return real(parent, meta)
    s.new_mutant = spy
    s.run()
    assert s.state.stats["restarts"] >= 1 and len(parents) == s.state.stats["restarts"]
    members = {e["genome"] for e in s.state.hof.entries.values()}
    assert set(parents) <= members


def test_compat_never_ages_and_always_moves(env, tmp_path):
    s, store = search(env, tmp_path, FakeMap(constant=0.5), "search.max_age=1", "run.compat=true")
    s.run()
    assert not any(r.get("restarted") for r in rows(store))
    assert all(r["moved"] for r in rows(store) if r["timestep"] > 0)


def test_improve_acceptance_never_gets_worse(env, tmp_path):
    s, store = search(env, tmp_path, FakeMap(), "search.acceptance=improve", "search.max_age=0")
    s.run()
    for p in range(3):
        fit = [r["fitness"] for r in sorted(rows(store), key=lambda r: r["timestep"]) if r["particle"] == p
               and r["fitness"] is not None]
        assert fit == sorted(fit)


def test_hall_of_fame_and_reevaluation(env, tmp_path):
    s, store = search(env, tmp_path, FakeMap(seed_noise=0.02), "search.reeval_top=2", "search.reeval_seeds=[1, 2]")
    s.run()
    hof = json.loads((store.dir / "hall_of_fame.json").read_text())
    means = [e["mean"] for e in hof]
    assert means == sorted(means, reverse=True)
    assert all(e["n"] == 3 for e in hof[:2])           # the top is scored with all seeds
    assert any(r.get("kind") == "reeval" for r in store.read_log())


def test_no_genome_is_trained_twice(env, tmp_path):
    s, store = search(env, tmp_path, FakeMap())
    s.run()
    trained = [r for r in store.read_log() if r["event"] == "evaluation" and not r["cached"]]
    keys = [(r["rep"], r["task"], r["seed"]) for r in trained]
    assert len(keys) == len(set(keys))
    assert s.cache.summary()["lookups"] > 0


def test_random_search_same_budget(env, tmp_path):
    a, sa = search(env, tmp_path, FakeMap(fail=0.3), name="p")
    a.run()
    b, sb = search(env, tmp_path, FakeMap(fail=0.3), "run.algorithm=random", name="r")
    b.run()
    slots = lambda st: {(r["timestep"], r["particle"], r["slot"]) for r in st.read_log()   # noqa: E731
                        if r["event"] == "evaluation" and r.get("kind") in ("mutant", "random")}
    assert slots(sa) == slots(sb)
    assert {r.get("kind") for r in sb.read_log() if r["event"] == "evaluation"} <= {"init", "random", "particle"}
