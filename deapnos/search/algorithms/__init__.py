"""Search algorithms by name: strategies over a :class:`deapnos.search.runner.SearchRun`.

``run.algorithm`` picks one from a registry (:data:`ALGORITHMS` for the built-ins); a plugin adds its
own class, a :class:`SearchAlgorithm` taking the run (docs/search.md, "Search algorithms").
"""
from __future__ import annotations

from ...hookspecs import hookimpl
from ...registry import Registry
from .base import SearchAlgorithm
from .particles import Particles
from .random_search import RandomSearch
from .regularized import RegularizedEvolution

ALGORITHMS: Registry[type[SearchAlgorithm]] = Registry("search algorithm")
ALGORITHMS.register("particles", Particles)
ALGORITHMS.register("random", RandomSearch)
ALGORITHMS.register("regularized", RegularizedEvolution)


@hookimpl
def deapnos_search_algorithms() -> dict[str, type[SearchAlgorithm]]:
    """The built-in algorithms (:data:`ALGORITHMS`, never changed), as a plugin: deapnos.context
    registers this package, as pytest registers its default plugins."""
    return dict(ALGORITHMS.items())

__all__ = ["ALGORITHMS", "SearchAlgorithm", "Particles", "RandomSearch", "RegularizedEvolution"]
