"""Typed, mutation-only operators in DEAP's style, and random genomes.

Provides the operators :func:`mut_op`, :func:`mut_branch`, :func:`mut_toggle`, :func:`mut_momentum`,
:func:`mut_decay`, :func:`mut_schedule` (each ``(individual, ctx) -> (individual,)``, undone when it
would break a limit), :func:`make_mutant` and :func:`random_genome`; every random choice comes from the
context's ``random.Random``.  Shares and rules: docs/search.md, "Mutation"; compat: "Compat mode".
"""
from __future__ import annotations

import random
from dataclasses import dataclass, field

import torch
from deap import gp

from ..optim.schedules import decay_is_valid, tree_table
from ..space.genome import Genome, tree_text
from ..space.psets import DECAY_ON_BRANCH, MOMENTUM_KINDS, Decay, Schedule, SearchSpace, Tensor
from .config import InitConfig, MutationConfig

OPERATORS = ("op", "branch", "toggle", "momentum", "decay", "schedule")
PHENOTYPE_T = 100          # docs/paper.md §2.3: decays are checked on t = 0..99, T = 100
MIN_PHENOTYPE_DISTANCE = 1e-4   # docs/paper.md §2.5
_HIDDEN = object()         # "a hidden node" among the connection candidates of a decay expression


# ----------------------------------------------------------------------------------------------
# vocabulary of a space and the mutation context
# ----------------------------------------------------------------------------------------------

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


# ----------------------------------------------------------------------------------------------
# tree helpers
# ----------------------------------------------------------------------------------------------

def subtree_slice(tree, i: int) -> slice:
    return tree.searchSubtree(i)


def children(tree, i: int) -> list[int]:
    """Start indices of the arguments of node ``i``."""
    out, j = [], i + 1
    for _ in range(tree[i].arity):
        out.append(j)
        j = tree.searchSubtree(j).stop
    return out


def depths(tree) -> list[int]:
    """Depth of every node (the root is 0), in prefix order."""
    out, stack = [], [0]
    for node in tree:
        d = stack.pop()
        out.append(d)
        stack.extend([d + 1] * node.arity)
    return out


def nodes_height(nodes) -> int:
    stack, height = [0], 0
    for node in nodes:
        d = stack.pop()
        height = max(height, d)
        stack.extend([d + 1] * node.arity)
    return height


def well_typed(nodes, ret) -> bool:
    """Every node returns the type its parent expects, and the prefix list is one complete tree."""
    expected = [ret]
    for node in nodes:
        if not expected:
            return False
        if node.ret is not expected.pop():
            return False
        expected.extend(reversed(getattr(node, "args", ())))
    return not expected


def op_nodes(tree) -> list[int]:
    """Positions of the tensor ops of an update tree (the original's hidden nodes and root)."""
    return [i for i, n in enumerate(tree) if n.ret is Tensor and n.arity and n.name != DECAY_ON_BRANCH]


def unwrap(tree, j: int) -> int:
    """The argument under the decays of an edge."""
    while tree[j].name == DECAY_ON_BRANCH and tree[j].ret is Tensor and tree[j].arity == 2:
        j = children(tree, j)[1]
    return j


def is_branch(tree, j: int) -> bool:
    """Does the edge starting at ``j`` lead to an op (a hidden node) rather than an operand?"""
    return tree[unwrap(tree, j)].arity > 0


def decay_positions(tree) -> list[int]:
    """Positions of the decay-on-edge primitives of an update tree."""
    return [i for i, n in enumerate(tree) if n.name == DECAY_ON_BRANCH and n.ret is Tensor and n.arity == 2]


def _splice(tree, j: int, nodes) -> gp.PrimitiveTree:
    sl = tree.searchSubtree(j)
    return gp.PrimitiveTree(list(tree[:sl.start]) + list(nodes) + list(tree[sl.stop:]))


def _nodes(tree, j: int) -> list:
    return list(tree[tree.searchSubtree(j)])


def _ancestors(tree, i: int) -> set[int]:
    """Indices whose subtree contains ``i`` (``i`` included)."""
    return {k for k in range(i + 1) if tree.searchSubtree(k).stop > i}


def phenotype(nodes, space: SearchSpace) -> torch.Tensor:
    return tree_table(gp.PrimitiveTree(list(nodes)), space, PHENOTYPE_T)


