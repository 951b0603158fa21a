"""Element-wise operations of the search space, with protected semantics.

Provides the tensor kernels (``k_*``: unary and binary ops on gradient statistics), the decay functions
a1..a14 and a14p (``d_*``, float64 over the whole step grid) and their specs (:class:`OpSpec`,
:class:`DecaySpec`).  Kernels accept ``out=`` and import only torch (``deapnos export`` copies them).
Protection and the original forms: docs/space.md, "Protected semantics and fixed bugs"; docs/paper.md §1.3-2.2.
"""
from __future__ import annotations

from dataclasses import dataclass
from collections.abc import Callable

import torch

EPS = 1e-7


# ---------------------------------------------------------------------------------------------
# Kernels.  Discipline that lets the optimizer run them in place: a kernel reads all its inputs
# before its first write to ``out``, so ``out`` may be the buffer of any input.  Temporaries go
# to ``scratch`` (a list of preallocated tensors shaped like ``out``, or None: then they are
# allocated).  Every kernel also works on 0-d and (T,) tensors, for folding step tables.
# ---------------------------------------------------------------------------------------------

def _tmp(scratch, i, like):
    """Scratch tensor ``i`` when one of the right shape exists, else None (torch allocates)."""
    if scratch is not None and len(scratch) > i and scratch[i].shape == like.shape:
        return scratch[i]
    return None


def _over(out, b, a):
    """``out`` is ``b``'s own buffer (the optimizer writes over a dying input) and not ``a``'s: a
    temporary built from ``b`` alone may then go straight to ``out`` (in place: a pass and a buffer
    fewer than through scratch)."""
    return (out is not None and out.data_ptr() == b.data_ptr() and out.shape == b.shape
            and a.data_ptr() != b.data_ptr())


def k_neg(x, out=None, scratch=None):
    return torch.neg(x, out=out)


def k_ln(x, out=None, scratch=None):
    # ln(|x| + 1e-7)
    y = torch.abs(x, out=out)
    return torch.log(torch.add(y, 1e-7, out=y), out=y)


def k_ln_nonneg(x, out=None, scratch=None):
    # k_ln for x >= 0 known statically
    y = torch.add(x, 1e-7, out=out)
    return torch.log(y, out=y)


def k_sqrt(x, out=None, scratch=None):
    # sqrt(|x|)
    y = torch.abs(x, out=out)
    return torch.sqrt(y, out=y)


def k_sqrt_nonneg(x, out=None, scratch=None):
    return torch.sqrt(x, out=out)


def k_exp(x, out=None, scratch=None):
    return torch.exp(x, out=out)


def k_abs(x, out=None, scratch=None):
    return torch.abs(x, out=out)


def k_sigmoid(x, out=None, scratch=None):
    return torch.sigmoid(x, out=out)


def k_dsoft(x, out=None, scratch=None):
    # 1 / (1 + |x|)
    y = torch.abs(x, out=out)
    return torch.reciprocal(torch.add(y, 1.0, out=y), out=y)


def k_softplus(x, out=None, scratch=None):
    # ln(|1 + e^x| + 1e-7), unprotected against overflow of e^x as in the original
    y = torch.exp(x, out=out)
    y = torch.add(y, 1.0, out=y)
    return torch.log(torch.add(torch.abs(y, out=y), 1e-7, out=y), out=y)


def k_erf(x, out=None, scratch=None):
    return torch.erf(x, out=out)


def k_erfc(x, out=None, scratch=None):
    return torch.erfc(x, out=out)


def k_asinh(x, out=None, scratch=None):
    return torch.asinh(x, out=out)


def k_tanh(x, out=None, scratch=None):
    return torch.tanh(x, out=out)


def k_atan(x, out=None, scratch=None):
    return torch.atan(x, out=out)


def _signsafe(x, out):
    """x + eps*sign(x) with sign(+0) = +1, computed as copysign(|x| + eps, x): never zero."""
    d = torch.abs(x, out=out)
    d = torch.add(d, 1e-7, out=d)
    return torch.copysign(d, x, out=d)


def k_inv(x, out=None, scratch=None):
    # 1 / (x + eps*sign(x)): never infinite, never sign-flipped
    d = _signsafe(x, _tmp(scratch, 0, x))
    return torch.reciprocal(d, out=out)


