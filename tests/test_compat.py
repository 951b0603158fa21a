"""Compat mode (``run.compat = true``): one test per item of docs/search.md, "Compat mode".

Each test checks that compat restores the authors' behaviour AND that the default does not, so it
fails when the item is not restored (or when the default picks the bug up)."""
from __future__ import annotations

import math
import random

import pytest
import torch
from deap import gp

from deapnos.distributed import evaluate_payload, make_payload
from deapnos.evaluate.protocol import COMPAT_PROTOCOL, ProtocolConfig, evaluate_genome
from deapnos.optim.schedules import decay_is_valid
from deapnos.search import mutation as M
from deapnos.search.cache import DedupCache
from deapnos.search.config import InitConfig, MutationConfig
from deapnos.space import Genome
from deapnos.space.genome import parse_tree, tree_text
from deapnos.space.psets import build_space, default_space
import deapnos

torch.set_num_threads(1)

COMPAT_SPACE = build_space(compat=True)
SPACE = build_space()


def _ctx(compat: bool, seed: int = 0, space=None):
    space = space or (COMPAT_SPACE if compat else SPACE)
    return M.MutationContext(space, random.Random(seed), MutationConfig(), InitConfig(), ("none", "mom", "nest"),
                             compat)


# -- the space ---------------------------------------------------------------------------------

def test_division_and_power_are_sign_unsafe():
    x, tiny, zero = torch.tensor([1.0]), torch.tensor([-1e-7]), torch.tensor([0.0])
    c, d = COMPAT_SPACE, SPACE
    assert torch.isinf(c.binary["div"].fn(x, tiny)).all() and torch.isfinite(d.binary["div"].fn(x, tiny)).all()
    assert torch.isinf(c.unary["inv"].fn(tiny)).all() and torch.isfinite(d.unary["inv"].fn(tiny)).all()
    assert torch.isinf(c.binary["pow"].fn(zero, -x)).all() and torch.isfinite(d.binary["pow"].fn(zero, -x)).all()
    assert torch.isinf(c.decay_binary["div"].fn(x, tiny)).all()
    assert torch.isfinite(d.decay_binary["div"].fn(x, tiny)).all()
    # and through the compiled optimizer: |0|^-1 = inf in compat, 1e7 when protected
    for space, finite in ((COMPAT_SPACE, False), (SPACE, True)):
        g = Genome.parse("none ~ mul(g, pow(sub(g, g), neg(one)))", space=space)
        p = torch.nn.Parameter(torch.ones(3))
        opt = deapnos.optimizer(g, [p], lr=0.1, total_steps=4, base_schedule="constant")
        p.grad = torch.ones(3)
        opt.step()
        assert bool(torch.isfinite(p).all()) is finite


def test_stateful_ops_take_the_original_forms():
    xs = [torch.tensor([1.0]), torch.tensor([3.0]), torch.tensor([2.0])]
    delta, ema = COMPAT_SPACE.unary["delta"].fn, COMPAT_SPACE.unary["ema"].fn
    state = {}
    assert [delta(x, state=state, t=t).item() for t, x in enumerate(xs)] == [1.0, 2.0, 0.0]   # 1, 3-1, 2-2
    assert not math.isfinite(ema(torch.tensor([2.0]), state={}, t=3).item())      # divides by 1 - 0.95^0 = 0
    state = {}
    assert [SPACE.unary["delta"].fn(x, state=state, t=t).item() for t, x in enumerate(xs)] == [1.0, 2.0, -1.0]


# -- initialisation and mutation ---------------------------------------------------------------

def test_nan_passes_the_decay_validity_check():
    space = default_space()
    space.add_decay("nanny", lambda t, T: torch.where(t == 0, torch.nan, t / T))   # NaN at t = 0 only
    space.build()
    tree = parse_tree("nanny", "decay", space)
    assert M.compat_decay_is_valid(tree, space) and not decay_is_valid(tree, space)
    assert M._decay_valid(_ctx(True, space=space), tree) and not M._decay_valid(_ctx(False, space=space), tree)
    # an out-of-range decay fails in both
    assert not M.compat_decay_is_valid(parse_tree("sub(a1, a2)", "decay", space), space)


def test_decay_mutation_result_is_ignored():
    parent = list(parse_tree("mul(a1, a2)", "decay", COMPAT_SPACE))

    def invalid(ctx):
        n = 0
        for _ in range(60):
            out = M.mutate_expression(ctx, parent, "decay")
            if out is not None and not decay_is_valid(gp.PrimitiveTree(out), ctx.space):
                n += 1
        return n
    assert invalid(_ctx(True, seed=1)) > 0          # e.g. div(a1, a2) or sub(a1, a2) kept as mutated
    assert invalid(_ctx(False, seed=1)) == 0