def compat_decay_is_valid(tree, space: SearchSpace, start: int = 0, horizon: int = PHENOTYPE_T) -> bool:
    """The original's decay validity check (docs/paper.md §2.3): reject a value > 1 or < 0 on T = 100.
    NaN compares false both ways, so a decay that is NaN somewhere passes (the bug compat restores)."""
    values = tree_table(tree, space, horizon, start)
    return not bool(((values > 1) | (values < 0)).any())


def _decay_valid(ctx: MutationContext, tree, start: int = 0) -> bool:
    return compat_decay_is_valid(tree, ctx.space, start) if ctx.compat else decay_is_valid(tree, ctx.space, start)


def op_count(tree) -> int:
    """The distinct op subtrees of an update tree: the nodes of the original's graph it needs (a
    subtree used twice is one node linked twice; decay expressions are not counted)."""
    return len({tree_text(gp.PrimitiveTree(_nodes(tree, k))) for k in op_nodes(tree)})


def schedule_is_valid(tree, space: SearchSpace, max_value: float = 20.0, start: int = 0) -> bool:
    """A schedule multiplier on T = 100 is finite, in [0, max_value], and not all ~0."""
    values = tree_table(tree, space, PHENOTYPE_T, start)
    return bool(torch.isfinite(values).all() and (values >= 0).all() and (values <= max_value).all()
                and values.max() > 1e-3)


# ----------------------------------------------------------------------------------------------
# within limits, valid
# ----------------------------------------------------------------------------------------------

def within_limits(genome: Genome, mcfg: MutationConfig) -> bool:
    tree = genome.update
    if len(tree) > mcfg.max_size or tree.height > mcfg.max_height:
        return False
    for j in decay_positions(tree):
        d = children(tree, j)[0]
        if nodes_height(_nodes(tree, d)) > mcfg.decay_max_height:
            return False
    return genome.schedule.height <= mcfg.schedule_max_height


def fits(genome: Genome, ctx: MutationContext) -> bool:
    """:func:`within_limits`, and with ``mutation.space = "paper"`` (implied by compat mode) the
    original's graph size: at most ``init.hidden_nodes + 1`` distinct ops (5 hidden nodes and the root)."""
    capped = ctx.compat or ctx.mutation.space == "paper"
    return within_limits(genome, ctx.mutation) and (
        not capped or op_count(genome.update) <= ctx.init.hidden_nodes + 1)


def genome_problems(genome: Genome, mcfg: MutationConfig | None = None) -> list[str]:
    """Why a genome is not a well-formed member of the search space (empty when it is)."""
    mcfg = mcfg or MutationConfig()
    out = []
    if not well_typed(genome.update, Tensor):
        out.append("update tree is not well-typed")
    if not well_typed(genome.schedule, Schedule):
        out.append("schedule tree is not well-typed")
    if out:
        return out
    if genome.update.height > mcfg.max_height:
        out.append(f"update tree height {genome.update.height} > {mcfg.max_height}")
    if len(genome.update) > mcfg.max_size:
        out.append(f"update tree size {len(genome.update)} > {mcfg.max_size}")
    for j in decay_positions(genome.update):
        d = children(genome.update, j)[0]
        h = nodes_height(_nodes(genome.update, d))
        if h > mcfg.decay_max_height:
            out.append(f"decay expression at {j} has height {h} > {mcfg.decay_max_height}")
        if not decay_is_valid(genome.update, genome.space, d):
            out.append(f"decay expression {tree_text(gp.PrimitiveTree(_nodes(genome.update, d)))} leaves [0, 1]")
    if genome.schedule.height > mcfg.schedule_max_height:
        out.append(f"schedule tree height {genome.schedule.height} > {mcfg.schedule_max_height}")
    if tree_text(genome.schedule) != "one" and not schedule_is_valid(genome.schedule, genome.space,
                                                                     mcfg.schedule_max_value):
        out.append("schedule multiplier is not finite in [0, schedule_max_value]")
    return out


# ----------------------------------------------------------------------------------------------
# random expressions and genomes (docs/paper.md §1.6, §2.2)
# ----------------------------------------------------------------------------------------------