def k_inv_nonneg(x, out=None, scratch=None):
    y = torch.add(x, 1e-7, out=out)
    return torch.reciprocal(y, out=y)


def k_i1e(x, out=None, scratch=None):
    # torch's i1e runs about 4x slower in place than out of place (measured on CPU, torch 2.14):
    # over its own input it goes through scratch and copies back, which is still far cheaper
    tmp = _tmp(scratch, 0, x)
    if out is not None and tmp is not None and out.data_ptr() == x.data_ptr():
        return out.copy_(torch.special.i1e(x, out=tmp))
    return torch.special.i1e(x, out=out)


def k_relu(x, out=None, scratch=None):
    return torch.clamp_min(x, 0.0, out=out)


def k_negrelu(x, out=None, scratch=None):
    return torch.clamp_max(x, 0.0, out=out)


def k_softsign(x, out=None, scratch=None):
    # x / (1 + |x|)
    d = torch.abs(x, out=_tmp(scratch, 0, x))
    d = torch.add(d, 1.0, out=d)
    return torch.div(x, d, out=out)


def k_dtanh(x, out=None, scratch=None):
    # 1 - tanh(x)^2
    y = torch.tanh(x, out=out)
    y = torch.mul(y, y, out=y)
    return torch.neg(y, out=y).add_(1.0)


def k_dsig(x, out=None, scratch=None):
    # sigmoid(x) * (1 - sigmoid(x))
    s = torch.sigmoid(x, out=_tmp(scratch, 0, x))
    y = torch.neg(s, out=out).add_(1.0)
    return torch.mul(y, s, out=y)


def k_square(x, out=None, scratch=None):
    return torch.mul(x, x, out=out)


def k_identity(x, out=None, scratch=None):
    return x


# ---------------------------------------------------------------------------------------------
# Tensor kernels: binary
# ---------------------------------------------------------------------------------------------

def k_add(a, b, out=None, scratch=None):
    return torch.add(a, b, out=out)


def k_sub(a, b, out=None, scratch=None):
    return torch.sub(a, b, out=out)


def k_mul(a, b, out=None, scratch=None):
    return torch.mul(a, b, out=out)


def k_max(a, b, out=None, scratch=None):
    return torch.maximum(a, b, out=out)


def k_min(a, b, out=None, scratch=None):
    return torch.minimum(a, b, out=out)


def k_div(a, b, out=None, scratch=None):
    # a / (b + eps*sign(b)), sign(0) = +1
    d = _signsafe(b, _tmp(scratch, 0, b))
    return torch.div(a, d, out=out)


def k_div_nonneg(a, b, out=None, scratch=None):
    # k_div for b >= 0 known statically (sqrt, abs, exp, ...): two passes fewer
    d = torch.add(b, 1e-7, out=out if _over(out, b, a) else _tmp(scratch, 0, b))
    return torch.div(a, d, out=out)


def k_div_eps(a, b, eps, out=None, scratch=None):
    # k_div with a per-step epsilon: the optimizer divides a / (b' s + 1e-7) as (a / (b' + 1e-7/s)) / s
    d = torch.abs(b, out=_tmp(scratch, 0, b))
    d = torch.add(d, eps, out=d)
    d = torch.copysign(d, b, out=d)
    return torch.div(a, d, out=out)


def k_div_nonneg_eps(a, b, eps, out=None, scratch=None):
    d = torch.add(b, eps, out=out if _over(out, b, a) else _tmp(scratch, 0, b))
    return torch.div(a, d, out=out)


def k_divsqrt(a, b, out=None, scratch=None):
    # a / sqrt(1 + b^2)
    d = torch.mul(b, b, out=_tmp(scratch, 0, b))
    d = torch.sqrt(torch.add(d, 1.0, out=d), out=d)
    return torch.div(a, d, out=out)


def k_clip(a, b, out=None, scratch=None):
    # clip a to [-|b|, |b|]; over b's own buffer the bound |b| is built in place
    over = _over(out, b, a)
    hi = torch.abs(b, out=out if over else _tmp(scratch, 0, b))
    lo = torch.neg(hi, out=_tmp(scratch, 0 if over else 1, b))
    return torch.clamp(a, lo, hi, out=out)


