"""The numbers of the evaluation protocol (:class:`ProtocolConfig`, a config's ``[protocol]``).

Light on purpose (no torch): the config reads it.  :func:`protocol_config` builds the protocol of a
``[protocol]`` table (with ``run.compat``'s defaults under it), :func:`protocol_table` writes back the
fields that differ from those defaults.  Details: docs/evaluation.md, "The protocol".
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .tasks import Task

SCREENS = ("relative", "paper")
SCREEN_CHOICES = ("validation", "progress")
SCORES = ("final", "best")
SCREEN_SCHEDULES = ("grid", "halving")


@dataclass
class ProtocolConfig:
    """Every number of the protocol (docs/evaluation.md, "The protocol").  The LR grid and the ``paper`` screen's
    thresholds are the paper's; ``screen`` defaults to the task-agnostic ``relative`` rule."""
    screen: str = "relative"             # relative | paper (docs/evaluation.md)
    diverge_factor: float = 3.0          # relative: a train loss above this x the initial loss diverges
    min_progress: float = 0.02           # relative: screened out unless some LR removes this share of the loss
    screen_choice: str = "validation"    # relative: the LR whose screening run scores best on validation, or
                                         # "progress" (the most training loss removed: overfits small data)
    score: str = "final"                 # the fitness of a run: its validation score at the end of the
                                         # schedule ("final", the model a user gets) or its peak ("best")
    screen_lrs_a: tuple[float, ...] = (10.0, 1e-2, 1e-5)
    screen_lrs_b: tuple[float, ...] = (1.0, 1e-1, 1e-3, 1e-4)
    screen_epochs: int = 4
    screen_early_stop_epoch: int = 2
    screen_early_stop_acc: float = 0.25
    stage_a_threshold: float = 0.25
    threshold: float = 0.40
    epochs: int | None = None            # full run; None: the task's (40 for the built-in tasks)
    full_early_stop_epoch: int = 4
    full_early_stop_acc: float = 0.40
    step_scale: float = 1.0              # multiplies steps per epoch, T and W (cheap smoke runs)
    lr: float | None = None              # a fixed peak LR: skip the screen
    shuffle: bool = True                 # False: the paper's fixed batch order
    keep_best_on_divergence: bool = False
    fresh_seed: bool = False             # True: every run draws a new seed (the original set none)
    check_finite: bool = False           # EvolvedOptimizer checks every update (one reduction a step)
    nan_check_every: int = 1             # test the loss for NaN/inf every N steps (GPU: >1 saves syncs)
    timeout_s: float | None = None       # wall-clock budget of one evaluation
    num_threads: int | None = None       # torch.set_num_threads during the evaluation
    evaluate_test: bool = False          # score the final model on the task's test split, if it has one
    apply_task_overrides: bool = True    # let a task adjust fields (its ``protocol_overrides``)
    # issue 16 (helper F): "grid" screens every LR for screen_epochs; "halving" gives every LR one epoch
    # and the best third the full screen (relative screen only; deapnos/evaluate/halving.py)
    screen_schedule: str = "grid"
    # issue 16 (helper I): screen K LRs of a genome in one vmapped run (0: one run per LR;
    # deapnos/evaluate/batched.py); models vmap cannot run fall back to one run per LR
    batch_lrs: int = 0

    def __post_init__(self):
        self.screen_lrs_a = tuple(float(v) for v in self.screen_lrs_a)
        self.screen_lrs_b = tuple(float(v) for v in self.screen_lrs_b)
        if not self.screen_lrs_a and self.lr is None:
            raise ValueError("screen_lrs_a is empty and no fixed lr is given")
        if self.step_scale <= 0:
            raise ValueError(f"step_scale must be > 0, got {self.step_scale}")
        if self.screen_epochs < 1:
            raise ValueError(f"screen_epochs must be >= 1, got {self.screen_epochs}")
        if self.epochs is not None and self.epochs < 1:
            raise ValueError(f"epochs must be >= 1 or None, got {self.epochs}")
        if self.screen not in SCREENS:
            raise ValueError(f"screen must be one of {', '.join(SCREENS)}, got {self.screen!r}")
        if not self.diverge_factor > 1:
            raise ValueError(f"diverge_factor must be > 1, got {self.diverge_factor}")
        if self.screen_choice not in SCREEN_CHOICES:
            raise ValueError(f"screen_choice must be one of {', '.join(SCREEN_CHOICES)}, got {self.screen_choice!r}")
        if self.score not in SCORES:
            raise ValueError(f"score must be one of {', '.join(SCORES)}, got {self.score!r}")
        if self.screen_schedule not in SCREEN_SCHEDULES:
            raise ValueError(f"screen_schedule must be one of {', '.join(SCREEN_SCHEDULES)}, "
                             f"got {self.screen_schedule!r}")
        if not isinstance(self.batch_lrs, int) or isinstance(self.batch_lrs, bool) or self.batch_lrs < 0:
            raise ValueError(f"batch_lrs must be 0 (one run per LR) or a batch size K >= 1, got {self.batch_lrs!r}")
        if not 0 <= self.min_progress < 1:
            raise ValueError(f"min_progress must be in [0, 1), got {self.min_progress}")

    @classmethod
    def from_dict(cls, data: dict, where: str = "protocol") -> ProtocolConfig:
        """A config from a ``[protocol]`` table: the one place its fields are checked.  Raises
        ValueError naming the field (``protocol.NAME``)."""
        if not isinstance(data, dict):
            raise ValueError(f"config section [{where}] must be a table, found {type(data).__name__}")
        known = [f.name for f in dataclasses.fields(cls)]
        for key in data:
            if key not in known:
                raise ValueError(f"unknown config field {where}.{key} (allowed: {', '.join(known)})")
        try:
            return cls(**data)
        except (TypeError, ValueError) as exc:
            text = str(exc)
            name = next((k for k in known if text.startswith(k + " ")), None)
            raise ValueError(f"config field {where}.{name}: {text}" if name else
                             f"config section [{where}]: {text}") from None

    def for_task(self, task: Task) -> ProtocolConfig:
        """This config with the task's ``protocol_overrides`` applied (unless turned off)."""
        if not self.apply_task_overrides or not task.protocol_overrides:
            return self
        known = {f.name for f in dataclasses.fields(self)}
        unknown = set(task.protocol_overrides) - known
        if unknown:
            raise ValueError(f"task {task.name!r}: unknown protocol_overrides {sorted(unknown)}")
        return dataclasses.replace(self, **task.protocol_overrides)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


