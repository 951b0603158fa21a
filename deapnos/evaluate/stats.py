"""Confidence intervals over seeds and the better / tie / worse verdict.

One rule everywhere (``deapnos evaluate``, the elimination leaderboard, held-out validation): a
difference against the reference is a *paired* difference per seed (same seed, same initial weights
and data order), summarised as mean ± the half-width of a two-sided 95% Student-t interval.  A
candidate is ``better`` only when the whole interval lies above zero, ``worse`` when it lies below,
and ``tie`` otherwise -- including when there is a single seed, whose interval is unbounded.
"""
from __future__ import annotations

import math
import statistics
from dataclasses import dataclass

# two-sided 95% quantiles of Student's t, by degrees of freedom (1..30); 1.96 beyond
_T95 = (12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179, 2.160, 2.145,
        2.131, 2.120, 2.110, 2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064, 2.060, 2.056, 2.052, 2.048,
        2.045, 2.042)


def t95(df: int) -> float:
    """The 97.5% quantile of Student's t with ``df`` degrees of freedom (``inf`` for df < 1)."""
    if df < 1:
        return math.inf
    return _T95[df - 1] if df <= len(_T95) else 1.96


@dataclass(frozen=True)
class Interval:
    """Mean of ``n`` values with the half-width of its 95% interval (``inf`` when n < 2)."""
    mean: float
    half_width: float
    n: int
    std: float          # sample standard deviation (n - 1); 0 for n < 2

    @property
    def low(self) -> float:
        return self.mean - self.half_width

    @property
    def high(self) -> float:
        return self.mean + self.half_width

    def verdict(self) -> str:
        """``better`` / ``worse`` when the interval excludes zero, else ``tie``."""
        if self.n >= 2 and self.low > 0:
            return "better"
        if self.n >= 2 and self.high < 0:
            return "worse"
        return "tie"

    def to_dict(self) -> dict:
        return {"mean": self.mean, "ci95": self.half_width if math.isfinite(self.half_width) else None,
                "low": self.low if math.isfinite(self.half_width) else None,
                "high": self.high if math.isfinite(self.half_width) else None,
                "n": self.n, "std": self.std}


def difference_text(d: dict | None) -> str:
    """``+mean ± half-width`` of a difference in its :meth:`Interval.to_dict` form (``-`` for none,
    ``(1 seed)`` when it has no interval)."""
    if not d:
        return "-"
    return f"{d['mean']:+.4f} ± {d['ci95']:.4f}" if d.get("ci95") is not None else f"{d['mean']:+.4f} (1 seed)"


def interval(values) -> Interval:
    """Mean ± 95% t-interval of ``values`` (a non-empty sequence of numbers)."""
    vals = [float(v) for v in values]
    if not vals:
        raise ValueError("an interval needs at least one value")
    mean = statistics.fmean(vals)
    if len(vals) < 2:
        return Interval(mean, math.inf, 1, 0.0)
    std = statistics.stdev(vals)
    return Interval(mean, t95(len(vals) - 1) * std / math.sqrt(len(vals)), len(vals), std)


def paired_difference(candidate: dict, reference: dict) -> Interval | None:
    """The interval of ``candidate[seed] - reference[seed]`` over the seeds both have (None if none)."""
    seeds = [s for s in candidate if s in reference]
    if not seeds:
        return None
    return interval([candidate[s] - reference[s] for s in seeds])


def versus(candidate: dict, reference: dict) -> tuple[Interval | None, str | None, list]:
    """A paired comparison where a seed's score may be None (the run failed).

    Returns the interval of the differences over the seeds both trained, the verdict, and the seeds
    the candidate failed where the reference trained.  Such a failure makes the verdict ``worse``;
    otherwise it is the interval's (None when no seed is common)."""
    mine = {k: v for k, v in candidate.items() if v is not None}
    theirs = {k: v for k, v in reference.items() if v is not None}
    failed = [k for k in theirs if k not in mine]
    diff = paired_difference(mine, theirs)
    return diff, "worse" if failed else (diff.verdict() if diff else None), failed


__all__ = ["Interval", "difference_text", "interval", "paired_difference", "t95", "versus"]
