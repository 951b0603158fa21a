"""Particles with aging (docs/paper.md §5.1-§5.5; docs/search.md, "The particle algorithm")."""
from __future__ import annotations

import logging
import math
from collections import Counter

from ..evaluator import score_of
from ..state_data import Particle
from .base import SearchAlgorithm

log = logging.getLogger(__name__)


class Particles(SearchAlgorithm):
    """The paper's particles: each timestep every particle makes ``search.mutants`` mutants (all in
    one map, failed slots retried up to ``search.attempts``) and moves to its best child; a particle
    that has not improved for ``search.max_age`` timesteps restarts."""

    slot_kind = "mutant"        # the log's ``kind`` of a slot's candidate
    ages = True                 # aged-out particles restart

    @classmethod
    def plan(cls, cfg) -> dict:
        s = cfg.search
        out: dict = {"init": s.init_factor * s.particles * len(s.init_tasks)}
        own = s.particles * len(s.tasks) if (s.reevaluate_particles and s.init_tasks != s.tasks) else 0
        for t in range(1, s.timesteps + 1):
            out[f"timestep:{t}"] = s.particles * s.mutants * len(s.tasks) + (own if t == 1 else 0)
        return out

    def propose(self, p: Particle, meta: dict):
        """The candidate of one slot of particle ``p``: (genome, lookup, operator) or None."""
        return self.run.new_mutant(self.run.genome(p.genome), meta)

    def start(self) -> None:
        run = self.run
        c = run.cfg.search
        n_init = c.init_factor * c.particles
        drawn = run.warm_start(n_init)          # search.seed_genomes and their mutants first
        log.info("initial population: %d seeded + %d random genomes on %s", len(drawn), n_init - len(drawn),
                 ", ".join(c.init_tasks))
        for i in range(len(drawn), n_init):
            meta = {"kind": "init", "index": i, "timestep": 0}
            got = run.new_random(meta)
            if got is None:
                from ...errors import SearchError
                raise SearchError(f"no random genome passed the integrity checks and the cache in "
                                  f"{c.max_tries} draws (search.max_tries)")
            drawn.append((got, meta))
        groups = [run.request(g, lk, c.init_tasks, c.eval_seed, meta) for (g, lk), meta in drawn]
        records = run.score(groups)
        if c.init_tasks == c.tasks:
            for rec in records:
                run.hof.add(rec)
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
        run.state.particles = particles
        run.store.append_particles(rows)
        run.write_hall_of_fame()

    def step(self, t: int) -> None:
        run = self.run
        c = run.cfg.search
        P = run.state.particles
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
                        reqs.append(run.requests(p.genome, p.rep, c.tasks, c.eval_seed, meta))
                        where.append(("own", p.index))
            open_slots = [(p.index, k) for p in P for k in range(c.mutants)
                          if (p.index, k) not in slots or (slots[(p.index, k)].get("status") != "ok"
                                                           and tries[(p.index, k)] < c.attempts)]
            open_slots = [sk for sk in open_slots if tries[sk] < attempt]
            if not open_slots and not reqs:
                break
            for pi, k in open_slots:
                tries[(pi, k)] += 1
                meta = {"kind": self.slot_kind, "particle": pi, "timestep": t, "slot": k, "attempt": attempt}
                got = self.propose(P[pi], meta)
                if got is None:
                    slots[(pi, k)] = {"status": "rejected", "genome": None, "fitness": None,
                                      "message": f"no valid candidate in {c.max_tries} draws"}
                    continue
                g, lk, op = got
                reqs.append(run.request(g, lk, c.tasks, c.eval_seed, {**meta, "operator": op}))
                where.append(("slot", (pi, k)))
            records = run.score(reqs)
            for (kind, pos), rec in zip(where, records):
                run.hof.add(rec)
                if kind == "own":
                    own[pos] = rec
                else:
                    slots[pos] = rec
        self._select(t, slots, own)

    def _select(self, t: int, slots: dict, own: dict) -> None:
        run = self.run
        s, c = run.state, run.cfg.search
        compat = run.cfg.run.compat
        aging = c.max_age > 0 and not compat and self.ages
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
        run.store.append_particles(rows)
        run.notify("deapnos_timestep_finished", run_dir=str(run.store.dir), timestep=t, particles=rows)

    def _restart(self, p: Particle, t: int) -> bool:
        run = self.run
        c = run.cfg.search
        meta = {"kind": "restart", "particle": p.index, "timestep": t}
        got = None
        members = run.hof.ranked()[:c.hall_of_fame]
        if c.restart == "hof" and members:
            pick = run.rng.choice(members)
            m = run.new_mutant(run.genome(pick["genome"]), meta)
            got = None if m is None else m[:2]
        if got is None:
            got = run.new_random(meta)
        if got is None:
            return False
        g, lk = got
        p.genome, p.rep, p.fitness = g.to_text(), lk.rep, None
        p.best_fitness, p.best_genome, p.age = -math.inf, "", 0
        p.restarts += 1
        run.state.stats["restarts"] += 1
        log.info("particle %d aged out at timestep %d and restarts (%s)", p.index, t, c.restart)
        return True
