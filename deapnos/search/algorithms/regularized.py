"""Regularized (aging) evolution, Real et al. 2019, for comparison (docs/search.md, "Regularized evolution")."""
from __future__ import annotations

import logging
from collections import Counter

from ..evaluator import score_of
from ..state_data import Particle
from .base import SearchAlgorithm

log = logging.getLogger(__name__)


class RegularizedEvolution(SearchAlgorithm):
    """A population of ``P`` (``search.population``); each cycle samples ``S`` (``search.sample``) members
    at random, mutates the best of the sample, adds the child and removes the OLDEST member.

    Cycles run in rounds of ``search.particles`` (one map each, failed children redrawn up to
    ``search.attempts``); a timestep is ``search.mutants`` rounds, the particles' budget.  The
    population lives in ``run.state.particles``, oldest first; a member's ``index`` is its birth number.
    """

    def __init__(self, run):
        super().__init__(run)
        self.born = 0               # members made so far (the next birth number)

    @classmethod
    def plan(cls, cfg) -> dict:
        s = cfg.search
        out: dict = {"init": (s.population or s.particles * s.mutants) * len(s.tasks)}
        for t in range(1, s.timesteps + 1):
            out[f"timestep:{t}"] = s.particles * s.mutants * len(s.tasks)
        return out

    @property
    def population(self) -> int:
        c = self.run.cfg.search
        return c.population or c.particles * c.mutants

    @property
    def sample(self) -> int:
        return min(self.run.cfg.search.sample, self.population)

    def start(self) -> None:
        run = self.run
        c = run.cfg.search
        log.info("regularized evolution: %d random genomes on %s", self.population, ", ".join(c.tasks))
        groups = [run.request(g, lk, c.tasks, c.eval_seed, meta) for (g, lk), meta in run.warm_start(self.population)]
        for i in range(len(groups), self.population):
            meta = {"kind": "init", "index": i, "timestep": 0}
            got = run.new_random(meta)
            if got is None:
                from ...errors import SearchError
                raise SearchError(f"no random genome passed the integrity checks and the cache in "
                                  f"{c.max_tries} draws (search.max_tries)")
            groups.append(run.request(got[0], got[1], c.tasks, c.eval_seed, meta))
        members = []
        for rec in run.score(groups):
            run.hof.add(rec)
            members.append(self._member(rec))
        run.state.particles = members
        run.store.append_particles([{"timestep": 0, **p.to_dict()} for p in members])
        run.write_hall_of_fame()

    def _member(self, rec: dict) -> Particle:
        f = score_of(rec)
        p = Particle(self.born, rec["genome"], rec["rep"], fitness=f, best_fitness=f, best_genome=rec["genome"])
        self.born += 1
        return p

    def step(self, t: int) -> None:
        run = self.run
        c = run.cfg.search
        log.info("timestep %d/%d: %d rounds of %d cycles, population %d, sample %d", t, c.timesteps, c.mutants,
                 c.particles, self.population, self.sample)
        parents: dict[int, int] = {}            # birth number of a child -> of its parent
        for r in range(1, c.mutants + 1):
            for child, parent in self._round(t, r):
                parents[child] = parent
        rows = [{"timestep": t, **p.to_dict(), **({"parent": parents[p.index]} if p.index in parents else {})}
                for p in run.state.particles]
        run.store.append_particles(rows)
        run.notify("deapnos_timestep_finished", run_dir=str(run.store.dir), timestep=t, particles=rows)

    def _round(self, t: int, r: int) -> list[tuple[int, int]]:
        """``search.particles`` cycles whose samples all come from the population as it stands;
        returns (child, parent) birth numbers of the children that joined."""
        run = self.run
        c = run.cfg.search
        pop = run.state.particles
        picks = []
        for _ in range(c.particles):
            sample = [pop[i] for i in run.rng.sample(range(len(pop)), self.sample)]
            picks.append((max(sample, key=lambda p: p.fitness), sample))     # ties: the first sampled
        slots: dict[int, dict] = {}
        tries: Counter = Counter()
        for attempt in range(1, c.attempts + 1):
            open_slots = [k for k in range(len(picks)) if tries[k] < attempt
                          and (k not in slots or slots[k].get("status") != "ok")]
            if not open_slots:
                break
            reqs, where = [], []
            for k in open_slots:
                tries[k] += 1
                parent, sample = picks[k]
                meta = {"kind": "mutant", "timestep": t, "round": r, "slot": k, "attempt": attempt,
                        "parent": parent.index, "sample": [p.index for p in sample]}
                got = run.new_mutant(run.genome(parent.genome), meta)
                if got is None:         # the child is the last candidate evaluated, if any
                    slots.setdefault(k, {"status": "rejected", "genome": None})
                    continue
                g, lk, op = got
                reqs.append(run.request(g, lk, c.tasks, c.eval_seed, {**meta, "operator": op}))
                where.append(k)
            for k, rec in zip(where, run.score(reqs) if reqs else []):
                run.hof.add(rec)
                slots[k] = rec
        for p in pop:
            p.age += 1
        joined = []
        for k in range(len(picks)):                 # children join in slot order; the oldest leave
            rec = slots.get(k) or {}
            if not rec.get("genome"):
                continue                            # no valid mutant: this cycle made no child
            child = self._member(rec)
            pop.append(child)
            joined.append((child.index, picks[k][0].index))
            while len(pop) > self.population:
                pop.pop(0)
        return joined

    def state_dict(self) -> dict:
        return {"born": self.born}

    def load_state_dict(self, data: dict) -> None:
        born = data.get("born") if isinstance(data, dict) else None
        if set(data or {}) != {"born"} or not isinstance(born, int) or isinstance(born, bool) or born < 0:
            raise ValueError(f"field state.algorithm is not a regularized evolution state {{born: int >= 0}}: "
                             f"{data!r}")
        self.born = born
