"""The search space: primitive sets, genome text/JSON, hostile input, random trees."""
import builtins
import json
import random

import pytest
import torch
from deap import gp

from deapnos.space import Genome, GenomeParseError, SpaceError, build_space, default_space
from deapnos.space.psets import Decay, Schedule, Tensor
from deapnos.space import ops as ops_mod
import deapnos

SPACE = build_space()


def test_update_set_holds_every_operand_op_and_decay_of_the_spec():
    pset = SPACE.update_pset
    terminals = {t.name for t in pset.terminals[Tensor]}
    paper = {"g", "g2", "g3", "v_hat", "s_hat", "lam_hat", "one", "two", "w_1e6", "w_1e5", "w_1e4", "w_1e3",
             "sign_g", "sign_v_hat", "qh_v", "qh_s", "qh_lam", "agg_v", "agg_s", "agg_lam"}
    # the paper's 20 operands, and (not in compat) the zoo's Lion and AdamW operands
    assert terminals == paper | {"sign_lion", "w_1e2", "w_1e1"}
    assert {t.name for t in build_space(compat=True).update_pset.terminals[Tensor]} == paper
    unary = {p.name for p in pset.primitives[Tensor] if p.arity == 1}
    binary = {p.name for p in pset.primitives[Tensor] if p.arity == 2 and p.name != "decay"}
    assert len(unary) == 26 and len(binary) == 10          # un -1..24 and bin 0..9
    assert {t.name for t in pset.terminals[Decay]} == {f"a{i}" for i in range(1, 15)}
    assert len([p for p in pset.primitives[Decay] if p.arity == 1]) == 13
    assert len([p for p in pset.primitives[Decay] if p.arity == 2]) == 7
    decay_prim = [p for p in pset.primitives[Tensor] if p.name == "decay"]
    assert decay_prim and decay_prim[0].args == [Decay, Tensor]
    sched = {t.name for t in SPACE.schedule_pset.terminals[Schedule]}
    assert {"a14", "a14p", "one", "two"} <= sched


def test_a14_variants_are_distinct():
    t = torch.arange(100, dtype=torch.float64)
    a13 = ops_mod.d_a13(t, 100)
    assert torch.allclose(ops_mod.d_a14(t, 100), 0.95 - a13)
    a14p = ops_mod.d_a14p(t, 100)
    assert a14p[0].item() == pytest.approx(0.0096, abs=1e-4) and a14p[-1].item() == pytest.approx(19.0)


def test_protected_ops_never_nan_or_inf_where_the_spec_protects():
    x = torch.tensor([-2.0, -1e-7, -0.0, 0.0, 1e-9, 3.0])
    for fn in (ops_mod.k_ln, ops_mod.k_sqrt, ops_mod.k_inv):
        assert torch.isfinite(fn(x)).all(), fn.__name__
    assert torch.isfinite(ops_mod.k_div(torch.ones(6), x)).all()
    assert torch.isfinite(ops_mod.k_pow(torch.zeros(6), torch.full((6,), -2.0))).all()
    # sign-safe: 1/x keeps the sign of x
    assert (torch.sign(ops_mod.k_inv(torch.tensor([-1e-7, 1e-7]))) == torch.tensor([-1.0, 1.0])).all()
    # the spec's unprotected 1/(x+1e-7) would blow up at x = -1e-7; ours gives -5e6
    assert ops_mod.k_inv(torch.tensor([-1e-7])).item() == pytest.approx(-5e6)


def test_stateful_ops_fixed_semantics():
    state, xs = {}, [torch.tensor([1.0]), torch.tensor([3.0]), torch.tensor([2.0])]
    assert [ops_mod.k_delta(x, state, t).item() for t, x in enumerate(xs)] == [1.0, 2.0, -1.0]
    state = {}
    ema = [ops_mod.k_ema(x, state, t).item() for t, x in enumerate([torch.tensor([2.0])] * 3)]
    assert ema == pytest.approx([2.0, 2.0, 2.0])          # bias correction of a constant input
    state = {}
    assert [ops_mod.k_runmax(x, state, t).item() for t, x in enumerate(xs)] == [1.0, 3.0, 3.0]
    compat = default_space(compat=True)
    assert compat.unary["ema"].fn is ops_mod.k_ema_compat