def test_binary_root_never_moves_its_branch_to_the_first_free_hidden_node():
    text = "none ~ add(g, sqrt(abs(exp(v_hat))))"
    tree = Genome.parse(text, space=COMPAT_SPACE).update
    free = M.free_hidden_nodes(_ctx(True), tree, 2, 11)
    assert [tree_text(gp.PrimitiveTree(s)) if s else None for s in free] == ["abs(exp(v_hat))", "exp(v_hat)",
                                                                            None, None]

    def moves(compat):
        ctx, seen = _ctx(compat, seed=3), set()
        for _ in range(600):
            g = Genome.parse(text, space=ctx.space)
            M.mut_branch(g, ctx)
            seen.add(g.to_text())
        return seen
    compat, default = moves(True), moves(False)
    first, second = "none ~ add(g, abs(exp(v_hat)))", "none ~ add(g, exp(v_hat))"
    assert first not in compat and second in compat        # zeros[20:-1] skips the first free node
    assert first in default


def test_update_trees_stay_within_five_hidden_nodes_and_the_root():
    parent = "none ~ add(sqrt(abs(g)), tanh(exp(neg(v_hat))))"        # 6 ops: the original's limit

    def largest(compat):
        ctx = _ctx(compat, seed=5)
        g = Genome.parse(parent, space=ctx.space)
        return max(M.op_count(M.make_mutant(g, ctx)[0].update) for _ in range(300))
    assert largest(True) <= 6 < largest(False)


def test_maxvalue_is_unreachable_by_mutation():
    def reached(compat):
        ctx = _ctx(compat, seed=10)
        names = set()
        for _ in range(1500):
            g = Genome.parse("none ~ sqrt(g)", space=ctx.space)
            M.mut_op(g, ctx)
            names.add(g.update[0].name)
        return "runmax" in names
    assert not reached(True) and reached(False)


def test_a_unary_root_gets_a_decay_with_p_085():
    def share(compat):
        ctx = _ctx(compat, seed=7)
        unary = with_decay = 0
        for _ in range(600):
            tree = M.random_update_tree(ctx)
            if tree[0].arity == 1:
                unary += 1
                with_decay += tree[1].name == "decay"
        return with_decay / unary
    assert share(True) > 0.7 and share(False) < 0.3


def test_a_mutant_keeps_its_parents_flip_and_no_schedule_mutation():
    parent = Genome.parse("none ~ add(g, sqrt(v_hat)) | flip", space=COMPAT_SPACE)
    assert M.make_mutant(parent, _ctx(True, seed=14))[0].flip is True
    assert M.make_mutant(parent, _ctx(False, seed=14))[0].flip is False
    assert _ctx(True).weights()["schedule"] == 0 < _ctx(False).weights()["schedule"]


# -- dedup -------------------------------------------------------------------------------------

def test_dedup_is_per_particle_exact_text_without_result_reuse():
    a = Genome.parse("none ~ add(g, v_hat)")
    a_flip = Genome.parse("none ~ add(g, v_hat) | flip")
    b = Genome.parse("none ~ add(v_hat, g)")         # the same optimizer, another text
    cache = DedupCache(use_fingerprint=False, compat=True)
    cache.enter(Genome.parse("none ~ g"), 0)
    assert cache.check(Genome.parse("none ~ g"), scope=0).duplicate      # the particle's own start
    lk = cache.check(a, scope=0)
    assert not lk.duplicate
    cache.add(a, lk)
    assert cache.check(a_flip, scope=0).duplicate               # flip is not part of the string
    assert not cache.check(b, scope=0).duplicate                # no canonicalisation
    assert not cache.check(a, scope=1).duplicate                # another particle: trained again
    lk1 = cache.add(a, cache.check(a, scope=1))
    assert lk1.rep != lk.rep                                    # its own representative: not merged
    cache.put(lk.rep, "task", 0, {"status": "ok", "fitness": 0.5})
    assert cache.get(lk.rep, "task", 0) is None                 # no result is reused
    glob = DedupCache(use_fingerprint=False)
    glob.add(a)
    assert glob.check(b, scope=1).duplicate                     # default: one global canonical cache
    glob.put("k", "task", 0, {"status": "ok"})
    assert glob.get("k", "task", 0) is not None


