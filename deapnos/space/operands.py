"""Operands (the leaves of update trees) and the optimizer state each one needs.

Provides :class:`OperandContext` (``g``, ``w``, step ``t``, state slots), :class:`StateSpec` (an
accumulator updated once per step; only the slots a tree reads are allocated) and the operands of
docs/paper.md §1.2 (``o_*``).  Plugins add operands with ``SearchSpace.add_operand``.
Details: docs/space.md, "Operand names"; docs/plugins.md, "Extending the search space".
"""
from __future__ import annotations

from dataclasses import dataclass
from collections.abc import Callable

import torch


@dataclass(frozen=True)
class StateSpec:
    """A per-parameter accumulator: starts at zero, ``update(buf, ctx)`` runs once per step in place."""
    name: str
    update: Callable
    doc: str = ""


@dataclass(frozen=True)
class OperandSpec:
    """A leaf of the update tree.

    ``compute(ctx, out)`` returns the operand's value: a full tensor (it may write into ``out``)
    or, when ``constant`` is set, a Python float that broadcasts.  ``states`` names the state
    slots it reads; ``reads_params`` says it reads the weights.
    """
    name: str
    compute: Callable
    fmt: str
    latex: str
    states: tuple[str, ...] = ()
    reads_params: bool = False
    constant: float | None = None
    nonneg: bool = False
    doc: str = ""
    lazy: tuple | None = None   # (slot, scale(t)): the value is state[slot] * scale(t), never copied


class OperandContext:
    """What operand and state functions see at one step, for one flat bucket of parameters."""

    def __init__(self, g, t, state, params_fn):
        self.g = g
        self.t = t
        self.state = state
        self._params_fn = params_fn
        self._w = None

    @property
    def w(self):
        if self._w is None:
            self._w = self._params_fn()
        return self._w


# ---------------------------------------------------------------------------------------------
# State updates (docs/paper.md §1.2): v, s, lambda
# ---------------------------------------------------------------------------------------------

def update_v(buf, ctx):
    # 0.9 v + 0.1 g, in one pass (as torch's Adam updates its first moment)
    buf.lerp_(ctx.g, 0.1)


def update_s(buf, ctx):
    buf.mul_(0.99).addcmul_(ctx.g, ctx.g, value=0.01)


def update_lam(buf, ctx):
    buf.mul_(0.999).add_(ctx.g * ctx.g * ctx.g, alpha=0.001)


# ---------------------------------------------------------------------------------------------
# Operand values
# ---------------------------------------------------------------------------------------------

def _bias_corrected(ctx, slot, beta, out):
    return torch.div(ctx.state[slot], 1.0 - beta ** (ctx.t + 1), out=out)


def o_g(ctx, out):
    return ctx.g


def o_g2(ctx, out):
    return torch.mul(ctx.g, ctx.g, out=out)


def o_g3(ctx, out):
    return torch.mul(torch.mul(ctx.g, ctx.g, out=out), ctx.g, out=out)


def bc_v(t):
    """Bias correction of v at 0-based step t."""
    return 1.0 / (1.0 - 0.9 ** (t + 1))


def bc_s(t):
    return 1.0 / (1.0 - 0.99 ** (t + 1))


def bc_lam(t):
    return 1.0 / (1.0 - 0.999 ** (t + 1))


def o_v_hat(ctx, out):
    return _bias_corrected(ctx, "v", 0.9, out)


def o_s_hat(ctx, out):
    return _bias_corrected(ctx, "s", 0.99, out)


def o_lam_hat(ctx, out):
    return _bias_corrected(ctx, "lam", 0.999, out)


def o_one(ctx, out):
    return 1.0


def o_two(ctx, out):
    return 2.0


def o_w_1e6(ctx, out):
    return torch.mul(ctx.w, 1e-6, out=out)


def o_w_1e5(ctx, out):
    return torch.mul(ctx.w, 1e-5, out=out)


def o_w_1e4(ctx, out):
    return torch.mul(ctx.w, 1e-4, out=out)


def o_w_1e3(ctx, out):
    return torch.mul(ctx.w, 1e-3, out=out)


def o_sign_g(ctx, out):
    return torch.sign(ctx.g, out=out)


