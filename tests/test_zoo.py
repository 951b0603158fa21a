"""deapnos.zoo: registry behaviour, and every entry against an independent oracle.

The oracles (tests/oracles.py) are written from the paper-spec formulas with plain torch and math;
they share no code with deapnos.  Three kinds of numerical checks:

* baselines against torch.optim (Adam, SGD with and without (Nesterov) momentum);
* every optimizer against its oracle, (a) closed loop on a small MLP in float32 and (b) open loop
  on a fixed float64 gradient stream in three regimes (unit gradients; tiny gradients, where the
  weight-decay operands dominate; large weights), with a tolerance that the same test shows to be
  discriminating: each oracle must be far from every *other* zoo genome, from the decay-off
  variants and from deliberately wrong genomes;
* every LR schedule's LambdaLR multipliers against the §3.3 formulas.
"""
from __future__ import annotations

import json
import warnings

import pytest
import torch

import deapnos
from deapnos import zoo
from deapnos.space import Genome, parse_tree, tree_text

import oracles as O

torch.set_num_threads(1)

OPTIMIZERS = list(O.NAMES)
DECAY_GATED = [f"opt{i}" for i in range(4, 11)]


# ---------------------------------------------------------------------------------------------
# Registry
# ---------------------------------------------------------------------------------------------

def test_names_and_separate_schedule_registry():
    names = zoo.names()
    assert names == OPTIMIZERS
    assert zoo.schedule_names() == [f"lr{i}" for i in range(1, 10)]
    assert not set(names) & set(zoo.schedule_names())
    assert zoo.names("opt*") == [f"opt{i}" for i in range(1, 11)]
    assert zoo.names(kind="adamclip") == ["a1", "a2", "a3", "a4", "a5"]
    assert set(zoo.names(kind="baseline")) == {"adam", "rmsprop", "sgd", "momentum", "nesterov", "qhm",
                                               "powersign", "addsign", "signsgd", "signum", "lion", "adamw"}
    with pytest.raises(ValueError):
        zoo.names(kind="nope")


def test_get_returns_a_fresh_genome():
    a, b = zoo.get("opt10"), zoo.get("opt10")
    assert a == b and a is not b
    assert a.update is not b.update and a.schedule is not b.schedule
    a.momentum = "none"
    a.update[0:len(a.update)] = list(Genome.parse("none ~ g").update)   # mutate in place, as DEAP does
    assert a.to_text() == "none ~ g"
    assert zoo.get("opt10").to_text() == "nesterov ~ i1e(i1e(decay(mul(a13, a2), g)))"


@pytest.mark.parametrize("bad,close", [("adma", "adam"), ("opt11", "opt1"), ("Adam", "adam")])
def test_unknown_name_names_close_matches_and_all_names(bad, close):
    with pytest.raises(KeyError) as info:
        zoo.get(bad)
    assert isinstance(info.value, ValueError)
    msg = str(info.value)
    assert repr(close) in msg.split("Known")[0]
    for name in zoo.names():
        assert name in msg.split("Known")[1]


def test_unknown_schedule_and_cross_registry_hints():
    with pytest.raises(KeyError, match="lr1.*lr9"):
        zoo.get_schedule_tree("lr10")
    with pytest.raises(KeyError, match="LR schedule"):
        zoo.get("lr1")
    with pytest.raises(ValueError, match="optimizer"):
        zoo.schedule("adam", torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=1.0), total_steps=10)


def test_describe_documents_every_entry():
    for name in zoo.names():
        entry = zoo.info(name)
        doc = zoo.describe(name)
        assert entry.formula and entry.formula in doc and entry.text in doc and name in doc
    assert "FIXED" in zoo.describe("opt3") and "g^3" in zoo.describe("opt3")
    assert "1e-7" in zoo.describe("a1") and "1e-7" in zoo.describe("a4")
    for name in zoo.schedule_names():
        doc = zoo.describe(name)
        assert zoo.schedule_info(name).formula in doc and zoo.schedule_info(name).text in doc
    assert "a14'" in zoo.describe("lr3") and "19" in zoo.describe("lr3")
    with pytest.raises(KeyError, match="'lr3'.*Known names: adam.*opt10, lr1.*lr9"):
        zoo.describe("lr33")


