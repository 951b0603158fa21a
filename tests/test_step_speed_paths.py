"""The faster step paths (issue 16) against float64 formulas written out by hand.

Each path is checked on a fixed gradient stream (independent of the weights), so that the
comparison measures the update rule alone: the scaled clip (a1's form), the last division fused
into one addcdiv (Adam's form, the sign-safe division too), Nesterov's two passes over the weights,
and i1e never written over its own input.
"""
import torch
import pytest

import deapnos
from deapnos.optim.compiler import compile_genome
from deapnos.optim import fused
from deapnos.space import Genome
from deapnos.space import ops

SHAPES = [(7, 5), (11,), (3, 4)]
STEPS, LR = 25, 0.05


def _stream(seed=3):
    gen = torch.Generator().manual_seed(seed)
    w0 = [torch.randn(s, generator=gen, dtype=torch.float64) for s in SHAPES]
    drift = [torch.randn(s, generator=gen, dtype=torch.float64) for s in SHAPES]
    grads = [[d + 0.5 * torch.randn(s, generator=gen, dtype=torch.float64) for d, s in zip(drift, SHAPES)]
             for _ in range(STEPS)]
    return w0, grads


def _run(make_opt):
    w0, grads = _stream()
    params = [w.to(torch.float32).requires_grad_(True) for w in w0]
    opt = make_opt(params)
    for t in range(STEPS):
        for p, g in zip(params, grads[t]):
            p.grad = g.to(torch.float32)
        opt.step()
    return torch.cat([p.detach().double().reshape(-1) for p in params]), opt


def _reference(direction, momentum_kind="none", m=0.9):
    """float64: v, s EMAs with bias corrections, U = direction(g, vh, sh), constant LR."""
    w0, grads = _stream()
    w = [x.clone() for x in w0]
    v = [torch.zeros_like(x) for x in w]
    s = [torch.zeros_like(x) for x in w]
    M = [torch.zeros_like(x) for x in w]
    for t in range(STEPS):
        for i, g in enumerate(grads[t]):
            v[i] = 0.9 * v[i] + 0.1 * g
            s[i] = 0.99 * s[i] + 0.01 * g * g
            vh, sh = v[i] / (1 - 0.9 ** (t + 1)), s[i] / (1 - 0.99 ** (t + 1))
            u = direction(g, vh, sh)
            if momentum_kind == "nesterov":
                M[i] = m * M[i] - LR * u
                w[i] = w[i] + m * M[i] - LR * u
            else:
                w[i] = w[i] - LR * u
    return torch.cat([x.reshape(-1) for x in w])


def _opt(text, **kw):
    return lambda ps: deapnos.optimizer(Genome.parse(text), ps, lr=LR, total_steps=STEPS,
                                        base_schedule="constant", **kw)


def _moved_rel_err(ours, ref):
    w0 = torch.cat([x.reshape(-1) for x in _stream()[0]])
    moved = (ref - w0).abs().max()
    assert moved > 0.05                      # the run really moved the weights
    return float((ours - ref).abs().max() / moved)


def _clip(a, b):
    return torch.maximum(torch.minimum(a, b.abs()), -b.abs())


def test_scaled_clip_matches_formula_and_uses_no_scale_pass():
    text = "none ~ clip(v_hat, sqrt(s_hat))"
    plan = compile_genome(Genome.parse(text), STEPS)
    assert [i.kind for i in plan.instrs if i.kind in ("op", "scale")] == ["op", "op"]   # sqrt, clip
    assert plan.instrs[-1].fn is fused.k_clip_nonneg_scaled
    ours, _ = _run(_opt(text))
    ref = _reference(lambda g, vh, sh: _clip(vh, sh.sqrt()))
    assert _moved_rel_err(ours, ref) < 2e-5


def test_scaled_clip_with_a_signed_bound():
    # the bound v_hat can be negative: |bound| is taken, and its scale moves into c
    text = "none ~ clip(g, v_hat)"
    assert compile_genome(Genome.parse(text), STEPS).instrs[-1].fn is fused.k_clip_scaled
    ours, _ = _run(_opt(text))
    assert _moved_rel_err(ours, _reference(lambda g, vh, sh: _clip(g, vh))) < 2e-5


