"""Canonical form and key of a genome: equal keys mean the same optimizer.

Provides :func:`canonical_text` (``kind ~ update | lr = schedule | flip`` after rewrites that never
change what the optimizer computes: identities removed, commutative arguments and stacked decays
sorted, idempotent and same-argument ops collapsed, ...) and :func:`canonical_key`, by which the
dedup cache keys evaluations.  The rewrites: docs/search.md, "The dedup cache".
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

from . import ops as _ops
from .fold import fold
from .genome import format_text
from .psets import DECAY_ON_BRANCH, Schedule, Tensor

IDEMPOTENT = {"abs": _ops.k_abs, "relu": _ops.k_relu, "negrelu": _ops.k_negrelu, "norm": _ops.k_norm}
SAME_ARGS_COLLAPSE = {"max": _ops.k_max, "min": _ops.k_min, "clip": _ops.k_clip, "mix95": _ops.k_mix95}


@dataclass
class _N:
    """A node of the canonical form: name, return type, arguments."""
    name: str
    ret: type
    args: list = field(default_factory=list)
    text: str = ""
    det: bool = True        # deterministic: no dropout, no state below
    nonneg: bool = False

    def render(self):
        self.text = self.name if not self.args else f"{self.name}({', '.join(a.text for a in self.args)})"
        return self


def _to_nodes(tree) -> _N:
    return fold(tree, lambda node, args: _N(node.name, node.ret, args))


def _builtin(spec, fn) -> bool:
    return spec is not None and getattr(spec, "fn", None) is fn


def _canon(n: _N, space) -> _N:
    n.args = [_canon(a, space) for a in n.args]
    if not n.args:
        if n.ret is Tensor:
            spec = space.operands.get(n.name)
            n.nonneg = bool(spec and spec.nonneg)
        return n.render()
    if n.ret is Tensor and n.name == DECAY_ON_BRANCH:
        return _canon_decay_chain(n)
    spec = space.op_spec(n.ret, n.name)
    n.det = all(a.det for a in n.args) and (spec is None or not spec.needs)
    n.nonneg = bool(spec and spec.nonneg)
    if spec is not None and n.name == "id" and spec.fn is _ops.k_identity:
        return n.args[0]
    if n.ret is Tensor and n.name == "neg" and _builtin(spec, _ops.k_neg) and n.args[0].name == "neg" \
            and _builtin(space.op_spec(Tensor, "neg"), _ops.k_neg):
        return n.args[0].args[0]
    if n.ret is Tensor and len(n.args) == 1 and n.name in IDEMPOTENT and _builtin(spec, IDEMPOTENT[n.name]):
        a = n.args[0]
        if a.name == n.name:
            return a
        if n.name == "abs" and a.name == "neg" and _builtin(space.op_spec(Tensor, "neg"), _ops.k_neg):
            n.args = [a.args[0]]
            return n.render()
        if n.name in ("abs", "relu") and a.nonneg:
            return a
    if spec is not None and spec.commutative:
        n.args.sort(key=lambda a: a.text)
    if len(n.args) == 2 and n.args[0].text == n.args[1].text and n.args[0].det \
            and n.name in SAME_ARGS_COLLAPSE and _builtin(spec, SAME_ARGS_COLLAPSE[n.name]):
        return n.args[0]
    if n.name == "mul" and _builtin(spec, _ops.k_mul) and n.ret in (Tensor, Schedule):
        ones = [a for a in n.args if not a.args and a.name == "one"]
        if ones:
            return n.args[1] if n.args[0] is ones[0] else n.args[0]
    return n.render()


def _canon_decay_chain(n: _N) -> _N:
    decays, x = [], n
    while x.ret is Tensor and x.name == DECAY_ON_BRANCH and len(x.args) == 2:
        decays.append(x.args[0])
        x = x.args[1]
    decays.sort(key=lambda d: d.text)
    out = x
    for d in reversed(decays):
        out = _N(DECAY_ON_BRANCH, Tensor, [d, out], det=out.det).render()
    return out


def canonical_tree_text(tree, space) -> str:
    return _canon(_to_nodes(tree), space).text


def canonical_text(genome) -> str:
    """The canonical text of a genome: ``kind ~ update | lr = schedule | flip``."""
    space = genome.space
    return format_text(genome.momentum, canonical_tree_text(genome.update, space),
                       canonical_tree_text(genome.schedule, space), genome.flip)


def canonical_key(genome) -> str:
    """A short hash of :func:`canonical_text` (20 hex digits)."""
    return hashlib.sha256(canonical_text(genome).encode()).hexdigest()[:20]
