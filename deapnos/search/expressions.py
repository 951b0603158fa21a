"""Random decay and schedule expressions, and their mutation (docs/paper.md §2.2, §2.5)."""
from __future__ import annotations

import torch
from deap import gp

from ..space.genome import tree_text
from .limits import decay_valid, schedule_is_valid
from .mutation_context import MutationContext
from .trees import children, nodes_height, phenotype, subtree_nodes

MIN_PHENOTYPE_DISTANCE = 1e-4   # docs/paper.md §2.5
_HIDDEN = object()         # "a hidden node" among the connection candidates of a decay expression


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


def random_decay(mutation_ctx: MutationContext, max_height: int | None = None) -> list | None:
    """A random valid decay expression (Decay subtree nodes), or None after ``decay_tries`` draws."""
    v, m = mutation_ctx.vocab, mutation_ctx.mutation
    h = m.decay_max_height if max_height is None else min(max_height, m.decay_max_height)
    if h < 0:
        return None
    for _ in range(m.decay_tries):
        nodes = _random_scalar_expr(mutation_ctx.rng, v.d_leaves, v.d_unary, v.d_binary, h)
        if decay_valid(mutation_ctx, gp.PrimitiveTree(nodes)):
            return nodes
    return None


def random_schedule(mutation_ctx: MutationContext) -> list | None:
    """A random valid schedule expression (Schedule tree nodes), or None after ``decay_tries`` draws."""
    v, m = mutation_ctx.vocab, mutation_ctx.mutation
    for _ in range(m.decay_tries):
        nodes = _random_scalar_expr(mutation_ctx.rng, v.s_leaves, v.s_unary, v.s_binary, m.schedule_max_height)
        if schedule_is_valid(gp.PrimitiveTree(nodes), mutation_ctx.space, m.schedule_max_value):
            return nodes
    return None


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
    args = [subtree_nodes(expr, c) for c in kids]
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


def mutate_expression(mutation_ctx: MutationContext, nodes, kind: str = "decay",
                      max_height: int | None = None) -> list | None:
    """A valid mutant of a decay (``kind="decay"``) or schedule expression that differs from it in
    text and phenotype (L2 > 1e-4 on T = 100); None when ``decay_tries`` draws find none.

    In compat mode a decay mutation keeps the first changed expression whatever the checks say: the
    original ran them and ignored their result (docs/paper.md §2.5)."""
    v, m = mutation_ctx.vocab, mutation_ctx.mutation
    if kind == "decay":
        leaves, unary, binary = v.d_leaves, v.d_unary, v.d_binary
        limit = m.decay_max_height if max_height is None else min(max_height, m.decay_max_height)

        def valid(t):
            return decay_valid(mutation_ctx, t)
    else:
        leaves, unary, binary = v.s_leaves, v.s_unary, v.s_binary
        limit = m.schedule_max_height

        def valid(t):
            return schedule_is_valid(t, mutation_ctx.space, m.schedule_max_value)
    expr = gp.PrimitiveTree(list(nodes))
    text = tree_text(expr)
    before = phenotype(expr, mutation_ctx.space)
    for _ in range(m.decay_tries):
        out = _mutate_expr_once(mutation_ctx.rng, expr, leaves, unary, binary, limit)
        if out is None:
            continue
        if mutation_ctx.compat and kind == "decay":
            return out
        t = gp.PrimitiveTree(out)
        if tree_text(t) == text or not valid(t):
            continue
        after = phenotype(t, mutation_ctx.space)
        if torch.isfinite(before).all() and float(torch.linalg.vector_norm(after - before)) <= MIN_PHENOTYPE_DISTANCE:
            continue
        return out
    return None