def test_validation_names_the_type_without_terminal():
    space = default_space()
    space.decays.clear()
    space.schedule_leaves.clear()
    space.schedule_constants.clear()
    with pytest.raises(SpaceError, match="type Decay has no terminal"):
        space.build()


def test_extension_api_adds_operand_with_state_and_ops():
    from deapnos.space.operands import StateSpec

    def update_slow(buf, ctx):
        buf.mul_(0.999).add_(ctx.g, alpha=0.001)

    def slow(ctx, out):
        return torch.div(ctx.state["slow"], 1 - 0.999 ** (ctx.t + 1), out=out)

    space = default_space()
    space.add_operand("slow_hat", slow, states=[StateSpec("slow", update_slow)], source="test")
    space.add_unary("cube", lambda x: x * x * x, source="test")
    space.add_binary("hyp", torch.hypot, commutative=True, nonneg=True, source="test")
    space.add_decay("half", lambda t, T: torch.full_like(t, 0.5), source="test")
    space.build()
    g = Genome.parse("none ~ hyp(cube(slow_hat), decay(half, g))", space=space)
    p = torch.ones(3, requires_grad=True)
    opt = deapnos.optimizer(g, [p], lr=0.1, total_steps=5, base_schedule="constant")
    p.grad = torch.full((3,), 2.0)
    opt.step()
    # slow_hat = 2 at step 0, cube = 8; decay(half, g) = 1; hypot(8, 1)
    assert p.detach() == pytest.approx(torch.full((3,), 1 - 0.1 * (65 ** 0.5)))
    assert set(opt.state[p]) == {"slow"}
    with pytest.raises(SpaceError, match="already defined"):
        space2 = default_space()
        space2.add_unary("exp", torch.exp)
    with pytest.raises(SpaceError, match="already built"):
        space.add_unary("late", torch.exp)


def test_text_and_json_round_trip_exactly():
    texts = ["nesterov ~ i1e(i1e(decay(mul(a13, a2), g)))",
             "none ~ add(qh_v, softsign(divsqrt(w_1e5, sub(w_1e5, qh_s)))) | lr = div(erfc(erfc(a4)), dtanh(a8))",
             "mom ~ clip(v_hat, sqrt(s_hat)) | flip", "nest ~ pow(g, decay(sqrt(a6), two)) | lr = a14p | flip"]
    for text in texts:
        g = Genome.parse(text)
        assert g.to_text() == text
        assert Genome.parse(g.to_text()) == g
        again = Genome.from_json(g.to_json())
        assert again.to_text() == text and again.flip == g.flip and again.momentum == g.momentum
        assert json.loads(g.to_json())["version"] == 1


def test_str_reads_like_the_paper_log():
    g = Genome.parse("nest ~ i1e(atan(decay(mul(a13, a2), g)))")
    assert str(g) == "Nest ~ bessel_i1e(arctan([(a13)*(a2)][g]))"
    assert "I_{1e}" in g.to_latex()


@pytest.mark.parametrize("text,token,pos", [
    ("none ~ __import__(os)", "'__import__'", 7),
    ("none ~ add(g, g, g)", "more", 15),
    ("none ~ exp(g", "ended", 12),
    ("none ~ g; rm -rf /", "';'", 8),
    ("none ~ g | lr = g", "'g'", 16),
    ("warp ~ g", "'warp'", 0),
    ("none ~ g(", "leaf", 8),
    ("none ~ g | | flip", "empty section", 11),
    ("none ~ g |", "empty section", 10),     # a trailing '|': no bar ends the empty section
])
def test_malformed_text_names_token_and_position(text, token, pos):
    with pytest.raises(GenomeParseError) as info:
        Genome.parse(text)
    assert token in str(info.value) and info.value.position == pos


def test_hostile_json_is_rejected_without_running_code(tmp_path, monkeypatch):
    marker = tmp_path / "pwned"
    payload = {"format": "deapnos.genome", "version": 1, "momentum": "none", "flip": False,
               "update": f"__import__('os').system('touch {marker}')", "schedule": "one"}
    path = tmp_path / "evil.json"
    path.write_text(json.dumps(payload))

    def forbidden(*a, **k):
        raise AssertionError("eval/exec/from_string called while reading a genome file")

    monkeypatch.setattr(builtins, "eval", forbidden)
    monkeypatch.setattr(builtins, "exec", forbidden)
    monkeypatch.setattr(gp.PrimitiveTree, "from_string", classmethod(forbidden))
    with pytest.raises(GenomeParseError) as info:
        Genome.load(path)
    msg = str(info.value)
    assert str(path) in msg and "field 'update'" in msg and "__import__" in msg
    assert not marker.exists()