# the original's evaluation (docs/paper.md §5.4): what ``run.compat = true`` sets in [protocol] unless
# the config sets it: absolute thresholds, fixed batch order, a fresh initialisation for every run,
# TerminateOnNaN's "keep the best epoch reached" for a full run that diverges, and the best epoch's score
COMPAT_PROTOCOL: dict[str, Any] = {"screen": "paper", "shuffle": False, "fresh_seed": True,
                                   "keep_best_on_divergence": True, "score": "best"}


def protocol_config(table: dict, compat: bool = False, where: str = "protocol") -> ProtocolConfig:
    """The protocol of a ``[protocol]`` table; with ``compat``, :data:`COMPAT_PROTOCOL` fills the
    fields the table leaves out.  Raises ValueError naming the field."""
    if not isinstance(table, dict):
        raise ValueError(f"config section [{where}] must be a table, found {type(table).__name__}")
    return ProtocolConfig.from_dict({**(COMPAT_PROTOCOL if compat else {}), **table}, where)


def protocol_table(config: ProtocolConfig, compat: bool = False) -> dict[str, Any]:
    """The ``[protocol]`` table of ``config``: the fields that differ from the defaults (those of
    ``compat`` mode with it), tuples as lists; :func:`protocol_config` of it gives ``config`` back."""
    base = protocol_config({}, compat).to_dict()
    return {k: list(v) if isinstance(v, tuple) else v for k, v in config.to_dict().items() if v != base[k]}
