"""EvolvedOptimizer(compile=...): the torch.compile'd step agrees with the eager one, and any failure
to compile falls back to the eager update with one warning (issue 16, faster evolved steps)."""
import warnings

import pytest
import torch

import deapnos
from deapnos.optim.compiled import compile_problem, i1e_series
from deapnos.optim.compiler import compile_genome
from deapnos.space import Genome
from deapnos.space.psets import default_space

SHAPES = [(6, 5), (9,)]
STEPS = 15
# every momentum kind, the fused division, the scaled clip, i1e of i1e, the weights, a constant update
TEXTS = ["none ~ div(v_hat, sqrt(s_hat))", "none ~ clip(v_hat, sqrt(s_hat))",
         "nesterov ~ i1e(i1e(decay(mul(a13, a2), g)))", "mom ~ add(mul(w_1e4, g), sign_v_hat)",
         "nest ~ div(g, sub(g, v_hat)) | lr = a3", "none ~ one", "none ~ norm(qh_v) | flip"]


def _run(genome, steps=STEPS, groups=True, **kw):
    torch.manual_seed(1)
    params = [torch.randn(s, requires_grad=True) for s in SHAPES]
    # two groups: two buckets, each compiled (or failing) on its own
    param_groups = [{"params": params[:1]}, {"params": params[1:], "lr": 0.05}] if groups else params
    opt = deapnos.optimizer(genome, param_groups, lr=0.02, total_steps=steps, warmup_steps=3, **kw)
    for _ in range(steps):
        for p in params:
            p.grad = torch.sin(3 * p.detach()) + 0.1 * p.detach()
        opt.step()
    return torch.cat([p.detach().reshape(-1) for p in params]), opt


def _compiled(opt):
    return [bucket.engine.compiled is not None for bucket in opt._buckets.values()]


@pytest.mark.parametrize("text", TEXTS)
def test_compiled_step_agrees_with_eager(text):
    # aot_eager: the traced graph through torch.compile without a C++ compiler (fast)
    genome = Genome.parse(text)
    eager, _ = _run(genome)
    with warnings.catch_warnings():
        warnings.simplefilter("error")        # it compiles: no fallback warning
        compiled, opt = _run(genome, compile="aot_eager")
    assert _compiled(opt) == [True, True]
    assert torch.allclose(compiled, eager, rtol=1e-5, atol=1e-6)


@pytest.mark.slow
def test_inductor_compiles_opt10_and_agrees_with_eager():
    # a real compilation (C++: ~20 s with a cold cache, a few with a warm one): i1e as a vectorized
    # series, Nesterov fused
    eager, _ = _run("opt10", groups=False)
    compiled, opt = _run("opt10", groups=False, compile=True)
    assert opt.compile_backend == "inductor" and _compiled(opt) == [True]
    assert torch.allclose(compiled, eager, rtol=1e-5, atol=1e-6)


@pytest.mark.slow
@pytest.mark.parametrize("name", ["adam", "a1", "lion", "qhm", "opt9"])
def test_inductor_zoo_steps_agree_with_eager(name):
    eager, _ = _run(name, groups=False)
    compiled, opt = _run(name, groups=False, compile=True)
    assert all(_compiled(opt))
    assert torch.allclose(compiled, eager, rtol=1e-5, atol=1e-6)


def test_i1e_series_matches_torch():
    for dtype in (torch.float32, torch.float64):
        torch.manual_seed(0)
        x = torch.cat([torch.randn(4000, dtype=dtype) * s for s in (1e-3, 0.3, 2.0, 7.0, 30.0, 1e4)]
                      + [torch.tensor([0.0, -0.0, 8.0, -8.0, float("inf"), -float("inf"), 1e-40], dtype=dtype)])
        ref = torch.special.i1e(x)
        assert torch.allclose(i1e_series(x), ref, rtol=20 * torch.finfo(dtype).eps, atol=0)
        assert torch.isnan(i1e_series(torch.tensor([float("nan")], dtype=dtype))).all()
        small = torch.special.i1e(x[:8000])          # |x| <= 0.22 < 8: the first series alone
        assert torch.allclose(i1e_series(small, within_8=True), torch.special.i1e(small),
                              rtol=20 * torch.finfo(dtype).eps, atol=0)


def _caught(fn):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        out = fn()
    return out, [str(w.message) for w in caught if "compile" in str(w.message)]


def test_an_invalid_backend_falls_back_to_eager_with_one_warning():
    genome = Genome.parse("nesterov ~ clip(v_hat, sqrt(s_hat))")
    eager, _ = _run(genome)
    (fallback, opt), messages = _caught(lambda: _run(genome, compile="no_such_backend"))
    assert len(messages) == 1, messages                 # two buckets, one warning
    assert messages[0].startswith("EvolvedOptimizer(compile=...): torch.compile failed (InvalidBackend")
    assert "running the eager update" in messages[0] and "\n" not in messages[0]
    assert opt.compile_backend is None and _compiled(opt) == [False, False]
    assert torch.equal(fallback, eager)                 # nothing ran before the failure


def test_an_op_that_cannot_be_traced_falls_back_to_eager_with_one_warning():
    def branchy(x):     # data-dependent Python control flow: the tracer cannot follow it
        return x * 2.0 if bool((x > 0).all()) else x * 0.5

    space = default_space()
    space.add_unary("branchy", branchy, source="test")
    space.build()
    genome = Genome.parse("none ~ branchy(v_hat)", space=space)
    assert compile_problem(compile_genome(genome, STEPS)) is None
    eager, _ = _run(genome)
    (fallback, opt), messages = _caught(lambda: _run(genome, compile="aot_eager"))
    assert len(messages) == 1 and "torch.compile failed" in messages[0], messages
    assert torch.equal(fallback, eager)


def test_genomes_the_compiled_step_cannot_run_say_so_once_and_run_eagerly():
    genome = Genome.parse("none ~ add(ema(g), drop30(v_hat))")
    assert "keeps state" in compile_problem(compile_genome(genome, STEPS))
    eager, _ = _run(genome, seed=3)
    (same, opt), messages = _caught(lambda: _run(genome, seed=3, compile=True))
    assert len(messages) == 1 and "not compiled: ema keeps state of its own" in messages[0]
    assert torch.equal(same, eager) and _compiled(opt) == [False, False]


def test_compile_is_off_by_default_and_checked():
    _, opt = _run("adam")
    assert opt.compile_backend is None and _compiled(opt) == [False, False]
    with pytest.raises(ValueError, match="compile must be True, False or a torch.compile backend"):
        deapnos.optimizer("adam", [torch.zeros(2, requires_grad=True)], total_steps=3, compile=1)
