"""The state of a search run: particles, hall of fame, and the checkpoint's JSON form of both.

:class:`SearchState` is what ``checkpoint.json`` holds (plain JSON data, never pickled); a strategy's own
extra state rides in ``algorithm`` (docs/search.md, "Search algorithms").
"""
from __future__ import annotations

import math
import random
from collections import Counter
from dataclasses import dataclass, field

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
        """The state of :meth:`to_json`'s data; a field of the wrong shape raises ValueError naming it."""
        import dataclasses

        def need(ok, name, what):
            if not ok:
                raise ValueError(f"field state.{name} is not {what}")

        def is_int(v):
            return isinstance(v, int) and not isinstance(v, bool)

        def str_dict(v):
            return isinstance(v, dict) and all(isinstance(k, str) for k in v)

        need(isinstance(data, dict), "", "an object")
        known = {f.name: f for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - set(known))
        if unknown:
            raise ValueError(f"unknown field state.{unknown[0]} (written by another deapnos version)")
        kw = {}
        for name, v in data.items():
            if name == "rng_state":
                need(v is None or (isinstance(v, list) and len(v) == 3 and is_int(v[0]) and isinstance(v[1], list)
                                   and all(is_int(x) and 0 <= x < 2 ** 32 for x in v[1])
                                   and (v[2] is None or isinstance(v[2], float))),
                     name, "a Python random state [version, [ints], gauss]")
                v = None if v is None else (v[0], tuple(v[1]), v[2])
                if v is not None:
                    try:
                        random.Random().setstate(v)
                    except (ValueError, TypeError) as exc:
                        raise ValueError(f"field state.rng_state: {exc}") from None
            elif name == "particles":
                need(isinstance(v, list) and all(str_dict(x) for x in v), name, "a list of objects")
                pf = {f.name for f in dataclasses.fields(Particle)}
                out = []
                for i, x in enumerate(v):
                    need(set(x) <= pf and {"index", "genome", "rep"} <= set(x), f"particles[{i}]",
                         f"a particle (fields {', '.join(sorted(pf))})")
                    need(is_int(x["index"]) and isinstance(x["genome"], str) and isinstance(x["rep"], str),
                         f"particles[{i}]", "a particle with an integer index and genome/key strings")
                    need(all(x.get(k) is None or (isinstance(x[k], (int, float)) and not isinstance(x[k], bool))
                             for k in ("fitness", "best_fitness", "init_fitness"))
                         and all(is_int(x.get(k, 0)) for k in ("age", "restarts"))
                         and isinstance(x.get("best_genome", ""), str),
                         f"particles[{i}]", "a particle with numeric fitness fields and integer age/restarts")
                    out.append(Particle(**x))
                v = out
            elif name == "hof":
                need(str_dict(v) and str_dict(v.get("entries")) and is_int(v.get("order"))
                     and all(str_dict(e) and isinstance(e.get("genome"), str) and str_dict(e.get("scores"))
                             for e in v["entries"].values()),
                     name, "a hall of fame {entries, order}")
                hof = HallOfFame()
                hof.entries, hof._order = v["entries"], v["order"]
                v = hof
            elif name == "cache":
                if v is not None:
                    cache = DedupCache()
                    need(str_dict(v) and set(v) <= set(vars(cache)), name,
                         f"a dedup cache (fields {', '.join(sorted(vars(cache)))})")
                    for k, x in v.items():
                        default = getattr(cache, k)
                        if k == "results":
                            need(isinstance(x, list) and all(
                                isinstance(r, list) and len(r) == 4 and isinstance(r[0], str)
                                and isinstance(r[1], str) and is_int(r[2]) and str_dict(r[3]) for r in x),
                                 f"cache.{k}", "a list of [key, task, seed, result]")
                            x = {(r[0], r[1], r[2]): r[3] for r in x}
                        elif k == "stats":
                            need(str_dict(x) and all(is_int(n) for n in x.values()), f"cache.{k}", "counts")
                            x = Counter(x)
                        elif isinstance(default, dict):
                            need(str_dict(x) and all(isinstance(y, str) for y in x.values()), f"cache.{k}",
                                 "an object of strings")
                        else:
                            need(type(x) is type(default) or (default is None), f"cache.{k}",
                                 f"of type {type(default).__name__}")
                        setattr(cache, k, x)
                    v = cache
            elif name == "stats":
                need(str_dict(v) and all(is_int(x) for x in v.values()), name, "an object of counts")
                v = Counter(v)
            else:
                f = known[name]
                factory = f.default_factory
                default = factory() if f.default is dataclasses.MISSING and callable(factory) else f.default
                want = float if isinstance(default, float) else type(default)
                ok = (is_int(v) or isinstance(v, float)) if want is float else \
                    (is_int(v) if want is int else isinstance(v, want))
                need(ok and (not isinstance(v, dict) or str_dict(v)), name, f"of type {want.__name__}")
                v = float(v) if want is float else v
            kw[name] = v
        return cls(**kw)


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
