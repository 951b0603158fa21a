"""The one bottom-up fold over a DEAP prefix tree (text, rendering, canonical form, compiled code).

It walks the nodes the way ``deap.gp.PrimitiveTree.__str__`` does; ``fold(tree, deap_format)``
is ``str(tree)``.
"""
from __future__ import annotations

from typing import TypeAlias, TypeVar
from collections.abc import Callable, Sequence

from deap import gp

T = TypeVar("T")
Node: TypeAlias = gp.Primitive | gp.Terminal  # explicit alias: DEAP is untyped, so mypy cannot infer it


def fold(nodes: Sequence[Node], combine: Callable[[Node, list[T]], T]) -> T:
    """Fold the first complete prefix tree of ``nodes`` bottom-up: ``combine(node, args)`` gets
    the already folded arguments of ``node`` (``[]`` for a leaf), children before parents, left to
    right.  Raises ValueError for an empty or unfinished tree."""
    stack: list[tuple[Node, list[T]]] = []
    for node in nodes:
        stack.append((node, []))
        while len(stack[-1][1]) == stack[-1][0].arity:
            prim, args = stack.pop()
            value = combine(prim, args)
            if not stack:
                return value
            stack[-1][1].append(value)
    raise ValueError("empty or unfinished prefix tree")


def subtree(tree: gp.PrimitiveTree, start: int = 0) -> list[Node]:
    """The nodes of the subtree rooted at index ``start``."""
    return tree[tree.searchSubtree(start)]


def deap_format(node: Node, args: list[str]) -> str:
    """DEAP's own rendering of one node (``PrimitiveTree.__str__``): ``name(a, b)`` or the leaf name."""
    return node.format(*args)
