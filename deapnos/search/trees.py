"""Helpers over the prefix node lists of DEAP trees: children, depths, heights, types, the tensor ops
and decay edges of an update tree, splicing, and the phenotype (a tree's values on T = 100)."""
from __future__ import annotations

import torch
from deap import gp

from ..optim.schedules import tree_table
from ..space.genome import tree_text
from ..space.psets import DECAY_ON_BRANCH, SearchSpace, Tensor

PHENOTYPE_T = 100          # docs/paper.md §2.3: decays are checked on t = 0..99, T = 100


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


def splice(tree, j: int, nodes) -> gp.PrimitiveTree:
    """A new tree: ``tree`` with the subtree at ``j`` replaced by ``nodes``."""
    sl = tree.searchSubtree(j)
    return gp.PrimitiveTree(list(tree[:sl.start]) + list(nodes) + list(tree[sl.stop:]))


def subtree_nodes(tree, j: int) -> list:
    """The nodes of the subtree at ``j``, in prefix order."""
    return list(tree[tree.searchSubtree(j)])


def ancestors(tree, i: int) -> set[int]:
    """Indices whose subtree contains ``i`` (``i`` included)."""
    return {k for k in range(i + 1) if tree.searchSubtree(k).stop > i}


def phenotype(nodes, space: SearchSpace) -> torch.Tensor:
    return tree_table(gp.PrimitiveTree(list(nodes)), space, PHENOTYPE_T)


def op_count(tree) -> int:
    """The distinct op subtrees of an update tree: the nodes of the original's graph it needs (a
    subtree used twice is one node linked twice; decay expressions are not counted)."""
    return len({tree_text(gp.PrimitiveTree(subtree_nodes(tree, k))) for k in op_nodes(tree)})
