"""Particle evolution with aging (docs/paper.md §5.1-§5.5), and random search with the same budget.

One search, as in the original but with its particles in parallel.  A candidate is scored on every
task of ``search.task`` (or ``init_task``) with one seed; its fitness combines those scores, relative
to the tuned reference optimizer by default (:mod:`deapnos.search.fitness`, :meth:`ParticleSearch.score`).

1. **Initial population** (§5.2): ``init_factor x particles`` random genomes (§1.6), each redrawn until
   it passes the integrity checks (§5.3) and is new to the dedup cache, are scored on the initial
   surrogate(s) (``search.init_task``) in one map.  The best ``particles`` (failures score -1) become the
   particles, best first.
2. **Timesteps** (§5.5, "Depth d/k"): in each, every particle makes ``mutants`` mutants of itself
   (§5.6, :mod:`deapnos.search.mutation`); every mutant is re-checked for integrity and rejected if the
   cache has seen an equivalent genome.  All particles' evaluations (their mutants, plus the particles
   not yet scored on the search task: at the first timestep their re-evaluation, §5.5 step 1) go out
   through ONE map.  A slot whose mutant failed (screened out, diverged, error) gets a new mutant of
   the same parent, up to ``attempts`` per slot, again one map per round (§5.5 step 3).  Then each
   particle moves to its best child (argmax, first on ties; no comparison with the parent, as the
   original) or, with ``acceptance = "improve"``, only to a better one.
3. **Aging**: a particle's age counts the timesteps since its best fitness last improved; past
   ``max_age`` it restarts from a fresh random genome (``restart = "fresh"``) or from a mutant of a
   random hall-of-fame member (``"hof"``).  ``run.compat = true`` reproduces the authors: no aging,
   the best child always replaces the parent.
4. **Hall of fame**: every genome scored on the search task, ranked by its mean score over the seeds
   it was evaluated with.  Optionally (``reeval_top``) the top genomes are re-evaluated with extra
   seeds after every timestep and at the end (docs/paper.md §8.1.3: single-sample max-of-7 selection has
   a winner's curse).
5. **Elimination** (:mod:`deapnos.search.elimination`) and the report.

``run.algorithm = "random"``: identical, except that a slot's candidate is a fresh random genome
instead of a mutant of its particle (so the budget, evaluator, retries, cache and elimination are
the same) and nothing ages.

Every random choice comes from one ``random.Random(run.seed)`` whose state is in the checkpoint; the
same seed gives the same run on every backend (results are processed in request order, whatever
order they arrive in).
"""
from __future__ import annotations

import logging
import math
import random
import time
from collections import Counter
from dataclasses import dataclass, field

from deap import base

from ..space.genome import Genome
from .cache import DedupCache, Lookup
from .config import Config
from .evaluator import EvalRequest, Evaluator, score_of
from .mutation import MutationContext, make_mutant, mutate, random_genome, random_valid_genome

log = logging.getLogger(__name__)


class SearchError(RuntimeError):
    pass


# ----------------------------------------------------------------------------------------------
# state
# ----------------------------------------------------------------------------------------------

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
            out[f.name] = v
        return out

    @classmethod
    def from_json(cls, data: dict) -> "SearchState":
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
                default = known[name].default
                if default is dataclasses.MISSING:
                    default = known[name].default_factory()
                want = float if isinstance(default, float) else type(default)
                ok = (is_int(v) or isinstance(v, float)) if want is float else \
                    (is_int(v) if want is int else isinstance(v, want))
                need(ok and (not isinstance(v, dict) or str_dict(v)), name, f"of type {want.__name__}")
                v = float(v) if want is float else v
            kw[name] = v
        return cls(**kw)


# ----------------------------------------------------------------------------------------------
# the search
# ----------------------------------------------------------------------------------------------