def _scalar_hidden(rng, leaves, unary, binary):
    if rng.random() < 0.8 or len(leaves) < 2 or not binary:
        return [rng.choice(unary), rng.choice(leaves)]
    a, b = rng.sample(leaves, 2)
    return [rng.choice(binary), a, b]


def _random_scalar_expr(rng, leaves, unary, binary, max_height: int) -> list:
    """The original's 2-node decay graph (docs/paper.md §2.2) as a tree of height <= max_height."""
    if max_height <= 0:
        return [rng.choice(leaves)]
    hidden_ok = max_height >= 2
    if rng.random() < 0.8 or not binary:         # unary root
        op = rng.choice(unary)
        if hidden_ok and (rng.random() < 0.2 or rng.randrange(len(leaves) + 1) == len(leaves)):
            return [op] + _scalar_hidden(rng, leaves, unary, binary)
        return [op, rng.choice(leaves)]
    op = rng.choice(binary)
    if hidden_ok and rng.random() < 0.2:          # the hidden node is arg1 or arg2
        hidden, leaf = _scalar_hidden(rng, leaves, unary, binary), [rng.choice(leaves)]
        return [op] + (hidden + leaf if rng.random() < 0.5 else leaf + hidden)
    k = rng.randrange(len(leaves) + (1 if hidden_ok else 0))
    if k == len(leaves):
        return [op] + _scalar_hidden(rng, leaves, unary, binary) + [rng.choice(leaves)]
    a = leaves[k]
    rest = [x for x in leaves if x is not a] or leaves
    return [op, a, rng.choice(rest)]


def random_decay(ctx: MutationContext, max_height: int | None = None) -> list | None:
    """A random valid decay expression (Decay subtree nodes), or None after ``decay_tries`` draws."""
    v, m = ctx.vocab, ctx.mutation
    h = m.decay_max_height if max_height is None else min(max_height, m.decay_max_height)
    if h < 0:
        return None
    for _ in range(m.decay_tries):
        nodes = _random_scalar_expr(ctx.rng, v.d_leaves, v.d_unary, v.d_binary, h)
        if _decay_valid(ctx, gp.PrimitiveTree(nodes)):
            return nodes
    return None


def random_schedule(ctx: MutationContext) -> list | None:
    v, m = ctx.vocab, ctx.mutation
    for _ in range(m.decay_tries):
        nodes = _random_scalar_expr(ctx.rng, v.s_leaves, v.s_unary, v.s_binary, m.schedule_max_height)
        if schedule_is_valid(gp.PrimitiveTree(nodes), ctx.space, m.schedule_max_value):
            return nodes
    return None


class _TensorGen:
    """Random update (sub)trees resembling the original's graph initialisation (docs/paper.md §1.6)."""

    def __init__(self, ctx: MutationContext, budget: int):
        self.ctx, self.rng, self.v = ctx, ctx.rng, ctx.vocab
        self.icfg = ctx.init
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
            decay = random_decay(self.ctx, room - 1)
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
        p_unary_root_decay = 0.85 if self.ctx.compat else i.p_root_unary_decay
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


def random_update_tree(ctx: MutationContext) -> gp.PrimitiveTree:
    m = ctx.mutation
    for _ in range(1000):
        nodes = _TensorGen(ctx, ctx.init.hidden_nodes).root(m.max_height)
        if len(nodes) <= m.max_size:
            return gp.PrimitiveTree(nodes)
    raise RuntimeError(f"no random update tree within mutation.max_size={m.max_size} in 1000 draws")


def random_genome(ctx: MutationContext) -> Genome:
    """A random genome (docs/paper.md §1.6): an update tree, momentum kind uniform over the configured
    kinds, no flip, and a random LR-schedule tree with probability ``init.p_schedule``."""
    update = random_update_tree(ctx)
    schedule = [ctx.vocab.s_one]
    if ctx.init.p_schedule > 0 and ctx.rng.random() < ctx.init.p_schedule:
        schedule = random_schedule(ctx) or schedule
    momentum = ctx.rng.choice(ctx.momentum_kinds)
    return Genome(update, gp.PrimitiveTree(schedule), momentum, False, ctx.space)


# ----------------------------------------------------------------------------------------------
# mutation of decay / schedule expressions (docs/paper.md §2.5)
# ----------------------------------------------------------------------------------------------

