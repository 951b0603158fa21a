"""The search space as strongly typed DEAP primitive sets, and the API that plugins extend it with.

Provides the types :class:`Tensor`, :class:`Decay`, :class:`Schedule`, the sets ``update`` and
``schedule`` in a :class:`SearchSpace` (``add_operand``, ``add_unary``, ``add_binary``, ``add_decay``),
:func:`default_space`, :func:`builtin_space` and :func:`build_space`.  An op name shared by several
types is one :class:`OpName` token.  Details: docs/space.md, "Types and primitive sets"; docs/plugins.md.
"""
from __future__ import annotations

import dataclasses
import functools
from dataclasses import dataclass, field
from collections.abc import Callable, Iterable

from deap import gp

from . import ops as _ops
from . import operands as _operands
from .operands import OperandSpec, StateSpec
from .ops import DecaySpec, OpSpec


class Tensor:
    """DEAP type: an element-wise quantity per parameter tensor."""


class Decay:
    """DEAP type: a per-step scalar in [0, 1], a function of t and T."""


class Schedule:
    """DEAP type: a per-step multiplier of the base learning rate (not bounded)."""


TYPES = {"Tensor": Tensor, "Decay": Decay, "Schedule": Schedule}

DECAY_ON_BRANCH = "decay"   # name of the primitive (Decay, Tensor) -> Tensor

MOMENTUM_KINDS = ("none", "mom", "nest", "nesterov")
MOMENTUM_DOC = {
    "none": "w <- w + s*lr_t*U",
    "mom": "M <- m_t M + s*lr_t*U;  w <- w + M",
    "nest": "M <- m_t M + s*lr_t*U;  w <- w + M + s*lr_t*U   (the search's 'Nest', docs/paper.md §1.5)",
    "nesterov": "M <- m_t M + s*lr_t*U;  w <- w + m_t M + s*lr_t*U   (standard Nesterov, Opt9/Opt10)",
}


class SpaceError(ValueError):
    """A search space that cannot be built or extended as asked."""


class OpName:
    """The one object DEAP sees behind every primitive of a given name (see module docstring)."""

    def __init__(self, name: str):
        self.name = name

    def __repr__(self):
        return f"OpName({self.name!r})"


