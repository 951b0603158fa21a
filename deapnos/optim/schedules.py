"""Per-step tables: the base learning-rate schedule, the momentum schedule, tree tables.

paper-spec §3.  All tables have length ``total_steps`` (T) and are computed once per optimizer.
Stepping past T reads the last entry (see :func:`clamp_step`); the original raised an index error.
"""
from __future__ import annotations

import math
import warnings

import torch
from deap import gp

from ..space.psets import DECAY_ON_BRANCH, Decay, Schedule, SearchSpace

BASE_SCHEDULES = ("warmup_cosine", "constant")


def check_horizon(total_steps, warmup_steps: int = 0, hold_steps: int = 0) -> int:
    if total_steps is None:
        raise ValueError("total_steps is required: decay functions and the LR schedule depend on the "
                         "training length (pass total_steps=number of optimizer steps)")
    if not isinstance(total_steps, int) or isinstance(total_steps, bool) or total_steps < 1:
        raise ValueError(f"total_steps must be a positive integer, got {total_steps!r}")
    if not isinstance(warmup_steps, int) or warmup_steps < 0 or warmup_steps >= total_steps + 1:
        raise ValueError(f"warmup_steps must be an integer in [0, total_steps={total_steps}], got {warmup_steps!r}")
    if not isinstance(hold_steps, int) or hold_steps < 0 or warmup_steps + hold_steps > total_steps:
        raise ValueError(f"hold_steps must be an integer >= 0 with warmup_steps + hold_steps <= total_steps, "
                         f"got {hold_steps!r}")
    return total_steps


def base_lr_table(total_steps: int, warmup_steps: int = 0, kind: str = "warmup_cosine",
                  hold_steps: int = 0) -> list[float]:
    """Multiplier of the peak LR at each step (paper-spec §3.1).

    ``warmup_cosine``: t/W during warm-up (so step 0 has LR 0, as in the search), 1 during the hold,
    then half a cosine to 0.  The hold goes to the peak LR, as in ``finalOptimizers`` (the search
    code's drop to 0 during the hold is a bug it never triggers).  ``constant``: 1 everywhere.
    """
    check_horizon(total_steps, warmup_steps, hold_steps)
    if kind == "constant":
        return [1.0] * total_steps
    if kind != "warmup_cosine":
        raise ValueError(f"base_schedule must be one of {', '.join(BASE_SCHEDULES)}, got {kind!r}")
    W, H, T = warmup_steps, hold_steps, total_steps
    out = []
    for t in range(T):
        if t < W:
            out.append(t / W)
        elif H > 0 and t <= W + H:
            out.append(1.0)
        else:
            span = T - W - H
            out.append(0.5 * (1.0 + math.cos(math.pi * (t - W - H) / span)) if span > 0 else 1.0)
    return out


def momentum_table(total_steps: int, warmup_steps: int = 0, hold_steps: int = 0,
                   constant: float | None = None) -> list[float]:
    """Momentum coefficient m_t (paper-spec §3.2): W points 0.95 -> 0.85, H points 0.85, then
    T-W-H points 0.85 -> 0.95, each piece a linspace with both ends included.  ``constant``
    replaces the schedule by a fixed coefficient."""
    check_horizon(total_steps, warmup_steps, hold_steps)
    if constant is not None:
        return [float(constant)] * total_steps
    W, H, T = warmup_steps, hold_steps, total_steps
    return _linspace(0.95, 0.85, W) + [0.85] * H + _linspace(0.85, 0.95, T - W - H)


def _linspace(a: float, b: float, n: int) -> list[float]:
    return [float(v) for v in torch.linspace(a, b, n, dtype=torch.float64)] if n > 0 else []


def tree_table(tree: gp.PrimitiveTree, space: SearchSpace, total_steps: int, start: int = 0) -> torch.Tensor:
    """Values of a Decay or Schedule tree on t = 0..T-1 (float64), evaluated on the whole grid.

    ``start`` is the index of the subtree's root inside ``tree`` (decay subtrees of update trees).
    """
    t = torch.arange(total_steps, dtype=torch.float64)
    value, _ = _eval_scalar_tree(tree, start, space, t, total_steps)
    return torch.broadcast_to(value, (total_steps,)).clone()


def _eval_scalar_tree(tree, i, space, t, T):
    node = tree[i]
    if node.arity == 0:
        spec = space.leaf_spec(node.ret, node.name)
        if isinstance(spec, float):
            return torch.tensor(spec, dtype=torch.float64), i + 1
        return spec.fn(t, T).to(torch.float64), i + 1
    args, j = [], i + 1
    for _ in range(node.arity):
        value, j = _eval_scalar_tree(tree, j, space, t, T)
        args.append(value)
    spec = space.op_spec(node.ret, node.name)
    return spec.fn(*args), j


def subtree_end(tree, start: int) -> int:
    """Index one past the subtree rooted at ``start``."""
    return tree.searchSubtree(start).stop


def decay_is_valid(tree: gp.PrimitiveTree, space: SearchSpace, start: int = 0, horizon: int = 100) -> bool:
    """paper-spec §2.3: a decay expression is valid when all its values on T = 100 lie in [0, 1].

    Unlike the original, NaN fails the check (NaN compares false, so the original let it pass).
    """
    values = tree_table(tree, space, horizon, start)
    return bool(torch.isfinite(values).all() and (values >= 0).all() and (values <= 1).all())


def clamp_step(t: int, total_steps: int, warned: list) -> int:
    """Index into the tables for step t.  Past the horizon the last entry holds (a warning once):
    decays and the schedule stay at their final values instead of raising an index error."""
    if t < total_steps:
        return t
    if not warned:
        warnings.warn(f"optimizer stepped past total_steps={total_steps}: the learning rate, momentum "
                      "and decay values stay at their last-step values", RuntimeWarning, stacklevel=3)
        warned.append(True)
    return total_steps - 1


class ScheduleLambda:
    """``lr_lambda`` for :class:`torch.optim.lr_scheduler.LambdaLR`: base schedule x schedule tree.

    Picklable (no closures), so a LambdaLR using it can be checkpointed with its optimizer.
    """

    def __init__(self, tree: gp.PrimitiveTree, space: SearchSpace, total_steps: int, warmup_steps: int = 0,
                 base_schedule: str = "warmup_cosine", hold_steps: int = 0):
        base = base_lr_table(total_steps, warmup_steps, base_schedule, hold_steps)
        mult = tree_table(tree, space, total_steps)
        self.table = [b * float(m) for b, m in zip(base, mult)]
        self.total_steps = total_steps
        self._warned: list = []

    def __call__(self, step: int) -> float:
        return self.table[clamp_step(step, self.total_steps, self._warned)]
