"""Example deapnos plugin: a new stateful operand and a new op.

* operand ``slow_v_hat``: a slow, bias-corrected EMA of the gradient,
  ``slow_v <- 0.999 slow_v + 0.001 g``, ``slow_v_hat = slow_v / (1 - 0.999^(t+1))``.  It reads the
  state slot ``slow_v``, which an optimizer allocates (zeros, one per parameter element) only when a
  genome uses the operand, updates once per step before any operand is computed, and saves in its
  ``state_dict`` like any other state.
* unary op ``cube``: ``x^3``, element-wise.

Genomes may then use them, e.g. ``none ~ div(cube(slow_v_hat), add(g2, one))``.
"""
from __future__ import annotations

import torch

from deapnos import hookimpl
from deapnos.space.operands import StateSpec

BETA = 0.999


def update_slow_v(buf: torch.Tensor, ctx) -> None:
    """State update, in place, once per step: ``ctx.g`` is the flat gradient."""
    buf.mul_(BETA).add_(ctx.g, alpha=1.0 - BETA)


SLOW_V = StateSpec("slow_v", update_slow_v, "slow_v <- 0.999 slow_v + 0.001 g")


def slow_v_hat(ctx, out):
    """Operand value at 0-based step ``ctx.t``; may write into the workspace buffer ``out``."""
    return torch.div(ctx.state["slow_v"], 1.0 - BETA ** (ctx.t + 1), out=out)


def cube(x, out=None):
    """x^3.  ``out`` may be ``x`` itself (the compiler reuses buffers): compute x*x aside first."""
    return torch.mul(torch.mul(x, x), x, out=out)


@hookimpl
def deapnos_add_primitives(space):
    space.add_operand("slow_v_hat", slow_v_hat, states=[SLOW_V], fmt="slow v hat",
                      latex="\\hat{v}_{\\mathrm{slow}}",
                      doc="bias-corrected EMA of g, beta 0.999 (example plugin)")
    space.add_unary("cube", cube, fmt="({0})^3", latex="\\left({0}\\right)^{{3}}", doc="x^3 (example plugin)")