@dataclass
class SearchSpace:
    """Registry of operands, ops and decays; :meth:`build` turns it into validated primitive sets.

    Every registry maps a name to its spec.  The names a genome's text uses are these names.
    """
    operands: dict[str, OperandSpec] = field(default_factory=dict)
    states: dict[str, StateSpec] = field(default_factory=dict)
    unary: dict[str, OpSpec] = field(default_factory=dict)
    binary: dict[str, OpSpec] = field(default_factory=dict)
    decays: dict[str, DecaySpec] = field(default_factory=dict)
    decay_unary: dict[str, OpSpec] = field(default_factory=dict)
    decay_binary: dict[str, OpSpec] = field(default_factory=dict)
    schedule_leaves: dict[str, DecaySpec] = field(default_factory=dict)
    schedule_constants: dict[str, float] = field(default_factory=dict)
    provenance: dict[str, str] = field(default_factory=dict)   # "kind:name" -> who added it
    _built: bool = False
    update_pset: gp.PrimitiveSetTyped | None = None
    schedule_pset: gp.PrimitiveSetTyped | None = None

    # -- the extension API -------------------------------------------------------------------

    def add_operand(self, name: str, compute: Callable, *, states: Iterable[StateSpec] = (),
                    reads_params: bool = False, fmt: str | None = None, latex: str | None = None,
                    nonneg: bool = False, doc: str = "", source: str = "deapnos") -> OperandSpec:
        """Add a leaf of the update tree.

        ``compute(ctx, out)`` returns a tensor shaped like ``ctx.g`` (see
        :class:`~deapnos.space.operands.OperandContext`).  ``states`` are the accumulators it reads
        as ``ctx.state[name]``; each starts at zero and its ``update(buf, ctx)`` runs in place once
        per step.  A state already registered under the same name must be the same spec.
        """
        self._check_open()
        self._check_name(name, self.operands, "operand")
        if name in self.unary or name in self.binary or name in self.decays or name == DECAY_ON_BRANCH:
            raise SpaceError(f"operand {name!r} clashes with an op or decay of the same name")
        states = tuple(states)
        for state in states:
            known = self.states.get(state.name)
            if known is not None and known is not state:
                raise SpaceError(f"state slot {state.name!r} of operand {name!r} is already defined by "
                                 f"{self.provenance.get('state:' + state.name, 'deapnos')}")
            self.states[state.name] = state
            self.provenance.setdefault("state:" + state.name, source)
        spec = OperandSpec(name, compute, fmt or name, latex or _latex_name(name),
                           states=tuple(s.name for s in states), reads_params=reads_params,
                           nonneg=nonneg, doc=doc)
        self.operands[name] = spec
        self.provenance["operand:" + name] = source
        return spec

    def add_unary(self, name: str, fn: Callable, *, fmt: str | None = None, latex: str | None = None,
                  needs: Iterable[str] = (), nonneg: bool = False, accepts_out: bool = False,
                  doc: str = "", source: str = "deapnos") -> OpSpec:
        """Add a unary tensor op ``fn(x)``; with ``needs=("state", "t")`` it is ``fn(x, state=, t=)``."""
        return self._add_op(self.unary, 1, name, fn, fmt or name + "({0})",
                            latex or "\\operatorname{" + _latex_escape(name) + "}\\left({0}\\right)",
                            tuple(needs), False, nonneg, accepts_out, doc, source)

    def add_binary(self, name: str, fn: Callable, *, fmt: str | None = None, latex: str | None = None,
                   commutative: bool = False, nonneg: bool = False, accepts_out: bool = False,
                   doc: str = "", source: str = "deapnos") -> OpSpec:
        """Add a binary tensor op ``fn(a, b)``."""
        return self._add_op(self.binary, 2, name, fn, fmt or name + "({0}, {1})",
                            latex or "\\operatorname{" + _latex_escape(name) + "}\\left({0}, {1}\\right)",
                            (), commutative, nonneg, accepts_out, doc, source)

    def add_decay(self, name: str, fn: Callable, *, latex: str | None = None, doc: str = "",
                  source: str = "deapnos") -> DecaySpec:
        """Add a decay function ``fn(t, T)`` (``t`` a float64 tensor of steps) as a leaf of
        decay expressions and of schedule trees.  Its values should lie in [0, 1]."""
        self._check_open()
        self._check_name(name, self.decays, "decay function")
        if name in self.schedule_leaves or name in self.schedule_constants:
            raise SpaceError(f"decay function {name!r} clashes with a schedule leaf of the same name")
        spec = DecaySpec(name, fn, latex or _latex_name(name), doc)
        self.decays[name] = spec
        self.schedule_leaves[name] = spec
        self.provenance["decay:" + name] = source
        return spec

    def _add_op(self, registry, arity, name, fn, fmt, latex, needs, commutative, nonneg,
                accepts_out, doc, source):
        self._check_open()
        kind = "unary op" if arity == 1 else "binary op"
        self._check_name(name, registry, kind)
        if name == DECAY_ON_BRANCH or name in self.operands:
            raise SpaceError(f"{kind} {name!r} clashes with a name the update tree already uses")
        bad = set(needs) - {"state", "t", "generator", "sizes"}
        if bad:
            raise SpaceError(f"{kind} {name!r}: unknown needs {sorted(bad)}; "
                             "allowed: state, t, generator, sizes")
        spec = OpSpec(name, arity, fn, fmt, latex, needs=needs, commutative=commutative,
                      nonneg=nonneg, doc=doc, accepts_out=accepts_out, uses_scratch=False)
        registry[name] = spec
        self.provenance[f"{'unary' if arity == 1 else 'binary'}:{name}"] = source
        return spec

    def _check_open(self):
        if self._built:
            raise SpaceError("the search space is already built; add primitives in the "
                             "deapnos_add_primitives hook, before build()")

    def _check_name(self, name, registry, kind):
        if not isinstance(name, str) or not name.isidentifier():
            raise SpaceError(f"{kind} name {name!r} must be an identifier (letters, digits, _)")
        if name in registry:
            prev = self.provenance.get(f"{_prov_kind(kind)}:{name}", "deapnos")
            raise SpaceError(f"{kind} {name!r} is already defined (by {prev})")

    # -- building ----------------------------------------------------------------------------

    def build(self) -> SearchSpace:
        """Create the DEAP primitive sets and validate them.  Idempotent."""
        if self._built:
            return self
        self.update_pset = self._build_update_pset()
        self.schedule_pset = self._build_schedule_pset()
        for pset in (self.update_pset, self.schedule_pset):
            validate_pset(pset)
        self._built = True
        return self

    def _build_update_pset(self) -> gp.PrimitiveSetTyped:
        pset = gp.PrimitiveSetTyped("update", [], Tensor)
        tokens: dict[str, OpName] = {}
        for name in self.operands:
            pset.addTerminal(name, Tensor, name=name)
        for spec in self.unary.values():
            pset.addPrimitive(_token(tokens, spec.name), [Tensor], Tensor, name=spec.name)
        for spec in self.binary.values():
            pset.addPrimitive(_token(tokens, spec.name), [Tensor, Tensor], Tensor, name=spec.name)
        pset.addPrimitive(_token(tokens, DECAY_ON_BRANCH), [Decay, Tensor], Tensor, name=DECAY_ON_BRANCH)
        for name in self.decays:
            pset.addTerminal(name, Decay, name=name)
        for spec in self.decay_unary.values():
            pset.addPrimitive(_token(tokens, spec.name), [Decay], Decay, name=spec.name)
        for spec in self.decay_binary.values():
            pset.addPrimitive(_token(tokens, spec.name), [Decay, Decay], Decay, name=spec.name)
        return pset

    def _build_schedule_pset(self) -> gp.PrimitiveSetTyped:
        pset = gp.PrimitiveSetTyped("schedule", [], Schedule)
        tokens: dict[str, OpName] = {}
        for name in self.schedule_leaves:
            pset.addTerminal(name, Schedule, name=name)
        for name in self.schedule_constants:
            pset.addTerminal(name, Schedule, name=name)
        for spec in self.decay_unary.values():
            pset.addPrimitive(_token(tokens, spec.name), [Schedule], Schedule, name=spec.name)
        for spec in self.decay_binary.values():
            pset.addPrimitive(_token(tokens, spec.name), [Schedule, Schedule], Schedule, name=spec.name)
        return pset

    # -- look-ups used by parsers, compilers and mutation -------------------------------------

    def primitive(self, pset_name: str, ret_type: type, name: str):
        """The DEAP primitive or terminal called ``name`` that returns ``ret_type``, or None."""
        pset = self.update_pset if pset_name == "update" else self.schedule_pset
        assert pset is not None, "build() the space before looking up its primitives"
        for node in pset.primitives.get(ret_type, ()):
            if node.name == name:
                return node
        for node in pset.terminals.get(ret_type, ()):
            if node.name == name:
                return node
        return None

    def op_spec(self, ret_type: type, name: str) -> OpSpec | None:
        if ret_type is Tensor:
            return self.unary.get(name) or self.binary.get(name)
        return self.decay_unary.get(name) or self.decay_binary.get(name)

    def leaf_spec(self, ret_type: type, name: str):
        if ret_type is Tensor:
            return self.operands.get(name)
        if ret_type is Decay:
            return self.decays.get(name)
        if name in self.schedule_constants:
            return self.schedule_constants[name]
        return self.schedule_leaves.get(name)


