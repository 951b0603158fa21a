"""The names earlier versions imported from here: the search now lives in :mod:`deapnos.search.runner`
(the run object), :mod:`deapnos.search.state` and :mod:`deapnos.search.algorithms` (particles with
aging, random search, regularized evolution); docs/search.md describes them.
"""
from __future__ import annotations

from .algorithms.particles import Particles
from .runner import SearchError, SearchRun
from .state import HallOfFame, Particle, SearchState

ParticleSearch = SearchRun          # the run picks the strategy from ``run.algorithm``

__all__ = ["ParticleSearch", "SearchRun", "SearchError", "Particle", "HallOfFame", "SearchState", "Particles"]
