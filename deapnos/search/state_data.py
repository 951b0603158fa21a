"""The search state as the checkpoint holds it (``checkpoint.json``'s ``state``), declared once as
TypedDicts for :mod:`deapnos.schema`, :class:`Particle`, which it holds, and :func:`state_problem`,
its check for meaning against the log.  Standard library only,
so that reading a checkpoint (``deapnos status``) imports no torch."""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, TypedDict


@dataclass
class Particle:
    index: int
    genome: str
    rep: str
    fitness: float | None = None          # fitness of the current position on the search task
    best_fitness: float = -math.inf       # best of this life (since the last restart)
    best_genome: str = ""
    age: int = 0
    restarts: int = 0
    init_fitness: float | None = None     # score on the initial surrogate

    def to_dict(self) -> dict:
        return {"particle": self.index, "genome": self.genome, "key": self.rep, "fitness": self.fitness,
                "best_fitness": None if self.best_fitness == -math.inf else self.best_fitness,
                "best_genome": self.best_genome, "age": self.age, "restarts": self.restarts}


class _HofEntryRequired(TypedDict):
    genome: str
    scores: dict[str, float]


class HofEntry(_HofEntryRequired, total=False):
    """One genome of the hall of fame: its scores by seed, and where it was first seen."""
    key: str
    order: int
    first: dict[str, Any]


class HofData(TypedDict):
    entries: dict[str, HofEntry]
    order: int


class CacheData(TypedDict, total=False):
    """Every attribute of a :class:`DedupCache`; results as ``[key, task, seed, result]`` lists."""
    use_fingerprint: bool
    probe_steps: int
    digits: int
    rep_of_key: dict[str, str]
    rep_of_fp: dict[str, str]
    results: list[tuple[str, str, int, dict[str, Any]]]
    stats: dict[str, int]
    compat: bool


class StateData(TypedDict, total=False):
    """:meth:`SearchState.to_json`'s data (every field optional: a missing one keeps its default)."""
    phase: str
    timestep: int
    seq: int
    rng_state: tuple[int, tuple[int, ...], float | None] | None     # random.getstate()
    particles: list[Particle]
    hof: HofData
    cache: CacheData | None
    stats: dict[str, int]
    counts: dict[str, Any]
    elimination: dict[str, Any]
    reference: dict[str, Any]
    validation: dict[str, Any]
    elapsed: float
    summary: dict[str, Any]
    algorithm: dict[str, Any]


#: the phases of a run, in order (SearchRun.run)
PHASES = ("start", "evolve", "final", "elimination", "validation", "done")


def state_problem(state: dict, timesteps: int | None, log: list[dict]) -> str | None:
    """What makes a checkpoint's state impossible for its config and its log (None: nothing).
    Types are :meth:`SearchState.from_json`'s job; this checks meaning: a known phase, a timestep
    within ``search.timesteps``, a next ``seq`` that the log agrees with (every seq below it logged,
    none at or above it from a timestep the checkpoint already finished), counts no larger than the
    log.  A checkpoint is written after the log lines it counts reach the disk, so a crash can only
    leave records *above* its seq."""
    def is_int(v):
        return isinstance(v, int) and not isinstance(v, bool)

    phase = state.get("phase", "start")
    if phase not in PHASES:
        return f"field state.phase is {phase!r}, not a phase of a run ({', '.join(PHASES)})"
    t = state.get("timestep", 0)
    if not is_int(t) or t < 0 or (timesteps is not None and t > timesteps):
        bound = f"0..{timesteps} (search.timesteps)" if timesteps is not None else "an integer >= 0"
        return f"field state.timestep is {t!r}, not in {bound}"
    seq = state.get("seq", 0)
    if not is_int(seq) or seq < 0:
        return f"field state.seq is {seq!r}, not a sequence number (an integer >= 0)"
    seqs = {r.get("seq") for r in log}
    missing = next((k for k in range(seq) if k not in seqs), None)
    if missing is not None:
        return (f"field state.seq is {seq}, but the log has no record with seq {missing} (a checkpoint never "
                f"runs ahead of its log)")
    if phase == "evolve":
        late = next((r for r in log if is_int(r.get("seq")) and r["seq"] >= seq and is_int(r.get("timestep"))
                     and r["timestep"] <= t), None)
        if late is not None:
            return (f"field state.seq is {seq}, but the log holds seq {late['seq']} from timestep "
                    f"{late['timestep']}, which the checkpoint says was finished (state.timestep = {t}): the seq "
                    f"is behind its log")
    counts = state.get("counts")
    if isinstance(counts, dict):
        done = sum(1 for r in log if r.get("event") == "evaluation" and is_int(r.get("seq")) and r["seq"] < seq)
        used = sum(v for k, v in counts.items() if k in ("evaluated", "cached") and is_int(v))
        if used > done:
            return (f"field state.counts says {used} evaluations were run or taken from the cache, but the log "
                    f"holds only {done} below seq {seq}")
    return None
