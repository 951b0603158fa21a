"""Many independent short runs of one genome as one batched computation (``deapnos.run_trials``).

Integrity checks such as the shifted sphere (docs/paper.md §5.3) try a genome at several learning
rates and signs; here every trial is a slice of one flat bucket, so the genome is compiled once and
each op runs once per step for all trials.  docs/space.md, "Batched trials", says what equals a run
of :class:`~deapnos.optim.EvolvedOptimizer` per trial.
"""
from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence

import torch

from ..space.genome import Genome
from .compiler import PlanRunner, compile_genome
from .flat import base_lr_table, momentum_increment, momentum_table
from .schedules import tree_table


def run_trials(genome: Genome, grad: Callable[[torch.Tensor], torch.Tensor], start: Sequence[float],
               lrs: Sequence[float], *, flips: Sequence[bool] | None = None, total_steps: int,
               warmup_steps: int = 0, updates: int | None = None, momentum: float | None = None,
               dtype: torch.dtype = torch.float32, seed: int = 0) -> torch.Tensor:
    """Run ``genome`` on B = ``len(lrs)`` independent trials; returns their points, shape (B, d).

    Every trial starts at ``start`` (d numbers) with fresh optimizer state and runs ``updates``
    steps (default ``total_steps - 1``) of the warm-up + cosine LR table of ``total_steps`` and
    ``warmup_steps`` times the genome's schedule tree, peak LR ``lrs[i]``, and descends
    (``flips[i]`` false) or ascends; ``flips`` defaults to ``genome.flip``.  ``grad(x)`` gets the
    (B, d) points and returns the gradient of each trial's loss at its point, shape (B, d).
    ``momentum``: None for the paper's schedule (§3.2) or a constant.  Random ops (dropout) draw,
    in every trial, what a trial run alone with ``seed`` would draw.
    """
    n, d = len(lrs), len(start)
    flips = [genome.flip] * n if flips is None else list(flips)
    if not n or len(flips) != n or not d:
        raise ValueError(f"run_trials: need at least one trial and one dimension, and one flip per LR "
                         f"(got {n} LRs, {len(flips)} flips, {d} dimensions)")
    updates = total_steps - 1 if updates is None else updates
    base = base_lr_table(total_steps, warmup_steps)         # checks total_steps and warmup_steps
    if not 0 <= updates <= total_steps:
        raise ValueError(f"updates must lie in [0, total_steps={total_steps}], got {updates}")
    # the same products, in the same order, as EvolvedOptimizer (bit-identical LRs)
    lr_mult = [b * float(m) for b, m in zip(base, tree_table(genome.schedule, genome.space, total_steps))]
    mom = momentum_table(total_steps, warmup_steps, 0, momentum)
    runner = _runner(genome, total_steps, n, d, dtype, seed)
    x = torch.tensor([float(v) for v in start], dtype=dtype).repeat(n)
    peaks = torch.tensor([float(lr) for lr in lrs], dtype=torch.float64).repeat_interleave(d)
    signs = torch.tensor([1.0 if f else -1.0 for f in flips], dtype=torch.float64).repeat_interleave(d)
    M = torch.zeros_like(x) if genome.momentum != "none" else None
    step = torch.empty_like(x)
    nest = torch.empty_like(x)
    with torch.no_grad():
        for t in range(updates):
            g = grad(x.view(n, d)).reshape(-1)
            u = runner.direction(g, t, lambda: x)
            # alpha = sign * (peak * lr_mult[t]) in float64, rounded once to the run's dtype
            alpha = (peaks * lr_mult[t]).mul_(signs).to(dtype)
            torch.mul(u, alpha, out=step)
            delta, factor = momentum_increment(genome.momentum, step, 1.0, M, mom[t], lambda: nest)
            x.add_(delta, alpha=factor)
    return x.view(n, d)


def _runner(genome: Genome, total_steps: int, n: int, d: int, dtype, seed: int) -> PlanRunner:
    """The compiled genome over n tensors of d elements: per-tensor ops act per trial."""
    plan = compile_genome(genome, total_steps)
    generator = None
    if plan.needs_generator:
        generator = torch.Generator(device="cpu")
        generator.manual_seed(seed)
        plan = dataclasses.replace(plan, instrs=[
            dataclasses.replace(ins, fn=_per_trial(ins.fn, n, d)) if "generator" in ins.needs else ins
            for ins in plan.instrs])
    return PlanRunner(plan, n * d, [d] * n, torch.device("cpu"), dtype, generator)


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
