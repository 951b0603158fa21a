"""What the mutation operators and random genomes work with: the space's primitives sorted by role
(:class:`Vocabulary`) and a :class:`MutationContext` (space, seeded generator, config)."""
from __future__ import annotations

import random
from dataclasses import dataclass, field

from ..space.psets import DECAY_ON_BRANCH, MOMENTUM_KINDS, Decay, Schedule, SearchSpace, Tensor
from .config import InitConfig, MutationConfig


class Vocabulary:
    """The primitives and terminals of a built space, sorted by role."""

    def __init__(self, space: SearchSpace, compat: bool = False):
        space = space.build()
        self.space = space
        pset, spset = space.update_pset, space.schedule_pset
        assert pset is not None and spset is not None, "build() creates both primitive sets"
        prims = pset.primitives[Tensor]
        self.operands = list(pset.terminals[Tensor])
        self.wrap = next(p for p in prims if p.name == DECAY_ON_BRANCH)
        self.unary = [p for p in prims if p.arity == 1]
        self.binary = [p for p in prims if p.arity == 2 and p.name != DECAY_ON_BRANCH]
        self.identity = next((p for p in self.unary if p.name == "id"), None)
        self.unary_init = [p for p in self.unary if p is not self.identity]
        # compat: the original's mutation draws un from 0..23, so MaxValue (un 24) is unreachable
        self.unary_mut = [p for p in self.unary_init if not (compat and p.name == "runmax")]
        self.d_leaves = list(pset.terminals[Decay])
        self.d_unary = [p for p in pset.primitives[Decay] if p.arity == 1]
        self.d_binary = [p for p in pset.primitives[Decay] if p.arity == 2]
        self.s_leaves = list(spset.terminals[Schedule])
        self.s_unary = [p for p in spset.primitives[Schedule] if p.arity == 1]
        self.s_binary = [p for p in spset.primitives[Schedule] if p.arity == 2]
        self.s_one = next((t for t in self.s_leaves if t.name == "one"), None)


@dataclass
class MutationContext:
    """What the operators need: the space, a seeded generator and the config."""
    space: SearchSpace
    rng: random.Random
    mutation: MutationConfig = field(default_factory=MutationConfig)
    init: InitConfig = field(default_factory=InitConfig)
    momentum_kinds: tuple = ("none", "mom", "nest")
    compat: bool = False
    vocab: Vocabulary = field(init=False)   # the space's primitives by role, from __post_init__

    def __post_init__(self):
        self.space = self.space.build()
        self.vocab = Vocabulary(self.space, self.compat)
        bad = [k for k in self.momentum_kinds if k not in MOMENTUM_KINDS]
        if bad:
            raise ValueError(f"momentum kind {bad[0]!r} is not one of {', '.join(MOMENTUM_KINDS)}")
        self.momentum_kinds = tuple(self.momentum_kinds)

    def weights(self) -> dict[str, float]:
        m = self.mutation
        w = {"op": m.op, "branch": m.branch, "toggle": m.toggle, "momentum": m.momentum, "decay": m.decay,
             "schedule": 0.0 if self.compat else m.schedule}
        total = sum(w.values())
        return {k: v / total for k, v in w.items()}
