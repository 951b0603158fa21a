"""EvolvedOptimizer: a genome running as a real ``torch.optim.Optimizer``.

Speed: the parameters of a group that share a device and dtype form one *bucket*.  Each step the
bucket's gradients are gathered into one flat buffer, the compiled plan runs over flat tensors
(one kernel per op for all parameters, into preallocated buffers), and the update is added back
with one ``_foreach_add_``.  State lives in flat tensors too; ``self.state[p]`` holds views into
them, so ``state_dict`` and ``load_state_dict`` work as for any torch optimizer and a resumed
optimizer continues the identical trajectory.

Per-step LR: ``lr`` (the peak, per param group) x base schedule (``warmup_cosine`` by default,
docs/paper.md §3.1, or ``constant``) x the genome's schedule tree.  Momentum coefficient: the
schedule of §3.2 by default, or a constant (``momentum=0.9``).  The step counter is global to the
optimizer and increments once per ``step()``; past ``total_steps`` every table holds its last value
(with one RuntimeWarning) instead of raising.

Low-precision parameters (bfloat16, float16) keep their state and do their arithmetic in float32;
the update is rounded to the parameter dtype when it is applied.
"""
from __future__ import annotations

from typing import Iterable

from ..space.genome import Genome
from .compiler import PlanRunner, compile_genome
from .flat import FlatOptimizer, base_lr_table, check_options, momentum_table
from .schedules import tree_table


class EvolvedOptimizer(FlatOptimizer):
    """Run a :class:`~deapnos.space.genome.Genome` as a PyTorch optimizer.

    Args:
        params: parameters or param groups (each group may set its own ``lr``).
        genome: the genome (or its text form).
        lr: peak learning rate.
        total_steps: number of ``step()`` calls of the run; required (decays depend on it).
        warmup_steps: linear warm-up length of the base schedule.
        base_schedule: ``"warmup_cosine"`` (docs/paper.md §3.1) or ``"constant"``.
        hold_steps: steps at the peak LR between warm-up and cosine (``finalOptimizers``' hold).
        momentum: ``None`` for the paper's 0.95 -> 0.85 -> 0.95 schedule (§3.2), or a constant.
        check_finite: check each update; a non-finite one is skipped and recorded in
            ``self.diverged`` / ``self.divergence`` instead of being applied (costs one reduction).
        seed: seed of the generator that dropout ops draw from.
    """

    def __init__(self, params: Iterable, genome: Genome | str, lr: float = 1e-3, total_steps: int | None = None,
                 warmup_steps: int = 0, base_schedule: str = "warmup_cosine", hold_steps: int = 0,
                 momentum: float | None = None, check_finite: bool = False, seed: int = 0):
        if isinstance(genome, str):
            genome = Genome.parse(genome)
        check_options(base_schedule, momentum)
        super().__init__(params, lr, total_steps, check_finite)
        self.genome = genome
        self.identity = genome.to_text()
        self.plan = compile_genome(genome, total_steps)
        from ..zoo import horizon_problem          # Opt4 explodes when the LR does not decay to 0
        problem = horizon_problem(genome, total_steps, warmup_steps, base_schedule, hold_steps)
        if problem:
            raise ValueError(problem)
        self.lr_multipliers = [b * float(m) for b, m in zip(
            base_lr_table(total_steps, warmup_steps, base_schedule, hold_steps),
            tree_table(genome.schedule, genome.space, total_steps))]
        self.momentum_values = momentum_table(total_steps, warmup_steps, hold_steps, momentum)
        self.sign = 1.0 if genome.flip else -1.0
        self.momentum_kind = genome.momentum
        if self.plan.needs_generator:
            self._make_generator(seed)

    def _new_engine(self, numel, sizes, device, dtype):
        return PlanRunner(self.plan, numel, sizes, device, dtype, self.generator)

    def __repr__(self):
        return f"EvolvedOptimizer({self.genome.to_text()!r}, total_steps={self.total_steps})"