def _mutate_expr_once(rng, expr: gp.PrimitiveTree, leaves, unary, binary, max_height: int) -> list | None:
    ops = [k for k, n in enumerate(expr) if n.arity]
    if not ops:                                   # a bare leaf: move it, or grow a unary op over it
        if rng.random() < 0.15 and max_height >= 1:
            return [rng.choice(unary), expr[0]]
        return [rng.choice([x for x in leaves if x is not expr[0]] or leaves)]
    inner = [k for k in ops if k != 0]
    k = 0 if not inner or rng.random() < 0.5 else rng.choice(inner)   # root or the hidden node
    node, kids = expr[k], children(expr, k)
    hidden_ok = k == 0 and max_height >= 2 and not any(expr[c].arity for c in kids)
    arg_leaves = {id(expr[c]) for c in kids if expr[c].arity == 0}
    candidates = [x for x in leaves if id(x) not in arg_leaves] + ([_HIDDEN] if hidden_ok else [])
    candidates = candidates or list(leaves)

    def new_arg():
        c = rng.choice(candidates)
        return _scalar_hidden(rng, leaves, unary, binary) if c is _HIDDEN else [c]

    r = rng.random()
    if r >= 0.40:                                  # change the op, same arity
        same = unary if node.arity == 1 else binary
        others = [p for p in same if p is not node]
        if not others:
            return None
        out = list(expr)
        out[k] = rng.choice(others)
        return out
    args = [_nodes(expr, c) for c in kids]
    if r >= 0.15:                                  # change a connection
        if node.arity == 1:
            new = [node] + new_arg()
        elif rng.random() < 0.2:
            new = [node] + args[1] + args[0]
        elif rng.random() < 0.5:
            new = [node] + new_arg() + args[1]
        else:
            new = [node] + args[0] + new_arg()
    else:                                          # toggle unary <-> binary
        if node.arity == 1:
            if not binary:
                return None
            c = new_arg()
            new = [rng.choice(binary)] + (args[0] + c if rng.random() < 0.5 else c + args[0])
        else:
            new = [rng.choice(unary)] + (args[0] if rng.random() < 0.5 else args[1])
    out = list(expr[:k]) + new + list(expr[expr.searchSubtree(k).stop:])
    if nodes_height(out) > max_height:
        return None
    return out


def mutate_expression(ctx: MutationContext, nodes, kind: str = "decay", max_height: int | None = None) -> list | None:
    """A valid mutant of a decay (``kind="decay"``) or schedule expression that differs from it in
    text and phenotype (L2 > 1e-4 on T = 100); None when ``decay_tries`` draws find none.

    In compat mode a decay mutation keeps the first changed expression whatever the checks say: the
    original ran them and ignored their result (docs/paper.md §2.5)."""
    v, m = ctx.vocab, ctx.mutation
    if kind == "decay":
        leaves, unary, binary = v.d_leaves, v.d_unary, v.d_binary
        limit = m.decay_max_height if max_height is None else min(max_height, m.decay_max_height)

        def valid(t):
            return _decay_valid(ctx, t)
    else:
        leaves, unary, binary = v.s_leaves, v.s_unary, v.s_binary
        limit = m.schedule_max_height

        def valid(t):
            return schedule_is_valid(t, ctx.space, m.schedule_max_value)
    expr = gp.PrimitiveTree(list(nodes))
    text = tree_text(expr)
    before = phenotype(expr, ctx.space)
    for _ in range(m.decay_tries):
        out = _mutate_expr_once(ctx.rng, expr, leaves, unary, binary, limit)
        if out is None:
            continue
        if ctx.compat and kind == "decay":
            return out
        t = gp.PrimitiveTree(out)
        if tree_text(t) == text or not valid(t):
            continue
        after = phenotype(t, ctx.space)
        if torch.isfinite(before).all() and float(torch.linalg.vector_norm(after - before)) <= MIN_PHENOTYPE_DISTANCE:
            continue
        return out
    return None


# ----------------------------------------------------------------------------------------------
# the operators
# ----------------------------------------------------------------------------------------------

