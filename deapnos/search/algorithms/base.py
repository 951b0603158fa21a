"""The interface of a search algorithm: a strategy over a :class:`deapnos.search.runner.SearchRun`."""
from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ..runner import SearchRun


class SearchAlgorithm:
    """A strategy over a run, the way DEAP's algorithms work over a toolbox.

    The run calls :meth:`start` once (the initial population), then :meth:`step` once per timestep
    ``1..search.timesteps``, checkpointing after each; after a kill it calls :meth:`load_state_dict`
    with what :meth:`state_dict` returned at the last checkpoint, and goes on.  A strategy draws
    every random number from ``run.rng``, proposes candidates with ``run.new_random`` /
    ``run.new_mutant``, scores them with ``run.score`` (one map per call), adds them to ``run.hof``
    and keeps its population in ``run.state.particles`` (a list of :class:`deapnos.search.state.Particle`).
    """

    def __init__(self, run: SearchRun):
        self.run = run

    @classmethod
    def plan(cls, cfg) -> dict:
        """Evaluations the ``init`` and ``timestep:T`` phases are expected to take (the live view's
        ETA; retries and reference runs come on top); None where unknown."""
        return {"init": None, **{f"timestep:{t}": None for t in range(1, cfg.search.timesteps + 1)}}

    def start(self) -> None:
        raise NotImplementedError

    def step(self, t: int) -> None:
        raise NotImplementedError

    def state_dict(self) -> dict:
        """The strategy's own state beyond ``run.state`` as plain JSON data ({} when none)."""
        return {}

    def load_state_dict(self, data: dict) -> None:
        """Restore :meth:`state_dict`'s data; a field of the wrong shape raises ValueError naming it."""
        if data:
            raise ValueError(f"search algorithm {type(self).__name__} keeps no state, got {sorted(data)}")
