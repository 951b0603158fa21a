"""Integrity checks: cheap tests that reject degenerate genomes before any training.

Provides :class:`IntegrityCheck` (a ``name`` and ``check(genome) -> CheckResult``), :class:`CheckResult`
and :func:`run_integrity_checks`, which never raises for a failure in check code and sets
``genome.flip`` from a check's ``flip`` every time (``None``: no opinion).  Plugins provide checks through
``deapnos_integrity_checks``; details: docs/plugins.md (the check example), docs/paper.md §5.3.
"""
from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass, field
from collections.abc import Iterable, Mapping
from typing import Protocol


@dataclass
class CheckResult:
    """The outcome of one integrity check (or, from :func:`run_integrity_checks`, of all of them).

    ``passed``: the genome may be trained.  ``flip``: the direction the check chose (None: the check
    does not decide it; in a combined result, the genome's ``flip`` after the checks).  ``reason``:
    why it failed, or what passed (one line).  ``lr``: the peak learning rate of the passing trial,
    if the check has such a notion.  ``losses``/``trials``: per-trial detail (``trials`` items are
    dicts with at least ``lr``, ``flip``, ``loss``).  ``check``/``plugin``: who produced it; in a
    combined result, the check that failed (empty when all passed).  ``error``: check code (or the
    genome's code run by the check) raised.  ``details``: a combined result's per-check results.
    """
    passed: bool
    flip: bool | None = None
    reason: str = ""
    lr: float | None = None
    losses: list[float] = field(default_factory=list)
    trials: list[dict] = field(default_factory=list)
    check: str = ""
    plugin: str = ""
    error: bool = False
    seconds: float = 0.0
    details: list[CheckResult] = field(default_factory=list)

    def __bool__(self) -> bool:
        return self.passed

    def to_dict(self) -> dict:
        """Plain data (JSON-safe apart from NaN/inf losses, which ``json`` writes as NaN/Infinity)."""
        return asdict(self)


class IntegrityCheck:
    """Base class of integrity checks.

    Subclasses set ``name`` (unique among all installed checks; a clash between two plugins is an
    error naming both) and implement :meth:`check`.  ``enabled = False`` keeps an installed check
    from running unless it is named explicitly.  ``plugin`` is filled in by the plugin manager.
    A check must not modify the genome: :func:`run_integrity_checks` applies its ``flip``.
    """
    name: str = ""
    description: str = ""
    enabled: bool = True
    plugin: str = ""

    def check(self, genome) -> CheckResult:
        raise NotImplementedError(f"{type(self).__name__} must implement check(genome)")

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r})"


class _Check(Protocol):
    """What :func:`run_integrity_checks` needs of a check: duck-typed, an :class:`IntegrityCheck` or not."""
    def check(self, genome) -> CheckResult: ...


def _check_items(checks) -> list[tuple[str, _Check]]:
    if isinstance(checks, Mapping):
        return [(str(name), chk) for name, chk in checks.items()]
    if hasattr(checks, "check") and not isinstance(checks, (list, tuple)):
        checks = [checks]
    return [(str(getattr(chk, "name", "") or type(chk).__name__), chk) for chk in checks]


def _who(name: str, chk) -> str:
    plugin = getattr(chk, "plugin", "") or ""
    return f"integrity check {name!r}" + (f" (plugin {plugin!r})" if plugin else "")


def run_integrity_checks(genome, checks: Mapping[str, object] | Iterable[object],
                         enabled: Iterable[str] | None = None) -> CheckResult:
    """Run the checks on ``genome`` in order; stop at the first failure.

    ``checks``: a ``{name: check}`` dict (what :func:`deapnos.plugins.integrity_checks` returns) or
    a list of checks.  ``enabled``: names to run (``None``: every check whose ``enabled`` is true).
    A name in ``enabled`` that is not among ``checks`` is a ``ValueError`` (a configuration error,
    raised before any check runs).

    Sets ``genome.flip`` from each passing check that decides the direction (module docstring); a
    failed genome keeps its ``flip``.  Never raises for a failure inside a check: an exception
    becomes ``CheckResult(passed=False, error=True)`` whose reason names the check, its plugin and
    the error.  With no check to run the genome passes (reason says so).
    """
    items = _check_items(checks)
    if enabled is not None:
        wanted = list(enabled)
        known = {name for name, _ in items}
        unknown = [n for n in wanted if n not in known]
        if unknown:
            raise ValueError(f"unknown integrity check(s) {', '.join(map(repr, unknown))}; installed: "
                             f"{', '.join(sorted(known)) or 'none'}")
        items = [(name, chk) for name, chk in items if name in wanted]
    else:
        items = [(name, chk) for name, chk in items if getattr(chk, "enabled", True)]
    if not items:
        return CheckResult(True, flip=bool(genome.flip), reason="no integrity check enabled")
    t_all = time.perf_counter()
    details: list[CheckResult] = []
    decider: CheckResult | None = None
    for name, chk in items:
        t0 = time.perf_counter()
        plugin = getattr(chk, "plugin", "") or ""
        try:
            res = chk.check(genome)
            if not isinstance(res, CheckResult):
                raise TypeError(f"check() returned {type(res).__name__}, not a CheckResult")
        except Exception as exc:  # noqa: BLE001 - check code is plugin code: report, never raise
            msg = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
            res = CheckResult(False, reason=f"{_who(name, chk)} raised {type(exc).__name__}"
                                            + (f": {msg}" if msg else ""), error=True)
        res.check = res.check or name
        res.plugin = res.plugin or plugin
        res.seconds = res.seconds or (time.perf_counter() - t0)
        details.append(res)
        if not res.passed:
            reason = res.reason if res.error else f"{_who(name, chk)}: {res.reason or 'failed'}"
            return CheckResult(False, flip=bool(genome.flip), reason=reason, lr=res.lr, losses=res.losses,
                               trials=res.trials, check=name, plugin=res.plugin, error=res.error,
                               seconds=time.perf_counter() - t_all, details=details)
        if res.flip is not None:
            genome.flip = bool(res.flip)
            decider = res
    best = decider or details[0]
    reason = "; ".join(f"{r.check}: {r.reason}" if r.reason else f"{r.check}: passed" for r in details)
    return CheckResult(True, flip=bool(genome.flip), reason=reason, lr=best.lr, losses=best.losses,
                       trials=best.trials, seconds=time.perf_counter() - t_all, details=details)


def fmt_loss(value: float) -> str:
    """A loss for messages: 3 significant digits, ``nan``/``inf`` spelled out."""
    if value is None:
        return "-"
    if math.isnan(value):
        return "nan"
    if math.isinf(value):
        return "inf" if value > 0 else "-inf"
    return f"{value:.3g}"


__all__ = ["CheckResult", "IntegrityCheck", "run_integrity_checks", "fmt_loss"]
