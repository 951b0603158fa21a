"""Kernels the compiler substitutes for built-in ones when it knows more than the op does.

``clip(s1 a, s2 b)`` with per-step factors s1, s2 > 0 equals ``s1 clip(a, (s2 / s1) b)``: the compiler
keeps s1 beside the tensor (it joins the learning rate) and passes c = s2 / s1 here, so neither side
needs its own pass.  When b is known to be >= 0, |b| costs nothing.  Same discipline as
:mod:`deapnos.space.ops`: every input is read before ``out`` is written, temporaries go to
``scratch``, and the module imports only torch and the kernels' helpers of :mod:`deapnos.space.ops`
(``deapnos export`` copies these functions with the helpers they call).
"""
import torch

from ..space.ops import _over, _tmp


def k_clip_nonneg(a, b, out=None, scratch=None):
    # clip a to [-b, b] for b >= 0 known statically: the |b| pass of k_clip is not needed
    lo = torch.neg(b, out=_tmp(scratch, 0, b))
    return torch.clamp(a, lo, b, out=out)


def k_clip_scaled(a, b, c, out=None, scratch=None):
    # clip a to [-c|b|, c|b|], c > 0 a per-step scalar; over b's own buffer the bound is built in place
    over = _over(out, b, a)
    hi = torch.abs(b, out=out if over else _tmp(scratch, 0, b))
    hi = torch.mul(hi, c, out=hi)
    lo = torch.neg(hi, out=_tmp(scratch, 0 if over else 1, b))
    return torch.clamp(a, lo, hi, out=out)


def k_clip_nonneg_scaled(a, b, c, out=None, scratch=None):
    # k_clip_scaled for b >= 0 known statically
    over = _over(out, b, a)
    hi = torch.mul(b, c, out=out if over else _tmp(scratch, 0, b))
    lo = torch.neg(hi, out=_tmp(scratch, 0 if over else 1, b))
    return torch.clamp(a, lo, hi, out=out)


# The denominators of the built-in division kernels, exactly as those kernels build them.  When the
# last instruction of an update is a division and nothing else follows it (no momentum), the
# optimizer hands numerator and denominator to one ``addcdiv`` over the weights instead of
# writing the quotient first: one pass over the parameters fewer.

def den_div(b, out=None):
    # k_div: b + eps*sign(b) with sign(+0) = +1, as copysign(|b| + eps, b)
    d = torch.abs(b, out=out)
    d = torch.add(d, 1e-7, out=d)
    return torch.copysign(d, b, out=d)


def den_div_nonneg(b, out=None):
    return torch.add(b, 1e-7, out=out)


def den_div_eps(b, eps, out=None):
    d = torch.abs(b, out=out)
    d = torch.add(d, eps, out=d)
    return torch.copysign(d, b, out=d)


def den_div_nonneg_eps(b, eps, out=None):
    return torch.add(b, eps, out=out)