def _token(tokens: dict, name: str) -> OpName:
    return tokens.setdefault(name, OpName(name))


def _prov_kind(kind: str) -> str:
    return {"operand": "operand", "unary op": "unary", "binary op": "binary",
            "decay function": "decay"}[kind]


def _latex_escape(name: str) -> str:
    return name.replace("_", "\\_")


def _latex_name(name: str) -> str:
    return "\\mathrm{" + _latex_escape(name) + "}"


def validate_pset(pset: gp.PrimitiveSetTyped) -> None:
    """Every type reachable from the root has at least one terminal and one primitive.

    Without a terminal, a tree of that type can never be finished; without a primitive, DEAP's
    generators and mutations fail on the first node of that type.  Raises :class:`SpaceError`
    naming the type.
    """
    seen, todo = set(), [pset.ret]
    while todo:
        typ = todo.pop()
        if typ in seen:
            continue
        seen.add(typ)
        name = getattr(typ, "__name__", str(typ))
        if not pset.terminals.get(typ):
            raise SpaceError(f"primitive set {pset.name!r}: type {name} has no terminal, so no tree "
                             f"of type {name} can be completed")
        if not pset.primitives.get(typ):
            raise SpaceError(f"primitive set {pset.name!r}: type {name} has no primitive")
        for prim in pset.primitives[typ]:
            todo.extend(prim.args)