def k_mix95(a, b, out=None, scratch=None):
    # 0.95*a + 0.05*b
    t = torch.mul(b, 0.05, out=_tmp(scratch, 0, b))
    return torch.add(t, a, alpha=0.95, out=out)


def k_pow(a, b, out=None, scratch=None):
    # (|a| + eps)^b: 0^b with b < 0 stays finite
    base = torch.abs(a, out=_tmp(scratch, 0, a))
    base = torch.add(base, 1e-7, out=base)
    return torch.pow(base, b, out=out)


# ---------------------------------------------------------------------------------------------
# Tensor kernels that need context: state, step, random generator or tensor boundaries
# ---------------------------------------------------------------------------------------------

def k_dropout(x, rate, generator, out=None, scratch=None):
    keep = torch.empty_like(x) if _tmp(scratch, 0, x) is None else scratch[0]
    keep.bernoulli_(1.0 - rate, generator=generator)
    y = torch.mul(x, keep, out=out)
    return torch.mul(y, 1.0 / (1.0 - rate), out=y)


def k_dropout50(x, generator, out=None, scratch=None):
    return k_dropout(x, 0.5, generator, out=out, scratch=scratch)


def k_dropout30(x, generator, out=None, scratch=None):
    return k_dropout(x, 0.3, generator, out=out, scratch=scratch)


def k_dropout10(x, generator, out=None, scratch=None):
    return k_dropout(x, 0.1, generator, out=out, scratch=scratch)


def k_norm(x, sizes, out=None, scratch=None):
    # clip by L2 norm 1 over each parameter tensor: x * min(1, 1/||x||)
    norms = torch.stack(torch._foreach_norm(list(torch.split(x.reshape(-1), sizes))))
    scale = torch.clamp_max(torch.reciprocal(norms), 1.0)
    # output_size: no read of the sizes back from the device (and a size a tracer knows)
    scale = torch.repeat_interleave(scale, torch.tensor(sizes, device=x.device), output_size=x.numel()).to(x.dtype)
    return torch.mul(x, scale, out=out)


def k_ema(x, state, t, out=None, scratch=None):
    # fixed expMovAvg: n <- 0.95 n + 0.05 x, bias corrected with the real step count t+1
    n = state.get("n")
    if n is None:
        n = state["n"] = torch.zeros_like(x)
    n.mul_(0.95).add_(x, alpha=0.05)
    return torch.div(n, 1.0 - 0.95 ** (t + 1), out=out)


def k_delta(x, state, t, out=None, scratch=None):
    # fixed deltaChange: the first difference x_t - x_{t-1}, with x_{-1} = 0
    prev = state.get("prev")
    if prev is None:
        prev = state["prev"] = torch.zeros_like(x)
    d = torch.sub(x, prev, out=_tmp(scratch, 0, x))
    prev.copy_(x)
    return torch.clone(d) if out is None else out.copy_(d)


def k_runmax(x, state, t, out=None, scratch=None):
    # MaxValue: n <- max(x, n) with n_0 = 0, i.e. max(0, running max of x)
    n = state.get("n")
    if n is None:
        n = state["n"] = torch.zeros_like(x)
    torch.maximum(n, x, out=n)
    return torch.clone(n) if out is None else out.copy_(n)


# compat versions of the stateful ops (docs/paper.md §8.2), for reproducing the original
def k_ema_compat(x, state, t, out=None, scratch=None):
    n = state.get("n")
    if n is None:
        n = state["n"] = torch.zeros_like(x)
    n.mul_(0.95).add_(x, alpha=0.05)
    return torch.div(n, 1.0 - 0.95 ** 0, out=out)  # the original's frozen k = 0: divides by zero


def k_delta_compat(x, state, t, out=None, scratch=None):
    n = state.get("n")
    if n is None:
        n = state["n"] = torch.zeros_like(x)
    torch.sub(x, n, out=n)  # stores the output, not x: an alternating sum
    return torch.clone(n) if out is None else out.copy_(n)


# compat versions of the division and power ops (docs/paper.md §8.2): the original's unprotected forms
def k_inv_compat(x, out=None, scratch=None):
    # 1 / (x + 1e-7): infinite at x = -1e-7, sign-flipped for -1e-7 < x < 0
    y = torch.add(x, 1e-7, out=out)
    return torch.reciprocal(y, out=y)


