"""Random search with the particles' budget, evaluator, retries, cache and elimination."""
from __future__ import annotations

from ..state_data import Particle
from .particles import Particles


class RandomSearch(Particles):
    """The particle loop with a fresh random genome in every slot instead of a mutant; nothing ages.
    A particle still moves to its best slot, so the log and the hall of fame have the same shape."""

    slot_kind = "random"
    ages = False

    def propose(self, p: Particle, meta: dict):
        got = self.run.new_random(meta)
        return None if got is None else (got[0], got[1], "random")