@pytest.mark.parametrize("doc,field", [
    ({"format": "deapnos.genome", "version": 2}, "version"),
    ({"format": "pickle", "version": 1}, "format"),
    ({"format": "deapnos.genome", "version": 1, "momentum": "warp", "flip": False, "update": "g",
      "schedule": "one"}, "momentum"),
    ({"format": "deapnos.genome", "version": 1, "momentum": "none", "flip": "yes", "update": "g",
      "schedule": "one"}, "flip"),
    ({"format": "deapnos.genome", "version": 1, "momentum": "none", "flip": False, "update": "g",
      "schedule": "one", "code": "x"}, "code"),
])
def test_bad_json_fields_are_named(doc, field):
    with pytest.raises(GenomeParseError, match=field):
        Genome.from_json(json.dumps(doc))


def _random_genome(rng: random.Random):
    random.seed(rng.random())        # DEAP's generators draw from the global random module
    update = gp.PrimitiveTree(gp.genGrow(SPACE.update_pset, 1, rng.randint(1, 5), type_=Tensor))
    schedule = gp.PrimitiveTree(gp.genGrow(SPACE.schedule_pset, 0, rng.randint(0, 3), type_=Schedule))
    return Genome(update, schedule, rng.choice(["none", "mom", "nest", "nesterov"]), rng.random() < 0.2, SPACE)


def test_thousands_of_random_trees_compile_and_step():
    rng = random.Random(1234)
    diverged = ok = 0
    for _ in range(2000):
        genome = _random_genome(rng)
        assert Genome.parse(genome.to_text()) == genome
        params = [torch.randn(4, 3, requires_grad=True), torch.randn(5, requires_grad=True)]
        opt = deapnos.optimizer(genome, params, lr=1e-2, total_steps=12, warmup_steps=2, check_finite=True)
        for _ in range(3):
            for p in params:
                p.grad = torch.randn_like(p) * 10
            opt.step()
        finite = all(torch.isfinite(p).all() for p in params)
        if opt.diverged:
            diverged += 1
            assert "non-finite update" in opt.divergence
        else:
            ok += 1
        assert finite, genome.to_text()      # a non-finite update is reported, never applied
    assert ok > 1000 and diverged > 0


def test_tree_text_is_deaps_own_str_on_every_zoo_tree():
    from deapnos import zoo
    from deapnos.space.fold import deap_format, fold
    from deapnos.space.genome import parse_tree, tree_text
    trees = [t for n in zoo.names() for t in (zoo.get(n).update, zoo.get(n).schedule)]
    assert len(trees) == 2 * 27      # 27 zoo optimizers
    trees += [zoo.get_schedule_tree(n) for n in zoo.schedule_names()]
    for tree in trees:
        assert tree_text(tree) == str(tree) == fold(tree, deap_format)
        assert parse_tree(str(tree), "update" if tree.root.ret is Tensor else "schedule").__str__() == str(tree)
    # the fold reads the first complete tree of a node list and refuses an unfinished one
    nodes = list(parse_tree("add(g, v_hat)"))
    assert fold(nodes[:3], lambda node, args: 1 + sum(args)) == 3
    with pytest.raises(ValueError, match="unfinished"):
        fold(nodes[:2], deap_format)


def test_builtin_space_is_one_built_space_per_compat_and_plugins_do_not_change_it():
    from deapnos.space import builtin_space
    assert builtin_space() is builtin_space() and builtin_space()._built
    assert builtin_space(True) is not builtin_space() and builtin_space(True).unary["ema"].fn is ops_mod.k_ema_compat
    assert Genome.parse("none ~ g").space is builtin_space()
    extended = build_space(lambda sp: sp.add_unary("cube3", lambda x: x * x * x, source="test"))
    assert "cube3" in extended.unary and "cube3" not in builtin_space().unary
    with pytest.raises(GenomeParseError, match="cube3"):
        Genome.parse("none ~ cube3(g)")
    assert Genome.parse("none ~ cube3(g)", space=extended).space is extended
    assert not hasattr(Genome, "optimizer")       # space knows nothing of optim