def _limited(fn):
    """Undo a change that breaks the limits (like ``deap.gp.staticLimit``), keep DEAP's return."""
    def wrapper(individual: Genome, ctx: MutationContext):
        before = (individual.update, individual.schedule, individual.momentum, individual.flip)
        fn(individual, ctx)
        if not fits(individual, ctx):
            individual.update, individual.schedule, individual.momentum, individual.flip = before
        return (individual,)
    wrapper.__name__ = fn.__name__
    wrapper.__qualname__ = fn.__qualname__
    wrapper.__doc__ = fn.__doc__
    return wrapper


def _leaf_positions(tree) -> list[int]:
    return [i for i, n in enumerate(tree) if n.ret is Tensor and n.arity == 0]


def _new_operand(ctx, exclude=()):
    choices = [o for o in ctx.vocab.operands if o not in exclude] or ctx.vocab.operands
    return [ctx.rng.choice(choices)]


def _new_arg(ctx: MutationContext, tree, node_i: int, replace_j: int | None, room: int,
             need_branch: bool = False) -> list | None:
    """A new argument for op ``node_i`` (replacing the edge at ``replace_j``, if any): an operand
    not already an argument of the node (``branch_p_operand``), or a branch: a copy of another
    subtree that does not contain the node (the original's link to another hidden node), or a
    freshly generated one.  ``room`` is the height the argument may have."""
    m, rng = ctx.mutation, ctx.rng
    kids = children(tree, node_i)
    connected = [tree[unwrap(tree, c)] for c in kids if tree[unwrap(tree, c)].arity == 0]
    if not need_branch and rng.random() < m.branch_p_operand:
        return _new_operand(ctx, connected)
    if room < 1:
        return None if need_branch else _new_operand(ctx, connected)
    if rng.random() < m.branch_p_copy:
        banned = _ancestors(tree, node_i)
        current = tree_text(gp.PrimitiveTree(_nodes(tree, replace_j))) if replace_j is not None else None
        cands = []
        for k in op_nodes(tree):
            if k in banned:
                continue
            sub = _nodes(tree, k)
            if nodes_height(sub) <= room and tree_text(gp.PrimitiveTree(sub)) != current:
                cands.append(sub)
        if cands:
            return list(rng.choice(cands))
    gen = _TensorGen(ctx, m.branch_nodes)
    return gen.hidden(room)


@_limited
def mut_op(individual: Genome, ctx: MutationContext):
    """Change an op to another of the same type and arity (docs/paper.md §5.6, r >= 0.6)."""
    tree, rng, v = individual.update, ctx.rng, ctx.vocab
    ops = op_nodes(tree)
    if not ops:                                   # a bare operand: move it
        i = rng.choice(_leaf_positions(tree))
        new = list(tree)
        new[i] = _new_operand(ctx, [tree[i]])[0]
        individual.update = gp.PrimitiveTree(new)
        return (individual,)
    i = rng.choice(ops)
    node = tree[i]
    if node.arity == 1:
        if node is v.identity:
            new_op = rng.choice(v.unary_mut) if v.unary_mut else node
        elif v.identity is not None and rng.random() < ctx.init.p_identity:
            new_op = v.identity
        else:
            others = [p for p in v.unary_mut if p is not node]
            new_op = rng.choice(others) if others else node
    else:
        others = [p for p in v.binary if p is not node]
        new_op = rng.choice(others) if others else node
    new = list(tree)
    new[i] = new_op
    individual.update = gp.PrimitiveTree(new)
    return (individual,)


@_limited
def mut_branch(individual: Genome, ctx: MutationContext):
    """Change a connection: an argument becomes another operand or a branch; a binary op swaps its
    arguments with probability 0.2 (docs/paper.md §5.6, 0.3 <= r < 0.6).  The root keeps at least one
    branch (a unary root may move only to a branch), as in the original."""
    tree, rng, m = individual.update, ctx.rng, ctx.mutation
    ops = op_nodes(tree)
    if not ops:
        return _move_leaf(individual, ctx)
    i = rng.choice(ops)
    kids = children(tree, i)
    if len(kids) == 2 and rng.random() < 0.2:
        a, b = _nodes(tree, kids[0]), _nodes(tree, kids[1])
        individual.update = _splice(tree, i, [tree[i]] + b + a)
        return (individual,)
    which = rng.randrange(len(kids))
    j = kids[which]
    need_branch = False
    if i == 0:
        others = [c for c in kids if c != j]
        need_branch = not any(is_branch(tree, c) for c in others)
    room = m.max_height - depths(tree)[j]
    if ctx.compat and i == 0 and len(kids) == 2 and need_branch and is_branch(tree, j):
        new = _compat_root_branch(ctx, tree, j, room)
    else:
        new = _new_arg(ctx, tree, i, j, room, need_branch)
    if new is None:
        return (individual,)
    individual.update = _splice(tree, j, new)
    return (individual,)


