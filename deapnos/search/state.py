"""The state of a search run: particles, hall of fame, and the checkpoint's JSON form of both.

:class:`SearchState` is what ``checkpoint.json`` holds (plain JSON data, never pickled); a strategy's own
extra state rides in ``algorithm`` (docs/search.md, "Search algorithms").
"""
from __future__ import annotations

import math
import random
from collections import Counter
from dataclasses import dataclass, field

from ..schema import JSON_RULES, SchemaError, parse
from ..space.genome import Genome
from .cache import DedupCache
from .evaluator import score_of
# the checkpoint's JSON form (and Particle, which it holds), declared in a light module of their own
from .state_data import (PHASES, CacheData, HofData, HofEntry, Particle, StateData,  # noqa: F401
                         state_problem)


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