@pytest.mark.parametrize("text, direction", [
    ("none ~ div(v_hat, sqrt(s_hat))", lambda g, vh, sh: vh / (sh.sqrt() + 1e-7)),
    ("none ~ div(g, v_hat)", lambda g, vh, sh: g / (vh + 1e-7 * torch.where(vh >= 0, 1.0, -1.0))),
])
def test_fused_last_division_matches_formula_and_the_unfused_path(text, direction):
    plan = compile_genome(Genome.parse(text), STEPS)
    assert plan.root_den in (fused.den_div_nonneg_eps, fused.den_div_eps)
    ours, opt = _run(_opt(text))
    parts = opt._buckets[next(iter(opt._buckets))].engine.direction_parts
    assert parts is not None
    ref = _reference(direction)
    assert _moved_rel_err(ours, ref) < 2e-5
    # check_finite inspects the quotient, so it takes the unfused path: the same run to float tolerance
    unfused, _ = _run(_opt(text, check_finite=True))
    assert _moved_rel_err(unfused, ours) < 1e-6


def test_no_fused_division_when_the_root_is_not_a_division():
    assert compile_genome(Genome.parse("none ~ clip(v_hat, sqrt(s_hat))"), STEPS).root_den is None
    assert compile_genome(Genome.parse("none ~ div(v_hat, sqrt(s_hat))"), STEPS).root_den is not None


def test_nesterov_two_passes_match_formula():
    text = "nesterov ~ i1e(g)"
    ours, _ = _run(_opt(text, momentum=0.9))
    ref = _reference(lambda g, vh, sh: torch.special.i1e(g), "nesterov", 0.9)
    assert _moved_rel_err(ours, ref) < 2e-5


def test_i1e_never_writes_over_its_own_input():
    plan = compile_genome(Genome.parse("nesterov ~ i1e(i1e(decay(mul(a13, a2), g)))"), 50)
    buf_of = {i.out: i.buf for i in plan.instrs}
    i1es = [i for i in plan.instrs if i.fn is ops.k_i1e]
    assert len(i1es) == 2
    for ins in i1es:
        assert all(buf_of.get(a, -2) != ins.buf for a in ins.args)


# -- windows: an element-wise update on CPU runs over cache-sized windows of the bucket -----------------

WINDOW_SHAPES = [(7, 5), (3,), (11,), (30, 4)]     # 169 elements: windows of 40 cross parameters both ways
WINDOW_TEXTS = ["none ~ div(v_hat, sqrt(s_hat))",            # the fused division, its denominator in place
                "none ~ clip(v_hat, sqrt(s_hat))",           # the scaled clip, its bound in place
                "nesterov ~ i1e(i1e(decay(mul(a13, a2), g)))",
                "mom ~ add(mul(w_1e4, g), sign_v_hat)",      # reads the weights
                "nest ~ div(g, v_hat)",
                "none ~ v_hat",                              # the update is a state slot itself
                "none ~ one"]                                # a constant update (a fill)


def _window_run(text, chunk_bytes, steps=12, shapes=WINDOW_SHAPES, make=None):
    torch.manual_seed(4)
    params = [torch.randn(s, requires_grad=True) for s in shapes]
    opt = (make or (lambda ps: deapnos.optimizer(Genome.parse(text), ps, lr=0.02, total_steps=steps,
                                                 warmup_steps=2)))(params)
    opt.chunk_bytes = chunk_bytes
    for _ in range(steps):
        for p in params:
            p.grad = torch.cos(2 * p.detach()) + 0.1 * p.detach()
        opt.step()
    return torch.cat([p.detach().reshape(-1) for p in params]), opt


