"""Typed, mutation-only operators in DEAP's style, each ``(individual, mutation_ctx) -> (individual,)`` and
undone when it would break a limit, the configured mix (:func:`mutate`) and :func:`make_mutant`.
Shares and rules: docs/search.md, "Mutation"; compat: "Compat mode"."""
from __future__ import annotations

from deap import gp

from ..space.genome import Genome, tree_text
from ..space.psets import DECAY_ON_BRANCH, Tensor
from .expressions import mutate_expression, random_decay, random_schedule
from .genomes import TensorGen
from .limits import fits
from .mutation_context import MutationContext
from .trees import ancestors, children, depths, is_branch, nodes_height, op_nodes, splice, subtree_nodes, unwrap

OPERATORS = ("op", "branch", "toggle", "momentum", "decay", "schedule")


def _limited(fn):
    """Undo a change that breaks the limits (like ``deap.gp.staticLimit``), keep DEAP's return."""
    def wrapper(individual: Genome, mutation_ctx: MutationContext):
        before = (individual.update, individual.schedule, individual.momentum, individual.flip)
        fn(individual, mutation_ctx)
        if not fits(individual, mutation_ctx):
            individual.update, individual.schedule, individual.momentum, individual.flip = before
        return (individual,)
    wrapper.__name__ = fn.__name__
    wrapper.__qualname__ = fn.__qualname__
    wrapper.__doc__ = fn.__doc__
    return wrapper


def _leaf_positions(tree) -> list[int]:
    return [i for i, n in enumerate(tree) if n.ret is Tensor and n.arity == 0]


def _new_operand(mutation_ctx, exclude=()):
    choices = [o for o in mutation_ctx.vocab.operands if o not in exclude] or mutation_ctx.vocab.operands
    return [mutation_ctx.rng.choice(choices)]


def _new_arg(mutation_ctx: MutationContext, tree, node_i: int, replace_j: int | None, room: int,
             need_branch: bool = False) -> list | None:
    """A new argument for op ``node_i`` (replacing the edge at ``replace_j``, if any): an operand
    not already an argument of the node (``branch_p_operand``), or a branch: a copy of another
    subtree that does not contain the node (the original's link to another hidden node), or a
    freshly generated one.  ``room`` is the height the argument may have."""
    m, rng = mutation_ctx.mutation, mutation_ctx.rng
    kids = children(tree, node_i)
    connected = [tree[unwrap(tree, c)] for c in kids if tree[unwrap(tree, c)].arity == 0]
    if not need_branch and rng.random() < m.branch_p_operand:
        return _new_operand(mutation_ctx, connected)
    if room < 1:
        return None if need_branch else _new_operand(mutation_ctx, connected)
    if rng.random() < m.branch_p_copy:
        banned = ancestors(tree, node_i)
        current = tree_text(gp.PrimitiveTree(subtree_nodes(tree, replace_j))) if replace_j is not None else None
        cands = []
        for k in op_nodes(tree):
            if k in banned:
                continue
            sub = subtree_nodes(tree, k)
            if nodes_height(sub) <= room and tree_text(gp.PrimitiveTree(sub)) != current:
                cands.append(sub)
        if cands:
            return list(rng.choice(cands))
    gen = TensorGen(mutation_ctx, m.branch_nodes)
    return gen.hidden(room)


@_limited
def mut_op(individual: Genome, mutation_ctx: MutationContext):
    """Change an op to another of the same type and arity (docs/paper.md §5.6, r >= 0.6)."""
    tree, rng, v = individual.update, mutation_ctx.rng, mutation_ctx.vocab
    ops = op_nodes(tree)
    if not ops:                                   # a bare operand: move it
        i = rng.choice(_leaf_positions(tree))
        new = list(tree)
        new[i] = _new_operand(mutation_ctx, [tree[i]])[0]
        individual.update = gp.PrimitiveTree(new)
        return (individual,)
    i = rng.choice(ops)
    node = tree[i]
    if node.arity == 1:
        if node is v.identity:
            new_op = rng.choice(v.unary_mut) if v.unary_mut else node
        elif v.identity is not None and rng.random() < mutation_ctx.init.p_identity:
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
def mut_branch(individual: Genome, mutation_ctx: MutationContext):
    """Change a connection: an argument becomes another operand or a branch; a binary op swaps its
    arguments with probability 0.2 (docs/paper.md §5.6, 0.3 <= r < 0.6).  The root keeps at least one
    branch (a unary root may move only to a branch), as in the original."""
    tree, rng, m = individual.update, mutation_ctx.rng, mutation_ctx.mutation
    ops = op_nodes(tree)
    if not ops:
        return _move_leaf(individual, mutation_ctx)
    i = rng.choice(ops)
    kids = children(tree, i)
    if len(kids) == 2 and rng.random() < 0.2:
        a, b = subtree_nodes(tree, kids[0]), subtree_nodes(tree, kids[1])
        individual.update = splice(tree, i, [tree[i]] + b + a)
        return (individual,)
    which = rng.randrange(len(kids))
    j = kids[which]
    need_branch = False
    if i == 0:
        others = [c for c in kids if c != j]
        need_branch = not any(is_branch(tree, c) for c in others)
    room = m.max_height - depths(tree)[j]
    if mutation_ctx.compat and i == 0 and len(kids) == 2 and need_branch and is_branch(tree, j):
        new = _compat_root_branch(mutation_ctx, tree, j, room)
    else:
        new = _new_arg(mutation_ctx, tree, i, j, room, need_branch)
    if new is None:
        return (individual,)
    individual.update = splice(tree, j, new)
    return (individual,)