def free_hidden_nodes(ctx: MutationContext, tree, j: int, room: int) -> list:
    """The original's free hidden nodes for the branch argument at ``j`` of a binary root whose
    other argument is an operand, in index order: the distinct ops below the branch, in prefix order
    (the order in which a tree is generated), then the unused node slots up to ``init.hidden_nodes - 1``
    (None: a fresh branch)."""
    sl = tree.searchSubtree(unwrap(tree, j))
    subs, seen = [], set()
    for k in op_nodes(tree):
        if sl.start < k < sl.stop:
            sub = _nodes(tree, k)
            text = tree_text(gp.PrimitiveTree(sub))
            if text not in seen and nodes_height(sub) <= room:
                seen.add(text)
                subs.append(sub)
    return subs + [None] * max(0, ctx.init.hidden_nodes - 1 - len(subs))


def _compat_root_branch(ctx: MutationContext, tree, j: int, room: int) -> list | None:
    """Compat: the new branch of a binary root with one operand argument is uniform over the free
    hidden nodes except the first, as the original's candidate list ``zeros[20:-1]`` skips it
    (docs/paper.md §5.6)."""
    slots = free_hidden_nodes(ctx, tree, j, room)[1:]
    if not slots or room < 1:
        return None
    pick = ctx.rng.choice(slots)
    return list(pick) if pick is not None else _TensorGen(ctx, ctx.mutation.branch_nodes).hidden(room)


def _move_leaf(individual, ctx):
    tree = individual.update
    i = ctx.rng.choice(_leaf_positions(tree))
    new = list(tree)
    new[i] = _new_operand(ctx, [tree[i]])[0]
    individual.update = gp.PrimitiveTree(new)
    return (individual,)


@_limited
def mut_toggle(individual: Genome, ctx: MutationContext):
    """Unary <-> binary (docs/paper.md §5.6, 0.2 <= r < 0.3).  Unary -> binary inserts a new argument
    before or after the old one (1/2 each); binary -> unary keeps one argument: for the root a branch
    (an op), else either (1/2 each).  The new op is drawn as at initialisation."""
    tree, rng, m = individual.update, ctx.rng, ctx.mutation
    ops = op_nodes(tree)
    gen = _TensorGen(ctx, 0)
    if not ops:                                   # a bare operand: insert a unary op above it
        individual.update = gp.PrimitiveTree([gen.unary_op()] + list(tree))
        return (individual,)
    i = rng.choice(ops)
    node, kids = tree[i], children(tree, i)
    if node.arity == 1:
        old = _nodes(tree, kids[0])
        room = m.max_height - depths(tree)[i] - 1
        c = _new_arg(ctx, tree, i, None, room)
        if c is None:
            return (individual,)
        new = [gen.binary_op()] + (old + c if rng.random() < 0.5 else c + old)
    else:
        branches = [c for c in kids if is_branch(tree, c)]
        if i == 0 and len(branches) == 1:
            keep = branches[0]
        else:
            keep = kids[0] if rng.random() < 0.5 else kids[1]
        new = [gen.unary_op()] + _nodes(tree, keep)
    individual.update = _splice(tree, i, new)
    return (individual,)


def mut_momentum(individual: Genome, ctx: MutationContext):
    """Another momentum kind, uniform over the other configured kinds (docs/paper.md §5.6, 0.1 <= r < 0.2)."""
    others = [k for k in ctx.momentum_kinds if k != individual.momentum]
    if others:
        individual.momentum = ctx.rng.choice(others)
    return (individual,)


