"""The generic supervised training loop that tasks reuse.

Provides :func:`train` (``epochs`` x ``steps_per_epoch`` steps; records per-epoch train and validation
scores; stops on divergence, on ``early_stop`` or at a ``deadline``), :class:`TrainOutcome` and
:class:`TrainingTimeout`.  It draws no random numbers itself: seed the model and the data first.
Details: docs/evaluation.md, "Tasks" (the shared training loop).
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from collections.abc import Callable, Iterable

import torch

from .tasks import accuracy_counts, cross_entropy


class TrainingTimeout(Exception):
    """The wall-clock deadline passed during training."""


@dataclass
class TrainOutcome:
    """What :func:`train` returns; ``curve`` holds one dict per finished epoch."""
    curve: list[dict] = field(default_factory=list)
    steps: int = 0
    diverged: bool = False
    divergence: str = ""
    stopped_early: bool = False
    seconds: float = 0.0
    initial_loss: float | None = None   # loss of the first batch before any update (the untrained model)

    @property
    def best_train_acc(self) -> float:
        return max((r["train_acc"] for r in self.curve), default=0.0)

    def best(self, key: str = "val_score") -> float | None:
        values = [r[key] for r in self.curve if r.get(key) is not None]
        return max(values) if values else None


def score_from(metric: str, val_acc: float, val_loss: float) -> float:
    """The validation score a fitness is taken from: accuracy, exp(-loss) = 1/perplexity, or
    -ln(loss) (``log_loss``; -inf for a non-finite or negative loss, +inf for a zero loss)."""
    if metric == "accuracy":
        return val_acc
    if metric == "inv_perplexity":
        return math.exp(-val_loss) if math.isfinite(val_loss) else 0.0
    if metric == "log_loss":
        if not math.isfinite(val_loss) or val_loss < 0:
            return -math.inf
        return -math.log(val_loss) if val_loss > 0 else math.inf
    raise ValueError(f"unknown metric {metric!r}")


@torch.no_grad()
def validate(model: torch.nn.Module, data: Iterable, device, loss_fn: Callable = cross_entropy,
             accuracy_fn: Callable = accuracy_counts, metric: str = "accuracy") -> dict:
    """Loss (mean per prediction), accuracy and score of ``model`` over all batches of ``data``."""
    was_training = model.training
    model.eval()
    loss_sum = torch.zeros((), dtype=torch.float64, device=device)
    correct = torch.zeros((), dtype=torch.float64, device=device)
    count = 0
    try:
        for x, y in data:
            x, y = _to(x, device), _to(y, device)
            out = model(x)
            c, n = accuracy_fn(out, y)
            loss_sum += loss_fn(out, y).double() * n
            correct += c
            count += n
    finally:
        model.train(was_training)
    if count == 0:
        raise ValueError("validation data yields no batches")
    val_loss = float(loss_sum) / count
    val_acc = float(correct) / count
    return {"val_loss": val_loss, "val_acc": val_acc, "val_score": score_from(metric, val_acc, val_loss)}


def _to(x, device):
    if isinstance(x, torch.Tensor):
        return x.to(device, non_blocking=True)
    if isinstance(x, (list, tuple)):
        return type(x)(_to(v, device) for v in x)
    return x


def _current_lr(optimizer, scheduler) -> float:
    if hasattr(optimizer, "lr_at"):
        return float(optimizer.lr_at(max(getattr(optimizer, "step_count", 1) - 1, 0)))
    return float(optimizer.param_groups[0]["lr"])


def _params_finite(model: torch.nn.Module) -> bool:
    params = [p.detach() for p in model.parameters()]
    if not params:
        return True
    norms = torch._foreach_norm(params, float("inf"))
    return bool(torch.isfinite(torch.stack(norms)).all())


def train(model: torch.nn.Module, optimizer: torch.optim.Optimizer, train_data: Iterable, *, epochs: int,
          steps_per_epoch: int, scheduler=None, val_data: Iterable | None = None,
          loss_fn: Callable = cross_entropy, accuracy_fn: Callable = accuracy_counts, metric: str = "accuracy",
          device=None, early_stop: Callable[[int, dict], bool] | None = None, deadline: float | None = None,
          num_threads: int | None = None, on_epoch: Callable[[dict], None] | None = None,
          check_every: int = 1) -> TrainOutcome:
    """Train ``model`` (already on ``device``) and return a :class:`TrainOutcome` (module docstring).

    ``scheduler``: stepped once after every optimizer step (e.g. a ``LambdaLR``).  ``on_epoch``: called
    with each epoch's record (progress reporting).  ``check_every``: test the loss for NaN/inf every
    this many steps (1: every step, as Keras' TerminateOnNaN; larger values save a device
    synchronisation per step on GPUs, and the divergence is then reported within a span of steps).
    """
    if check_every < 1:
        raise ValueError(f"check_every must be >= 1, got {check_every}")
    if epochs < 0 or steps_per_epoch < 1:
        raise ValueError(f"need epochs >= 0 and steps_per_epoch >= 1, got {epochs} and {steps_per_epoch}")
    if device is None:
        device = next((p.device for p in model.parameters()), torch.device("cpu"))
    device = torch.device(device)
    old_threads = None
    if num_threads is not None:
        old_threads = torch.get_num_threads()
        torch.set_num_threads(num_threads)
    t0 = time.perf_counter()
    outcome = TrainOutcome()
    try:
        _train_loop(model, optimizer, train_data, epochs, steps_per_epoch, scheduler, val_data, loss_fn,
                    accuracy_fn, metric, device, early_stop, deadline, on_epoch, check_every, outcome)
    finally:
        outcome.seconds = time.perf_counter() - t0
        if old_threads is not None:
            torch.set_num_threads(old_threads)
    return outcome


def _train_loop(model, optimizer, train_data, epochs, steps_per_epoch, scheduler, val_data, loss_fn,
                accuracy_fn, metric, device, early_stop, deadline, on_epoch, check_every, outcome: TrainOutcome):
    model.train()
    batches = iter(train_data)
    fresh = True          # `batches` has not yielded anything yet (to detect empty data)
    watch_optimizer = getattr(optimizer, "check_finite", False)
    step = 0
    bad = None            # device flag: a non-finite loss since the last check (check_every > 1)
    first_unchecked = 0
    for epoch in range(epochs):
        loss_sum = torch.zeros((), dtype=torch.float64, device=device)
        correct = torch.zeros((), dtype=torch.float64, device=device)
        count = 0
        for _ in range(steps_per_epoch):
            if deadline is not None and time.monotonic() > deadline:
                raise TrainingTimeout(f"wall-clock budget exhausted at step {step}")
            try:
                x, y = next(batches)
            except StopIteration:
                if fresh:
                    raise ValueError("training data yields no batches") from None
                batches, fresh = iter(train_data), True
                x, y = next(batches)
            fresh = False
            x, y = _to(x, device), _to(y, device)
            optimizer.zero_grad(set_to_none=True)
            out = model(x)
            loss = loss_fn(out, y)
            lv = loss.detach()
            if step == 0:
                outcome.initial_loss = float(lv)
            if check_every == 1:
                if not bool(torch.isfinite(lv)):
                    outcome.diverged = True
                    outcome.divergence = f"loss is {float(lv)} at step {step} (epoch {epoch})"
                    outcome.steps = step
                    return
            else:
                flag = ~torch.isfinite(lv)
                bad = flag if bad is None else bad | flag
                if (step + 1) % check_every == 0:
                    if bool(bad):
                        outcome.diverged = True
                        outcome.divergence = (f"non-finite loss within steps {first_unchecked}-{step} "
                                              f"(epoch {epoch})")
                        outcome.steps = step
                        return
                    bad, first_unchecked = None, step + 1
            loss.backward()
            optimizer.step()
            if scheduler is not None:
                scheduler.step()
            step += 1
            c, n = accuracy_fn(out.detach(), y)
            loss_sum += lv.double() * n
            correct += c
            count += n
            if watch_optimizer and getattr(optimizer, "diverged", False):
                outcome.diverged = True
                outcome.divergence = getattr(optimizer, "divergence", None) or f"non-finite update at step {step}"
                outcome.steps = step
                return
        outcome.steps = step
        if bad is not None and bool(bad):
            outcome.diverged = True
            outcome.divergence = f"non-finite loss within steps {first_unchecked}-{step - 1} (epoch {epoch})"
            return
        if not _params_finite(model):
            outcome.diverged = True
            outcome.divergence = f"parameters are not finite after step {step} (epoch {epoch})"
            return
        record = {"epoch": epoch, "step": step, "train_loss": float(loss_sum) / count,
                  "train_acc": float(correct) / count, "lr": _current_lr(optimizer, scheduler)}
        if val_data is not None:
            record.update(validate(model, val_data, device, loss_fn, accuracy_fn, metric))
        outcome.curve.append(record)
        if on_epoch is not None:
            on_epoch(record)
        # the callback also sees the untrained model's loss, for stops relative to it
        if early_stop is not None and early_stop(epoch, {**record, "initial_loss": outcome.initial_loss}):
            outcome.stopped_early = True
            return
