"""Batches of evaluations through the map backend, with the cache, the log and resume.

Provides :class:`EvalRequest` (genome, task, seed, origin, and a deterministic ``seq``) and
:class:`Evaluator`, whose ``run`` answers a batch: cache hits first (logged with ``cached: true``),
then results from a resumed run's log (not logged again), then ONE ``toolbox.map`` call whose results
are logged the moment they arrive.  What that map runs on each payload comes from above
(``evaluate_fn``: :func:`deapnos.worker_entry.evaluate_payload` in a run): it loads the plugins, which
the search does not.  Details: docs/search.md, "The run folder and resume".
"""
from __future__ import annotations

import copy
import logging
from dataclasses import dataclass, field, fields
from typing import cast

from ..errors import SearchError
from ..evaluate.ident import worker_id
from ..evaluate.result import EvalResult

log = logging.getLogger(__name__)

@dataclass
class EvalRequest:
    genome: str          # genome text
    rep: str             # representative canonical key (cache identity)
    task: str
    seed: int
    seq: int
    meta: dict = field(default_factory=dict)   # kind, particle, timestep, slot, attempt, label, key
    # the best reference's score on (task, seed): a full run that cannot catch up with it stops
    # (protocol.cut_factor); None: none known, or raw fitness
    reference: float | None = None
    # [protocol] fields this evaluation sets otherwise (a verdict's screen_schedule); None: the run's
    protocol: dict | None = None

    @property
    def key(self) -> tuple:
        return result_key(self.rep, self.task, self.seed, self.protocol)


def verdict_protocol(protocol) -> dict | None:
    """The [protocol] fields a verdict (an elimination rung, held-out validation, the horizon check)
    sets otherwise than the search's candidates: its screen schedule (``protocol.verdict_schedule``)."""
    if protocol.verdict_schedule == protocol.screen_schedule or protocol.screen != "relative":
        return None             # the same schedule, or none at all (the paper's screen has no halving)
    return {"screen_schedule": protocol.verdict_schedule}


def result_key(rep: str, task: str, seed: int, protocol: dict | None = None) -> tuple:
    """What a result is known by (the cache, resume): the genome's representative, the task (with
    the protocol fields the evaluation set otherwise, if any) and the seed."""
    if protocol:
        task = task + "|" + ",".join(f"{k}={protocol[k]}" for k in sorted(protocol))
    return rep, task, int(seed)


#: selection fitness of a result record: the fitness when ok, else -1 (the paper's FAILED)
score_of = EvalResult.score_of


