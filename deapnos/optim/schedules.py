"""Per-step tables: the base learning-rate schedule, the momentum schedule, tree tables.

docs/paper.md §3.  All tables have length ``total_steps`` (T) and are computed once per optimizer.
Stepping past T reads the last entry (see :func:`clamp_step`); the original raised an index error.
"""
from __future__ import annotations

import torch
from deap import gp

from ..space.fold import fold, subtree
from ..space.psets import SearchSpace
from .flat import BASE_SCHEDULES, base_lr_table, check_horizon, clamp_step, momentum_table

__all__ = ["BASE_SCHEDULES", "base_lr_table", "check_horizon", "clamp_step", "momentum_table", "tree_table",
           "decay_is_valid", "ScheduleLambda"]

def tree_table(tree: gp.PrimitiveTree, space: SearchSpace, total_steps: int, start: int = 0) -> torch.Tensor:
    """Values of a Decay or Schedule tree on t = 0..T-1 (float64), evaluated on the whole grid.

    ``start`` is the index of the subtree's root inside ``tree`` (decay subtrees of update trees).
    """
    t = torch.arange(total_steps, dtype=torch.float64)

    def value(node, args):
        if node.arity == 0:
            spec = space.leaf_spec(node.ret, node.name)
            if isinstance(spec, float):
                return torch.tensor(spec, dtype=torch.float64)
            return spec.fn(t, total_steps).to(torch.float64)
        return space.op_spec(node.ret, node.name).fn(*args)

    return torch.broadcast_to(fold(subtree(tree, start), value), (total_steps,)).clone()


def scalar_tree_code(tree, space: SearchSpace, start: int = 0) -> str:
    """Python source that computes what :func:`tree_table` computes (for ``export``): the same
    kernels in the same order, so the exported tables are bit-identical."""
    def code(node, args):
        if node.arity == 0:
            spec = space.leaf_spec(node.ret, node.name)
            return (f"torch.tensor({spec!r}, dtype=torch.float64)" if isinstance(spec, float)
                    else f"{spec.fn.__name__}(t, T).to(torch.float64)")
        return f"{space.op_spec(node.ret, node.name).fn.__name__}({', '.join(args)})"

    return fold(subtree(tree, start), code)


def decay_is_valid(tree: gp.PrimitiveTree, space: SearchSpace, start: int = 0, horizon: int = 100) -> bool:
    """docs/paper.md §2.3: a decay expression is valid when all its values on T = 100 lie in [0, 1].

    Unlike the original, NaN fails the check (NaN compares false, so the original let it pass).
    """
    values = tree_table(tree, space, horizon, start)
    return bool(torch.isfinite(values).all() and (values >= 0).all() and (values <= 1).all())


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
        # LambdaLR asks for step T after the T-th (last) scheduler.step(): no optimizer step uses
        # that value, so T steps are quiet and only a step beyond them warns
        if step == self.total_steps and self.table:
            return self.table[-1]
        return self.table[clamp_step(step, self.total_steps, self._warned)]