def free_hidden_nodes(mutation_ctx: MutationContext, tree, j: int, room: int) -> list:
    """The original's free hidden nodes for the branch argument at ``j`` of a binary root whose
    other argument is an operand, in index order: the distinct ops below the branch, in prefix order
    (the order in which a tree is generated), then the unused node slots up to ``init.hidden_nodes - 1``
    (None: a fresh branch)."""
    sl = tree.searchSubtree(unwrap(tree, j))
    subs, seen = [], set()
    for k in op_nodes(tree):
        if sl.start < k < sl.stop:
            sub = subtree_nodes(tree, k)
            text = tree_text(gp.PrimitiveTree(sub))
            if text not in seen and nodes_height(sub) <= room:
                seen.add(text)
                subs.append(sub)
    return subs + [None] * max(0, mutation_ctx.init.hidden_nodes - 1 - len(subs))


def _compat_root_branch(mutation_ctx: MutationContext, tree, j: int, room: int) -> list | None:
    """Compat: the new branch of a binary root with one operand argument is uniform over the free
    hidden nodes except the first, as the original's candidate list ``zeros[20:-1]`` skips it
    (docs/paper.md §5.6)."""
    slots = free_hidden_nodes(mutation_ctx, tree, j, room)[1:]
    if not slots or room < 1:
        return None
    pick = mutation_ctx.rng.choice(slots)
    return list(pick) if pick is not None else TensorGen(mutation_ctx, mutation_ctx.mutation.branch_nodes).hidden(room)


def _move_leaf(individual, mutation_ctx):
    tree = individual.update
    i = mutation_ctx.rng.choice(_leaf_positions(tree))
    new = list(tree)
    new[i] = _new_operand(mutation_ctx, [tree[i]])[0]
    individual.update = gp.PrimitiveTree(new)
    return (individual,)


@_limited
def mut_toggle(individual: Genome, mutation_ctx: MutationContext):
    """Unary <-> binary (docs/paper.md §5.6, 0.2 <= r < 0.3).  Unary -> binary inserts a new argument
    before or after the old one (1/2 each); binary -> unary keeps one argument: for the root a branch
    (an op), else either (1/2 each).  The new op is drawn as at initialisation."""
    tree, rng, m = individual.update, mutation_ctx.rng, mutation_ctx.mutation
    ops = op_nodes(tree)
    gen = TensorGen(mutation_ctx, 0)
    if not ops:                                   # a bare operand: insert a unary op above it
        individual.update = gp.PrimitiveTree([gen.unary_op()] + list(tree))
        return (individual,)
    i = rng.choice(ops)
    node, kids = tree[i], children(tree, i)
    if node.arity == 1:
        old = subtree_nodes(tree, kids[0])
        room = m.max_height - depths(tree)[i] - 1
        c = _new_arg(mutation_ctx, tree, i, None, room)
        if c is None:
            return (individual,)
        new = [gen.binary_op()] + (old + c if rng.random() < 0.5 else c + old)
    else:
        branches = [c for c in kids if is_branch(tree, c)]
        if i == 0 and len(branches) == 1:
            keep = branches[0]
        else:
            keep = kids[0] if rng.random() < 0.5 else kids[1]
        new = [gen.unary_op()] + subtree_nodes(tree, keep)
    individual.update = splice(tree, i, new)
    return (individual,)