def k_div_compat(a, b, out=None, scratch=None):
    # a / (b + 1e-7): infinite (or NaN) at b = -1e-7
    d = torch.add(b, 1e-7, out=_tmp(scratch, 0, b))
    return torch.div(a, d, out=out)


def k_pow_compat(a, b, out=None, scratch=None):
    # |a|^b: 0^b is inf for b < 0, and 0^0 = 1
    base = torch.abs(a, out=_tmp(scratch, 0, a))
    return torch.pow(base, b, out=out)


# kernels with a cheaper twin when an argument is known to be >= 0: kernel -> (arg index, twin).
# For b >= 0 the compat division is the same function as the twin (b + 1e-7 > 0).
NONNEG_TWINS = {k_div: (1, k_div_nonneg), k_inv: (0, k_inv_nonneg), k_sqrt: (0, k_sqrt_nonneg),
                k_ln: (0, k_ln_nonneg), k_div_compat: (1, k_div_nonneg), k_inv_compat: (0, k_inv_nonneg)}


# ---------------------------------------------------------------------------------------------
# Decay functions a1..a14 and a14p: f(t, T) on the float64 grid t = 0..T-1
# ---------------------------------------------------------------------------------------------

def d_a1(t, T):
    return 1.0 - t / T


def d_a2(t, T):
    return t / T


def d_a3(t, T):
    return 0.5 * (1.0 + torch.cos(torch.pi * t / T))


def d_a4(t, T):
    return 0.5 * (1.0 - torch.cos(torch.pi * t / T))


def d_a5(t, T):
    return 0.5 * (1.0 + torch.cos(2.0 * torch.pi * t / T))


def d_a6(t, T):
    return 0.5 * (1.0 - torch.cos(2.0 * torch.pi * t / T))


def d_a7(t, T):
    return 0.5 * (1.0 + torch.cos(torch.pi * (torch.remainder(2.0 * t, T) / T)))


def d_a8(t, T):
    return 0.5 * (1.0 - torch.cos(torch.pi * (torch.remainder(2.0 * t, T) / T)))


def d_a9(t, T):
    return 1.0 - torch.remainder(2.0 * t, T) / T


def d_a10(t, T):
    return torch.remainder(2.0 * t, T) / T


def d_a11(t, T):
    return torch.pow(0.01, t / T)


def d_a12(t, T):
    return 1.0 - torch.pow(0.01, t / T)


def d_a13(t, T):
    # Demon: beta_d / ((1 - beta_0) + beta_d), beta_d = beta_0 (1 - (t+1)/T), beta_0 = 0.95
    beta_d = 0.95 * (1.0 - (t + 1.0) / T)
    return beta_d / ((1.0 - 0.95) + beta_d)


def d_a14(t, T):
    # the search's a14: 0.95 - a13, rising from about 0 to 0.95
    return 0.95 - d_a13(t, T)


def d_a14p(t, T):
    # a14' of finalOptimizers.EvolvedLRSchedules: (beta_0 - beta_d)/((1 - beta_0) + beta_d), up to 19
    beta_d = 0.95 * (1.0 - (t + 1.0) / T)
    return (0.95 - beta_d) / ((1.0 - 0.95) + beta_d)


def decay_grid(T: int) -> torch.Tensor:
    """The float64 step grid t = 0..T-1 on which decay tables are computed."""
    return torch.arange(T, dtype=torch.float64)


# ---------------------------------------------------------------------------------------------
# Specs: what the search space registers
# ---------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class OpSpec:
    """One operation of the search space.

    ``fn(*inputs, [context...], out=None)`` computes it.  ``needs`` names the context arguments
    the optimizer passes by keyword after the inputs: ``state`` (a per-node dict that persists
    across steps), ``t`` (0-based step), ``generator`` (the optimizer's torch.Generator),
    ``sizes`` (element counts of the parameter tensors in the flat buffer).  An op with needs is
    never folded into a per-step table: it always runs on the full tensor.

    ``fmt`` renders it as text with ``{0}``, ``{1}`` for the arguments; ``latex`` likewise.
    """
    name: str
    arity: int
    fn: Callable
    fmt: str
    latex: str
    needs: tuple[str, ...] = ()
    commutative: bool = False
    nonneg: bool = False        # output is >= 0 whatever the input (lets division skip a pass)
    doc: str = ""
    accepts_out: bool = True
    uses_scratch: bool = True    # takes ``scratch=`` (built-in kernels); plugin ops need not

    @property
    def pure(self) -> bool:
        return not self.needs


