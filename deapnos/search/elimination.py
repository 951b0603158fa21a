"""Progressive elimination: the hall of fame's top against baselines on a ladder of tasks after the search.

Every rung evaluates candidates and baselines with the same seeds and protocol; the last rung is the
leaderboard with paired differences to the best reference per seed (docs/search.md, "The algorithm", step 5).
"""
from __future__ import annotations

import logging
import math

from ..evaluate.stats import versus
from .evaluator import EvalRequest, verdict_protocol

log = logging.getLogger(__name__)


def _stats(scores: list[float | None]) -> tuple[float | None, float, int]:
    """(mean, population std, failures) of a row's per-seed scores; None marks a failed seed and is
    left out of the mean (a raw score may be below any fixed failure value: -ln(loss) < -1)."""
    ok = [v for v in scores if v is not None]
    if not ok:
        return None, 0.0, len(scores)
    mean = sum(ok) / len(ok)
    return mean, math.sqrt(sum((v - mean) ** 2 for v in ok) / len(ok)), len(scores) - len(ok)


def _rank_key(row: dict) -> tuple:
    """Fewer failed seeds first, then the higher mean."""
    return row.get("failed", 0), -(row["mean"] if row["mean"] is not None else -math.inf)


def _versus(row: dict, ref: dict | None) -> dict:
    """The paired difference to the (best) reference over the seeds both trained, and its verdict
    (``worse`` when the row failed on a seed where the reference trained)."""
    if ref is None:
        return {"vs_reference_ci": None, "verdict": None}
    if row["label"] in ref.get("members", []) and len(ref["members"]) == 1:
        return {"vs_reference_ci": None, "verdict": "reference"}
    diff, verdict, _ = versus(row["scores"], ref["scores"])
    return {"vs_reference_ci": diff.to_dict() if diff else None, "verdict": verdict}


def best_reference(rows: list[dict], names: list[str]) -> dict | None:
    """The yardstick row: per seed, the best score among the reference rows (labels in ``names``;
    none of them present: the first baseline).  ``members``: the reference labels; ``best_of``: per
    seed, which one was best."""
    refs = [row for row in rows if row["baseline"] and row["label"] in names]
    if not refs:
        refs = [row for row in rows if row["baseline"]][:1]
    if not refs:
        return None
    seeds = list(dict.fromkeys(s for row in refs for s in row["scores"]))
    scores: dict[str, float | None] = {}
    best_of: dict[str, str | None] = {}
    for seed in seeds:
        ok = [(row["scores"][seed], row["label"]) for row in refs if row["scores"].get(seed) is not None]
        best = max(ok, key=lambda v: v[0]) if ok else (None, None)
        scores[seed], best_of[seed] = best
    mean, std, failed = _stats(list(scores.values()))
    label = refs[0]["label"] if len(refs) == 1 else "best of " + "/".join(row["label"] for row in refs)
    return {"label": label, "scores": scores, "best_of": best_of, "members": [row["label"] for row in refs],
            "mean": mean, "std": std, "failed": failed}


def _peak(results: dict) -> float | None:
    """Mean over the trained seeds of the peak validation score of each run's curve (the score
    ranked by default is the final one; the peak is shown beside it)."""
    peaks = []
    for res in results.values():
        if not res or res.get("status") != "ok":
            continue
        values = [r.get("val_score") for r in res.get("curve") or [] if isinstance(r.get("val_score"), (int, float))]
        if values:
            peaks.append(max(values))
    return sum(peaks) / len(peaks) if peaks else None


def default_rungs(cfg) -> list[dict]:
    seeds = [cfg.search.eval_seed] + ([s for s in cfg.search.reeval_seeds] if cfg.search.reeval_top else [])
    return [{"task": task, "seeds": seeds, "keep": 1.0} for task in cfg.search.tasks]