@pytest.mark.parametrize("text", WINDOW_TEXTS)
def test_windowed_steps_match_whole_bucket_steps(text):
    assert compile_genome(Genome.parse(text), 10).elementwise
    whole, opt_whole = _window_run(text, 0)
    windowed, opt = _window_run(text, 40 * 4)
    bucket = next(iter(opt._buckets.values()))
    assert next(iter(opt_whole._buckets.values()))._windows is None
    windows = bucket._windows[1]
    assert len(windows) == 5 and {len(w.pieces) for w in windows} == {1, 2, 3}
    assert torch.allclose(windowed, whole, rtol=1e-6, atol=1e-7)
    # the state too (v, s, M: views of the same flat state)
    for p, q in zip(opt.param_groups[0]["params"], opt_whole.param_groups[0]["params"]):
        assert opt.state[p].keys() == opt_whole.state[q].keys()
        for key, value in opt.state[p].items():
            assert torch.allclose(value, opt_whole.state[q][key], rtol=1e-6, atol=1e-7)


def test_denominator_and_clip_bound_are_built_in_place():
    adam = compile_genome(Genome.parse("none ~ div(v_hat, sqrt(s_hat))"), 10)
    assert adam.den_buf == adam.instrs[-1].buf >= 0     # over sqrt(s_hat), which dies there
    signed = compile_genome(Genome.parse("none ~ div(g, sub(g, v_hat))"), 10)
    assert signed.root_den is fused.den_div and signed.den_buf == -1   # cannot write over its own input
    # a clip over its bound's buffer uses one scratch tensor, not two
    b, a = torch.rand(6), torch.randn(6)
    expect = torch.clamp(a, -0.5 * b, 0.5 * b)
    scratch = [torch.full((6,), float("nan")), torch.full((6,), float("nan"))]
    out = fused.k_clip_nonneg_scaled(a, b, 0.5, out=b, scratch=scratch)
    assert out.data_ptr() == b.data_ptr() and torch.equal(out, expect) and scratch[1].isnan().all()


def test_plans_with_plugin_or_stateful_or_random_ops_are_not_windowed():
    for text in ("mom ~ add(ema(g), lam_hat)", "none ~ drop50(g)", "none ~ norm(g)"):
        assert not compile_genome(Genome.parse(text), 10).elementwise, text
    _, opt = _window_run("none ~ drop50(g)", 40 * 4)
    assert next(iter(opt._buckets.values()))._windows is None
    # check_finite must see the whole update before applying any of it
    _, opt = _window_run("none ~ div(v_hat, sqrt(s_hat))", 40 * 4,
                         make=lambda ps: deapnos.optimizer("adam", ps, lr=0.02, total_steps=12, check_finite=True))
    assert next(iter(opt._buckets.values()))._windows is None


def test_windows_follow_a_parameter_whose_storage_was_replaced():
    text = "none ~ div(v_hat, sqrt(s_hat))"
    torch.manual_seed(0)
    params = [torch.randn(30, 4, requires_grad=True), torch.randn(11, requires_grad=True)]
    opt = deapnos.optimizer(Genome.parse(text), params, lr=0.1, total_steps=5)
    opt.chunk_bytes = 50 * 4
    for p in params:
        p.grad = torch.ones_like(p)
    opt.step()
    assert next(iter(opt._buckets.values()))._windows is not None
    params[0].data = torch.zeros(30, 4)        # new storage: the windows must write there
    opt.step()
    assert (params[0].detach() != 0).all()


def test_exported_optimizer_reproduces_windowed_steps_bit_for_bit(tmp_path):
    import importlib.util
    from deapnos.optim.export import export_source
    for i, text in enumerate(WINDOW_TEXTS[:4]):
        genome = Genome.parse(text)
        path = tmp_path / f"w{i}.py"
        path.write_text(export_source(genome, "windowed"))
        spec = importlib.util.spec_from_file_location(f"w{i}", path)
        mod = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(mod)
        ours, opt = _window_run(text, 40 * 4)
        theirs, opt2 = _window_run(text, 40 * 4, make=lambda ps, mod=mod: mod.Optimizer(ps, lr=0.02, total_steps=12,
                                                                                         warmup_steps=2))
        assert next(iter(opt2._buckets.values()))._windows is not None
        assert torch.equal(ours, theirs), text
