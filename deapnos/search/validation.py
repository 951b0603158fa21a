"""Held-out validation: the winners against the best tuned reference on tasks never used for selection.

Paired differences per task and overall (against the best reference per seed), with verdicts, and a
horizon check at a multiple of the steps; the outcome is ``validation.json`` and
``state.validation`` (docs/search.md, "The algorithm", step 6).
"""
from __future__ import annotations

import logging
import statistics

from ..evaluate.stats import interval, versus
from .evaluator import EvalRequest, verdict_protocol
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


def best_of(per_ref: dict[str, dict]) -> dict:
    """Per seed, the best score among the references (``per_ref``: name -> seed -> score or None)."""
    seeds = list(dict.fromkeys(s for scores in per_ref.values() for s in scores))
    out: dict = {}
    for seed in seeds:
        ok = [v[seed] for v in per_ref.values() if v.get(seed) is not None]
        out[seed] = max(ok) if ok else None
    return out


def _table(search, entries: list[dict], refs: list[dict], tasks: list[str], seeds: list[int], kind: str,
           task_overrides: dict | None = None) -> dict:
    """Evaluate winners and references on ``tasks`` x ``seeds`` in one map; label -> task -> seed -> score."""
    everyone = entries + refs
    reqs, where = [], []
    protocol = verdict_protocol(search.cfg.protocol)
    for e in everyone:
        for task in tasks:
            for seed in seeds:
                meta = {"kind": kind, "label": e["label"], "baseline": bool(e.get("reference"))}
                name = task if task_overrides is None else task_overrides[task]
                reqs.append(EvalRequest(e["genome"], e["rep"], name, seed, search.next_seq(), meta,
                                        protocol=protocol))
                where.append((e["label"], task, seed))
    scores: dict = {e["label"]: {t: {} for t in tasks} for e in everyone}
    for (label, task, seed), rec in zip(where, search.evaluate(reqs)):
        ok = rec.get("status") == "ok" and rec.get("fitness") is not None
        scores[label][task][str(seed)] = float(rec["fitness"]) if ok else None
    return scores


def _rows(entries: list[dict], scores: dict, ref_names: list[str], tasks: list[str]) -> tuple[list[dict], dict]:
    best = {t: best_of({n: scores[n][t] for n in ref_names}) for t in tasks}
    rows = []
    for e in entries:
        per_task = {t: compare(scores[e["label"]][t], best[t]) for t in tasks}
        rows.append({"label": e["label"], "genome": e["genome"], "tasks": per_task, "overall": overall(per_task)})
    return rows, best


def ranking_holds(short: list[dict], long: list[dict]) -> bool | None:
    """Whether the winners keep their order (by overall mean difference) and their side of zero at the
    longer horizon; None when a difference is missing."""
    def means(rows):
        return [(r["overall"]["difference"] or {}).get("mean") for r in rows]
    a, b = means(short), means(long)
    if None in a or None in b:
        return None
    order = sorted(range(len(a)), key=lambda i: -a[i]) == sorted(range(len(b)), key=lambda i: -b[i])
    return order and all((x > 0) == (y > 0) for x, y in zip(a, b))


def run_validation(search) -> dict:
    """Run (or reuse) the held-out validation of ``search``, then the horizon check; returns
    ``state.validation``."""
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
    ref_names = list(cfg.fitness.references)
    refs = []
    for name in ref_names:
        text, rep = search.reference_genome(name)
        refs.append({"label": name, "genome": text, "rep": rep, "reference": True})
    log.info("held-out validation: %d winner(s) and %s on %s x %d seeds", len(entries), ", ".join(ref_names),
             ", ".join(tasks), len(seeds))
    scores = _table(search, entries, refs, tasks, seeds, "validation")
    rows, best = _rows(entries, scores, ref_names, tasks)
    st.clear()
    st.update({"tasks": tasks, "seeds": seeds, "reference": " / ".join(ref_names), "references": ref_names,
               "reference_scores": best, "references_scores": {n: scores[n] for n in ref_names}, "rows": rows})
    horizon = horizon_check(search, entries, refs, tasks, rows)
    if horizon:
        st["horizon"] = horizon
    search.store.write_json("validation.json", st)
    return st


def horizon_check(search, entries: list[dict], refs: list[dict], tasks: list[str], short_rows: list[dict]) -> dict:
    """The held-out tasks again at ``validation.horizon_factor`` x the steps (each epoch that many times
    longer: the schedule, decays and warm-up stretch with it): does the ranking hold?  {} when off."""
    cfg = search.cfg
    factor = int(cfg.validation.horizon_factor)
    if factor <= 1:
        return {}
    seeds = [int(s) for s in cfg.validation.horizon_seeds]
    names = {t: f"{t}@x{factor}" for t in tasks}
    search.longer_tasks(names.values(), factor)
    log.info("horizon check: %d winner(s) and %d reference(s) on %s at %dx the steps", len(entries), len(refs),
             ", ".join(tasks), factor)
    scores = _table(search, entries, refs, tasks, seeds, "horizon", names)
    rows, best = _rows(entries, scores, [r["label"] for r in refs], tasks)
    return {"factor": factor, "seeds": seeds, "tasks": [names[t] for t in tasks], "reference_scores": best,
            "rows": rows, "ranking_holds": ranking_holds(short_rows, rows)}


__all__ = ["run_validation", "winners", "compare", "overall", "best_of", "horizon_check", "ranking_holds"]