def mut_momentum(individual: Genome, mutation_ctx: MutationContext):
    """Another momentum kind, uniform over the other configured kinds (docs/paper.md §5.6, 0.1 <= r < 0.2)."""
    others = [k for k in mutation_ctx.momentum_kinds if k != individual.momentum]
    if others:
        individual.momentum = mutation_ctx.rng.choice(others)
    return (individual,)


@_limited
def mut_decay(individual: Genome, mutation_ctx: MutationContext):
    """On a uniformly chosen input edge of a uniformly chosen op: no decay -> add a random valid one;
    else 1/2 remove it, 1/2 mutate its expression (docs/paper.md §5.6 r < 0.1, §2.5)."""
    tree, rng, m = individual.update, mutation_ctx.rng, mutation_ctx.mutation
    ops = op_nodes(tree)
    if not ops:
        return (individual,)
    i = rng.choice(ops)
    j = rng.choice(children(tree, i))
    node = tree[j]
    if node.name == DECAY_ON_BRANCH and node.ret is Tensor and node.arity == 2:
        d, x = children(tree, j)
        if rng.random() < 0.5:                     # remove
            individual.update = splice(tree, j, subtree_nodes(tree, x))
            return (individual,)
        new = mutate_expression(mutation_ctx, subtree_nodes(tree, d), "decay")
        if new is None:
            return (individual,)
        individual.update = splice(tree, d, new)
        return (individual,)
    room = m.max_height - depths(tree)[j]          # height the new wrapper subtree may have
    arg = subtree_nodes(tree, j)
    if room < nodes_height(arg) + 1:
        return (individual,)
    decay = random_decay(mutation_ctx, room - 1)
    if decay is None:
        return (individual,)
    individual.update = splice(tree, j, [mutation_ctx.vocab.wrap] + decay + arg)
    return (individual,)


@_limited
def mut_schedule(individual: Genome, mutation_ctx: MutationContext):
    """The LR-schedule tree: from ``one`` draw a random valid schedule; otherwise 60% mutate it
    (docs/paper.md §2.5 style), 20% draw a fresh one, 20% reset it to ``one``."""
    sched = individual.schedule
    rng = mutation_ctx.rng
    is_one = len(sched) == 1 and sched[0].name == "one"
    r = rng.random()
    if is_one or 0.6 <= r < 0.8:
        new = random_schedule(mutation_ctx)
    elif r < 0.6:
        new = mutate_expression(mutation_ctx, list(sched), "schedule")
    else:
        new = [mutation_ctx.vocab.s_one] if mutation_ctx.vocab.s_one is not None else None
    if new is not None:
        individual.schedule = gp.PrimitiveTree(new)
    return (individual,)


OPERATOR_FUNCS = {"op": mut_op, "branch": mut_branch, "toggle": mut_toggle, "momentum": mut_momentum,
                  "decay": mut_decay, "schedule": mut_schedule}


def choose_operator(mutation_ctx: MutationContext) -> str:
    weights = mutation_ctx.weights()
    names = [n for n in OPERATORS if weights[n] > 0]
    return mutation_ctx.rng.choices(names, weights=[weights[n] for n in names])[0]


def mutate(individual: Genome, mutation_ctx: MutationContext):
    """One mutation of the configured mix, in place, DEAP style: returns ``(individual,)``."""
    return OPERATOR_FUNCS[choose_operator(mutation_ctx)](individual, mutation_ctx)


def _same_genes(a: Genome, b: Genome) -> bool:
    return (a.momentum == b.momentum and tree_text(a.update) == tree_text(b.update)
            and tree_text(a.schedule) == tree_text(b.schedule))


def make_mutant(parent: Genome, mutation_ctx: MutationContext, accept=None, max_tries: int = 200):
    """A mutant of ``parent`` that changes something, respects the limits and that ``accept``
    takes (the integrity check and the dedup cache, docs/paper.md §5.6 steps 4-5).

    ``accept(child) -> (ok, reason)``.  The child starts with ``flip = False`` (the original never
    reset it, docs/paper.md §5.3 [BUG]; in compat mode it keeps the parent's).  Returns
    ``(child, operator, tries)``, child None when ``max_tries`` draws found none.
    """
    for tries in range(1, max_tries + 1):
        child = parent.copy()
        if not mutation_ctx.compat:
            child.flip = False
        name = choose_operator(mutation_ctx)
        OPERATOR_FUNCS[name](child, mutation_ctx)
        if _same_genes(child, parent) or not fits(child, mutation_ctx):
            continue
        if accept is not None:
            ok, _ = accept(child)
            if not ok:
                continue
        return child, name, tries
    return None, None, max_tries