class _ZooPlugin:
    """A plugin with a zoo optimizer and a zoo schedule."""

    @deapnos.hookimpl
    def deapnos_zoo_optimizers(self):
        return [zoo.ZooEntry("plugin_signsgd", "baseline", "none ~ sign_g", "U = sign(g)", "signSGD",
                             notes="a test plugin's entry")]

    @deapnos.hookimpl
    def deapnos_zoo_schedules(self):
        return [zoo.ScheduleEntry("plugin_tanh", "tanh(a6)", "tanh(a6)", "a test plugin")]


def test_describe_reads_a_runs_registries_with_plugin_entries():
    from deapnos import plugins
    pm = plugins.get_plugin_manager(["digits"], autoload=False)
    plugins.register_builtins(pm, [zoo])     # the built-in zoo is a plugin too (what a Context registers)
    pm.register_plugin(_ZooPlugin(), "zooplug")
    optimizers, schedules = plugins.zoo_optimizers(pm), plugins.zoo_schedules(pm)
    doc = zoo.describe("plugin_signsgd", registry=optimizers)
    assert doc.startswith("plugin_signsgd (baseline)")
    assert all(s in doc for s in ("U = sign(g)", "none ~ sign_g", "signSGD", "plugin:  zooplug", "a test plugin's"))
    doc = zoo.describe("plugin_tanh", schedules=schedules)
    assert "LR schedule multiplier" in doc and "tanh(a6)" in doc and "plugin:  zooplug" in doc
    assert zoo.describe("adam", registry=optimizers) == zoo.describe("adam")       # built-ins: no plugin line
    assert "plugin:" not in zoo.describe("adam")
    with pytest.raises(KeyError, match="plugin_signsgd"):   # the built-in registries did not change
        zoo.describe("plugin_signsgd")