def o_sign_v_hat(ctx, out):
    # sign(v_hat) = sign(v): the bias correction is positive
    return torch.sign(ctx.state["v"], out=out)


def o_qh_v(ctx, out):
    # 0.3 g + 0.7 v_hat
    v_hat = torch.div(ctx.state["v"], 1.0 - 0.9 ** (ctx.t + 1), out=out)
    return torch.add(torch.mul(v_hat, 0.7, out=out), ctx.g, alpha=0.3, out=out)


def o_qh_s(ctx, out):
    # 0.05 g^2 + 0.95 s_hat
    s_hat = torch.div(ctx.state["s"], 1.0 - 0.99 ** (ctx.t + 1), out=out)
    return torch.addcmul(torch.mul(s_hat, 0.95, out=out), ctx.g, ctx.g, value=0.05, out=out)


def o_qh_lam(ctx, out):
    # 0.01 g^3 + 0.99 lam_hat: the code computes g^3 (its label says g^2; docs/paper.md §1.2, [BUG])
    lam_hat = torch.div(ctx.state["lam"], 1.0 - 0.999 ** (ctx.t + 1), out=out)
    g3 = ctx.g * ctx.g * ctx.g
    return torch.add(torch.mul(lam_hat, 0.99, out=out), g3, alpha=0.01, out=out)


AGG_V = (0.0 + 0.9 + 0.999) / 3.0
AGG_S = (0.0 + 0.99 + 0.999) / 3.0
AGG_LAM = (0.0 + 0.999 + 0.9999) / 3.0


def o_agg_v(ctx, out):
    # mean over beta in {0, 0.9, 0.999} of (beta v - g), on the raw v
    return torch.sub(torch.mul(ctx.state["v"], AGG_V, out=out), ctx.g, out=out)


def o_agg_s(ctx, out):
    return torch.addcmul(torch.mul(ctx.state["s"], AGG_S, out=out), ctx.g, ctx.g, value=-1.0, out=out)


def o_agg_lam(ctx, out):
    g3 = ctx.g * ctx.g * ctx.g
    return torch.sub(torch.mul(ctx.state["lam"], AGG_LAM, out=out), g3, out=out)


STATES = (
    StateSpec("v", update_v, "v <- 0.9 v + 0.1 g"),
    StateSpec("s", update_s, "s <- 0.99 s + 0.01 g^2"),
    StateSpec("lam", update_lam, "lam <- 0.999 lam + 0.001 g^3"),
)


def _op(name, compute, fmt, latex, doc, states=(), **kw):
    return OperandSpec(name, compute, fmt, latex, states=tuple(states), doc=doc, **kw)


