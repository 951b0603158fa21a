"""The run object of a search: store, evaluator, cache, hall of fame, checkpoint and resume.

A search algorithm (:mod:`deapnos.search.algorithms`) is a strategy over a :class:`SearchRun`, as DEAP's
algorithms work over a toolbox; the run drives the phases (initial population, timesteps, final
re-evaluation, elimination, validation).  docs/search.md, "Search algorithms", describes the interface.
"""
from __future__ import annotations

import logging
import random
import time
import warnings
from collections import Counter
from typing import TYPE_CHECKING, Any, cast

from deap import base

from ..errors import SearchError     # defined low (the algorithms raise it too); importable from here
from ..space.genome import Genome
from .cache import DedupCache, Lookup
from .config import Config
from .evaluator import EvalRequest, Evaluator
from .genomes import random_valid_genome
from .mutation_context import MutationContext
from .run_context import RunContext, _old_form, _Parts  # noqa: F401  (RunContext: importable from here)
from .operators import make_mutant
from .state import HallOfFame, SearchState

if TYPE_CHECKING:
    pass

log = logging.getLogger(__name__)


class SearchRun:
    """Runs (or resumes) one search in a run folder with the strategy ``cfg.run.algorithm``.

    ``backend``: a map backend (:mod:`deapnos.distributed`); ``ctx``: the run's
    :class:`deapnos.context.Context` (:class:`RunContext`): its plugin manager (observers), built
    space, integrity checks, installed tasks, search algorithms and zoo; None: the paper's space and
    the built-ins, no plugins.  ``live``: a :class:`deapnos.live.SearchProgress`; ``map_fn``: the map
    to evaluate with (default: the backend's); ``evaluate_fn``: what that map runs on each payload
    (:func:`deapnos.worker_entry.evaluate_payload`, which ``deapnos run`` passes: it builds the worker's
    plugins with build_context, above the search; None: only a map that computes its own results
    works).  The old form ``SearchRun(cfg, store, backend, pm,
    space, checks, map_fn=..., tasks=..., live=..., algorithms=..., zoo=...)`` still works, with a
    DeprecationWarning.
    """

    def __init__(self, cfg: Config, store, backend, ctx: RunContext | None = None, *args: Any,
                 live=None, map_fn=None, evaluate_fn=None, **kwargs: Any):
        from .. import zoo as _zoo
        from ..space.psets import builtin_space
        from .algorithms import ALGORITHMS
        parts: RunContext | _Parts | None = ctx
        if kwargs or not (isinstance(ctx, RunContext) or (ctx is None and not args)):
            parts, live, map_fn = _old_form(ctx, args, kwargs, live, map_fn)
        elif args:                               # SearchRun(cfg, store, backend, ctx, live, map_fn)
            if len(args) > 2:
                raise TypeError("SearchRun() takes at most 6 positional arguments")
            live, map_fn = args[0], (args[1] if len(args) == 2 else map_fn)
        self.context = parts                    # the run's Context (None: no plugins)
        algorithms = parts.algorithms if parts is not None else None
        zoo = parts.zoo if parts is not None else None
        space = parts.space if parts is not None else None
        self.zoo = zoo if zoo is not None else _zoo.OPTIMIZERS   # reference and baselines: the run's zoo
        self.cfg, self.store, self.backend, self.pm = cfg, store, backend, (parts.pm if parts is not None else None)
        self.live = live                        # deapnos.live.SearchProgress, or None
        # name -> Task: resolves the default held-out tasks
        self.installed_tasks = (parts.tasks if parts is not None else None) or {}
        self.space = space.build() if space is not None else builtin_space(cfg.run.compat)
        self.checks = (parts.checks if parts is not None else None) or {}
        self.enabled_checks = list(cfg.search.integrity_checks)
        self.rng = random.Random(cfg.run.seed)
        self._t_mark = time.time()              # elapsed time counts from here (and each run())
        store.bind_config(_fingerprint(cfg))    # the log must hold this config's records only (issue 19)
        state = self._load_checkpoint(store, cfg)
        self.resumed = state is not None
        if state is None:
            state = SearchState(cache=DedupCache(cfg.cache.fingerprint, cfg.cache.probe_steps, cfg.cache.digits))
        else:
            self.rng.setstate(cast(tuple, state.rng_state))
        self.state = state
        if state.cache is not None:             # compat: per-particle exact-text dedup, no result reuse
            state.cache.compat = cfg.run.compat
        self.mutation_ctx = MutationContext(self.space, self.rng, cfg.mutation, cfg.init,
                                            tuple(cfg.search.momentum_kinds), cfg.run.compat)
        # DEAP's toolbox holds only `map`, the one seam to the machines (serial, pool, SCOOP); mutants and
        # random genomes come from new_mutant / new_random, which also run the checks and the cache
        self.toolbox = base.Toolbox()
        if backend is not None:
            self.toolbox.register("map", backend.map)
        if map_fn is None and backend is not None:
            map_fn = self.toolbox.map
        resume_results = store.result_cache() if (self.resumed or store.read_log()) else {}
        payload = {"protocol": cfg.protocol.to_dict(), "plugins": list(cfg.run.plugins), "compat": cfg.run.compat,
                   "device": cfg.run.device, "threads": cfg.run.torch_threads, "data_dir": cfg.run.data_dir}
        self.evaluator = Evaluator(backend, store, state.cache, payload, resume_results,
                                   on_evaluation=self._on_evaluation, map_fn=map_fn, task_overrides=cfg.tasks,
                                   counts=state.counts, progress=live, evaluate_fn=evaluate_fn)
        self._genomes: dict[str, Genome] = {}
        self.algorithm = (algorithms if algorithms is not None else ALGORITHMS).get(cfg.run.algorithm)(self)
        if state.algorithm:
            from .store import CHECKPOINT, StoreError
            try:
                self.algorithm.load_state_dict(state.algorithm)
            except ValueError as exc:
                raise StoreError(f"{store.path(CHECKPOINT)}: {exc}") from None

    # -- the public interface of a strategy -------------------------------------------------------

    @property
    def cache(self) -> DedupCache:
        return cast(DedupCache, self.state.cache)      # None only in a state never run

    @property
    def ctx(self) -> MutationContext:
        """Deprecated name of :attr:`mutation_ctx` (``ctx`` is a run's Context elsewhere)."""
        warnings.warn("SearchRun.ctx is deprecated: use SearchRun.mutation_ctx (the MutationContext)",
                      DeprecationWarning, stacklevel=2)
        return self.mutation_ctx

    @property
    def hof(self) -> HallOfFame:
        """Every genome scored on the search task(s), ranked by mean score."""
        return self.state.hof

    def next_seq(self) -> int:
        """The next sequence number of the evaluation log (every request and rejection takes one)."""
        s = self.state.seq
        self.state.seq += 1
        return s

    def genome(self, text: str) -> Genome:
        """A fresh copy of the genome of ``text`` (parsed once)."""
        g = self._genomes.get(text)
        if g is None:
            g = self._genomes[text] = Genome.parse(text, space=self.space)
        return g.copy()

    def representative(self, genome: Genome) -> str:
        """The dedup cache's representative key of ``genome`` (an equivalent genome seen before keeps
        its own key), without counting a lookup."""
        return self.cache.lookup(genome, count=False).rep

    def notify(self, hook: str, **kwargs) -> None:
        """Call an observer hook of the plugins (``deapnos_timestep_finished``, ...), if any."""
        if self.pm is not None:
            from ..plugins import notify
            notify(self.pm, hook, **kwargs)

    def _on_evaluation(self, record: dict) -> None:
        self.state.stats["evaluations"] += 1
        self.state.stats[f"status_{record.get('status')}"] += 1
        if self.live is not None:
            self.live.evaluation(record)
        if self.pm is not None:
            from ..evaluate.result import EvalResult
            try:
                result = EvalResult.from_dict(record)
            except Exception:   # noqa: BLE001
                return
            self.notify("deapnos_evaluation_finished", result=result)

    def _log_reject(self, genome: Genome, status: str, reason: str, seconds: float, meta: dict) -> None:
        from ..evaluate.ident import worker_id
        self.state.stats[f"candidates_{status}"] += 1
        if self.live is not None:
            self.live.rejected(status)
        self.store.append({"event": status, "seq": self.next_seq(), **meta, "genome": genome.to_text(),
                           "status": "rejected", "message": reason, "seconds": seconds, "worker": worker_id()})

    def _acceptor(self, meta: dict, parent_flip: bool = False):
        """``accept(genome) -> (ok, reason)`` for the mutation/sampling loops: integrity, then the
        cache.  The lookup of the accepted genome is left in ``holder['lookup']``."""
        from ..evaluate.integrity import run_integrity_checks
        holder: dict = {}
        attempt: Counter = Counter()

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

    def new_random(self, meta: dict) -> tuple[Genome, Lookup] | None:
        """A random genome that passes the integrity checks and is new to the cache (rejections are
        logged with ``meta``); None after ``search.max_tries`` draws."""
        accept, holder = self._acceptor(meta)
        g, _ = random_valid_genome(self.mutation_ctx, accept, self.cfg.search.max_tries)
        if g is None:
            return None
        self.cache.add(g, holder["lookup"])
        return g, holder["lookup"]

    def new_mutant(self, parent: Genome, meta: dict) -> tuple[Genome, Lookup, str] | None:
        """A mutant of ``parent`` (DEAP-style operators, :mod:`deapnos.search.operators`) that passes
        the checks and is new to the cache, with the operator's name; None after ``max_tries`` draws.
        ``meta["particle"]`` scopes the dedup in compat mode."""
        self.cache.enter(parent, meta.get("particle"))
        accept, holder = self._acceptor(meta, parent.flip)
        child, op, _ = make_mutant(parent, self.mutation_ctx, accept, self.cfg.search.max_tries)
        if child is None:
            return None
        self.cache.add(child, holder["lookup"])
        return child, holder["lookup"], op

    def seed_genomes(self) -> list[tuple[str, Genome]]:
        """The warm start's genomes (``search.seed_genomes``: zoo names or genome files), each checked by
        the integrity checks; one that fails is a one-line :class:`SearchError` naming it and the check."""
        from .. import resolve_genome
        from ..evaluate.integrity import run_integrity_checks
        out = []
        for name in self.cfg.search.seed_genomes:
            try:
                g = resolve_genome(name, self.space, self.zoo)
            except Exception as exc:   # noqa: BLE001 - unknown name, unreadable file: one line
                raise SearchError(f"config field search.seed_genomes: {name!r}: {str(exc).splitlines()[0]}") from None
            res = run_integrity_checks(g, self.checks, self.enabled_checks)
            if not res.passed:
                raise SearchError(f"config field search.seed_genomes: {name!r} fails the integrity check "
                                  f"{res.check or '?'!r}: {res.reason}")
            out.append((name, g))
        return out

    def warm_start(self, n: int) -> list[tuple[tuple[Genome, Lookup], dict]]:
        """At most ``n`` members of the initial population from the seed genomes: each seed genome
        (unless an equivalent was seen) followed by ``search.seed_mutants`` mutants of it.  [] when
        ``search.seed_genomes`` is empty (a cold start)."""
        out: list[tuple[tuple[Genome, Lookup], dict]] = []
        for name, g in self.seed_genomes():
            meta = {"kind": "init", "index": len(out), "timestep": 0, "label": name}
            lk = self.cache.check(g)
            if not lk.duplicate and len(out) < n:
                out.append(((g, self.cache.add(g, lk)), meta))
            for _ in range(self.cfg.search.seed_mutants):
                if len(out) >= n:
                    break
                meta = {"kind": "init", "index": len(out), "timestep": 0, "label": f"{name}~"}
                got = self.new_mutant(g, meta)
                if got is not None:
                    out.append(((got[0], got[1]), meta))
        return out

    def requests(self, text: str, rep: str, tasks: list[str], seed: int, meta: dict) -> list[EvalRequest]:
        """One candidate's requests: one per task, with the same seed (each takes a sequence number)."""
        return [EvalRequest(text, rep, task, seed, self.next_seq(), dict(meta)) for task in tasks]

    def request(self, genome: Genome, lk: Lookup, tasks: list[str], seed: int, meta: dict) -> list[EvalRequest]:
        return self.requests(genome.to_text(), lk.rep, tasks, seed, {**meta, "key": lk.key})

    def evaluate(self, requests: list[EvalRequest]) -> list[dict]:
        """Evaluate ``requests`` in ONE map through the backend: logged, cached and resumed by the
        evaluator; one record per request, in request order."""
        return self.evaluator.run(requests)

    def reference_genome(self, name: str | None = None) -> tuple[str, str]:
        """(text, representative key) of a reference optimizer (default: the first of ``fitness.reference``)."""
        from .. import zoo
        g = zoo.get(name or self.cfg.fitness.references[0], space=self.space, registry=self.zoo)
        return g.to_text(), self.representative(g)

    def reference(self, task: str, seed: int) -> dict | None:
        """The BEST tuned reference's result on (task, seed) (``name``: which one; ``all``: every
        reference's fitness), once every reference was evaluated there; else None."""
        got: dict[str, dict] = {}
        for name in self.cfg.fitness.references:
            rec = self.state.reference.get(f"{task}|{int(seed)}|{name}")
            if rec is None:
                return None
            got[name] = rec
        name = max(got, key=lambda n: (float(got[n]["fitness"]), -self.cfg.fitness.references.index(n)))
        return {**got[name], "name": name, "all": {n: v["fitness"] for n, v in got.items()}}

    def ensure_reference(self, pairs) -> None:
        """Tune every reference (``fitness.reference``) on the (task, seed) pairs it has not seen yet, in
        one map.  Each is tuned once per task and seed; the results live in the checkpoint (the run
        folder) and are reused after a resume.  A reference that fails stops the search (no relative
        score can be computed)."""
        if not self.cfg.fitness.relative:
            return
        missing = sorted({(name, t, int(s)) for t, s in pairs for name in self.cfg.fitness.references
                          if f"{t}|{int(s)}|{name}" not in self.state.reference})
        if not missing:
            return
        texts = {name: self.reference_genome(name) for name in dict.fromkeys(n for n, _, _ in missing)}
        reqs = [EvalRequest(texts[name][0], texts[name][1], t, s, self.next_seq(), {"kind": "reference", "label": name})
                for name, t, s in missing]
        log.info("references %s on %d (task, seed) pair(s)", ", ".join(texts), len({(t, s) for _, t, s in missing}))
        for (name, t, s), rec in zip(missing, self.evaluate(reqs)):
            if rec.get("status") != "ok" or rec.get("fitness") is None:
                raise SearchError(f"the reference optimizer {name!r} did not train on task {t!r} with "
                                  f"seed {s}: {rec.get('status')}: {rec.get('message', '')}. Choose another "
                                  "with fitness.reference, or use raw scores with fitness.relative = false")
            self.state.reference[f"{t}|{s}|{name}"] = {k: rec.get(k) for k in ("status", "fitness", "lr", "seconds",
                                                                                  "final_accuracy")}

    def longer_tasks(self, names, factor: int) -> None:
        """Register ``BASE@xF`` task names for the evaluator: task BASE (with its ``[tasks.BASE]``
        overrides) with F times the steps per epoch, the horizon and the warm-up; the LR screen keeps
        BASE's steps.  A worker builds BASE and applies these overrides (``base_task``)."""
        extra = {}
        for name in names:
            base = name.rsplit("@x", 1)[0]
            own = dict(self.cfg.tasks.get(base) or {})
            task = self.installed_tasks.get(base)
            if task is None:
                raise SearchError(f"the horizon check needs task {base!r} installed on the origin")
            task = task.replace(**own) if own else task
            extra[name] = {**own, "base_task": base, "steps_per_epoch": task.steps_per_epoch * factor,
                           "total_steps": task.horizon * factor, "warmup_steps": task.warmup_steps * factor,
                           "screen_steps_per_epoch": task.screen_steps}
        # a new dict: cfg.tasks itself must not change (it is part of the checkpoint's fingerprint)
        self.evaluator.task_overrides = {**self.evaluator.task_overrides, **extra}

    def score(self, groups: list[list[EvalRequest]]) -> list[dict]:
        """Evaluate candidates (one group of per-task requests each) in ONE map; one combined record
        per candidate (:func:`deapnos.search.fitness.combine`)."""
        from .fitness import combine
        flat = [r for g in groups for r in g]
        self.ensure_reference({(r.task, r.seed) for r in flat})
        refs = [self.reference(r.task, r.seed) if self.cfg.fitness.relative else None for r in flat]
        for r, ref in zip(flat, refs):          # what a hopeless full run is measured against
            r.reference = None if ref is None else ref.get("fitness")
        records = self.evaluate(flat)
        out, i = [], 0
        for g in groups:
            out.append(combine(records[i:i + len(g)], refs[i:i + len(g)], self.cfg))
            i += len(g)
        return out

    def checkpoint(self) -> None:
        """Write the state (the strategy's included) atomically to ``checkpoint.json``."""
        from .config import config_fingerprint
        now = time.time()
        self.state.elapsed += now - self._t_mark
        self._t_mark = now
        self.state.rng_state = self.rng.getstate()
        self.state.algorithm = self.algorithm.state_dict()
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
            diff = fingerprint_differences(_with_new_defaults(doc["config"], cfg), cfg)
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

    # -- the phases -----------------------------------------------------------------------------

    def run(self) -> dict:
        self._t_mark = time.time()
        s, c = self.state, self.cfg.search
        if s.phase == "start":
            self.algorithm.start()
            s.phase = "evolve"
            self.checkpoint()
        while s.phase == "evolve" and s.timestep < c.timesteps:
            t = s.timestep + 1
            self.algorithm.step(t)
            s.timestep = t
            self.reevaluate_top(rounds=1, timestep=t)
            self.write_hall_of_fame()
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
        self.notify("deapnos_run_finished", run_dir=str(self.store.dir),
                    hall_of_fame=self.hof.to_json(self.cfg.search.hall_of_fame, self.space))
        return s.summary

    def reevaluate_top(self, rounds: int, timestep: int) -> None:
        """Score the top ``search.reeval_top`` of the hall of fame with the extra seeds (one map per
        round) until every one has them all."""
        c = self.cfg.search
        if not c.reeval_top:
            return
        for _ in range(rounds):
            groups = []
            for e in self.hof.ranked()[:c.reeval_top]:
                for seed in c.reeval_seeds:
                    if str(int(seed)) not in e["scores"]:
                        meta = {"kind": "reeval", "timestep": timestep}
                        groups.append(self.requests(e["genome"], e["key"], c.tasks, int(seed), meta))
            if not groups:
                return
            for rec in self.score(groups):
                self.hof.add(rec)

    def write_hall_of_fame(self) -> None:
        self.store.write_json("hall_of_fame.json", self.hof.to_json(self.cfg.search.hall_of_fame, self.space))

    def summary(self) -> dict:
        s = self.state
        hof = s.hof.to_json(1, self.space)
        return {"algorithm": self.cfg.run.algorithm, "seed": self.cfg.run.seed, "timesteps": s.timestep,
                "particles": len(s.particles), "cache": self.cache.summary(), "stats": dict(s.stats),
                "evaluator": dict(self.evaluator.counts), "best": hof[0] if hof else None,
                "leaderboard": s.elimination.get("leaderboard", [])}


def _with_new_defaults(saved, cfg: Config):
    """``saved`` (a checkpoint's config fingerprint) with the fields added to the config since it
    was written filled in, where this run keeps them at their defaults: such a checkpoint still
    loads, since the run behaves as it did before the field existed."""
    import hashlib
    import json

    from .config import config_fingerprint, config_from_dict
    old = saved.get("fields") if isinstance(saved, dict) else None
    if not isinstance(old, dict):
        return saved
    now = config_fingerprint(cfg)["fields"]
    default = config_fingerprint(config_from_dict({}))["fields"]
    added = {k: v for k, v in now.items() if k not in old and k in default and default[k] == v}
    if not added:
        return saved
    fields_ = {**old, **added}
    text = json.dumps(dict(sorted(fields_.items())), sort_keys=True, separators=(",", ":"), default=str)
    return {"sha256": hashlib.sha256(text.encode()).hexdigest(), "fields": fields_}


def _fingerprint(cfg: Config) -> dict:
    from .config import config_fingerprint
    return config_fingerprint(cfg)