def test_compat_search_uses_the_per_particle_dedup(tmp_path):
    from deapnos.context import build_context
    from deapnos.search.config import config_from_dict
    from deapnos.search.runner import SearchRun
    from deapnos.search.store import RunStore

    def fake_map(fn, items, on_result=None):
        out = []
        for i, item in enumerate(items):
            res = {"genome": item["genome"], "task": item["task"], "seed": item["seed"], "status": "ok",
                   "fitness": 0.5, "seconds": 0.0, "worker": "fake"}
            if on_result:
                on_result(i, res)
            out.append(res)
        return out

    def run(compat):
        cfg = config_from_dict({"search": {"particles": 2, "timesteps": 2, "mutants": 3, "init_factor": 2,
                                           "init_task": "digits", "task": "digits"},
                                "elimination": {"enabled": False}, "fitness": {"relative": False},
                                "validation": {"enabled": False}, "run": {"compat": compat}})
        ctx = build_context(["sphere"], compat=compat, autoload=False)
        s = SearchRun(cfg, RunStore(tmp_path / f"c{compat}", create=True), None, ctx, map_fn=fake_map)
        s.run()
        return s
    s = run(True)
    evals = [r for r in s.store.read_log() if r["event"] == "evaluation" and r.get("kind") == "mutant"]
    assert s.cache.compat and evals
    assert all("#" in r["rep"] for r in evals) and len({r["rep"] for r in evals}) == len(evals)
    assert not any(r.get("cached") for r in s.store.read_log() if r["event"] == "evaluation")
    assert not run(False).cache.compat


# -- the protocol: noise model and divergence --------------------------------------------------

def _curve(result: dict) -> list:
    return [round(c["train_loss"], 7) for c in result["curve"]]


def _payload(genome: str, compat: bool, **protocol):
    return make_payload(genome, "digits", 0, protocol={"lr": 0.1, "epochs": 2, **protocol}, compat=compat)


def test_the_compat_protocol_settings():
    # the original scored a run by its best epoch (score = "best"); deapnos' default is the final one
    assert COMPAT_PROTOCOL == {"screen": "paper", "shuffle": False, "fresh_seed": True,
                               "keep_best_on_divergence": True, "score": "best"}
    # the paper's absolute screen: an optimizer that learns nothing fails on train accuracy (0.25 / 0.40)
    # in compat, on progress (the relative screen) otherwise
    payload = make_payload("none ~ w_1e6", "digits", 0, protocol={"step_scale": 0.3}, compat=True)
    paper = evaluate_payload(payload)
    assert paper["status"] == "screened_out" and "train accuracy" in paper["message"]
    relative = evaluate_payload({**payload, "compat": False})
    assert relative["status"] == "screened_out" and "progress" in relative["message"]


def test_fixed_batch_order():
    from deapnos import plugins
    task = plugins.all_tasks(plugins.get_plugin_manager())["digits"]
    fixed = evaluate_payload(_payload("none ~ g", True, fresh_seed=False))
    assert fixed["status"] == "ok"
    same = evaluate_genome("none ~ g", task, 0, ProtocolConfig(lr=0.1, epochs=2, shuffle=False), device="cpu")
    shuffled = evaluate_genome("none ~ g", task, 0, ProtocolConfig(lr=0.1, epochs=2), device="cpu")
    assert _curve(fixed) == _curve(same.to_dict()) != _curve(shuffled.to_dict())


def test_a_fresh_initialisation_for_every_run():
    a, b = (evaluate_payload(_payload("none ~ g", True)) for _ in range(2))
    assert a["status"] == b["status"] == "ok" and _curve(a) != _curve(b)
    c, d = (evaluate_payload(_payload("none ~ g", False)) for _ in range(2))
    assert _curve(c) == _curve(d)


# U = g exp((2 a2/a1)^2): an SGD step until about 80% of the run, then inf: the last of 4 epochs (T = 40
# steps of digits, the horizon the protocol's screen budget also needs) diverges
LATE_BLOW_UP = "none ~ mul(g, exp(mul(div(decay(a2, two), decay(a1, one)), div(decay(a2, two), decay(a1, one)))))"


def test_a_diverging_full_run_keeps_its_best_epoch():
    kept = evaluate_payload(_payload(LATE_BLOW_UP, True, epochs=4))
    assert kept["status"] == "ok" and kept["fitness"] is not None and "stopped" in kept["message"]
    # the same run with the default divergence rule: a failure (compat otherwise unchanged)
    lost = evaluate_payload(_payload(LATE_BLOW_UP, True, epochs=4, keep_best_on_divergence=False))
    assert lost["status"] == "diverged"
    assert ProtocolConfig().keep_best_on_divergence is False


# -- refused -----------------------------------------------------------------------------------

def test_opt3_is_refused_plainly():
    from deapnos import zoo
    with pytest.raises(zoo.CompatError, match="EMA of g\\^2"):
        zoo.get("opt3", compat=True)
    assert zoo.get("opt3").to_text() == zoo.text("opt3")
