"""A candidate's fitness over several tasks, relative to the best of the tuned reference optimizers.

Provides :func:`task_score` (a task's score minus the best reference's, raised to ``fitness.floor``),
:func:`aggregate` and :func:`combine` (mean, median or worst over the tasks; a failure on any task
scores -1) and :func:`validation_tasks`.  Details and a worked example: docs/evaluation.md,
"How a fitness is computed".
"""
from __future__ import annotations

import statistics
from collections.abc import Mapping

FAILED = -1.0


def aggregate(values: list[float], how: str) -> float:
    """Combine per-task scores: ``mean``, ``median`` or ``worst``."""
    if not values:
        raise ValueError("nothing to aggregate")
    if how == "mean":
        return statistics.fmean(values)
    if how == "median":
        return statistics.median(values)
    if how == "worst":
        return min(values)
    raise ValueError(f"unknown aggregate {how!r} (mean, median, worst)")


def task_score(record: dict, reference: dict | None, floor: float) -> float | None:
    """The score of one task's record: raw, or relative to ``reference`` (both result dicts);
    None when the record failed."""
    if record.get("status") != "ok" or record.get("fitness") is None:
        return None
    if reference is None:
        return float(record["fitness"])
    return max(float(record["fitness"]) - float(reference["fitness"]), floor)


def combine(records: list[dict], references: list[dict | None], cfg) -> dict:
    """One candidate's record from its per-task records (same genome, same seed, one per task).

    ``references``: the reference's result for each record's (task, seed), or Nones when fitness is
    not relative.  The combined record keeps the first record's identity (genome, rep, seed, kind,
    particle, ...), ``status`` (``ok`` or the first failure), ``fitness`` and ``tasks`` (per task:
    status, raw fitness, score, reference fitness).
    """
    first = records[0]
    out = {k: first.get(k) for k in ("genome", "rep", "seed", "kind", "particle", "timestep", "slot", "attempt",
                                     "operator", "label", "key", "flip")}
    per, scores, failure = {}, [], None
    for rec, ref in zip(records, references):
        score = task_score(rec, ref, cfg.fitness.floor)
        per[rec["task"]] = {"status": rec.get("status"), "fitness": rec.get("fitness"), "score": score,
                            "reference": None if ref is None else ref.get("fitness"), "lr": rec.get("lr")}
        if ref is not None and ref.get("name"):
            per[rec["task"]]["reference_name"] = ref["name"]     # which reference was best there
        if score is None:
            failure = failure or rec
        else:
            scores.append(score)
    out["tasks"] = per
    out["task"] = "+".join(per)
    if failure is not None:
        out.update(status=failure.get("status"), fitness=None,
                   message=f"{failure['task']}: {failure.get('message', '')}".strip())
    else:
        out.update(status="ok", fitness=aggregate(scores, cfg.fitness.aggregate), message="")
    return out


def reference_problem(names, zoo) -> str | None:
    """Why ``fitness.reference`` cannot be used (None when it can): an empty list, or a name that is
    not in the run's zoo (with close matches)."""
    import difflib
    names = [names] if isinstance(names, str) else list(names)
    if not names:
        return "config field fitness.reference = []: name at least one zoo optimizer, e.g. [\"adam\", \"momentum\"]"
    known = list(zoo.names()) if hasattr(zoo, "names") else sorted(zoo)
    for name in names:
        if name not in known:
            close = difflib.get_close_matches(str(name), known, n=3, cutoff=0.5)
            hint = f"did you mean {', '.join(map(repr, close))}? " if close else ""
            return (f"config field fitness.reference: {name!r} is not a zoo optimizer; {hint}"
                    f"allowed values: {', '.join(known)}")
    return None


def validation_tasks(cfg, installed: Mapping) -> list[str]:
    """The held-out tasks: ``validation.tasks``, or every installed suite task that neither the search
    nor the elimination uses."""
    if cfg.validation.tasks:
        return list(cfg.validation.tasks)
    used = set(cfg.search.init_tasks) | set(cfg.search.tasks) | {r.task for r in cfg.elimination.rungs}
    return sorted(n for n, t in installed.items() if getattr(t, "suite", False) and n not in used)


__all__ = ["FAILED", "aggregate", "task_score", "combine", "reference_problem", "validation_tasks"]
