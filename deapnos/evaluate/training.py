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
    if epochs < 0:
        raise ValueError(f"need epochs >= 0, got {epochs}")
    run = Training(model, optimizer, train_data, steps_per_epoch=steps_per_epoch, scheduler=scheduler,
                   loss_fn=loss_fn, accuracy_fn=accuracy_fn, metric=metric, device=device, deadline=deadline,
                   check_every=check_every)
    old_threads = None
    if num_threads is not None:
        old_threads = torch.get_num_threads()
        torch.set_num_threads(num_threads)
    try:
        return run.go_on(epochs, val_data=val_data, early_stop=early_stop, on_epoch=on_epoch)
    finally:
        if old_threads is not None:
            torch.set_num_threads(old_threads)


def _rng_state(device: torch.device, generator) -> tuple:
    cuda = torch.cuda.get_rng_state(device) if device.type == "cuda" else None
    return torch.get_rng_state(), cuda, generator.get_state() if generator is not None else None


def _set_rng_state(state: tuple, device: torch.device, generator) -> None:
    cpu, cuda, data = state
    torch.set_rng_state(cpu)
    if cuda is not None:
        torch.cuda.set_rng_state(cuda, device)
    if data is not None and generator is not None:
        generator.set_state(data)


class Training:
    """One training run that can stop at an epoch's end and go on later, as if it had never stopped.

    :func:`train` is one :meth:`go_on`.  The protocol runs several at once (the LR screen's runs, of
    which the chosen one goes on into the full run), so a run that pauses keeps its random state
    (torch's global generator, CUDA's, and the data order's ``generator``) and takes it back when it
    goes on (and the state it was built in, for its first epoch): runs in between cannot change its
    batches or its dropout.  ``snapshots``: keep the
    model's state at each epoch's end (:meth:`fill_validation` scores them later).
    """

    def __init__(self, model: torch.nn.Module, optimizer, train_data: Iterable, *, steps_per_epoch: int,
                 scheduler=None, loss_fn: Callable = cross_entropy, accuracy_fn: Callable = accuracy_counts,
                 metric: str = "accuracy", device=None, deadline: float | None = None, check_every: int = 1,
                 generator: torch.Generator | None = None, snapshots: bool = False):
        if check_every < 1:
            raise ValueError(f"check_every must be >= 1, got {check_every}")
        if steps_per_epoch < 1:
            raise ValueError(f"need steps_per_epoch >= 1, got {steps_per_epoch}")
        if device is None:
            device = next((p.device for p in model.parameters()), torch.device("cpu"))
        self.model, self.optimizer, self.train_data = model, optimizer, train_data
        self.steps_per_epoch, self.scheduler = steps_per_epoch, scheduler
        self.loss_fn, self.accuracy_fn, self.metric = loss_fn, accuracy_fn, metric
        self.device = torch.device(device)
        self.deadline, self.check_every = deadline, check_every
        self.generator = generator
        self.outcome = TrainOutcome()
        self.finished = False         # diverged or stopped early: it cannot go on
        self.snapshots: list[dict] | None = [] if snapshots else None
        self._batches = None
        self._fresh = True            # the batch iterator has not yielded anything yet (empty data)
        self._step = 0
        self._epoch = 0
        self._bad: torch.Tensor | None = None   # device flag: a non-finite loss since the last check
        self._first_unchecked = 0
        # the random state the run starts from: a run built before others train goes on from it
        self._paused: tuple | None = _rng_state(self.device, generator)

    @property
    def epochs_done(self) -> int:
        return self._epoch

    def go_on(self, epochs: int, *, val_data: Iterable | None = None,
              early_stop: Callable[[int, dict], bool] | None = None,
              on_epoch: Callable[[dict], None] | None = None, pause: bool = False) -> TrainOutcome:
        """Train ``epochs`` more epochs (fewer if the run diverges or ``early_stop`` fires); returns
        the outcome so far.  ``pause``: keep the random state for a later :meth:`go_on`."""
        if self.finished or epochs <= 0:
            return self.outcome
        if self._paused is not None:
            _set_rng_state(self._paused, self.device, self.generator)
            self._paused = None
        t0 = time.perf_counter()
        try:
            self._loop(epochs, val_data, early_stop, on_epoch)
        finally:
            self.outcome.seconds += time.perf_counter() - t0
            if pause and not self.finished:
                self._paused = _rng_state(self.device, self.generator)
        return self.outcome

    def skip_to(self, outcome: TrainOutcome, snapshots: list[dict] | None = None) -> None:
        """This new run as if it had trained to ``outcome`` itself: the caller has set the weights and
        the optimizer's state (a member of a batched run, :mod:`deapnos.evaluate.batched`).  The data
        order is drawn again up to where those steps left it, so the run goes on with the batches it
        would have seen; ``snapshots``: the model's state at each of those epochs' ends."""
        if self._step or self._epoch or self._paused is None:
            raise RuntimeError("skip_to: this run has trained already")
        _set_rng_state(self._paused, self.device, self.generator)
        for _ in range(outcome.steps):
            self._draw()
        self._paused = _rng_state(self.device, self.generator)
        self._step, self._epoch = outcome.steps, len(outcome.curve)
        self._first_unchecked = outcome.steps
        self.outcome = outcome
        self.finished = outcome.diverged or outcome.stopped_early
        if self.snapshots is not None:
            self.snapshots = list(snapshots or [])

    def _stop(self, why: str, step: int) -> None:
        self.outcome.diverged = True
        self.outcome.divergence = why
        self.outcome.steps = step
        self.finished = True

    def _draw(self):
        """The next batch as the data yields it (a new pass when one ends)."""
        if self._batches is None:
            self._batches = iter(self.train_data)
        try:
            x, y = next(self._batches)
        except StopIteration:
            if self._fresh:
                raise ValueError("training data yields no batches") from None
            self._batches, self._fresh = iter(self.train_data), True
            x, y = next(self._batches)
        self._fresh = False
        return x, y

    def _next_batch(self):
        x, y = self._draw()
        return _to(x, self.device), _to(y, self.device)

    def _loop(self, epochs, val_data, early_stop, on_epoch) -> None:
        model, optimizer, outcome, device = self.model, self.optimizer, self.outcome, self.device
        model.train()
        watch_optimizer = getattr(optimizer, "check_finite", False)
        check_every = self.check_every
        step = self._step
        for _ in range(epochs):
            epoch = self._epoch
            loss_sum = torch.zeros((), dtype=torch.float64, device=device)
            correct = torch.zeros((), dtype=torch.float64, device=device)
            count = 0
            for _ in range(self.steps_per_epoch):
                if self.deadline is not None and time.monotonic() > self.deadline:
                    raise TrainingTimeout(f"wall-clock budget exhausted at step {step}")
                x, y = self._next_batch()
                optimizer.zero_grad(set_to_none=True)
                out = model(x)
                loss = self.loss_fn(out, y)
                lv = loss.detach()
                if step == 0:
                    outcome.initial_loss = float(lv)
                if check_every == 1:
                    if not bool(torch.isfinite(lv)):
                        return self._stop(f"loss is {float(lv)} at step {step} (epoch {epoch})", step)
                else:
                    flag = ~torch.isfinite(lv)
                    self._bad = flag if self._bad is None else self._bad | flag
                    if (step + 1) % check_every == 0:
                        if bool(self._bad):
                            return self._stop(f"non-finite loss within steps {self._first_unchecked}-{step} "
                                              f"(epoch {epoch})", step)
                        self._bad, self._first_unchecked = None, step + 1
                loss.backward()
                optimizer.step()
                if self.scheduler is not None:
                    self.scheduler.step()
                step += 1
                self._step = step
                c, n = self.accuracy_fn(out.detach(), y)
                loss_sum += lv.double() * n
                correct += c
                count += n
                if watch_optimizer and getattr(optimizer, "diverged", False):
                    return self._stop(getattr(optimizer, "divergence", None) or f"non-finite update at step {step}",
                                      step)
            outcome.steps = step
            if self._bad is not None and bool(self._bad):
                self._stop(f"non-finite loss within steps {self._first_unchecked}-{step - 1} (epoch {epoch})", step)
                return
            if not _params_finite(model):
                self._stop(f"parameters are not finite after step {step} (epoch {epoch})", step)
                return
            self._epoch += 1
            record = {"epoch": epoch, "step": step, "train_loss": float(loss_sum) / count,
                      "train_acc": float(correct) / count, "lr": _current_lr(optimizer, self.scheduler)}
            if val_data is not None:
                record.update(validate(model, val_data, device, self.loss_fn, self.accuracy_fn, self.metric))
            if self.snapshots is not None:
                # on the CPU: a screen's runs would otherwise hold several copies of a large model on the GPU
                self.snapshots.append({k: v.detach().to('cpu', copy=True) for k, v in model.state_dict().items()})
            outcome.curve.append(record)
            if on_epoch is not None:
                on_epoch(record)
            # the callback also sees the untrained model's loss, for stops relative to it
            if early_stop is not None and early_stop(epoch, {**record, "initial_loss": outcome.initial_loss}):
                outcome.stopped_early = True
                self.finished = True
                return

    def fill_validation(self, val_data: Iterable) -> None:
        """Score the epochs trained without validation data from their snapshots, as if the run had
        been validated all along (the full run that goes on from a screening run)."""
        missing = [i for i, r in enumerate(self.outcome.curve) if "val_score" not in r]
        if not missing:
            return
        if self.snapshots is None or len(self.snapshots) != len(self.outcome.curve):
            raise RuntimeError("this run kept no snapshots of its epochs")
        now = {k: v.detach().clone() for k, v in self.model.state_dict().items()}
        try:
            for i in missing:
                self.model.load_state_dict(self.snapshots[i])
                self.outcome.curve[i].update(validate(self.model, val_data, self.device, self.loss_fn,
                                                      self.accuracy_fn, self.metric))
        finally:
            self.model.load_state_dict(now)
        self.snapshots = None
