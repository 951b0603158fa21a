"""Held-out validation: the winners against the tuned reference on tasks never used for selection.

Paired differences per task and overall, with verdicts; the outcome is ``validation.json`` and
``state.validation`` (docs/search.md, "The algorithm", step 6).
"""
from __future__ import annotations

import logging
import statistics

from ..evaluate.stats import interval, versus
from .evaluator import EvalRequest
from .fitness import validation_tasks

log = logging.getLogger(__name__)


def winners(search) -> list[dict]:
    """label, genome, rep of the candidates to validate, best first."""
    cfg = search.cfg
    board = search.state.elimination.get("leaderboard") or []
    by_label = {c["label"]: c for c in search.state.elimination.get("candidates", [])}
    out = [{"label": row["label"], "genome": row["genome"], "rep": by_label.get(row["label"], {}).get("rep", "")}
           for row in board if not row["baseline"]]
    if not out:
        out = [{"label": f"c{rank}", "genome": e["genome"], "rep": e["key"]}
               for rank, e in enumerate(search.hof.ranked(), 1)]
    out = out[:cfg.validation.candidates]
    for w in out:
        if not w["rep"]:
            w["rep"] = search.representative(search.genome(w["genome"]))
    return out


def compare(cand: dict, ref: dict) -> dict:
    """One winner on one task: ``cand`` and ``ref`` map seed -> score (None when the run failed)."""
    iv, verdict, failed = versus(cand, ref)
    diffs = {s: cand[s] - ref[s] for s in ref if ref[s] is not None and cand.get(s) is not None}
    return {"scores": cand, "reference_scores": ref, "failed_seeds": failed, "diffs": diffs,
            "difference": iv.to_dict() if iv else None, "verdict": verdict or "no data"}


def overall(per_task: dict) -> dict:
    """The per-seed mean of a winner's differences over the tasks, as an interval and verdict."""
    if any(row["failed_seeds"] for row in per_task.values()):
        return {"difference": None, "verdict": "worse"}
    seeds = set.intersection(*(set(row["diffs"]) for row in per_task.values()))
    if not seeds:
        return {"difference": None, "verdict": "no data"}
    means = [statistics.fmean(row["diffs"][s] for row in per_task.values()) for s in sorted(seeds)]
    iv = interval(means)
    return {"difference": iv.to_dict(), "verdict": iv.verdict()}


def run_validation(search) -> dict:
    """Run (or reuse) the held-out validation of ``search``; returns ``state.validation``."""
    cfg = search.cfg
    st = search.state.validation
    tasks = validation_tasks(cfg, search.installed_tasks) if cfg.validation.enabled else []
    entries = winners(search) if tasks else []
    if not entries:
        note = ("disabled" if not cfg.validation.enabled else
                "no held-out task (validation.tasks, or no unused suite task installed)" if not tasks else
                "no winner to validate (no candidate trained)")
        st.clear()
        st.update({"tasks": tasks, "rows": [], "note": note})
        search.store.write_json("validation.json", st)
        return st
    seeds = [int(s) for s in cfg.validation.seeds]
    ref_text, ref_rep = search.reference_genome()
    ref_label = cfg.fitness.reference
    everyone = entries + [{"label": ref_label, "genome": ref_text, "rep": ref_rep, "reference": True}]
    log.info("held-out validation: %d winner(s) and %s on %s x %d seeds", len(entries), ref_label,
             ", ".join(tasks), len(seeds))
    reqs, where = [], []
    for e in everyone:
        for task in tasks:
            for seed in seeds:
                meta = {"kind": "validation", "label": e["label"], "baseline": bool(e.get("reference"))}
                reqs.append(EvalRequest(e["genome"], e["rep"], task, seed, search.next_seq(), meta))
                where.append((e["label"], task, seed))
    scores: dict = {e["label"]: {t: {} for t in tasks} for e in everyone}
    for (label, task, seed), rec in zip(where, search.evaluate(reqs)):
        ok = rec.get("status") == "ok" and rec.get("fitness") is not None
        scores[label][task][str(seed)] = float(rec["fitness"]) if ok else None
    rows = []
    for e in entries:
        per_task = {t: compare(scores[e["label"]][t], scores[ref_label][t]) for t in tasks}
        rows.append({"label": e["label"], "genome": e["genome"], "tasks": per_task, "overall": overall(per_task)})
    st.clear()
    st.update({"tasks": tasks, "seeds": seeds, "reference": ref_label, "reference_scores": scores[ref_label],
               "rows": rows})
    search.store.write_json("validation.json", st)
    return st


__all__ = ["run_validation", "winners", "compare", "overall"]