class ParticleSearch:
    """Runs (or resumes) one search in a run folder.

    ``backend``: a map backend (:mod:`deapnos.distributed`); ``pm``: the plugin manager (observers);
    ``space``: the built space; ``checks``: ``{name: IntegrityCheck}``.
    """

    def __init__(self, cfg: Config, store, backend, pm=None, space=None, checks=None, map_fn=None, tasks=None,
                 live=None):
        from ..space.psets import get_default_space
        self.cfg, self.store, self.backend, self.pm = cfg, store, backend, pm
        self.live = live                        # deapnos.live.SearchProgress, or None
        self.installed_tasks = tasks or {}      # name -> Task: resolves the default held-out tasks
        self.space = (space or get_default_space()).build()
        self.checks = checks or {}
        self.enabled_checks = list(cfg.search.integrity_checks)
        self.rng = random.Random(cfg.run.seed)
        state = self._load_checkpoint(store, cfg)
        self.resumed = state is not None
        if state is None:
            state = SearchState(cache=DedupCache(cfg.cache.fingerprint, cfg.cache.probe_steps, cfg.cache.digits))
        else:
            self.rng.setstate(state.rng_state)
        self.state = state
        if state.cache is not None:             # compat: per-particle exact-text dedup, no result reuse
            state.cache.compat = cfg.run.compat
        self.ctx = MutationContext(self.space, self.rng, cfg.mutation, cfg.init, tuple(cfg.search.momentum_kinds),
                                   cfg.run.compat)
        # DEAP's toolbox: `map` is the one seam to the machines (serial, pool, SCOOP)
        self.toolbox = base.Toolbox()
        if backend is not None:
            self.toolbox.register("map", backend.map)
        self.toolbox.register("mutate", mutate, ctx=self.ctx)
        self.toolbox.register("individual", random_genome, self.ctx)
        if map_fn is None and backend is not None:
            map_fn = self.toolbox.map
        resume_results = store.result_cache() if (self.resumed or store.read_log()) else {}
        payload = {"protocol": dict(cfg.protocol), "plugins": list(cfg.run.plugins), "compat": cfg.run.compat,
                   "device": cfg.run.device, "threads": cfg.run.torch_threads, "data_dir": cfg.run.data_dir}
        self.evaluator = Evaluator(backend, store, state.cache, payload, resume_results,
                                   on_evaluation=self._on_evaluation, map_fn=map_fn, task_overrides=cfg.tasks,
                                   counts=state.counts, progress=live)
        self._genomes: dict[str, Genome] = {}

    # -- helpers --------------------------------------------------------------------------------

    @property
    def cache(self) -> DedupCache:
        return self.state.cache

    def _seq(self) -> int:
        s = self.state.seq
        self.state.seq += 1
        return s

    def genome(self, text: str) -> Genome:
        g = self._genomes.get(text)
        if g is None:
            g = self._genomes[text] = Genome.parse(text, space=self.space)
        return g.copy()

    def _on_evaluation(self, record: dict) -> None:
        self.state.stats["evaluations"] += 1
        self.state.stats[f"status_{record.get('status')}"] += 1
        if self.live is not None:
            self.live.evaluation(record)
        if self.pm is not None:
            from ..evaluate.result import EvalResult
            from ..plugins import notify
            try:
                result = EvalResult.from_dict(record)
            except Exception:   # noqa: BLE001
                return
            notify(self.pm, "deapnos_evaluation_finished", result=result)

    def _log_reject(self, genome: Genome, status: str, reason: str, seconds: float, meta: dict) -> None:
        from ..distributed import worker_id
        self.state.stats[f"candidates_{status}"] += 1
        if self.live is not None:
            self.live.rejected(status)
        self.store.append({"event": status, "seq": self._seq(), **meta, "genome": genome.to_text(),
                           "status": "rejected", "message": reason, "seconds": seconds, "worker": worker_id()})

    def _acceptor(self, meta: dict, parent_flip: bool = False):
        """``accept(genome) -> (ok, reason)`` for the mutation/sampling loops: integrity, then the
        cache.  The lookup of the accepted genome is left in ``holder['lookup']``."""
        from ..evaluate.integrity import run_integrity_checks
        holder: dict = {}
        attempt = Counter()

        def accept(g: Genome):
            attempt["n"] += 1
            t0 = time.perf_counter()
            res = run_integrity_checks(g, self.checks, self.enabled_checks)
            if self.cfg.run.compat and parent_flip:
                g.flip = True                   # the original never reset flip (docs/paper.md §5.3)
            if not res.passed:
                self._log_reject(g, "rejected", res.reason, time.perf_counter() - t0, {**meta, "draw": attempt["n"]})
                return False, res.reason
            lk = self.cache.check(g, scope=meta.get("particle"))
            if lk.duplicate:
                self._log_reject(g, "duplicate", f"duplicate of {lk.rep} (same {lk.by})", time.perf_counter() - t0,
                                 {**meta, "draw": attempt["n"]})
                return False, "duplicate"
            holder["lookup"] = lk
            return True, ""
        return accept, holder

    def _new_random(self, meta: dict) -> tuple[Genome, Lookup] | None:
        accept, holder = self._acceptor(meta)
        g, _ = random_valid_genome(self.ctx, accept, self.cfg.search.max_tries)
        if g is None:
            return None
        self.cache.add(g, holder["lookup"])
        return g, holder["lookup"]

    def _new_mutant(self, parent: Genome, meta: dict) -> tuple[Genome, Lookup, str] | None:
        self.cache.enter(parent, meta.get("particle"))
        accept, holder = self._acceptor(meta, parent.flip)
        child, op, _ = make_mutant(parent, self.ctx, accept, self.cfg.search.max_tries)
        if child is None:
            return None
        self.cache.add(child, holder["lookup"])
        return child, holder["lookup"], op

    def _requests(self, text: str, rep: str, tasks: list[str], seed: int, meta: dict) -> list[EvalRequest]:
        """One candidate's requests: one per task, with the same seed."""
        return [EvalRequest(text, rep, task, seed, self._seq(), dict(meta)) for task in tasks]

    def _request(self, genome: Genome, lk: Lookup, tasks: list[str], seed: int, meta: dict) -> list[EvalRequest]:
        return self._requests(genome.to_text(), lk.rep, tasks, seed, {**meta, "key": lk.key})

    def reference_genome(self) -> tuple[str, str]:
        """(text, representative key) of the reference optimizer (``fitness.reference``)."""
        from .. import zoo
        g = zoo.get(self.cfg.fitness.reference, space=self.space)
        return g.to_text(), self.cache.lookup(g, count=False).rep

    def reference(self, task: str, seed: int) -> dict | None:
        """The reference optimizer's result on (task, seed), if already evaluated."""
        return self.state.reference.get(f"{task}|{int(seed)}")

    def ensure_reference(self, pairs) -> None:
        """Evaluate the reference on the (task, seed) pairs it has not seen yet, in one map; a
        reference that fails stops the search (no relative score can be computed)."""
        if not self.cfg.fitness.relative:
            return
        missing = sorted({(t, int(s)) for t, s in pairs if self.reference(t, s) is None})
        if not missing:
            return
        name = self.cfg.fitness.reference
        text, rep = self.reference_genome()
        reqs = [EvalRequest(text, rep, t, s, self._seq(), {"kind": "reference", "label": name}) for t, s in missing]
        log.info("reference %s on %d (task, seed) pair(s)", name, len(reqs))
        for req, rec in zip(reqs, self.evaluator.run(reqs)):
            if rec.get("status") != "ok":
                raise SearchError(f"the reference optimizer {name!r} did not train on task {req.task!r} with "
                                  f"seed {req.seed}: {rec.get('status')}: {rec.get('message', '')}. Choose another "
                                  "with fitness.reference, or use raw scores with fitness.relative = false")
            self.state.reference[f"{req.task}|{req.seed}"] = {k: rec.get(k) for k in ("status", "fitness", "lr",
                                                                                      "seconds")}

    def score(self, groups: list[list[EvalRequest]]) -> list[dict]:
        """Evaluate candidates (one group of per-task requests each) in ONE map; one combined record
        per candidate (:func:`deapnos.search.fitness.combine`)."""
        from .fitness import combine
        flat = [r for g in groups for r in g]
        self.ensure_reference({(r.task, r.seed) for r in flat})
        records = self.evaluator.run(flat)
        out, i = [], 0
        for g in groups:
            recs = records[i:i + len(g)]
            i += len(g)
            refs = [self.reference(r.task, r.seed) if self.cfg.fitness.relative else None for r in g]
            out.append(combine(recs, refs, self.cfg))
        return out

    def checkpoint(self) -> None:
        from .config import config_fingerprint
        now = time.time()
        self.state.elapsed += now - self._t_mark
        self._t_mark = now
        self.state.rng_state = self.rng.getstate()
        self.store.save_checkpoint(self.state.to_json(), config=config_fingerprint(self.cfg))

    @staticmethod
    def _load_checkpoint(store, cfg: Config) -> SearchState | None:
        """The state to resume from (None: start afresh).  Refuses a checkpoint written under another
        config (naming the fields that differ) and a damaged one (naming the file and the field)."""
        from .config import fingerprint_differences
        from .store import CHECKPOINT, StoreError
        doc = store.read_checkpoint()
        if doc is None:
            return None
        path = store.path(CHECKPOINT)
        if doc.get("config") is not None:
            diff = fingerprint_differences(doc["config"], cfg)
            if diff:
                raise StoreError(f"{store.dir}/config.toml differs from the config this run was checkpointed "
                                 f"under ({'; '.join(diff)}): a resumed run keeps its config; undo the change, or "
                                 f"start a new run with the new config")
        if doc.get("state") is None:
            return None
        try:
            return SearchState.from_json(doc["state"])
        except ValueError as exc:
            raise StoreError(f"{path}: {exc}{doc.get('damaged_hint', '')}") from None

    # -- phases ---------------------------------------------------------------------------------

    def run(self) -> dict:
        self._t_mark = time.time()
        s, c = self.state, self.cfg.search
        if s.phase == "start":
            self.init_population()
            s.phase = "evolve"
            self.checkpoint()
        while s.phase == "evolve" and s.timestep < c.timesteps:
            self.timestep()
            self.checkpoint()
        if s.phase == "evolve":
            s.phase = "final"
        if s.phase == "final":
            self.reevaluate_top(rounds=10, timestep=c.timesteps)   # until the top is scored with every seed
            self.write_hall_of_fame()
            s.phase = "elimination"
            self.checkpoint()
        if s.phase == "elimination":
            from .elimination import run_elimination
            run_elimination(self)
            s.phase = "validation"
            self.checkpoint()
        if s.phase == "validation":
            from .validation import run_validation
            run_validation(self)
            s.phase = "done"
        s.summary = self.summary()
        self.checkpoint()
        s.summary["wall_seconds"] = s.elapsed
        self.store.write_json("summary.json", s.summary)
        if self.pm is not None:
            from ..plugins import notify
            notify(self.pm, "deapnos_run_finished", run_dir=str(self.store.dir),
                   hall_of_fame=self.state.hof.to_json(self.cfg.search.hall_of_fame, self.space))
        return s.summary

    def init_population(self) -> None:
        c = self.cfg.search
        n_init = c.init_factor * c.particles
        log.info("initial population: %d random genomes on %s", n_init, ", ".join(c.init_tasks))
        drawn = []
        for i in range(n_init):
            meta = {"kind": "init", "index": i, "timestep": 0}
            got = self._new_random(meta)
            if got is None:
                raise SearchError(f"no random genome passed the integrity checks and the cache in "
                                  f"{c.max_tries} draws (search.max_tries)")
            drawn.append((got, meta))
        groups = [self._request(g, lk, c.init_tasks, c.eval_seed, meta) for (g, lk), meta in drawn]
        records = self.score(groups)
        if c.init_tasks == c.tasks:
            for rec in records:
                self.state.hof.add(rec)
        order = sorted(range(n_init), key=lambda i: (-score_of(records[i]), i))
        particles = []
        rows = []
        for j, i in enumerate(order[:c.particles]):
            rec = records[i]
            p = Particle(j, rec["genome"], rec["rep"], init_fitness=score_of(rec))
            if not c.reevaluate_particles or c.init_tasks == c.tasks:
                p.fitness = p.best_fitness = score_of(rec)
                p.best_genome = p.genome
            particles.append(p)
            rows.append({"timestep": 0, **p.to_dict(), "init_fitness": p.init_fitness})
        self.state.particles = particles
        self.store.append_particles(rows)
        self.write_hall_of_fame()

    def _propose(self, p: Particle, meta: dict):
        if self.cfg.run.algorithm == "random":
            got = self._new_random(meta)
            return None if got is None else (got[0], got[1], "random")
        return self._new_mutant(self.genome(p.genome), meta)

    def timestep(self) -> None:
        s, c = self.state, self.cfg.search
        t = s.timestep + 1
        P = s.particles
        log.info("timestep %d/%d: %d particles x %d mutants", t, c.timesteps, len(P), c.mutants)
        slots: dict[tuple, dict] = {}
        tries: Counter = Counter()
        own: dict[int, dict] = {}
        for attempt in range(1, c.attempts + 1):
            reqs, where = [], []
            if attempt == 1:
                for p in P:
                    if p.fitness is None:
                        meta = {"kind": "particle", "particle": p.index, "timestep": t}
                        reqs.append(self._requests(p.genome, p.rep, c.tasks, c.eval_seed, meta))
                        where.append(("own", p.index))
            open_slots = [(p.index, k) for p in P for k in range(c.mutants)
                          if (p.index, k) not in slots or (slots[(p.index, k)].get("status") != "ok"
                                                           and tries[(p.index, k)] < c.attempts)]
            open_slots = [sk for sk in open_slots if tries[sk] < attempt]
            if not open_slots and not reqs:
                break
            for pi, k in open_slots:
                tries[(pi, k)] += 1
                meta = {"kind": "mutant" if self.cfg.run.algorithm == "particles" else "random",
                        "particle": pi, "timestep": t, "slot": k, "attempt": attempt}
                got = self._propose(P[pi], meta)
                if got is None:
                    slots[(pi, k)] = {"status": "rejected", "genome": None, "fitness": None,
                                      "message": f"no valid candidate in {c.max_tries} draws"}
                    continue
                g, lk, op = got
                reqs.append(self._request(g, lk, c.tasks, c.eval_seed, {**meta, "operator": op}))
                where.append(("slot", (pi, k)))
            records = self.score(reqs)
            for (kind, pos), rec in zip(where, records):
                self.state.hof.add(rec)
                if kind == "own":
                    own[pos] = rec
                else:
                    slots[pos] = rec
        self._select(t, slots, own)
        s.timestep = t
        self.reevaluate_top(rounds=1, timestep=t)
        self.write_hall_of_fame()

    def _select(self, t: int, slots: dict, own: dict) -> None:
        s, c = self.state, self.cfg.search
        compat = self.cfg.run.compat
        aging = c.max_age > 0 and not compat and self.cfg.run.algorithm == "particles"
        rows = []
        for p in s.particles:
            if p.index in own:
                p.fitness = score_of(own[p.index])
                if p.fitness > p.best_fitness:
                    p.best_fitness, p.best_genome = p.fitness, p.genome
            recs = [slots.get((p.index, k)) for k in range(c.mutants)]
            scores = [score_of(r) for r in recs]
            best = max(range(len(scores)), key=lambda k: (scores[k], -k))
            child = recs[best]
            moved = False
            if child is not None and child.get("genome"):
                if compat or c.acceptance == "always" or p.fitness is None or scores[best] > p.fitness:
                    p.genome, p.rep, p.fitness = child["genome"], child["rep"], scores[best]
                    moved = True
            if p.fitness is not None and p.fitness > p.best_fitness:
                p.best_fitness, p.best_genome, p.age = p.fitness, p.genome, 0
            else:
                p.age += 1
            row = {"timestep": t, **p.to_dict(), "moved": moved, "restarted": False, "child_scores": scores,
                   "chosen": best}
            if aging and p.age > c.max_age and t < c.timesteps and self._restart(p, t):
                # the row keeps the position this timestep ended at; the particle goes on from here
                row.update({"restarted": True, "restart_genome": p.genome, "restarts": p.restarts})
            rows.append(row)
        self.store.append_particles(rows)
        if self.pm is not None:
            from ..plugins import notify
            notify(self.pm, "deapnos_timestep_finished", run_dir=str(self.store.dir), timestep=t, particles=rows)

    def _restart(self, p: Particle, t: int) -> bool:
        c = self.cfg.search
        meta = {"kind": "restart", "particle": p.index, "timestep": t}
        got = None
        members = self.state.hof.ranked()[:c.hall_of_fame]
        if c.restart == "hof" and members:
            pick = self.rng.choice(members)
            m = self._new_mutant(self.genome(pick["genome"]), meta)
            got = None if m is None else m[:2]
        if got is None:
            got = self._new_random(meta)
        if got is None:
            return False
        g, lk = got
        p.genome, p.rep, p.fitness = g.to_text(), lk.rep, None
        p.best_fitness, p.best_genome, p.age = -math.inf, "", 0
        p.restarts += 1
        self.state.stats["restarts"] += 1
        log.info("particle %d aged out at timestep %d and restarts (%s)", p.index, t, c.restart)
        return True

    def reevaluate_top(self, rounds: int, timestep: int) -> None:
        c = self.cfg.search
        if not c.reeval_top:
            return
        for _ in range(rounds):
            groups = []
            for e in self.state.hof.ranked()[:c.reeval_top]:
                for seed in c.reeval_seeds:
                    if str(int(seed)) not in e["scores"]:
                        meta = {"kind": "reeval", "timestep": timestep}
                        groups.append(self._requests(e["genome"], e["key"], c.tasks, int(seed), meta))
            if not groups:
                return
            for rec in self.score(groups):
                self.state.hof.add(rec)

    def write_hall_of_fame(self) -> None:
        self.store.write_json("hall_of_fame.json",
                              self.state.hof.to_json(self.cfg.search.hall_of_fame, self.space))

    def summary(self) -> dict:
        s = self.state
        hof = s.hof.to_json(1, self.space)
        return {"algorithm": self.cfg.run.algorithm, "seed": self.cfg.run.seed, "timesteps": s.timestep,
                "particles": len(s.particles), "cache": self.cache.summary(), "stats": dict(s.stats),
                "evaluator": dict(self.evaluator.counts), "best": hof[0] if hof else None,
                "leaderboard": s.elimination.get("leaderboard", [])}
