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