class Evaluator:
    """Runs batches of :class:`EvalRequest` (module docstring).  ``evaluate_fn(payload) -> dict``: what
    the map runs on each payload, a module-level function (backends send it to the workers by
    reference); None: a map that computes its own results (tests), else :func:`no_evaluate_fn` fails."""

    def __init__(self, backend, store, cache, payload_base: dict, resume_results: dict | None = None,
                 on_evaluation=None, map_fn=None, task_overrides: dict | None = None, counts=None, progress=None,
                 evaluate_fn=None):
        self.backend = backend
        self.map = map_fn or backend.map       # toolbox.map: the one seam
        self.evaluate_fn = evaluate_fn or no_evaluate_fn
        self.store = store
        self.cache = cache
        self.payload_base = dict(payload_base)
        self.task_overrides = task_overrides or {}
        self.resume_results = resume_results or {}
        self.on_evaluation = on_evaluation
        self.progress = progress               # deapnos.live.SearchProgress (replaces the per-batch bar)
        self.counts = counts if counts is not None else {}
        for k in ("evaluated", "cached", "resumed"):
            self.counts.setdefault(k, 0)

    def _payload(self, req: EvalRequest) -> dict:
        p = dict(self.payload_base)
        p.update({"genome": req.genome, "task": req.task, "seed": int(req.seed)})
        p["task_overrides"] = dict(self.task_overrides.get(req.task) or {})
        if req.reference is not None:
            p["reference"] = float(req.reference)
        if req.protocol:
            p["protocol"] = {**p.get("protocol", {}), **req.protocol}
        return p

    def _record(self, req: EvalRequest, result: dict, cached: bool = False) -> dict:
        rec = {"event": "evaluation", "seq": req.seq, **req.meta, "rep": req.rep, "task": req.task,
               "seed": int(req.seed)}
        if req.protocol:
            rec["protocol"] = dict(req.protocol)
        res = {k: v for k, v in result.items() if k not in ("task", "seed")}
        res["genome"] = req.genome        # the requested text (a cache hit may come from an equivalent)
        rec.update(res)
        rec["cached"] = cached
        if cached:
            rec["seconds"] = 0.0
            rec["worker"] = worker_id()
        return rec

    def run(self, requests: list[EvalRequest]) -> list[dict]:
        """Records (dicts: the EvalResult fields plus the request's) in request order."""
        out: list[dict | None] = [None] * len(requests)
        to_run: list[int] = []
        first_of: dict[tuple, int] = {}
        followers: list[int] = []
        for i, req in enumerate(requests):
            rkt = req.key
            known = self.cache.get(*rkt)
            if known is not None:
                self.cache.count_result_hit()
                self.counts["cached"] += 1
                out[i] = self._record(req, known, cached=True)
                self.store.append(out[i])
                continue
            if rkt in first_of:
                followers.append(i)
                continue
            prior = self.resume_results.get(rkt)
            if prior is not None:
                self.counts["resumed"] += 1
                rec = self._record(req, prior, cached=bool(prior.get("cached")))
                for k in ("seconds", "worker", "device"):
                    if k in prior:
                        rec[k] = prior[k]
                out[i] = rec
                self.cache.put(*rkt, _result_part(prior))
                self.store.append(rec)
                first_of[rkt] = i
                continue
            first_of[rkt] = i
            to_run.append(i)

        bar = self.progress.batch(requests, len(to_run)) if self.progress is not None else \
            _progress(len(to_run), requests[to_run[0]].meta if to_run else {})

        def arrived(k: int, result: dict):
            i = to_run[k]
            rec = self._record(requests[i], result)
            out[i] = rec
            self.store.append(rec)
            self.counts["evaluated"] += 1
            if bar is not None:
                bar.update(1)
            if self.on_evaluation is not None:
                self.on_evaluation(rec)

        if to_run:
            payloads = [self._payload(requests[i]) for i in to_run]
            if _accepts_on_result(self.map):
                self.map(self.evaluate_fn, payloads, on_result=arrived)
            else:                                   # a plain map: results arrive all at once
                _map_then_report(self.map, self.evaluate_fn, payloads, arrived)
            if bar is not None:
                bar.close()
            for i in to_run:
                req, done = requests[i], out[i]
                assert done is not None, "the map reports every evaluation it is given"
                self.cache.put(*req.key, _result_part(done))
        for i in followers:
            req = requests[i]
            src = out[first_of[req.key]]
            assert src is not None, "a follower's first request was cached, resumed or run above"
            self.cache.count_result_hit()
            self.counts["cached"] += 1
            out[i] = self._record(req, _result_part(src), cached=True)
            self.store.append(out[i])
        return cast(list[dict], out)    # every slot is filled now: cached, resumed, run or a follower


#: the fields of a record that are the result itself (the cache keeps them); task and seed are the request's
RESULT_KEYS = tuple(f.name for f in fields(EvalResult) if f.name not in ("task", "seed"))


def _result_part(record: dict) -> dict:
    return {k: copy.deepcopy(record[k]) for k in RESULT_KEYS if k in record}


def _progress(total: int, meta: dict):
    """A tqdm bar for a batch when stderr is a terminal (None otherwise)."""
    import sys
    if total < 2 or not sys.stderr.isatty():
        return None
    from tqdm import tqdm
    where = meta.get("kind", "")
    if meta.get("timestep"):
        where += f" t{meta['timestep']}"
    return tqdm(total=total, desc=f"evaluating {where}".strip(), unit="eval", leave=False)


def _accepts_on_result(fn) -> bool:
    import inspect
    try:
        return "on_result" in inspect.signature(fn).parameters
    except (TypeError, ValueError):
        return False


def _map_then_report(map_fn, evaluate_fn, payloads, arrived):
    for k, result in enumerate(map_fn(evaluate_fn, payloads)):
        arrived(k, result)


def no_evaluate_fn(payload: dict) -> dict:
    """What a map runs when the search was given no ``evaluate_fn``: a clear error, not a None call
    (the search cannot import the entry itself: it sits below the context that loads the plugins)."""
    raise SearchError("the search was given no evaluate_fn: pass SearchRun(..., "
                      "evaluate_fn=deapnos.worker_entry.evaluate_payload)")
