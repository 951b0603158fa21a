"""The pieces of one training run that the protocol and the batched screen share: the failure
that ends an evaluation (with where it happened), a seeded fresh model, the validation score and
the progress of a run.  Below both (:mod:`deapnos.evaluate.protocol`, :mod:`.batched`), so that
neither imports the other back.  Also the untrained model's loss, the yardstick of the relative
screen's progress."""
from __future__ import annotations

import math
import os
import traceback

import torch

from .tasks import Task, TaskDataError


class _Failure(Exception):
    """Internal: ends an evaluation with a status and message."""

    def __init__(self, status: str, message: str):
        super().__init__(message)
        self.status, self.message = status, message


def _where(exc: BaseException) -> str:
    """``file:line in function`` of the innermost frame of ``exc``'s traceback."""
    tb = traceback.extract_tb(exc.__traceback__)
    if not tb:
        return ""
    fr = tb[-1]
    return f" [at {os.path.basename(fr.filename)}:{fr.lineno} in {fr.name}]"


def _error(task: Task | None, phase: str, exc: BaseException) -> _Failure:
    if isinstance(exc, TaskDataError):
        return _Failure("error", str(exc))
    msg = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    who = f"task {task.name!r} (plugin {task.provider!r})" if task is not None else "evaluation"
    return _Failure("error", f"{who}: {phase} raised {type(exc).__name__}" + (f": {msg}" if msg else "")
                    + _where(exc))


def progress(outcome, untrained: float) -> float:
    """Share of the untrained model's loss that the best epoch removed: ``1 - best / untrained``
    (0 when the loss never fell; negative when it rose)."""
    losses = [r["train_loss"] for r in outcome.curve if math.isfinite(r.get("train_loss", math.nan))]
    if not losses or not math.isfinite(untrained) or untrained <= 0:
        return 0.0
    return 1.0 - min(losses) / untrained


def seed_torch(seed: int, device) -> None:
    """``torch.manual_seed(seed)`` for a run on ``device``.  On the CPU, with CUDA not started, only
    the CPU generator is seeded: ``torch.manual_seed`` would also queue a CUDA seeding for later, with
    a captured stack trace, which costs a millisecond a run and grows a queue that is never read."""
    if torch.device(device).type == "cpu" and not torch.cuda.is_initialized():
        torch.default_generator.manual_seed(seed)
    else:
        torch.manual_seed(seed)


def _seeded_model(task: Task, data, seed: int, device) -> torch.nn.Module:
    """A fresh model from ``seed``, with the data order re-seeded too (common random numbers)."""
    seed_torch(seed, device)
    if data.generator is not None:
        data.generator.manual_seed(seed)
    try:
        return task.build_model(data.num_classes).to(device)
    except Exception as exc:  # noqa: BLE001
        raise _error(task, "building the model", exc) from None


def _val_score(model, task: Task, data, device, record: dict | None = None) -> float | None:
    """The validation score of ``model`` (None when it cannot be computed: not finite).  ``record``:
    also gets the validation's loss, accuracy and score (an epoch record of the run's curve)."""
    from .training import validate
    try:
        scored = validate(model, data.val, device, task.loss, task.accuracy, task.metric)
    except Exception as exc:  # noqa: BLE001
        raise _error(task, "validating a screening run", exc) from None
    if record is not None:
        record.update(scored)
    value = scored["val_score"]
    return float(value) if math.isfinite(value) else None


@torch.no_grad()
def _untrained_loss(task: Task, data, seed: int, steps: int, device) -> float:
    """Mean training loss of the untrained model over the first ``steps`` batches: the same model
    and batches every screening run starts from (forward passes only, in training mode)."""
    model = _seeded_model(task, data, seed, device)
    model.train()
    total, n, batches = 0.0, 0, iter(data.train)
    for _ in range(steps):
        try:
            x, y = next(batches)
        except StopIteration:
            batches = iter(data.train)
            x, y = next(batches)
        total += float(task.loss(model(x.to(device)), y.to(device)))
        n += 1
    return total / max(n, 1)