def baseline_problem(name: str, compat: bool = False, registry=None) -> str | None:
    """Why ``name`` cannot be a baseline (None when it can): a zoo name, or ``torch:NAME`` /
    ``torch:NAME(key=value, ...)`` for a ``torch.optim`` optimizer; in compat mode not a zoo entry
    whose released form cannot be reproduced (:data:`deapnos.zoo.COMPAT_REFUSED`).  ``registry``: the
    run's zoo (default the built-in one)."""
    from .. import zoo
    if isinstance(name, str) and name.lstrip().startswith("torch:"):
        from ..evaluate.protocol import resolve_optimizer
        try:
            resolve_optimizer(name)
        except (ValueError, TypeError) as exc:
            return f"{name!r}: {exc}"
        return None
    if name not in zoo.names(registry=registry):
        return (f"{name!r} is neither a zoo optimizer nor a torch.optim spec (torch:NAME or "
                f"torch:NAME(key=value, ...)); zoo optimizers: {', '.join(zoo.names(registry=registry))}")
    if compat and name in zoo.COMPAT_REFUSED:
        return f"{name!r} in compat mode: {zoo.COMPAT_REFUSED[name]}"
    return None


def baseline_label(name: str) -> str:
    """A plain-name label for a baseline (labels name files in a run folder): a zoo name as it is,
    a ``torch:`` spec as ``torch_`` + its text with every other character run turned into ``_``
    (``torch:SGD(momentum=0.9, nesterov=True)`` -> ``torch_SGD_momentum_0_9_nesterov_True``)."""
    import re
    if not name.lstrip().startswith("torch:"):
        return name
    return ("torch_" + re.sub(r"[^A-Za-z0-9]+", "_", name.split(":", 1)[1]).strip("_"))[:64]


def baseline_entry(name: str, search) -> dict:
    """One baseline as the ladder runs it: label, the text a worker evaluates, representative key.
    A ``torch:`` spec has no genome: its normalised text is its key and its genome field, and
    :func:`baseline_label` its label.  In compat mode a zoo optimizer the original cannot run is
    refused (:func:`deapnos.zoo.get`, ``compat=True``)."""
    from .. import zoo
    if name.lstrip().startswith("torch:"):
        from ..evaluate.protocol import resolve_optimizer
        text = resolve_optimizer(name).text
        return {"label": baseline_label(name), "genome": text, "rep": text, "baseline": True}
    g = zoo.get(name, space=search.space, compat=search.cfg.run.compat, registry=search.zoo)
    rep = search.representative(g)
    return {"label": name, "genome": g.to_text(), "rep": rep, "baseline": True}


def entrants(search) -> tuple[list[dict], list[dict]]:
    """(candidates, baselines) as dicts: label, genome text, representative key."""
    cfg = search.cfg
    cands: list[dict] = []
    seen: set[str] = set()
    for e in search.hof.ranked():
        if len(cands) >= cfg.elimination.candidates:
            break
        if e["genome"] in seen:       # compat mode: the same text proposed twice holds two keys
            continue
        seen.add(e["genome"])
        cands.append({"label": f"c{len(cands) + 1}", "genome": e["genome"], "rep": e["key"], "baseline": False,
                      "search_mean": search.hof.mean(e)})
    bases: list[dict] = []
    names = list(cfg.elimination.baselines)
    if cfg.fitness.relative:        # every reference is a yardstick of the leaderboard
        names += [n for n in cfg.fitness.references if n not in names]
    for name in names:
        entry = baseline_entry(name, search)
        while any(b["label"] == entry["label"] for b in bases):     # two specs, one sanitised label
            entry["label"] = f"{entry['label'][:60]}_{len(bases)}"
        bases.append(entry)
    return cands, bases