def default_space(compat: bool = False) -> SearchSpace:
    """A new, unbuilt copy of the paper's search space (docs/paper.md §1-§3), for plugins to extend
    (:func:`builtin_space` is the shared, built one).

    ``compat=True`` swaps in the original's buggy forms for reproduction (docs/paper.md §8.2): the
    stateful ops ``ema`` and ``delta``, and the sign-unsafe ``inv``, ``div`` (also the decay ops'
    ``div``) and ``pow``.
    """
    space = SearchSpace()
    for state in _operands.STATES:
        space.states[state.name] = state
    for operand in _operands.OPERANDS:
        space.operands[operand.name] = operand
    if not compat:      # the zoo's stronger yardsticks (Lion, AdamW); the original's space lacks them
        for state in _operands.EXTRA_STATES:
            space.states[state.name] = state
        for operand in _operands.EXTRA_OPERANDS:
            space.operands[operand.name] = operand
    for op in _ops.TENSOR_UNARY:
        if compat and op.name in _ops.COMPAT_STATEFUL:
            op = OpSpec(op.name, 1, _ops.COMPAT_STATEFUL[op.name], op.fmt, op.latex,
                        needs=op.needs, doc=op.doc + " [compat: original bug]")
        space.unary[op.name] = _compat_op(op, "unary") if compat else op
    for op in _ops.TENSOR_BINARY:
        space.binary[op.name] = _compat_op(op, "binary") if compat else op
    for decay in _ops.DECAYS:
        space.decays[decay.name] = decay
        space.schedule_leaves[decay.name] = decay
    space.schedule_leaves[_ops.A14P.name] = _ops.A14P
    space.schedule_constants.update({"one": 1.0, "two": 2.0})
    for op in _ops.DECAY_UNARY:
        space.decay_unary[op.name] = op
    for op in _ops.DECAY_BINARY:
        space.decay_binary[op.name] = _compat_op(op, "decay_binary") if compat else op
    return space


def _compat_op(spec: OpSpec, registry: str) -> OpSpec:
    """The original's unprotected form of ``spec`` (:data:`deapnos.space.ops.COMPAT_UNSAFE`), or ``spec``."""
    fn = _ops.COMPAT_UNSAFE.get((registry, spec.name))
    if fn is None:
        return spec
    doc = {"inv": "1/(x + 1e-7)", "div": "a / (b + 1e-7)", "pow": "|a|^b"}[spec.name]
    return dataclasses.replace(spec, fn=fn, doc=f"{doc}, not sign-safe [compat: the original's form]")


@functools.cache
def builtin_space(compat: bool = False) -> SearchSpace:
    """The paper's space, built, without plugins: what ``Genome.parse`` and friends use when no
    ``space=`` is passed.  Built once per ``compat`` (a cache: nothing can replace it); a space
    extended by plugins is passed explicitly (``deapnos.plugins.build_space``)."""
    return default_space(compat=compat).build()


def build_space(extend: Callable[[SearchSpace], None] | None = None, compat: bool = False) -> SearchSpace:
    """Build the default space, after ``extend(space)`` (e.g. the plugins' hook) has added to it."""
    space = default_space(compat=compat)
    if extend is not None:
        extend(space)
    return space.build()
