"""Random (initial) genomes, grown like the original's graphs (docs/paper.md §1.6)."""
from __future__ import annotations

from deap import gp

from ..space.genome import Genome
from .expressions import random_decay, random_schedule
from .mutation_context import MutationContext
from .trees import nodes_height


class TensorGen:
    """Random update (sub)trees resembling the original's graph initialisation (docs/paper.md §1.6)."""

    def __init__(self, mutation_ctx: MutationContext, budget: int):
        self.mutation_ctx, self.rng, self.v = mutation_ctx, mutation_ctx.rng, mutation_ctx.vocab
        self.icfg = mutation_ctx.init
        self.budget = budget

    def operand(self, exclude=()):
        choices = [o for o in self.v.operands if o not in exclude] or self.v.operands
        return [self.rng.choice(choices)]

    def unary_op(self):
        if self.v.identity is not None and (self.rng.random() < self.icfg.p_identity or not self.v.unary_init):
            return self.v.identity
        return self.rng.choice(self.v.unary_init)

    def binary_op(self):
        return self.rng.choice(self.v.binary)

    def edge(self, sub: list, room: int, p_decay: float) -> list:
        """Put a decay on an edge with probability ``p_decay`` when the height allows."""
        if self.rng.random() < p_decay and room >= nodes_height(sub) + 1 and room >= 1:
            decay = random_decay(self.mutation_ctx, room - 1)
            if decay is not None:
                return [self.v.wrap] + decay + sub
        return sub

    def arg(self, room: int, exclude=(), force_branch: bool = False, p_decay: float | None = None) -> list:
        """An argument: an operand (p_operand) or a hidden node, maybe under a decay."""
        p_decay = self.icfg.p_decay if p_decay is None else p_decay
        can_branch = self.budget > 0 and room >= 1
        if can_branch and (force_branch or self.rng.random() >= self.icfg.p_operand):
            sub = self.hidden(room)
        else:
            sub = self.operand(exclude)
        return self.edge(sub, room, p_decay)

    def hidden(self, room: int) -> list:
        self.budget -= 1
        if self.rng.random() < self.icfg.p_hidden_binary and room >= 1:
            a1 = self.arg(room - 1)
            a2 = self.arg(room - 1, exclude=a1 if len(a1) == 1 else ())
            return [self.binary_op()] + a1 + a2
        return [self.unary_op()] + self.arg(room - 1)

    def root(self, room: int) -> list:
        i = self.icfg
        p_unary_root_decay = 0.85 if self.mutation_ctx.compat else i.p_root_unary_decay
        if room < 2:
            return self.operand()
        if self.rng.random() < i.p_root_binary:
            op = self.binary_op()
            if self.rng.random() < i.p_operand:          # arg1 an operand, arg2 a hidden node
                a1 = self.edge(self.operand(), room - 1, i.p_decay)
                a2 = self.arg(room - 1, force_branch=True)
            else:                                        # arg1 hidden, arg2 an operand (0.8) or hidden
                a1 = self.arg(room - 1, force_branch=True)
                a2 = self.arg(room - 1)
            return [op] + a1 + a2
        return [self.unary_op()] + self.arg(room - 1, force_branch=True, p_decay=p_unary_root_decay)


def random_update_tree(mutation_ctx: MutationContext) -> gp.PrimitiveTree:
    m = mutation_ctx.mutation
    for _ in range(1000):
        nodes = TensorGen(mutation_ctx, mutation_ctx.init.hidden_nodes).root(m.max_height)
        if len(nodes) <= m.max_size:
            return gp.PrimitiveTree(nodes)
    raise RuntimeError(f"no random update tree within mutation.max_size={m.max_size} in 1000 draws")


def random_genome(mutation_ctx: MutationContext) -> Genome:
    """A random genome (docs/paper.md §1.6): an update tree, momentum kind uniform over the configured
    kinds, no flip, and a random LR-schedule tree with probability ``init.p_schedule``."""
    update = random_update_tree(mutation_ctx)
    schedule = [mutation_ctx.vocab.s_one]
    if mutation_ctx.init.p_schedule > 0 and mutation_ctx.rng.random() < mutation_ctx.init.p_schedule:
        schedule = random_schedule(mutation_ctx) or schedule
    momentum = mutation_ctx.rng.choice(mutation_ctx.momentum_kinds)
    return Genome(update, gp.PrimitiveTree(schedule), momentum, False, mutation_ctx.space)


def random_valid_genome(mutation_ctx: MutationContext, accept=None, max_tries: int = 200):
    """A random genome that ``accept`` takes; ``(genome, tries)``, genome None after max_tries."""
    for tries in range(1, max_tries + 1):
        g = random_genome(mutation_ctx)
        if accept is not None:
            ok, _ = accept(g)
            if not ok:
                continue
        return g, tries
    return None, max_tries
