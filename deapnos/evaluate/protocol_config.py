"""The numbers of the evaluation protocol (:class:`ProtocolConfig`, a config's ``[protocol]``).

Light on purpose (no torch): the config reads it.  :func:`protocol_config` builds the protocol of a
``[protocol]`` table (with ``run.compat``'s defaults under it), :func:`protocol_table` writes back the
fields that differ from those defaults.  Details: docs/evaluation.md, "The protocol".
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from ..schema import Rules, SchemaError, check_fields, parse, setting

if TYPE_CHECKING:
    from .tasks import Task

SCREENS = ("relative", "paper")
SCREEN_CHOICES = ("validation", "progress")
SCORES = ("final", "best")
SCREEN_SCHEDULES = ("grid", "halving")


# an integer stays one (step_scale = 2 is hashed as written into the config fingerprint of a run
# folder, which must still resume); inf and NaN are refused
PROTOCOL_RULES = Rules(keep_ints=True)
LR_MAX = 1e6            # learning rates and LR multipliers: generous, but finite
EPOCHS_MAX = 100000


def _p(default, doc: str = "", **constraints):
    """A protocol field: :func:`deapnos.schema.setting`."""
    return setting(default, doc, **constraints)


@dataclass
class ProtocolConfig:
    """Every number of the protocol (docs/evaluation.md, "The protocol").  The LR grid and the ``paper`` screen's
    thresholds are the paper's; ``screen`` defaults to the task-agnostic ``relative`` rule.  Declared once
    (types and bounds, :mod:`deapnos.schema`): :meth:`from_dict` and every construction check the same."""
    screen: Literal["relative", "paper"] = _p("relative", "relative | paper (docs/evaluation.md)")
    diverge_factor: float = _p(3.0, "relative: a train loss above this x the initial loss diverges", above=1,
                               maximum=1e12)
    min_progress: float = _p(0.02, "relative: screened out unless some LR removes this share of the loss",
                             minimum=0, below=1)
    screen_choice: Literal["validation", "progress"] = _p(
        "validation", "relative: the LR whose screening run scores best on validation, or progress (the most "
        "training loss removed: overfits small data)")
    score: Literal["final", "best"] = _p("final", "the fitness of a run: its validation score at the end of the "
                                         "schedule (final, the model a user gets) or its peak (best)")
    screen_lrs_a: tuple[float, ...] = _p((10.0, 1e-2, 1e-5), "stage A of the LR screen", above=0, maximum=LR_MAX)
    screen_lrs_b: tuple[float, ...] = _p((1.0, 1e-1, 1e-3, 1e-4), "stage B of the LR screen", above=0,
                                         maximum=LR_MAX)
    screen_epochs: int = _p(4, "epochs of a screening run", minimum=1, maximum=EPOCHS_MAX)
    screen_early_stop_epoch: int = _p(2, minimum=0, maximum=EPOCHS_MAX)
    screen_early_stop_acc: float = _p(0.25, minimum=0, maximum=1)
    stage_a_threshold: float = _p(0.25, minimum=0, maximum=1)
    threshold: float = _p(0.40, minimum=0, maximum=1)
    epochs: int | None = _p(None, "full run; None: the task's (40 for the built-in tasks)", minimum=1,
                            maximum=EPOCHS_MAX)
    full_early_stop_epoch: int = _p(4, minimum=0, maximum=EPOCHS_MAX)
    full_early_stop_acc: float = _p(0.40, minimum=0, maximum=1)
    step_scale: float = _p(1.0, "multiplies steps per epoch, T and W (cheap smoke runs)", above=0, maximum=1000)
    lr: float | None = _p(None, "a fixed peak LR: skip the screen", above=0, maximum=LR_MAX)
    shuffle: bool = _p(True, "False: the paper's fixed batch order")
    keep_best_on_divergence: bool = _p(False)
    fresh_seed: bool = _p(False, "True: every run draws a new seed (the original set none)")
    check_finite: bool = _p(False, "EvolvedOptimizer checks every update (one reduction a step)")
    nan_check_every: int = _p(1, "test the loss for NaN/inf every N steps (GPU: >1 saves syncs)", minimum=1,
                              maximum=1000000)
    timeout_s: float | None = _p(None, "wall-clock budget of one evaluation", above=0, maximum=1e7)
    num_threads: int | None = _p(None, "torch.set_num_threads during the evaluation", minimum=1, maximum=1024)
    evaluate_test: bool = _p(False, "score the final model on the task's test split, if it has one")
    apply_task_overrides: bool = _p(True, "let a task adjust fields (its protocol_overrides)")
    # "grid" screens every LR for screen_epochs; "halving" gives every LR one epoch and the best third
    # the full screen (relative screen only; deapnos/evaluate/halving.py).  Halving is the default: on
    # the quickstart's candidates it agrees with the grid on 95% of LRs and 97% of verdicts, and with
    # runs that go on and the cut on 93% and 97%, at 2x the evaluations per core-minute
    # (benchmarks/evaluation_throughput.py, docs/evaluation.md "Throughput")
    screen_schedule: Literal["grid", "halving"] = _p("halving", "halving | grid: the LR screen's schedule")
    # the evaluations a search reports as verdicts (elimination rungs, held-out validation, the horizon
    # check) are few and decide what a user reads: halving can drop the grid's best LR after its first
    # rung (a short warm-up favours large LRs), so they screen the whole grid unless told otherwise
    verdict_schedule: Literal["grid", "halving"] = _p("grid", "grid | halving: the LR screen's schedule in a "
                                                      "search's elimination rungs, held-out validation and "
                                                      "horizon check")
    # issue 16: the full run goes on from its LR's screening run, and halving's survivors from their
    # first rung, instead of training the same steps again (the same results: docs/evaluation.md)
    reuse_screen: bool = _p(True, "the full run goes on from the chosen LR's screening run (relative screen, "
                            "same steps per epoch)")
    # issue 16: a full run that cannot catch up with the reference stops (search with relative fitness)
    cut_factor: float | None = _p(2.0, "stop a run whose score, gaining this x its best recent gain per epoch "
                                  "until the end, would still end below the reference's (0 or None: never)",
                                  minimum=0, maximum=1e6)
    # issue 16: screen K LRs of a genome in one vmapped run (0: one run per LR; deapnos/evaluate/batched.py)
    # whose members go on as sequential runs (reuse_screen); models vmap cannot run fall back to one run
    # per LR.  0 by default: bit for bit the sequential runs; the quickstart sets 7 (+13-16% on a CPU)
    batch_lrs: int = _p(0, "0: one run per LR; K >= 1: a batch of K LRs in one vmapped run", minimum=0,
                        maximum=4096)

    def __post_init__(self):
        check_fields(self, "protocol", PROTOCOL_RULES)     # types and bounds, as declared above
        self.screen_lrs_a = tuple(float(v) for v in self.screen_lrs_a)
        self.screen_lrs_b = tuple(float(v) for v in self.screen_lrs_b)
        if not self.screen_lrs_a and self.lr is None:
            raise ValueError("screen_lrs_a is empty and no fixed lr is given")

    @classmethod
    def from_dict(cls, data: dict, where: str = "protocol") -> ProtocolConfig:
        """A config from a ``[protocol]`` table: the one place its fields are checked.  Raises
        ValueError naming the field (``protocol.NAME``)."""
        if not isinstance(data, dict):
            raise ValueError(f"config section [{where}] must be a table, found {type(data).__name__}")
        try:
            return parse(cls, data, where, PROTOCOL_RULES)
        except SchemaError as exc:
            if exc.kind == "value":             # a check across fields
                raise ValueError(f"config section [{where}]: {exc.problem}") from None
            raise ValueError(exc.describe("config field")) from None

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