@dataclass(frozen=True)
class DecaySpec:
    """A decay function leaf: ``fn(t, T)`` on a float64 grid tensor ``t``."""
    name: str
    fn: Callable
    latex: str
    doc: str = ""


def _u(name, fn, fmt, latex, doc="", **kw):
    return OpSpec(name, 1, fn, fmt, latex, doc=doc, **kw)


def _b(name, fn, fmt, latex, doc="", **kw):
    return OpSpec(name, 2, fn, fmt, latex, doc=doc, **kw)


# docs/paper.md §1.3, in the order of the original's `un` index (-1 is the identity)
TENSOR_UNARY = (
    _u("id", k_identity, "{0}", "{0}", "identity (un = -1)"),
    _u("neg", k_neg, "-({0})", "-\\left({0}\\right)", "negation (un 0)"),
    _u("ln", k_ln, "ln|{0}|", "\\ln\\left|{0}\\right|", "ln(|x| + 1e-7) (un 1)"),
    _u("sqrt", k_sqrt, "sqrt|{0}|", "\\sqrt{{\\left|{0}\\right|}}", "sqrt(|x|) (un 2)", nonneg=True),
    _u("exp", k_exp, "exp({0})", "e^{{{0}}}", "exp(x), unprotected (un 3)", nonneg=True),
    _u("abs", k_abs, "|{0}|", "\\left|{0}\\right|", "|x| (un 4)", nonneg=True),
    _u("sigmoid", k_sigmoid, "sig({0})", "\\sigma\\left({0}\\right)", "logistic sigmoid (un 5)", nonneg=True),
    _u("dsoft", k_dsoft, "1/(1+|{0}|)", "\\frac{{1}}{{1+\\left|{0}\\right|}}", "1/(1+|x|) (un 6)", nonneg=True),
    _u("softplus", k_softplus, "ln|1+exp({0})|", "\\ln\\left|1+e^{{{0}}}\\right|",
       "ln(|1+e^x| + 1e-7) (un 7)"),
    _u("erf", k_erf, "erf({0})", "\\operatorname{{erf}}\\left({0}\\right)", "erf (un 8)"),
    _u("erfc", k_erfc, "erfc({0})", "\\operatorname{{erfc}}\\left({0}\\right)", "erfc (un 9)", nonneg=True),
    _u("asinh", k_asinh, "arcsinh({0})", "\\sinh^{{-1}}\\left({0}\\right)", "asinh (un 10)"),
    _u("tanh", k_tanh, "tanh({0})", "\\tanh\\left({0}\\right)", "tanh (un 11)"),
    _u("atan", k_atan, "arctan({0})", "\\tan^{{-1}}\\left({0}\\right)", "atan (un 12)"),
    _u("inv", k_inv, "1/({0})", "\\frac{{1}}{{{0}}}", "1/(x + eps*sign(x)), sign-safe (un 13)"),
    _u("i1e", k_i1e, "bessel_i1e({0})", "I_{{1e}}\\left({0}\\right)", "exp-scaled Bessel I1 (un 14)"),
    _u("relu", k_relu, "max({0}, 0)", "\\max\\left({0}, 0\\right)", "max(x, 0) (un 15)", nonneg=True),
    _u("negrelu", k_negrelu, "min({0}, 0)", "\\min\\left({0}, 0\\right)", "min(x, 0) (un 16)"),
    _u("drop50", k_dropout50, "drop({0}, 0.5)", "\\operatorname{{drop}}_{{0.5}}\\left({0}\\right)",
       "dropout, rate 0.5, rescaled (un 17)", needs=("generator",)),
    _u("drop30", k_dropout30, "drop({0}, 0.3)", "\\operatorname{{drop}}_{{0.3}}\\left({0}\\right)",
       "dropout, rate 0.3, rescaled (un 18)", needs=("generator",)),
    _u("drop10", k_dropout10, "drop({0}, 0.1)", "\\operatorname{{drop}}_{{0.1}}\\left({0}\\right)",
       "dropout, rate 0.1, rescaled (un 19)", needs=("generator",)),
    _u("norm", k_norm, "norm({0})", "\\operatorname{{clip}}_{{\\|\\cdot\\|\\le 1}}\\left({0}\\right)",
       "clip by L2 norm 1 per parameter tensor (un 20)", needs=("sizes",)),
    _u("softsign", k_softsign, "({0})/(1+|{0}|)", "\\frac{{{0}}}{{1+\\left|{0}\\right|}}", "softsign (un 21)"),
    _u("ema", k_ema, "expMovAvg({0})", "\\operatorname{{EMA}}_{{0.95}}\\left({0}\\right)",
       "bias-corrected EMA, beta 0.95 (un 22, fixed: the original divides by zero)", needs=("state", "t")),
    _u("delta", k_delta, "deltaChange({0})", "\\Delta\\left({0}\\right)",
       "first difference x_t - x_(t-1) (un 23, fixed: the original is an alternating sum)",
       needs=("state", "t")),
    _u("runmax", k_runmax, "MaxValue({0})", "\\max_{{\\tau\\le t}}\\left({0}\\right)",
       "running max, floored at 0 (un 24, fixed: reachable by mutation)", needs=("state", "t")),
)