def run_elimination(search) -> dict:
    """Run (or continue) the ladder of ``search`` (a :class:`deapnos.search.runner.SearchRun`, used through
    its public interface only); the progress lives in ``search.state.elimination`` and ends with a
    ``leaderboard``."""
    cfg = search.cfg
    st = search.state.elimination
    if not cfg.elimination.enabled:
        st.setdefault("rungs", [])
        st["leaderboard"] = []
        return st
    rungs = [{"task": r.task, "seeds": list(r.seeds), "keep": r.keep} for r in cfg.elimination.rungs] \
        or default_rungs(cfg)
    if "candidates" not in st:
        cands, bases = entrants(search)
        st.update({"candidates": cands, "baselines": bases, "survivors": [c["label"] for c in cands], "rungs": []})
    by_label = {e["label"]: e for e in st["candidates"] + st["baselines"]}
    for r in range(len(st["rungs"]), len(rungs)):
        rung = rungs[r]
        entries = [by_label[label] for label in st["survivors"]] + st["baselines"]
        log.info("elimination rung %d/%d on %s: %d candidates + %d baselines x %d seeds", r + 1, len(rungs),
                 rung["task"], len(st["survivors"]), len(st["baselines"]), len(rung["seeds"]))
        reqs, where = [], []
        protocol = verdict_protocol(search.cfg.protocol)
        for e in entries:
            for seed in rung["seeds"]:
                meta = {"kind": "rung", "rung": r, "label": e["label"], "baseline": e["baseline"]}
                reqs.append(EvalRequest(e["genome"], e["rep"], rung["task"], int(seed), search.next_seq(), meta,
                                        protocol=protocol))
                where.append((e["label"], seed))
        records = search.evaluate(reqs)
        per: dict[str, dict] = {e["label"]: {"scores": {}, "results": {}} for e in entries}
        for (label, seed), rec in zip(where, records):
            ok = rec.get("status") == "ok" and rec.get("fitness") is not None
            per[label]["scores"][str(seed)] = float(rec["fitness"]) if ok else None
            per[label]["results"][str(seed)] = {k: rec.get(k) for k in ("status", "fitness", "final_accuracy", "lr",
                                                                          "seconds", "message", "curve",
                                                                          "test_accuracy")}
            # the hall of fame holds search fitness: a raw score only when that is what the search uses
            if not cfg.fitness.relative and cfg.search.tasks == [rung["task"]] and not rec.get("baseline"):
                search.hof.add(rec)
        rows = []
        for e in entries:
            mean, std, failed = _stats(list(per[e["label"]]["scores"].values()))
            rows.append({"label": e["label"], "genome": e["genome"], "key": e["rep"], "baseline": e["baseline"],
                         "mean": mean, "std": std, "failed": failed, **per[e["label"]]})
        cand_rows = sorted([row for row in rows if not row["baseline"]],
                           key=lambda row: (*_rank_key(row), st["survivors"].index(row["label"])))
        keep = max(cfg.elimination.min_keep, math.ceil(rung["keep"] * len(cand_rows))) if cand_rows else 0
        survivors = [row["label"] for row in cand_rows[:keep]]
        st["rungs"].append({"task": rung["task"], "seeds": rung["seeds"], "keep": rung["keep"], "entries": rows,
                            "survivors": survivors})
        st["survivors"] = survivors
        search.store.write_json("elimination.json", st)
        search.checkpoint()
    last = st["rungs"][-1] if st["rungs"] else {"entries": [], "survivors": []}
    board = [row for row in last["entries"] if row["baseline"] or row["label"] in last["survivors"]]
    board.sort(key=_rank_key)
    ref = best_reference(last["entries"], cfg.fitness.references)
    st["reference"] = ({k: ref[k] for k in ("label", "members", "scores", "best_of", "mean", "std")}
                       if ref else None)
    st["leaderboard"] = [{"rank": i + 1, "label": row["label"], "genome": row["genome"], "baseline": row["baseline"],
                          "mean": row["mean"], "std": row["std"], "n": len(row["scores"]) - row.get("failed", 0),
                          "failed": row.get("failed", 0), "peak": _peak(row.get("results") or {}),
                          "vs_reference": (row["mean"] - ref["mean"]) if ref and None not in (row["mean"], ref["mean"])
                          else None,
                          **_versus(row, ref), "reference": ref["label"] if ref else None, "task": last.get("task")}
                         for i, row in enumerate(board)]
    search.store.write_json("elimination.json", st)
    return st
