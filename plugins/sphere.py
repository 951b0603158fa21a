"""Built-in plugin ``sphere``: the shifted-sphere integrity check (docs/paper.md §5.3).

A genome is degenerate when it cannot make a small convex problem go downhill:

* f(x) = sum_i (x_i - b_i)^2 in 5 dimensions, b = [0.5, 1.5, -0.3, -1.2, 0.75],
  x0 = [1.1, 0.9, 1.1, 0.9, 1.0] (f(x0) = 7.1525);
* each trial is a fresh optimizer (all state zero) with the LR table of T = 35, W = 6 (warm-up then
  cosine, so the LR of step 0 is 0), the genome's schedule tree, and the momentum schedule of §3.2;
* the loss compared is the one at the start of the 35th step, after 34 updates;
* trials: peak LRs 1, 1e-1, ..., 1e-5 unflipped, then the same flipped.  The first trial in that
  order whose loss is < 3.5 passes (NaN never does) and fixes ``lr`` and ``flip``.

All 12 trials run as ONE batched computation (docs/paper.md §8.1 item 8): the genome is compiled once,
one :class:`~deapnos.optim.compiler.PlanRunner` runs it over 12 x 5 = 60 elements split into 12
tensors of 5 (so per-tensor ops such as ``norm`` act per trial), and the update is applied with a
per-element LR vector (peak LR x base table x schedule tree, times the trial's sign).  Ops that draw
random numbers (dropout) run per trial from the same generator state, so every trial sees the
masks it would see alone.  ``sequential=True`` runs the 12 trials as separate
:class:`~deapnos.optim.optimizer.EvolvedOptimizer` runs with autograd, stopping at the first pass as
the original does: the oracle of the tests and the baseline of ``benchmarks/integrity_check.py``.

Ops must act element-wise or per parameter tensor (through ``sizes``) for the batched run to equal
the sequential one; an op that mixes all elements of the flat buffer would couple the trials.
"""
from __future__ import annotations

import dataclasses
import math
import time
from typing import Sequence

import torch

from deapnos.evaluate.integrity import CheckResult, IntegrityCheck, fmt_loss
from deapnos import hookimpl
from deapnos.optim.compiler import PlanRunner, compile_genome
from deapnos.optim.schedules import base_lr_table, momentum_table, tree_table

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
        # validates total_steps / warmup_steps with the library's own messages
        base_lr_table(total_steps, warmup_steps)
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

    def _tables(self, genome):
        T, W = self.total_steps, self.warmup_steps
        base = base_lr_table(T, W)
        mult = tree_table(genome.schedule, genome.space, T)
        # the same products, in the same order, as EvolvedOptimizer (bit-identical LRs)
        lr_mult = [b * float(m) for b, m in zip(base, mult)]
        return lr_mult, momentum_table(T, W, 0, self.momentum)

    def _loss(self, x: torch.Tensor, n: int) -> list[float]:
        b = torch.tensor(self.target, dtype=torch.float64)
        diff = x.detach().to(torch.float64).view(n, -1) - b
        return [float(v) for v in (diff * diff).sum(dim=1)]

    def _run_batched(self, genome) -> list[float]:
        trials = self.trials()
        n, d = len(trials), len(self.target)
        plan = compile_genome(genome, self.total_steps)
        generator = None
        if plan.needs_generator:
            generator = torch.Generator(device="cpu")
            generator.manual_seed(self.seed)
            plan = dataclasses.replace(plan, instrs=[
                dataclasses.replace(ins, fn=_per_trial(ins.fn, n, d)) if "generator" in ins.needs else ins
                for ins in plan.instrs])
        runner = PlanRunner(plan, n * d, [d] * n, torch.device("cpu"), self.dtype, generator)
        x = torch.tensor(self.start, dtype=self.dtype).repeat(n)
        b = torch.tensor(self.target, dtype=self.dtype).repeat(n)
        peaks = torch.tensor([lr for _, lr in trials], dtype=torch.float64).repeat_interleave(d)
        signs = torch.tensor([1.0 if flip else -1.0 for flip, _ in trials],
                             dtype=torch.float64).repeat_interleave(d)
        lr_mult, mom = self._tables(genome)
        kind = genome.momentum
        M = torch.zeros_like(x) if kind != "none" else None
        g = torch.empty_like(x)
        step = torch.empty_like(x)
        with torch.no_grad():
            for t in range(self.updates):
                torch.sub(x, b, out=g).mul_(2.0)
                u = runner.direction(g, t, lambda: x)
                # alpha = sign * (peak * lr_mult[t]) in float64, rounded once to the run's dtype
                alpha = (peaks * lr_mult[t]).mul_(signs).to(self.dtype)
                torch.mul(u, alpha, out=step)
                if kind == "none":
                    x.add_(step)
                    continue
                m_t = mom[t]
                M.mul_(m_t).add_(step)
                if kind == "mom":
                    x.add_(M)
                elif kind == "nest":
                    x.add_(torch.add(M, step))
                else:   # nesterov
                    x.add_(torch.add(torch.mul(M, m_t), step))
        return self._loss(x, n)

    def _run_sequential(self, genome) -> list[float | None]:
        from deapnos.optim.optimizer import EvolvedOptimizer
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


def _per_trial(fn, n: int, d: int):
    """Run kernel ``fn`` on each trial's slice, restarting the generator for each one.

    A trial run alone draws its random numbers from a fresh generator seeded alike; here every
    trial's slice draws from the same generator state, and the generator ends where one trial's
    draw leaves it.  Other context is sliced alike: ``sizes`` becomes ``[d]``, per-node ``state``
    one dict per trial, full-length tensors (inputs, ``out``, scratch buffers) their slice.
    """
    full = n * d

    def part(v, sl):
        if isinstance(v, torch.Tensor) and v.dim() == 1 and v.numel() == full:
            return v[sl]
        if isinstance(v, (list, tuple)) and v and all(isinstance(e, torch.Tensor) for e in v):
            return type(v)(part(e, sl) for e in v)
        return v

    def run(*args, out=None, **kw):
        gen = kw.get("generator")
        start = gen.get_state() if gen is not None else None
        state = kw.get("state")
        results = []
        for i in range(n):
            sl = slice(i * d, (i + 1) * d)
            if gen is not None:
                gen.set_state(start)
            kwi = {k: part(v, sl) for k, v in kw.items()}
            if "sizes" in kwi:
                kwi["sizes"] = [d]
            if state is not None:
                kwi["state"] = state.setdefault(("trial", i), {})
            a = [part(v, sl) for v in args]
            if out is not None:
                o = out[sl]
                r = fn(*a, out=o, **kwi)
                if not (isinstance(r, torch.Tensor) and r.data_ptr() == o.data_ptr() and r.shape == o.shape):
                    o.copy_(torch.as_tensor(r, dtype=o.dtype).expand_as(o))
            else:
                r = fn(*a, **kwi)
                results.append(torch.as_tensor(r).expand(d))
        return out if out is not None else torch.cat(results)

    run.__name__ = f"per_trial_{getattr(fn, '__name__', 'op')}"
    return run


@hookimpl
def deapnos_integrity_checks():
    """The paper's check, with the paper's numbers."""
    return [ShiftedSphereCheck()]