# docs/paper.md §1.4, in the order of the original's `bin` index
TENSOR_BINARY = (
    _b("add", k_add, "({0})+({1})", "{0} + {1}", "a + b (bin 0)", commutative=True),
    _b("sub", k_sub, "({0})-({1})", "{0} - {1}", "a - b (bin 1)"),
    _b("mul", k_mul, "({0})*({1})", "{0} \\cdot {1}", "a * b (bin 2)", commutative=True),
    _b("max", k_max, "max({0}, {1})", "\\max\\left({0}, {1}\\right)", "max(a, b) (bin 3)", commutative=True),
    _b("min", k_min, "min({0}, {1})", "\\min\\left({0}, {1}\\right)", "min(a, b) (bin 4)", commutative=True),
    _b("div", k_div, "({0}) / ({1})", "\\frac{{{0}}}{{{1}}}", "a / (b + eps*sign(b)), sign-safe (bin 5)"),
    _b("divsqrt", k_divsqrt, "({0}) / (sqrt(1+({1})^2))", "\\frac{{{0}}}{{\\sqrt{{1+\\left({1}\\right)^2}}}}",
       "a / sqrt(1 + b^2) (bin 6)"),
    _b("clip", k_clip, "clip({0}, {1})", "\\operatorname{{clip}}\\left({0}, \\pm\\left|{1}\\right|\\right)",
       "clip a to [-|b|, |b|] (bin 7)"),
    _b("mix95", k_mix95, "(0.95*({0})+0.05*({1}))", "0.95\\,{0} + 0.05\\,{1}", "0.95 a + 0.05 b (bin 8)"),
    _b("pow", k_pow, "(|{0}|)^({1})", "\\left|{0}\\right|^{{{1}}}", "(|a| + eps)^b (bin 9)", nonneg=True),
)

# docs/paper.md §2.2: ops of the decay expressions, also used by schedule trees
DECAY_UNARY = (
    _u("sigmoid", k_sigmoid, "sig({0})", "\\sigma\\left({0}\\right)", "logistic sigmoid", nonneg=True),
    _u("dsoft", k_dsoft, "1/(1+|{0}|)", "\\frac{{1}}{{1+\\left|{0}\\right|}}", "deriv_soft: 1/(1+|x|)", nonneg=True),
    _u("erf", k_erf, "erf({0})", "\\operatorname{{erf}}\\left({0}\\right)", "erf"),
    _u("erfc", k_erfc, "erfc({0})", "\\operatorname{{erfc}}\\left({0}\\right)", "erfc", nonneg=True),
    _u("tanh", k_tanh, "tanh({0})", "\\tanh\\left({0}\\right)", "tanh"),
    _u("atan", k_atan, "arctan({0})", "\\tan^{{-1}}\\left({0}\\right)", "atan"),
    _u("i1e", k_i1e, "bessel_i1e({0})", "I_{{1e}}\\left({0}\\right)", "exp-scaled Bessel I1"),
    _u("square", k_square, "({0})^2", "\\left({0}\\right)^2", "x^2", nonneg=True),
    _u("sqrt", k_sqrt, "sqrt({0})", "\\sqrt{{{0}}}", "sqrt(|x|)", nonneg=True),
    _u("softsign", k_softsign, "({0})/(1+|{0}|)", "\\frac{{{0}}}{{1+\\left|{0}\\right|}}", "softsign"),
    _u("dtanh", k_dtanh, "deriv_tanh({0})", "\\operatorname{{sech}}^2\\left({0}\\right)", "1 - tanh(x)^2",
       nonneg=True),
    _u("dsig", k_dsig, "deriv_sig({0})", "\\sigma'\\left({0}\\right)", "sigmoid(x)(1 - sigmoid(x))", nonneg=True),
    _u("id", k_identity, "{0}", "{0}", "identity"),
)

