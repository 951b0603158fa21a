"""The state of a search run: particles, hall of fame, and the checkpoint's JSON form of both.

:class:`SearchState` is what ``checkpoint.json`` holds (plain JSON data, never pickled); a strategy's own
extra state rides in ``algorithm`` (docs/search.md, "Search algorithms").
"""
from __future__ import annotations

import math
import random
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, TypedDict

from ..schema import JSON_RULES, SchemaError, parse
from ..space.genome import Genome
from .cache import DedupCache
from .evaluator import score_of


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


class HallOfFame:
    """Every genome scored on the search task, by representative key; ranked by mean score."""

    def __init__(self):
        self.entries: dict[str, dict] = {}
        self._order = 0

    def add(self, record: dict) -> None:
        rep = record["rep"]
        entry = self.entries.get(rep)
        if entry is None:
            if record.get("status") != "ok":
                return
            self._order += 1
            entry = self.entries[rep] = {"key": rep, "genome": record["genome"], "scores": {}, "order": self._order,
                                         "first": {k: record.get(k) for k in ("kind", "particle", "timestep")}}
        entry["scores"][str(int(record["seed"]))] = score_of(record)

    @staticmethod
    def mean(entry) -> float:
        vals = list(entry["scores"].values())
        return sum(vals) / len(vals) if vals else -1.0

    def ranked(self) -> list[dict]:
        return sorted(self.entries.values(), key=lambda e: (-self.mean(e), -len(e["scores"]), e["order"]))

    def to_json(self, limit: int, space=None) -> list[dict]:
        out = []
        for rank, e in enumerate(self.ranked()[:limit], 1):
            vals = list(e["scores"].values())
            mean = self.mean(e)
            std = math.sqrt(sum((v - mean) ** 2 for v in vals) / len(vals)) if vals else 0.0
            row = {"rank": rank, "genome": e["genome"], "key": e["key"], "mean": mean, "std": std,
                   "n": len(vals), "scores": dict(e["scores"]), "first": e["first"]}
            try:
                g = Genome.parse(e["genome"], space=space)
                row["equation"] = str(g)
                row["latex"] = g.to_latex()
            except Exception:   # noqa: BLE001 - a report nicety
                pass
            out.append(row)
        return out


@dataclass
class SearchState:
    """Everything a resumed run needs: written to the checkpoint as plain JSON data (:meth:`to_json`,
    :meth:`from_json`), never pickled."""
    phase: str = "start"            # start -> evolve -> final -> elimination -> validation -> done
    timestep: int = 0               # finished timesteps
    seq: int = 0                    # next log sequence number
    rng_state: object = None
    particles: list = field(default_factory=list)
    hof: HallOfFame = field(default_factory=HallOfFame)
    cache: DedupCache | None = None
    stats: Counter = field(default_factory=Counter)
    counts: dict = field(default_factory=dict)      # evaluator: evaluated, cached, resumed
    elimination: dict = field(default_factory=dict)
    reference: dict = field(default_factory=dict)   # "task|seed" -> the reference optimizer's result
    validation: dict = field(default_factory=dict)  # held-out validation (search/validation.py)
    elapsed: float = 0.0
    summary: dict = field(default_factory=dict)
    algorithm: dict = field(default_factory=dict)   # the strategy's own state (SearchAlgorithm.state_dict)

    def to_json(self) -> dict:
        """The state as plain JSON data: counters, lists, dicts, the RNG state and genome texts."""
        import dataclasses
        out = {}
        for f in dataclasses.fields(self):
            v = getattr(self, f.name)
            if f.name == "rng_state":
                v = None if v is None else [v[0], list(v[1]), v[2]]
            elif f.name == "particles":
                v = [dataclasses.asdict(p) for p in v]
            elif f.name == "hof":
                v = {"entries": v.entries, "order": v._order}
            elif f.name == "cache":          # every attribute of the DedupCache; results keyed by lists
                v = None if v is None else {
                    k: ([[rep, task, seed, res] for (rep, task, seed), res in x.items()] if k == "results" else
                        dict(x) if k == "stats" else x) for k, x in vars(v).items()}
            elif f.name == "stats":
                v = dict(v)
            elif f.name == "algorithm" and not v:
                continue                     # particles and random keep the checkpoint as it was
            out[f.name] = v
        return out

    @classmethod
    def from_json(cls, data: dict) -> SearchState:
        """The state of :meth:`to_json`'s data (declared by :class:`StateData`); a field of the wrong
        shape raises ValueError naming it (``field state.particles[0].index = 'x': expected an integer``)."""
        try:
            doc = parse(StateData, data, "state", JSON_RULES)
        except SchemaError as exc:
            raise ValueError(exc.describe()) from None
        kw: dict = {k: v for k, v in doc.items() if k not in ("rng_state", "hof", "cache", "stats")}
        if "rng_state" in doc:
            kw["rng_state"] = _rng_state(doc["rng_state"])
        if "hof" in doc:
            hof = kw["hof"] = HallOfFame()
            hof.entries, hof._order = doc["hof"]["entries"], doc["hof"]["order"]
        if doc.get("cache") is not None:
            cache = kw["cache"] = DedupCache()
            for k, x in doc["cache"].items():
                setattr(cache, k, {(r[0], r[1], r[2]): r[3] for r in x} if k == "results" else
                        Counter(x) if k == "stats" else x)
        if "stats" in doc:
            kw["stats"] = Counter(doc["stats"])
        if "elapsed" in doc:
            kw["elapsed"] = float(doc["elapsed"])
        return cls(**kw)


def _rng_state(value) -> tuple | None:
    """A Python random state from its JSON form; ValueError naming the field when it is not one."""
    if value is None:
        return None
    version, internal, gauss = value
    if not all(0 <= x < 2 ** 32 for x in internal):
        raise ValueError("field state.rng_state: not a Python random state (its words must be 32-bit)")
    try:
        random.Random().setstate((version, internal, gauss))
    except (ValueError, TypeError) as exc:
        raise ValueError(f"field state.rng_state: {exc}") from None
    return version, internal, gauss


# -- the checkpoint's JSON form (checkpoint.json's "state"), declared once: deapnos.schema checks it

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