@_limited
def mut_decay(individual: Genome, ctx: MutationContext):
    """On a uniformly chosen input edge of a uniformly chosen op: no decay -> add a random valid one;
    else 1/2 remove it, 1/2 mutate its expression (docs/paper.md §5.6 r < 0.1, §2.5)."""
    tree, rng, m = individual.update, ctx.rng, ctx.mutation
    ops = op_nodes(tree)
    if not ops:
        return (individual,)
    i = rng.choice(ops)
    j = rng.choice(children(tree, i))
    node = tree[j]
    if node.name == DECAY_ON_BRANCH and node.ret is Tensor and node.arity == 2:
        d, x = children(tree, j)
        if rng.random() < 0.5:                     # remove
            individual.update = _splice(tree, j, _nodes(tree, x))
            return (individual,)
        new = mutate_expression(ctx, _nodes(tree, d), "decay")
        if new is None:
            return (individual,)
        individual.update = _splice(tree, d, new)
        return (individual,)
    room = m.max_height - depths(tree)[j]          # height the new wrapper subtree may have
    arg = _nodes(tree, j)
    if room < nodes_height(arg) + 1:
        return (individual,)
    decay = random_decay(ctx, room - 1)
    if decay is None:
        return (individual,)
    individual.update = _splice(tree, j, [ctx.vocab.wrap] + decay + arg)
    return (individual,)


@_limited
def mut_schedule(individual: Genome, ctx: MutationContext):
    """The LR-schedule tree: from ``one`` draw a random valid schedule; otherwise 60% mutate it
    (docs/paper.md §2.5 style), 20% draw a fresh one, 20% reset it to ``one``."""
    sched = individual.schedule
    rng = ctx.rng
    is_one = len(sched) == 1 and sched[0].name == "one"
    r = rng.random()
    if is_one or 0.6 <= r < 0.8:
        new = random_schedule(ctx)
    elif r < 0.6:
        new = mutate_expression(ctx, list(sched), "schedule")
    else:
        new = [ctx.vocab.s_one] if ctx.vocab.s_one is not None else None
    if new is not None:
        individual.schedule = gp.PrimitiveTree(new)
    return (individual,)


OPERATOR_FUNCS = {"op": mut_op, "branch": mut_branch, "toggle": mut_toggle, "momentum": mut_momentum,
                  "decay": mut_decay, "schedule": mut_schedule}


def choose_operator(ctx: MutationContext) -> str:
    weights = ctx.weights()
    names = [n for n in OPERATORS if weights[n] > 0]
    return ctx.rng.choices(names, weights=[weights[n] for n in names])[0]


def mutate(individual: Genome, ctx: MutationContext):
    """One mutation of the configured mix, in place, DEAP style: returns ``(individual,)``."""
    return OPERATOR_FUNCS[choose_operator(ctx)](individual, ctx)


def _same_genes(a: Genome, b: Genome) -> bool:
    return (a.momentum == b.momentum and tree_text(a.update) == tree_text(b.update)
            and tree_text(a.schedule) == tree_text(b.schedule))


def make_mutant(parent: Genome, ctx: MutationContext, accept=None, max_tries: int = 200):
    """A mutant of ``parent`` that changes something, respects the limits and that ``accept``
    takes (the integrity check and the dedup cache, docs/paper.md §5.6 steps 4-5).

    ``accept(child) -> (ok, reason)``.  The child starts with ``flip = False`` (the original never
    reset it, docs/paper.md §5.3 [BUG]; in compat mode it keeps the parent's).  Returns
    ``(child, operator, tries)``, child None when ``max_tries`` draws found none.
    """
    for tries in range(1, max_tries + 1):
        child = parent.copy()
        if not ctx.compat:
            child.flip = False
        name = choose_operator(ctx)
        OPERATOR_FUNCS[name](child, ctx)
        if _same_genes(child, parent) or not fits(child, ctx):
            continue
        if accept is not None:
            ok, _ = accept(child)
            if not ok:
                continue
        return child, name, tries
    return None, None, max_tries


def random_valid_genome(ctx: MutationContext, accept=None, max_tries: int = 200):
    """A random genome that ``accept`` takes; ``(genome, tries)``, genome None after max_tries."""
    for tries in range(1, max_tries + 1):
        g = random_genome(ctx)
        if accept is not None:
            ok, _ = accept(g)
            if not ok:
                continue
        return g, tries
    return None, max_tries