def test_show_describes_a_plugin_zoo_entry(tmp_path, monkeypatch, capsys):
    from deapnos.cli import main
    (tmp_path / "deapnos_h17_zoo_plugin.py").write_text(
        "from deapnos import hookimpl, zoo\n\n\n"
        "@hookimpl\n"
        "def deapnos_zoo_optimizers():\n"
        "    return [zoo.ZooEntry('plugin_signsgd', 'baseline', 'none ~ sign_g', 'U = sign(g)', 'signSGD')]\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    assert main(["show", "-p", "deapnos_h17_zoo_plugin", "plugin_signsgd"]) == 0
    out = capsys.readouterr().out
    assert "plugin_signsgd: plugin_signsgd (baseline)" in out and "formula: U = sign(g)" in out
    assert "source:  signSGD" in out and "plugin:  deapnos_h17_zoo_plugin" in out
    assert "text     : none ~ sign_g" in out


def test_registry_texts_are_canonical():
    zoo._check_registry()


@pytest.mark.parametrize("use_decay", [True, False])
@pytest.mark.parametrize("name", OPTIMIZERS)
def test_round_trip_text_and_json(name, use_decay):
    g = zoo.get(name, use_decay=use_decay)
    text = g.to_text()
    assert text == zoo.text(name, use_decay)
    back = Genome.parse(text)
    assert back == g and back.to_text() == text
    assert back.momentum == g.momentum and back.flip == g.flip
    assert tree_text(back.update) == tree_text(g.update) and tree_text(back.schedule) == tree_text(g.schedule)
    js = g.to_json(name=name)
    assert json.loads(js)["name"] == name
    back = Genome.from_json(js)
    assert back == g and back.to_text() == text


@pytest.mark.parametrize("name", [f"lr{i}" for i in range(1, 10)])
def test_schedule_trees_round_trip(name):
    tree = zoo.get_schedule_tree(name)
    text = tree_text(tree)
    assert text == zoo.schedule_info(name).text
    assert tree_text(parse_tree(text, "schedule")) == text
    g = Genome.parse(f"none ~ g | lr = {text}")
    assert Genome.parse(g.to_text()) == g and Genome.from_json(g.to_json()) == g


def test_zoo_names_resolve_through_the_public_api():
    p = torch.zeros(3, requires_grad=True)
    opt = deapnos.optimizer("opt10", [p], lr=1e-3, total_steps=10)
    assert opt.genome == zoo.get("opt10")
    assert deapnos.resolve_genome("a5") == zoo.get("a5")


def test_use_decay_switch_follows_final_optimizers():
    # Opt4: only the LR multiplier is gated; the atan(a13) factor (with its last-step guard) stays
    # (docs/paper.md §4.3)
    assert zoo.text("opt4", use_decay=False) == \
        "none ~ div(qh_v, clip(two, decay(atan(max(a13, mul(a1, a2))), exp(v_hat))))"
    assert zoo.text("opt10", use_decay=False) == "nesterov ~ i1e(i1e(g))"
    for name in zoo.names():
        if name not in DECAY_GATED:
            assert zoo.text(name, use_decay=False) == zoo.text(name)
        else:
            assert zoo.text(name, use_decay=False) != zoo.text(name)
            assert "lr =" not in zoo.text(name, use_decay=False)


def test_published_structure_matches_spec():
    # the schedule of Opt4-6 is lr1 (type 0); Opt9/Opt10 use standard Nesterov; others plain steps
    for name in ("opt4", "opt5", "opt6"):
        assert tree_text(zoo.get(name).schedule) == zoo.schedule_info("lr1").text
    for name in zoo.names():
        g = zoo.get(name)
        expected = {"opt9": "nesterov", "opt10": "nesterov", "nesterov": "nesterov", "momentum": "mom"}
        assert g.momentum == expected.get(name, "none"), name
        assert not g.flip
        if name not in ("opt4", "opt5", "opt6"):
            assert tree_text(g.schedule) == "one", name


# ---------------------------------------------------------------------------------------------
# Baselines against torch.optim
# ---------------------------------------------------------------------------------------------

def _mlp(seed, dtype=torch.float32):
    torch.manual_seed(seed)
    return torch.nn.Sequential(torch.nn.Linear(6, 16), torch.nn.Tanh(), torch.nn.Linear(16, 3)).to(dtype)


def _data(dtype=torch.float32):
    gen = torch.Generator().manual_seed(123)
    return torch.randn(48, 6, generator=gen, dtype=dtype), torch.randn(48, 3, generator=gen, dtype=dtype)


def _train_side_by_side(models_opts, steps, X, Y):
    for _ in range(steps):
        for model, opt in models_opts:
            for p in model.parameters():
                p.grad = None
            torch.nn.functional.mse_loss(model(X), Y).backward()
            opt.step()


def _max_diff(m1, m2):
    return max(float((p.detach() - q.detach()).abs().max()) for p, q in zip(m1.parameters(), m2.parameters()))


def test_adam_equals_torch_adam():
    X, Y = _data()
    a, b = _mlp(0), _mlp(0)
    ours = deapnos.optimizer(zoo.get("adam"), a.parameters(), lr=1e-2, total_steps=200, base_schedule="constant")
    ref = torch.optim.Adam(b.parameters(), lr=1e-2, betas=(0.9, 0.99), eps=1e-7)
    start = _mlp(0)
    _train_side_by_side([(a, ours), (b, ref)], 200, X, Y)
    assert _max_diff(a, start) > 0.1                      # the run moved the weights
    assert _max_diff(a, b) < 5e-5


def test_adamw_equals_torch_adamw():
    # torch shrinks w by (1 - lr wd) before its Adam step; the genome adds 0.01 w to U: the same update
    X, Y = _data()
    a, b = _mlp(0), _mlp(0)
    ours = deapnos.optimizer(zoo.get("adamw"), a.parameters(), lr=1e-2, total_steps=200, base_schedule="constant")
    ref = torch.optim.AdamW(b.parameters(), lr=1e-2, betas=(0.9, 0.99), eps=1e-7, weight_decay=0.01)
    _train_side_by_side([(a, ours), (b, ref)], 200, X, Y)
    assert _max_diff(a, _mlp(0)) > 0.1
    assert _max_diff(a, b) < 5e-5
    # and the weight decay is there: plain Adam ends elsewhere
    c = _mlp(0)
    _train_side_by_side([(c, torch.optim.Adam(c.parameters(), lr=1e-2, betas=(0.9, 0.99), eps=1e-7))], 200, X, Y)
    assert _max_diff(a, c) > 100 * 5e-5


def test_sign_methods_and_lion_by_hand():
    """signSGD, Signum and Lion against three lines of arithmetic each, on a fixed gradient stream."""
    gen = torch.Generator().manual_seed(3)
    w0 = torch.randn(40, generator=gen, dtype=torch.float64)
    grads = [torch.randn(40, generator=gen, dtype=torch.float64) + 0.3 for _ in range(30)]
    grads[4][:5] = 0.0                                     # sign(0) = 0
    lr = 0.01
    for name in ("signsgd", "signum", "lion"):
        p = w0.clone().requires_grad_(True)
        opt = deapnos.optimizer(zoo.get(name), [p], lr=lr, total_steps=30, base_schedule="constant")
        w, m = w0.clone(), torch.zeros(40, dtype=torch.float64)
        for g in grads:
            p.grad = g.clone()
            opt.step()
            if name == "signsgd":
                w = w - lr * torch.sign(g)
            elif name == "signum":
                m = 0.9 * m + 0.1 * g
                w = w - lr * torch.sign(m)
            else:
                w = w - lr * (torch.sign(0.9 * m + 0.1 * g) + 0.1 * w)
                m = 0.99 * m + 0.01 * g
            assert torch.allclose(p.detach(), w, rtol=0, atol=1e-12), name
        assert float((w - w0).abs().max()) > 0.1


@pytest.mark.parametrize("name,kw", [("sgd", dict()), ("momentum", dict(momentum=0.9)),
                                     ("nesterov", dict(momentum=0.9, nesterov=True))])
def test_sgd_family_equals_torch_sgd(name, kw):
    X, Y = _data()
    a, b = _mlp(1), _mlp(1)
    ours = deapnos.optimizer(zoo.get(name), a.parameters(), lr=0.05, total_steps=100, base_schedule="constant",
                                   momentum=0.9 if kw else None)
    ref = torch.optim.SGD(b.parameters(), lr=0.05, **kw)
    _train_side_by_side([(a, ours), (b, ref)], 100, X, Y)
    assert _max_diff(a, _mlp(1)) > 0.05
    assert _max_diff(a, b) < 2e-5


# ---------------------------------------------------------------------------------------------
# Every optimizer against its oracle
# ---------------------------------------------------------------------------------------------

T, W, STEPS = 60, 6, 50          # short horizon; stops before t = T-1, where Opt4's a13 reaches 0


@pytest.mark.parametrize("name", OPTIMIZERS)
def test_closed_loop_mlp_matches_oracle(name):
    """Side by side on a float32 MLP for 50 steps: warm-up cosine, decays, m_t schedule, LR multipliers."""
    X, Y = _data()
    a, b, start = _mlp(2), _mlp(2), _mlp(2)
    ours = deapnos.optimizer(zoo.get(name), a.parameters(), lr=0.02, total_steps=T, warmup_steps=W)
    ref = O.SpecOptimizer(b.parameters(), name, 0.02, T, W)
    _train_side_by_side([(a, ours), (b, ref)], STEPS, X, Y)
    moved = _max_diff(b, start)
    assert moved > 1e-2
    assert _max_diff(a, b) <= 1e-4 * moved


# Open loop: a fixed gradient stream (independent of the weights) in float64, so that both sides see
# identical gradients and the comparison measures the update rule alone.  Three regimes:
# "unit" (gradients ~1, weights ~300), "small" (gradients ~1e-3: the 1e-5 w / 1e-4 w operands
# dominate the update) and "heavy" (weights ~1e4: 1e-5 w ~ 0.1 is comparable with the statistics it
# is mixed with, so the parenthesisation of Opt1-3's c matters).
SHAPES = [(4, 5), (6,), (3, 2)]
REGIMES = {"unit": (1.0, 300.0), "small": (1e-3, 300.0), "heavy": (1.0, 1e4)}   # (gradient, weight) scale
LR = 0.1
TOL = 1e-5           # relative: covers the float32 decay tables and the sign-safe 1e-7 denominators
DISTINCT = 50 * TOL  # what a different formula must differ by, in at least one regime
# where the spec adds 1e-7 that the space cannot express (a1/a5: sqrt(s^) + 1e-7 as the clip bound,
# a4: sigmoid(s^ + 1e-7)), U may differ by that much: allow lr x 1.5e-7 per step on top of TOL
U_SLACK = {"a1": 1.5e-7, "a4": 1.5e-7, "a5": 1.5e-7}


def _stream(g_scale, w_scale):
    gen = torch.Generator().manual_seed(7)
    w0 = [w_scale * torch.randn(s, generator=gen, dtype=torch.float64) for s in SHAPES]
    drift = [torch.randn(s, generator=gen, dtype=torch.float64) for s in SHAPES]
    grads = [[g_scale * (d + 0.7 * torch.randn(s, generator=gen, dtype=torch.float64))
              for d, s in zip(drift, SHAPES)] for _ in range(STEPS)]
    return w0, grads


STREAMS = {k: _stream(*v) for k, v in REGIMES.items()}


def _run_open_loop(make_opt, regime):
    """Per-step updates (w_{t+1} - w_t) of all tensors, flattened: (STEPS, numel) float64."""
    w0, grads = STREAMS[regime]
    params = [w.clone().requires_grad_(True) for w in w0]
    opt = make_opt(params)
    deltas = []
    for t in range(STEPS):
        before = [p.detach().clone() for p in params]
        for p, g in zip(params, grads[t]):
            p.grad = g.clone()
        opt.step()
        deltas.append(torch.cat([(p.detach() - b).reshape(-1) for p, b in zip(params, before)]))
    return torch.stack(deltas)


def _genome_run(text, regime, **kw):
    return _run_open_loop(lambda ps: deapnos.optimizer(Genome.parse(text), ps, lr=LR, total_steps=T, warmup_steps=W,
                                                                  **kw), regime)


def _oracle_run(name, regime, **kw):
    return _run_open_loop(lambda ps: O.SpecOptimizer(ps, name, LR, T, W, **kw), regime)


def _rel_err(ref, other, slack=0.0):
    """max |ref - other| relative to max |ref|, after forgiving ``slack`` absolute."""
    return float(((ref - other).abs() - slack).clamp_min(0).max() / ref.abs().max())


@pytest.fixture(scope="module")
def genome_runs():
    return {(n, r): _genome_run(zoo.text(n), r) for n in OPTIMIZERS for r in REGIMES}


@pytest.fixture(scope="module")
def oracle_runs():
    return {(n, r): _oracle_run(n, r) for n in OPTIMIZERS for r in REGIMES}


@pytest.mark.parametrize("name", OPTIMIZERS)
def test_open_loop_matches_oracle_and_no_other_entry(name, genome_runs, oracle_runs):
    for regime in REGIMES:
        ref = oracle_runs[(name, regime)]
        assert torch.isfinite(ref).all() and ref.abs().max() > 0
        assert _rel_err(ref, genome_runs[(name, regime)], LR * U_SLACK.get(name, 0.0)) < TOL, regime
    # the tolerance is discriminating: every other zoo entry is far from this oracle
    for other in OPTIMIZERS:
        if other == name:
            continue
        worst = max(_rel_err(oracle_runs[(name, r)], genome_runs[(other, r)]) for r in REGIMES)
        assert worst > DISTINCT, f"oracle {name} cannot tell zoo entry {other} apart"


@pytest.mark.parametrize("name", DECAY_GATED)
def test_use_decay_false_matches_oracle(name, genome_runs):
    for regime in REGIMES:
        ref = _oracle_run(name, regime, use_decay=False)
        assert _rel_err(ref, _genome_run(zoo.text(name, use_decay=False), regime)) < TOL
    # and the decays change the optimizer: the decay-on genome is far from the decay-off oracle
    worst = max(_rel_err(_oracle_run(name, r, use_decay=False), genome_runs[(name, r)]) for r in REGIMES)
    assert worst > DISTINCT


WRONG_VARIANTS = [
    # (oracle, a deliberately wrong genome that the oracle must reject)
    ("opt10", "nest ~ i1e(i1e(decay(mul(a13, a2), g)))"),           # the search's Nest, not Nesterov
    ("opt10", "mom ~ i1e(i1e(decay(mul(a13, a2), g)))"),
    ("opt10", "nesterov ~ i1e(i1e(decay(mul(a13, a1), g)))"),       # wrong decay leaf
    ("opt9", "nesterov ~ mul(decay(erfc(a12), g), exp(atan(qh_s)))"),
    ("opt9", "nesterov ~ mul(decay(erfc(a11), g), exp(atan(s_hat)))"),
    ("opt4", "none ~ div(qh_v, clip(two, decay(atan(a13), exp(v_hat))))"),    # LR multiplier dropped
    ("opt4", "none ~ div(qh_v, clip(two, decay(atan(a14), exp(v_hat)))) | lr = div(erfc(erfc(a4)), dtanh(a8))"),
    ("opt4", "none ~ div(qh_v, clip(two, decay(atan(a13), exp(v_hat)))) | lr = div(erfc(erfc(a4)), dtanh(a4))"),
    ("opt6", "none ~ div(qh_v, decay(dtanh(a4), exp(w_1e3))) | lr = div(erfc(erfc(a4)), dtanh(a8))"),
    ("opt1", "none ~ add(qh_v, softsign(clip(w_1e5, add(w_1e5, mix95(s_hat, g2)))))"),   # + 0.05 g^2
    ("opt1", "none ~ add(qh_v, softsign(clip(w_1e4, add(w_1e4, mix95(s_hat, neg(g2))))))"),  # 1e-4 w
    ("opt2", "none ~ add(qh_v, softsign(divsqrt(w_1e5, sub(w_1e5, s_hat))))"),
    ("opt2", "none ~ add(v_hat, softsign(divsqrt(w_1e5, sub(w_1e5, qh_s))))"),
    ("opt3", "none ~ add(qh_v, softsign(divsqrt(w_1e5, sub(w_1e5, lam_hat))))"),
    ("opt7", "none ~ tanh(decay(max(a5, a10), asinh(qh_v)))"),
    ("opt8", "none ~ asinh(decay(max(a6, a9), asinh(qh_v)))"),
    ("a2", "none ~ clip(v_hat, sqrt(ln(s_hat)))"),
    ("a4", "none ~ clip(v_hat, sigmoid(qh_s))"),
    ("a5", "none ~ clip(v_hat, sqrt(s_hat))"),
    ("powersign", "none ~ mul(exp(mul(sign_g, sign_g)), g)"),
    ("lion", "none ~ add(sign_v_hat, w_1e1)"),                      # Lion's interpolation, not Signum's EMA
    ("lion", "none ~ sign_lion"),                                   # weight decay dropped
    ("adamw", "none ~ add(div(v_hat, sqrt(s_hat)), w_1e3)"),        # decay 1e-3, not 0.01
]


@pytest.mark.parametrize("name,wrong", WRONG_VARIANTS)
def test_wrong_variants_are_caught(name, wrong, oracle_runs):
    worst = max(_rel_err(oracle_runs[(name, r)], _genome_run(wrong, r)) for r in REGIMES)
    assert worst > DISTINCT, wrong


def test_opt3_fix_differs_from_the_original_g2_ema(genome_runs):
    """The zoo's Opt3 uses the EMA of g^3 (the fix); the original's EMA of g^2 is a different optimizer."""
    worst = max(_rel_err(_oracle_run("opt3", r, opt3_l="g2"), genome_runs[("opt3", r)]) for r in REGIMES)
    assert worst > DISTINCT


def test_wrong_lr_or_momentum_schedule_is_caught(oracle_runs):
    # constant momentum instead of the §3.2 schedule, and constant base LR instead of warm-up cosine
    for text, kw in ((zoo.text("opt10"), dict(momentum=0.9)), (zoo.text("opt7"), dict(base_schedule="constant"))):
        name = "opt10" if "i1e" in text else "opt7"
        worst = max(_rel_err(oracle_runs[(name, r)], _genome_run(text, r, **kw)) for r in REGIMES)
        assert worst > DISTINCT


# ---------------------------------------------------------------------------------------------
# LR schedules lr1..lr9 = EvolvedLRSchedules type 0..8
# ---------------------------------------------------------------------------------------------

ST, SW = 1000, 100


def _lambda_lr_values(name, total=ST, warmup=SW, base="warmup_cosine"):
    p = torch.zeros(2, requires_grad=True)
    opt = torch.optim.SGD([p], lr=1.0)
    sched = zoo.schedule(name, opt, total_steps=total, warmup_steps=warmup, base_schedule=base)
    out = []
    for t in range(total):
        out.append(opt.param_groups[0]["lr"])
        if t < total - 1:
            opt.step()
            sched.step()
    return torch.tensor(out, dtype=torch.float64)


def _oracle_schedule(k, total=ST, warmup=SW, base="warmup_cosine"):
    return torch.tensor([O.schedule_lr(k, t, total, warmup, base) for t in range(total)], dtype=torch.float64)


@pytest.fixture(scope="module")
def schedule_values():
    return {n: _lambda_lr_values(n) for n in zoo.schedule_names()}


def test_a14p_reaches_19_at_the_last_step():
    assert O.a14p(ST - 1, ST) == pytest.approx(19.0, rel=1e-12)
    assert O.a14p(0, 100) == pytest.approx(0.0096, abs=1e-4)
    from deapnos.optim.schedules import tree_table
    from deapnos.space.psets import builtin_space
    table = tree_table(parse_tree("a14p", "schedule"), builtin_space(), ST)
    assert float(table[-1]) == pytest.approx(19.0, rel=1e-9)
    assert float(table[0]) == pytest.approx(O.a14p(0, ST), rel=1e-9)


@pytest.mark.parametrize("k", range(9))
def test_schedule_matches_spec_formula(k, schedule_values):
    name = f"lr{k + 1}"
    ours, ref = schedule_values[name], _oracle_schedule(k)
    assert ref[0] == 0.0 and ours[0] == 0.0                  # warm-up starts at 0
    torch.testing.assert_close(ours, ref, rtol=2e-6, atol=1e-12)
    # discriminating: every other zoo schedule differs from this formula
    for other in zoo.schedule_names():
        if other != name:
            assert float(((schedule_values[other] - ref).abs() / ref.abs().clamp_min(1e-3)).max()) > 1e-3, other


@pytest.mark.parametrize("k", [0, 2, 7])
def test_schedule_with_constant_base(k):
    ours = _lambda_lr_values(f"lr{k + 1}", total=200, warmup=0, base="constant")
    torch.testing.assert_close(ours, _oracle_schedule(k, 200, 0, "constant"), rtol=2e-6, atol=1e-12)


def test_schedule_drives_any_optimizer_and_param_groups():
    a, b = torch.zeros(2, requires_grad=True), torch.zeros(3, requires_grad=True)
    opt = torch.optim.Adam([{"params": [a], "lr": 1e-3}, {"params": [b], "lr": 1e-2}])
    sched = zoo.schedule("lr9", opt, total_steps=50, warmup_steps=5)
    assert isinstance(sched, torch.optim.lr_scheduler.LambdaLR)
    for t in range(20):
        for i, peak in enumerate((1e-3, 1e-2)):
            assert opt.param_groups[i]["lr"] == pytest.approx(peak * O.schedule_lr(8, t, 50, 5), rel=1e-9, abs=1e-15)
        (a.sum() + b.sum()).backward()
        opt.step()
        sched.step()
    # the scheduler state (the schedule's table included) survives pickling and loads into a new one
    import pickle
    state = pickle.loads(pickle.dumps(sched.state_dict()))
    assert state["last_epoch"] == 20
    opt2 = torch.optim.Adam([{"params": [a], "lr": 1e-3}, {"params": [b], "lr": 1e-2}])
    sched2 = zoo.schedule("lr9", opt2, total_steps=50, warmup_steps=5)
    sched2.load_state_dict(state)
    assert sched2.last_epoch == 20 and sched2.lr_lambdas[0](20) == sched.lr_lambdas[0](20)


def test_opt4_lr_equals_lr1_schedule():
    p = torch.zeros(3, requires_grad=True)
    opt = deapnos.optimizer(zoo.get("opt4"), [p], lr=0.5, total_steps=ST, warmup_steps=SW)
    ref = _oracle_schedule(0)
    for t in (0, 1, 50, 99, 100, 400, 999):
        assert opt.lr_at(t) == pytest.approx(0.5 * float(ref[t]), rel=2e-6, abs=1e-15)


def test_schedule_past_horizon_holds_last_value():
    p = torch.zeros(1, requires_grad=True)
    opt = torch.optim.SGD([p], lr=1.0)
    sched = zoo.schedule("lr9", opt, total_steps=5)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        for _ in range(7):
            opt.step()
            sched.step()
    assert opt.param_groups[0]["lr"] == pytest.approx(O.schedule_lr(8, 4, 5, 0))