# docs/paper.md §1.2, in index order 0..19
OPERANDS = (
    _op("g", o_g, "g", "g", "gradient (0)"),
    _op("g2", o_g2, "g^2", "g^{2}", "g^2 (1)", nonneg=True),
    _op("g3", o_g3, "g^3", "g^{3}", "g^3 (2)"),
    _op("v_hat", o_v_hat, "v hat", "\\hat{v}", "bias-corrected EMA of g, beta 0.9 (3)", ("v",),
        lazy=("v", bc_v)),
    _op("s_hat", o_s_hat, "s hat", "\\hat{s}", "bias-corrected EMA of g^2, beta 0.99 (4)", ("s",), nonneg=True,
        lazy=("s", bc_s)),
    _op("lam_hat", o_lam_hat, "lam hat", "\\hat{\\lambda}", "bias-corrected EMA of g^3, beta 0.999 (5)",
        ("lam",), lazy=("lam", bc_lam)),
    _op("one", o_one, "1", "1", "constant 1 (6)", constant=1.0, nonneg=True),
    _op("two", o_two, "2", "2", "constant 2 (7)", constant=2.0, nonneg=True),
    _op("w_1e6", o_w_1e6, "10-6w", "10^{-6} w", "1e-6 w (8)", reads_params=True),
    _op("w_1e5", o_w_1e5, "10-5w", "10^{-5} w", "1e-5 w (9)", reads_params=True),
    _op("w_1e4", o_w_1e4, "10-4w", "10^{-4} w", "1e-4 w (10)", reads_params=True),
    _op("w_1e3", o_w_1e3, "10-3w", "10^{-3} w", "1e-3 w (11)", reads_params=True),
    _op("sign_g", o_sign_g, "sign(g)", "\\operatorname{sign}(g)", "sign(g), sign(0) = 0 (12)"),
    _op("sign_v_hat", o_sign_v_hat, "sign(v hat)", "\\operatorname{sign}(\\hat{v})", "sign(v_hat) (13)", ("v",)),
    _op("qh_v", o_qh_v, "((1-0.7)*g+0.7*v hat)", "(0.3 g + 0.7 \\hat{v})", "0.3 g + 0.7 v_hat (14)", ("v",)),
    _op("qh_s", o_qh_s, "((1-0.95)*g^2+0.95*s hat)", "(0.05 g^{2} + 0.95 \\hat{s})",
        "0.05 g^2 + 0.95 s_hat (15)", ("s",), nonneg=True),
    _op("qh_lam", o_qh_lam, "((1-0.99)*g^3+0.99*lam hat)", "(0.01 g^{3} + 0.99 \\hat{\\lambda})",
        "0.01 g^3 + 0.99 lam_hat (16; the original's label says g^2, its code computes g^3)", ("lam",)),
    _op("agg_v", o_agg_v, "mean(beta*v-g)", "\\overline{\\beta v - g}",
        "mean over beta in {0, 0.9, 0.999} of beta v - g (17)", ("v",)),
    _op("agg_s", o_agg_s, "mean(beta*s-g^2)", "\\overline{\\beta s - g^{2}}",
        "mean over beta in {0, 0.99, 0.999} of beta s - g^2 (18)", ("s",)),
    _op("agg_lam", o_agg_lam, "mean(beta*lam-g^3)", "\\overline{\\beta \\lambda - g^{3}}",
        "mean over beta in {0, 0.999, 0.9999} of beta lam - g^3 (19)", ("lam",)),
)


# ---------------------------------------------------------------------------------------------
# Beyond the paper: what the stronger yardsticks of the zoo need (signSGD and Signum need nothing
# new: sign_g and sign_v_hat).  Lion's interpolation uses a second EMA of g (beta 0.99) and decoupled
# weight decay at the usual strengths needs 1e-2 w and 1e-1 w.  Only the default space has them:
# the compat space stays the original's 20 operands.
# ---------------------------------------------------------------------------------------------

def update_lion_m(buf, ctx):
    # Lion's momentum, beta2 = 0.99: m <- 0.99 m + 0.01 g
    buf.lerp_(ctx.g, 0.01)


def o_sign_lion(ctx, out):
    # sign(0.9 m_{t-1} + 0.1 g): the states are updated before the operands are read, so m here is
    # m_t = 0.99 m_{t-1} + 0.01 g, and m_t + 0.1 g = (0.99/0.9) (0.9 m_{t-1} + 0.1 g), the same sign
    return torch.sign(torch.add(ctx.state["lion_m"], ctx.g, alpha=0.1, out=out), out=out)


def o_w_1e2(ctx, out):
    return torch.mul(ctx.w, 1e-2, out=out)


def o_w_1e1(ctx, out):
    return torch.mul(ctx.w, 1e-1, out=out)


EXTRA_STATES = (
    StateSpec("lion_m", update_lion_m, "lion_m <- 0.99 lion_m + 0.01 g (Lion's momentum, beta2 0.99)"),
)

# not in the paper; added to the default space (not the compat one), after its 20 operands
EXTRA_OPERANDS = (
    _op("sign_lion", o_sign_lion, "sign(0.9*m+0.1*g)", "\\operatorname{sign}(0.9 m + 0.1 g)",
        "Lion's direction sign(0.9 m + 0.1 g), m the EMA of g with beta 0.99 before this step's update",
        ("lion_m",)),
    _op("w_1e2", o_w_1e2, "10-2w", "10^{-2} w", "1e-2 w (decoupled weight decay 0.01, AdamW's default)",
        reads_params=True),
    _op("w_1e1", o_w_1e1, "10-1w", "10^{-1} w", "1e-1 w (decoupled weight decay 0.1)", reads_params=True),
)
