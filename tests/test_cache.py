"""The global dedup cache: canonical keys, fingerprints, equivalent genomes trained once."""
from __future__ import annotations

import pickle

import pytest
import torch

from deapnos.search.cache import DedupCache, canonical_key, canonical_text, fingerprint
from deapnos.search.evaluator import EvalRequest, Evaluator
from deapnos.search.store import RunStore
from deapnos.space import Genome

torch.set_num_threads(1)
P = Genome.parse


@pytest.mark.parametrize("a, b", [
    ("none ~ add(g, v_hat)", "none ~ add(v_hat, id(g))"),
    ("none ~ mul(sqrt(g), v_hat)", "none ~ mul(v_hat, id(id(sqrt(g))))"),
    ("none ~ decay(a1, decay(a2, g))", "none ~ decay(a2, decay(id(a1), g))"),
    ("none ~ decay(max(a3, a1), g)", "none ~ decay(max(a1, a3), g)"),
    ("none ~ neg(neg(g))", "none ~ g"),
    ("none ~ abs(abs(neg(g)))", "none ~ abs(g)"),
    ("none ~ abs(sqrt(g))", "none ~ sqrt(g)"),
    ("none ~ relu(g2)", "none ~ g2"),
    ("none ~ max(v_hat, v_hat)", "none ~ v_hat"),
    ("none ~ mul(one, g)", "none ~ g"),
    ("none ~ g | lr = mul(one, id(a1))", "none ~ g | lr = a1"),
    ("nest ~ add(g, v_hat) | flip", "nest ~ add(v_hat, g) | flip"),
])
def test_equivalent_encodings_share_a_key(a, b):
    assert canonical_text(P(a)) == canonical_text(P(b))
    assert canonical_key(P(a)) == canonical_key(P(b))


@pytest.mark.parametrize("a, b", [
    ("none ~ add(g, v_hat)", "none ~ add(g, v_hat) | flip"),          # flip is part of the key
    ("none ~ add(g, v_hat)", "mom ~ add(g, v_hat)"),                  # so is the momentum kind
    ("none ~ add(g, v_hat)", "none ~ add(g, v_hat) | lr = a1"),       # and the schedule
    ("none ~ sub(g, v_hat)", "none ~ sub(v_hat, g)"),                 # sub does not commute
    ("none ~ max(drop50(g), drop50(g))", "none ~ drop50(g)"),         # two independent dropouts
    ("none ~ decay(a1, g)", "none ~ decay(a2, g)"),
])
def test_different_optimizers_get_different_keys(a, b):
    assert canonical_key(P(a)) != canonical_key(P(b))


def test_fingerprint_sees_behaviour():
    fp = fingerprint(P("none ~ add(g, v_hat)"))
    assert fp is not None
    assert fp == fingerprint(P("none ~ add(v_hat, g)"))
    assert fp == fingerprint(P("none ~ add(id(v_hat), g)"))
    assert fingerprint(P("none ~ mul(two, g)")) == fingerprint(P("none ~ add(g, g)"))   # not caught by the key
    assert fp != fingerprint(P("none ~ add(g, qh_v)"))
    assert fp != fingerprint(P("none ~ add(g, v_hat) | flip"))
    assert fp != fingerprint(P("mom ~ add(g, v_hat)"))
    assert fingerprint(P("none ~ decay(a9, g)")) != fingerprint(P("none ~ decay(a1, g)"))
    assert fingerprint(P("none ~ exp(exp(exp(g2)))")) is None        # non-finite: no fingerprint


def test_cache_skips_a_reencoded_duplicate():
    cache = DedupCache(use_fingerprint=False)
    a = P("none ~ add(g, v_hat)")
    lk = cache.check(a)
    assert not lk.duplicate
    cache.add(a, lk)
    dup = cache.check(P("none ~ add(v_hat, id(g))"))
    assert dup.duplicate and dup.by == "key" and dup.rep == lk.rep
    other = cache.check(P("none ~ add(g, qh_v)"))
    assert not other.duplicate
    s = cache.summary()
    assert s["lookups"] == 3 and s["key_hits"] == 1 and s["hit_rate"] == pytest.approx(1 / 3)


def test_fingerprint_duplicates_map_to_the_first_genome():
    cache = DedupCache(use_fingerprint=True)
    first = P("none ~ mul(two, g)")
    cache.add(first, cache.check(first))
    hit = cache.check(P("none ~ add(g, g)"))
    assert hit.duplicate and hit.by == "fingerprint"
    assert hit.rep == canonical_key(first)
    assert cache.summary()["fingerprint_hits"] == 1


def test_cache_pickles_with_its_results():
    cache = DedupCache()
    g = P("none ~ add(g, v_hat)")
    lk = cache.add(g)
    cache.put(lk.rep, "digits", 0, {"status": "ok", "fitness": 0.5})
    again = pickle.loads(pickle.dumps(cache))
    assert again.get(lk.rep, "digits", 0)["fitness"] == 0.5
    assert again.seen(P("none ~ add(v_hat, g)"))


class _CountingMap:
    """A map seam that records what would be sent to workers (no training)."""

    def __init__(self):
        self.sent = []

    def __call__(self, fn, items, on_result=None):
        out = []
        for i, item in enumerate(items):
            self.sent.append(item)
            res = {"genome": item["genome"], "task": item["task"], "seed": item["seed"], "status": "ok",
                   "fitness": 0.1 * len(self.sent), "seconds": 0.01, "worker": "fake"}
            if on_result:
                on_result(i, res)
            out.append(res)
        return out


def test_equivalent_genomes_are_trained_once(tmp_path):
    """Through the evaluator: the re-encoded duplicate, in the same batch or a later one, is served
    from the cache and logged as a cached attempt."""
    cache = DedupCache(use_fingerprint=False)
    store = RunStore(tmp_path / "run", create=True)
    fake = _CountingMap()
    ev = Evaluator(None, store, cache, {}, map_fn=fake)
    a, b = P("none ~ add(g, v_hat)"), P("none ~ add(v_hat, id(g))")
    reps = [cache.add(a).rep, cache.lookup(b).rep]
    assert reps[0] == reps[1]
    reqs = [EvalRequest(a.to_text(), reps[0], "digits", 0, 0), EvalRequest(b.to_text(), reps[1], "digits", 0, 1)]
    out = ev.run(reqs)
    assert len(fake.sent) == 1
    assert out[0]["fitness"] == out[1]["fitness"] and out[1]["cached"] and not out[0]["cached"]
    out2 = ev.run([EvalRequest(b.to_text(), reps[1], "digits", 0, 2),
                   EvalRequest(b.to_text(), reps[1], "digits", 1, 3)])   # another seed is trained
    assert len(fake.sent) == 2 and out2[0]["cached"] and not out2[1]["cached"]
    assert cache.summary()["result_hits"] == 2
    log = store.read_log()
    assert [r["seq"] for r in log] == [0, 1, 2, 3]
    assert [r["cached"] for r in log] == [False, True, True, False]
