"""EvolvedOptimizer: a genome running as a real ``torch.optim.Optimizer``.

Parameters are updated in flat buckets (:mod:`deapnos.optim.flat`) by the compiled plan
(:mod:`deapnos.optim.compiler`); the LR is ``lr`` x base schedule x the genome's schedule tree.
Param-group options, ``state_dict`` / resuming, low precision and the step past ``total_steps``:
docs/space.md, "The optimizer" and "Param groups and resuming".
"""
from __future__ import annotations

import warnings
from collections.abc import Iterable

from ..space.genome import Genome
from .compiled import CompiledUpdate, compile_problem
from .compiler import PlanRunner, compile_genome
from .flat import FlatOptimizer, check_horizon, check_options
from .horizon import horizon_problem
from .schedules import tree_table


class EvolvedOptimizer(FlatOptimizer):
    """Run a :class:`~deapnos.space.genome.Genome` as a PyTorch optimizer.

    Args:
        params: parameters or param groups; a group may set its own ``lr``, ``warmup_steps``,
            ``hold_steps``, ``base_schedule`` and ``momentum`` (``total_steps`` must be the same).
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
        compile: ``True`` (or a ``torch.compile`` backend name, e.g. ``"inductor"``) compiles each
            bucket's step (state updates, update tree, momentum) into one fused kernel on its first
            step; off by default.  A genome that cannot compile (dropout, stateful ops) and any
            failure to compile run the eager update after one warning saying why.
    """

    def __init__(self, params: Iterable, genome: Genome | str, lr: float = 1e-3, total_steps: int | None = None,
                 warmup_steps: int = 0, base_schedule: str = "warmup_cosine", hold_steps: int = 0,
                 momentum: float | None = None, check_finite: bool = False, seed: int = 0,
                 compile: bool | str = False):
        if isinstance(genome, str):
            genome = Genome.parse(genome)
        if not isinstance(compile, (bool, str)) or compile == "":
            raise ValueError(f"compile must be True, False or a torch.compile backend name, got {compile!r}")
        check_options(base_schedule, momentum)
        T: int = check_horizon(total_steps, warmup_steps, hold_steps)
        assert genome.space is not None          # Genome.__post_init__ sets it
        # what FlatOptimizer.__init__ needs to build and check each group's tables
        self.genome = genome
        self.identity = genome.to_text()
        self.plan = compile_genome(genome, T)
        self.schedule_multipliers = [float(m) for m in tree_table(genome.schedule, genome.space, T)]
        self.sign = 1.0 if genome.flip else -1.0
        self.momentum_kind = genome.momentum
        self.compile_backend: str | None = ("inductor" if compile is True else compile) or None
        self._compile_warned = False
        if self.compile_backend is not None:
            problem = compile_problem(self.plan)
            if problem is not None:
                self._compile_off(f"not compiled: {problem}")
        super().__init__(params, lr, total_steps, warmup_steps, base_schedule, hold_steps, momentum, check_finite)
        if self.plan.needs_generator:
            self._make_generator(seed)

    def _compile_off(self, why: str) -> None:
        """Run the eager update from now on, saying why once."""
        self.compile_backend = None
        for bucket in getattr(self, "_buckets", {}).values():
            bucket.engine.compiled = None
        if not self._compile_warned:
            self._compile_warned = True
            warnings.warn(f"EvolvedOptimizer(compile=...): {why}; running the eager update", RuntimeWarning,
                          stacklevel=4)

    def _compile_failed(self, exc: BaseException) -> None:
        lines = str(exc).strip().splitlines()
        self._compile_off(f"torch.compile failed ({type(exc).__name__}: {lines[0][:200] if lines else ''})")

    def _check_settings(self, settings):
        problem = horizon_problem(self.genome, settings["total_steps"], settings["warmup_steps"],
                                  settings["base_schedule"], settings["hold_steps"])
        if problem:
            raise ValueError(problem)

    def _new_engine(self, numel, sizes, device, dtype):
        runner = PlanRunner(self.plan, numel, sizes, device, dtype, self.generator)
        if self.compile_backend is not None:
            runner.compiled = CompiledUpdate(runner, self.compile_backend, self._compile_failed)
        return runner

    def __repr__(self):
        return f"EvolvedOptimizer({self.genome.to_text()!r}, total_steps={self.total_steps})"