DECAY_BINARY = (
    _b("add", k_add, "({0})+({1})", "{0} + {1}", "a + b", commutative=True),
    _b("sub", k_sub, "({0})-({1})", "{0} - {1}", "a - b"),
    _b("mul", k_mul, "({0})*({1})", "{0} \\cdot {1}", "a * b", commutative=True),
    _b("max", k_max, "max({0}, {1})", "\\max\\left({0}, {1}\\right)", "max(a, b)", commutative=True),
    _b("min", k_min, "min({0}, {1})", "\\min\\left({0}, {1}\\right)", "min(a, b)", commutative=True),
    _b("div", k_div, "({0}) / ({1})", "\\frac{{{0}}}{{{1}}}", "a / (b + eps*sign(b)), sign-safe"),
    _b("divsqrt", k_divsqrt, "({0}) / (sqrt(1+({1})^2))", "\\frac{{{0}}}{{\\sqrt{{1+\\left({1}\\right)^2}}}}",
       "a / sqrt(1 + b^2)"),
)

DECAYS = (
    DecaySpec("a1", d_a1, "a_{{1}}", "1 - t/T: linear 1 to 0"),
    DecaySpec("a2", d_a2, "a_{{2}}", "t/T: linear 0 to 1"),
    DecaySpec("a3", d_a3, "a_{{3}}", "cosine 1 to 0"),
    DecaySpec("a4", d_a4, "a_{{4}}", "cosine 0 to 1"),
    DecaySpec("a5", d_a5, "a_{{5}}", "one full cosine period, 1 to 0 to 1"),
    DecaySpec("a6", d_a6, "a_{{6}}", "0 to 1 to 0"),
    DecaySpec("a7", d_a7, "a_{{7}}", "cosine decay with one restart"),
    DecaySpec("a8", d_a8, "a_{{8}}", "cosine increase, two cycles"),
    DecaySpec("a9", d_a9, "a_{{9}}", "linear decay, two cycles"),
    DecaySpec("a10", d_a10, "a_{{10}}", "linear increase, two cycles"),
    DecaySpec("a11", d_a11, "a_{{11}}", "0.01^(t/T): exponential 1 to 0.01"),
    DecaySpec("a12", d_a12, "a_{{12}}", "1 - 0.01^(t/T)"),
    DecaySpec("a13", d_a13, "a_{{13}}", "Demon decay, 0.95 to 0"),
    DecaySpec("a14", d_a14, "a_{{14}}", "0.95 - a13 (the search's a14)"),
)

# a14' of EvolvedLRSchedules: a schedule leaf only (it leaves [0, 1], so it is no Decay)
A14P = DecaySpec("a14p", d_a14p, "a'_{{14}}", "(0.95 - beta_d)/(0.05 + beta_d), up to 19 (LR schedule a14')")

COMPAT_STATEFUL = {"ema": k_ema_compat, "delta": k_delta_compat}
# run.compat = true: the original's unprotected division and power (docs/paper.md §1.3-1.4, §2.2, §8.2),
# by (registry, name): the update tree's inv/div/pow and the decay (and schedule) ops' div
COMPAT_UNSAFE: dict[tuple[str, str], Callable] = {
    ("unary", "inv"): k_inv_compat, ("binary", "div"): k_div_compat, ("binary", "pow"): k_pow_compat,
    ("decay_binary", "div"): k_div_compat}
