"""Built-in plugin ``sphere``: the shifted-sphere integrity check (docs/paper.md §5.3).

Provides ``deapnos_integrity_checks`` (:class:`ShiftedSphereCheck`): a genome passes when one of 12
short trials (6 peak LRs, unflipped then flipped) brings a 5-dimensional shifted sphere from 7.15 below
3.5; the trials run as one batched :func:`deapnos.run_trials`, or one by one with ``sequential=True``
(the tests' oracle).  The check: docs/paper.md §5.3; speed: docs/evaluation.md, "Overhead".
"""
from __future__ import annotations

import math
import time
from collections.abc import Sequence

import torch

from deapnos import CheckResult, EvolvedOptimizer, IntegrityCheck, hookimpl, run_trials
from deapnos.evaluate.integrity import fmt_loss

TARGET = (0.5, 1.5, -0.3, -1.2, 0.75)
START = (1.1, 0.9, 1.1, 0.9, 1.0)
PEAK_LRS = (1.0, 1e-1, 1e-2, 1e-3, 1e-4, 1e-5)
TOTAL_STEPS = 35
WARMUP_STEPS = 6
THRESHOLD = 3.5


class ShiftedSphereCheck(IntegrityCheck):
    """The shifted-sphere degeneracy test; every number is a constructor argument.

    Args:
        target: b, the minimiser.  start: x0.  (Same length.)
        peak_lrs: peak learning rates, tried in this order.
        total_steps, warmup_steps: T and W of the LR and momentum tables (and of the decays).
        updates: updates before the compared loss; default ``total_steps - 1`` (the loss at the
            start of step T).
        threshold: a trial passes when its loss is below this.
        flips: the sign settings tried, in order (the paper: unflipped, then flipped).
        sequential: run the trials one by one as separate EvolvedOptimizer runs (the oracle).
        stop_early: in sequential mode, stop at the first passing trial as the original does (the
            losses of the trials not run are None); False runs them all.
        momentum: None for the paper's momentum schedule (§3.2), or a constant coefficient.
        dtype: float dtype of the run (the original: float32).
        seed: seed of the generator of random ops (dropout); each trial starts from it.
        name, enabled: as for any :class:`IntegrityCheck`.
    """
    description = "shifted-sphere degeneracy test (docs/paper.md §5.3)"

    def __init__(self, *, target: Sequence[float] = TARGET, start: Sequence[float] = START,
                 peak_lrs: Sequence[float] = PEAK_LRS, total_steps: int = TOTAL_STEPS,
                 warmup_steps: int = WARMUP_STEPS, updates: int | None = None, threshold: float = THRESHOLD,
                 flips: Sequence[bool] = (False, True), sequential: bool = False, stop_early: bool = True,
                 momentum: float | None = None, dtype: torch.dtype = torch.float32, seed: int = 0,
                 name: str = "sphere", enabled: bool = True):
        if len(target) != len(start) or not target:
            raise ValueError(f"target and start must have the same non-zero length, got {len(target)} "
                             f"and {len(start)}")
        if not peak_lrs or not flips:
            raise ValueError("peak_lrs and flips must not be empty")
        updates = total_steps - 1 if updates is None else updates
        if not 0 <= updates <= total_steps:
            raise ValueError(f"updates must lie in [0, total_steps={total_steps}], got {updates}")
        if not isinstance(total_steps, int) or total_steps < 1 or not 0 <= warmup_steps <= total_steps:
            raise ValueError(f"total_steps must be a positive integer and warmup_steps in [0, total_steps], got "
                             f"{total_steps!r} and {warmup_steps!r}")
        self.target = tuple(float(v) for v in target)
        self.start = tuple(float(v) for v in start)
        self.peak_lrs = tuple(float(v) for v in peak_lrs)
        self.total_steps, self.warmup_steps, self.updates = total_steps, warmup_steps, updates
        self.threshold = float(threshold)
        self.flips = tuple(bool(f) for f in flips)
        self.sequential = sequential
        self.stop_early = stop_early
        self.momentum = momentum
        self.dtype = dtype
        self.seed = seed
        self.name = name
        self.enabled = enabled

    # -- the trials ----------------------------------------------------------------------------

    def trials(self) -> list[tuple[bool, float]]:
        """(flip, peak LR) of each trial, in the order that decides."""
        return [(flip, lr) for flip in self.flips for lr in self.peak_lrs]

    def check(self, genome) -> CheckResult:
        t0 = time.perf_counter()
        if self.sequential:
            losses = self._run_sequential(genome)
        else:
            losses = self._run_batched(genome)
        result = self._judge(losses)
        result.seconds = time.perf_counter() - t0
        return result

    def _judge(self, losses: list[float | None]) -> CheckResult:
        trials = [{"lr": lr, "flip": flip, "loss": loss}
                  for (flip, lr), loss in zip(self.trials(), losses)]
        for trial in trials:
            loss = trial["loss"]
            if loss is not None and loss < self.threshold:   # NaN compares false
                how = "flipped" if trial["flip"] else "unflipped"
                return CheckResult(True, flip=trial["flip"], lr=trial["lr"], losses=list(losses), trials=trials,
                                   reason=f"loss {fmt_loss(loss)} < {self.threshold:g} at lr {trial['lr']:g}, "
                                          f"{how}")
        ran = [t["loss"] for t in trials if t["loss"] is not None]
        finite = [v for v in ran if math.isfinite(v)]
        if not finite:
            reason = "non-finite loss at every LR and flip"
        else:
            reason = f"loss {fmt_loss(min(finite))} ≥ {self.threshold:g} at every LR and flip"
            if len(finite) < len(ran):
                reason += f" (non-finite in {len(ran) - len(finite)} of {len(ran)} trials)"
        return CheckResult(False, flip=None, reason=reason, losses=list(losses), trials=trials)

    def _loss(self, x: torch.Tensor, n: int) -> list[float]:
        b = torch.tensor(self.target, dtype=torch.float64)
        diff = x.detach().to(torch.float64).view(n, -1) - b
        return [float(v) for v in (diff * diff).sum(dim=1)]

    def _run_batched(self, genome) -> list[float]:
        trials = self.trials()
        b = torch.tensor(self.target, dtype=self.dtype)

        def grad(x):            # of f(x) = sum (x - b)^2, for every trial at once
            return torch.sub(x, b).mul_(2.0)

        x = run_trials(genome, grad, self.start, [lr for _, lr in trials], flips=[flip for flip, _ in trials],
                       total_steps=self.total_steps, warmup_steps=self.warmup_steps, updates=self.updates,
                       momentum=self.momentum, dtype=self.dtype, seed=self.seed)
        return self._loss(x, len(trials))

    def _run_sequential(self, genome) -> list[float | None]:
        b = torch.tensor(self.target, dtype=self.dtype)
        losses: list[float | None] = [None] * len(self.trials())
        for i, (flip, lr) in enumerate(self.trials()):
            trial = genome.copy()
            trial.flip = flip
            x = torch.tensor(self.start, dtype=self.dtype, requires_grad=True)
            opt = EvolvedOptimizer([x], trial, lr=lr, total_steps=self.total_steps,
                                   warmup_steps=self.warmup_steps, momentum=self.momentum, seed=self.seed)
            for _ in range(self.updates):
                opt.zero_grad()
                loss = ((x - b) ** 2).sum()
                loss.backward()
                opt.step()
            losses[i] = self._loss(x, 1)[0]
            if self.stop_early and losses[i] < self.threshold:
                break   # the first passing trial decides, as in the original
        return losses


@hookimpl
def deapnos_integrity_checks():
    """The paper's check, with the paper's numbers."""
    return [ShiftedSphereCheck()]
