"""One candidate at K learning rates in one batched forward/backward pass (issue 16, item 2).

Provides :func:`train_batched`: K copies of one model's parameters stacked on a leading axis,
``torch.func.functional_call`` under ``vmap`` for the forward pass, and one :class:`EvolvedOptimizer`
over the stacked tensors whose update is scaled per member by that member's peak LR.  Every kind of
momentum is linear in the LR, so member k's update equals the sequential run's at LR k (to float
rounding).  All members see the same batches (same seed).  Buffers are stacked too, so batch norm
keeps its running statistics per member.  Models vmap cannot run (random ops such as dropout,
data-dependent control flow) raise :class:`NotBatchable` before training, and the caller falls back
to sequential runs.  Details: docs/evaluation.md, "Throughput".
"""
from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Sequence
from contextlib import contextmanager

import torch

from ..optim.optimizer import EvolvedOptimizer
from .tasks import accuracy_counts
from .training import TrainingTimeout, TrainOutcome, _to

log = logging.getLogger(__name__)


class NotBatchable(RuntimeError):
    """The model cannot run under ``vmap``; train the members one after another instead."""


def check_k(k: int) -> int:
    if not isinstance(k, int) or isinstance(k, bool) or k < 1:
        raise ValueError(f"batch_lrs: a batch of K learning rates needs K >= 1, got {k!r}")
    return k


class _StackedEvolvedOptimizer(EvolvedOptimizer):
    """An EvolvedOptimizer at peak LR 1 whose increments are multiplied per member by ``lrs[k]``."""

    def __init__(self, params, genome, lrs: Sequence[float], **kwargs):
        self.member_lrs = [float(v) for v in lrs]
        super().__init__(params, genome, lr=1.0, **kwargs)

    def _make_bucket(self, params):
        bucket = super()._make_bucket(params)
        # per-element LR: member k owns the contiguous k-th slice of every stacked parameter
        lrs = torch.tensor(self.member_lrs, device=bucket.device, dtype=bucket.cdtype)
        scale = torch.cat([lrs.repeat_interleave(p[0].numel()) for p in params])
        scaled = torch.empty_like(scale)
        plain = bucket.add_to_params
        bucket.engine.direction_parts = None      # the fused addcdiv path has no per-member LR
        # ops over tensor boundaries (norm) see each member's own tensors, not the K stacked copies
        bucket.engine.sizes = [p[0].numel() for p in params for _ in range(p.shape[0])]

        def add_to_params(delta, alpha=1.0):
            plain(torch.mul(delta, scale, out=scaled), alpha)
        bucket.add_to_params = add_to_params
        return bucket


def _stack(t: torch.Tensor, k: int) -> torch.Tensor:
    return t.detach().unsqueeze(0).repeat(k, *([1] * t.dim()))


def _stacked_forward(model: torch.nn.Module, k: int):
    """(params, buffers, f): stacked leaf parameters, stacked buffers and f(params, x) -> (K, ...)
    outputs.  Buffers are stacked too, so that batch norm keeps one set of running statistics per
    member (vmap updates a batched buffer in place; an unbatched one it cannot)."""
    from torch.func import functional_call, vmap
    params = {n: _stack(p, k).requires_grad_() for n, p in model.named_parameters()}
    buffers = {n: _stack(b, k) for n, b in model.named_buffers()}

    def one(p, b, x):
        return functional_call(model, (p, b), (x,))
    batched = vmap(one, in_dims=(0, 0, None))
    return params, buffers, lambda p, x: batched(p, buffers, x)


@contextmanager
def _refusal(first_step: bool):
    """On the first step, any failure means vmap cannot run the model: :class:`NotBatchable` (nothing
    was updated yet, so the caller can run the members one after another)."""
    if not first_step:
        yield
        return
    try:
        yield
    except Exception as exc:  # noqa: BLE001 - any failure under vmap means: run sequentially
        text = str(exc).strip()
        raise NotBatchable(f"{type(exc).__name__}: {text.splitlines()[0] if text else ''}") from None


def _member_losses(loss_fn: Callable, k: int) -> Callable:
    """``f(out, y)`` -> the K members' losses: the task's loss under ``vmap`` (one call), or one call
    per member for a loss vmap cannot run."""
    from torch.func import vmap
    batched = vmap(loss_fn, in_dims=(0, None))
    state = {"vmap": True}

    def losses(out, y):
        if state["vmap"]:
            try:
                return batched(out, y)
            except Exception:  # noqa: BLE001 - a loss vmap cannot run: per member from now on
                state["vmap"] = False
        return torch.stack([loss_fn(out[i], y) for i in range(k)])
    return losses


def train_batched(model: torch.nn.Module, genome, lrs: Sequence[float], train_data, *, epochs: int,
                  steps_per_epoch: int, total_steps: int, warmup_steps: int, loss_fn: Callable,
                  accuracy_fn: Callable, device, seed: int = 0,
                  early_stop: Callable[[int, int, dict], bool] | None = None,
                  deadline: float | None = None, snapshots: list | None = None, optimizer: list | None = None,
                  check_every: int = 1) -> tuple[list[TrainOutcome], list[dict]]:
    """Train ``model``'s initial weights at each LR of ``lrs`` at once, as :func:`training.train` would
    one after another (loss checked every step, parameters at each epoch's end).

    ``early_stop(member, epoch, record)`` stops one member.  Returns one :class:`TrainOutcome` per
    member and each member's final parameters (by name).  Raises :class:`NotBatchable` when the first
    forward/backward pass fails under ``vmap``, or when the genome's update draws random numbers or
    runs plugin code (:func:`deapnos.optim.compiler.member_problem`).

    ``snapshots`` (a list): gets, per member, its ``state_dict`` (on the CPU) at each of its epochs'
    ends; ``optimizer`` (a list): gets the stacked optimizer (:func:`member_state`
    takes a member's state out of it).  ``check_every``: read the members' losses back every this
    many steps and at each epoch's end, as :class:`~deapnos.evaluate.training.Training` does (a
    GPU then waits for the host less often); a member whose loss went non-finite in between is
    reported diverged within that span of steps.
    """
    k = check_k(len(lrs))
    if check_every < 1:
        raise ValueError(f"check_every must be >= 1, got {check_every}")
    from ..optim.compiler import member_problem
    model.train()
    params, buffers, forward = _stacked_forward(model, k)
    plist = list(params.values())
    opt = _StackedEvolvedOptimizer(plist, genome, lrs, total_steps=total_steps, warmup_steps=warmup_steps,
                                   seed=seed)
    if optimizer is not None:
        optimizer.append(opt)
    if snapshots is not None:
        snapshots[:] = [[] for _ in range(k)]
        saved = model.state_dict().keys()       # a snapshot holds what state_dict holds
    problem = member_problem(opt.plan)
    if problem is not None:
        raise NotBatchable(f"genome {opt.genome.to_text()}: {problem}")
    batches = iter(train_data)
    pending: tuple | None = None
    try:
        x, y = next(batches)
    except StopIteration:
        raise ValueError("training data yields no batches") from None
    pending = (x, y)    # drawn to fail early on empty data; it is step 0's batch
    member_losses = _member_losses(loss_fn, k)
    outcomes = [TrainOutcome() for _ in range(k)]
    active = [True] * k
    t0 = time.perf_counter()
    step = 0
    fresh = False
    bad: torch.Tensor | None = None     # per member: a non-finite loss since the last check
    first_unchecked = 0

    def diverge(members, why: str, at: int) -> None:
        """Members ``members`` (those still training) diverged at step ``at``."""
        for i in members:
            if active[i]:
                active[i] = False
                outcomes[i].diverged, outcomes[i].divergence, outcomes[i].steps = True, why, at

    def flagged(flags: torch.Tensor) -> list[int]:
        return [i for i, b in enumerate(flags.tolist()) if b]
    for epoch in range(epochs):
        loss_sum = torch.zeros(k, dtype=torch.float64, device=device)
        correct = torch.zeros(k, dtype=torch.float64, device=device)
        count = 0
        for _ in range(steps_per_epoch):
            if deadline is not None and time.monotonic() > deadline:
                raise TrainingTimeout(f"wall-clock budget exhausted at step {step}")
            try:
                x, y = pending if pending is not None else next(batches)
                pending = None
            except StopIteration:
                if fresh:
                    raise ValueError("training data yields no batches") from None
                batches, fresh = iter(train_data), True
                x, y = next(batches)
            fresh = False
            x, y = _to(x, device), _to(y, device)
            for p in plist:
                p.grad = None
            with _refusal(step == 0):   # a model vmap cannot run fails at step 0, before any update
                out = forward(params, x)
                losses = member_losses(out, y)
            lv = losses.detach()
            if step == 0:
                for i, value in enumerate(lv.tolist()):
                    outcomes[i].initial_loss = value
            if check_every == 1:
                for i, value in enumerate(lv.tolist()):
                    if not math.isfinite(value):
                        diverge([i], f"loss is {value} at step {step} (epoch {epoch})", step)
            else:
                flag = ~torch.isfinite(lv)
                bad = flag if bad is None else bad | flag
                if (step + 1) % check_every == 0:
                    diverge(flagged(bad), f"non-finite loss within steps {first_unchecked}-{step} (epoch {epoch})",
                            step)
                    bad, first_unchecked = None, step + 1
            if not any(active):
                break
            # a finished member's loss still flows but cannot reach another member's slice
            with _refusal(step == 0):
                torch.where(torch.isfinite(losses), losses, torch.zeros_like(losses)).sum().backward()
            opt.step()
            step += 1
            if accuracy_fn is accuracy_counts:      # every member's count in one pass
                pred = out.detach().reshape(k, -1, out.shape[-1]).argmax(dim=2)
                correct += (pred == y.reshape(1, -1)).sum(dim=1)
                n = y.numel()
            else:
                for i in range(k):
                    c, n = accuracy_fn(out[i].detach(), y)
                    correct[i] += c
            loss_sum += lv.double() * n
            count += n
        if not any(active):
            break
        if bad is not None:     # as Training: the epoch's end is checked too (the span goes on)
            diverge(flagged(bad), f"non-finite loss within steps {first_unchecked}-{step - 1} (epoch {epoch})",
                    step)
        finite_params = torch.stack([torch.isfinite(p.detach().reshape(k, -1)).all(dim=1)
                                     for p in plist]).all(dim=0).tolist()
        losses_sum, corrects = loss_sum.tolist(), correct.tolist()
        for i in range(k):
            if not active[i]:
                continue
            outcomes[i].steps = step
            if not finite_params[i]:
                active[i] = False
                outcomes[i].diverged = True
                outcomes[i].divergence = f"parameters are not finite after step {step} (epoch {epoch})"
                continue
            record = {"epoch": epoch, "step": step, "train_loss": losses_sum[i] / count,
                      "train_acc": corrects[i] / count, "lr": lrs[i] * opt.lr_at(max(step - 1, 0))}
            outcomes[i].curve.append(record)
            if snapshots is not None:
                snapshots[i].append({n: t.detach()[i].to("cpu", copy=True)
                                     for n, t in [*params.items(), *buffers.items()] if n in saved})
            if early_stop is not None and early_stop(i, epoch, {**record,
                                                                "initial_loss": outcomes[i].initial_loss}):
                outcomes[i].stopped_early = True
                active[i] = False
        if not any(active):
            break
    seconds = time.perf_counter() - t0
    for o in outcomes:
        o.seconds = seconds / k
    finals = [{n: t.detach()[i] for n, t in [*params.items(), *buffers.items()]} for i in range(k)]
    return outcomes, finals


def load_member(model: torch.nn.Module, weights: dict) -> torch.nn.Module:
    """``model`` with one member's final weights and buffers copied in (to validate it)."""
    with torch.no_grad():
        for n, t in [*model.named_parameters(), *model.named_buffers()]:
            t.copy_(weights[n])
    return model


def member_state(stacked: _StackedEvolvedOptimizer, member: int, opt: EvolvedOptimizer) -> None:
    """Load into ``opt`` (a new optimizer of the same genome over one copy of the model, at the
    member's LR) the state of ``member`` in ``stacked``: its slice of every per-parameter state, the
    momentum buffer scaled by the member's LR (the stacked one runs at LR 1 and scales the increment),
    and the step count."""
    from ..optim.flat import _EXTRA_KEY
    saved = stacked.state_dict()
    lr = stacked.member_lrs[member]
    sd = opt.state_dict()
    sd["state"] = {i: {key: (value[member] * lr if key == "M" else value[member]).clone()
                       for key, value in state.items() if isinstance(value, torch.Tensor)}
                   for i, state in saved["state"].items()}
    sd[_EXTRA_KEY] = {**sd[_EXTRA_KEY], "step": saved[_EXTRA_KEY]["step"]}
    opt.load_state_dict(sd)


__all__ = ["NotBatchable", "check_k", "train_batched", "load_member", "member_state", "paused_batched_screen"]


_warned_tasks: set[str] = set()
_warned_genomes: set[str] = set()    # a reason said once per process, not once per candidate


def batched_screen(sequential, spec, task, data, seed, config, budget, device, deadline, untrained: float,
                   on_validation: bool, screen: list):
    """A ``screen_lrs(lrs, epochs=None)`` for the protocol that runs the LRs ``config.batch_lrs`` at a
    time and appends the same entries as ``sequential`` (which it uses when the model cannot be batched)."""
    from .run_parts import _seeded_model, _val_score, progress
    from .stops import BlowUpStop
    k = check_k(config.batch_lrs)
    factor = config.diverge_factor
    if _genome_problem(spec, budget) is not None:   # stacked runs would not be the screen's: one LR at a time
        return sequential

    blow_up = BlowUpStop(factor)

    def blown(i, epoch, record):        # the sequential screen's stop, for each member
        return blow_up(epoch, record)

    def run(lrs, epochs=None):
        lrs = list(lrs)
        for start in range(0, len(lrs), k):
            chunk = lrs[start:start + k]
            model = _seeded_model(task, data, seed, device)
            try:
                outcomes, finals = _screening_runs(model, spec, task, data, seed, config, budget, device, deadline,
                                                   chunk, epochs or budget.screen_epochs, blown)
            except NotBatchable as exc:
                _not_batchable(task, exc)
                sequential(lrs[start:], epochs)
                return
            for lr, outcome, weights in zip(chunk, outcomes, finals):
                diverged = outcome.diverged or outcome.stopped_early
                entry = {"lr": lr, "score": -factor if diverged else progress(outcome, untrained),
                         "epochs": len(outcome.curve), "diverged": diverged, "stopped_early": outcome.stopped_early}
                if on_validation:
                    entry["val_score"] = None if diverged else _val_score(load_member(model, weights), task, data,
                                                                          device)
                if outcome.diverged:
                    entry["divergence"] = outcome.divergence
                elif diverged:
                    entry["divergence"] = f"train loss above {factor:g}x the initial loss"
                screen.append(entry)
    return run


class _Member:
    """A member of a batched run, in the protocol's ``runs`` as a run that pauses.  Most members are
    only read (their outcome) and validated, so the run (a model and an optimizer given the member's
    state, about 5 ms) is made only when it trains on (``go_on``) or :meth:`run` is asked for; until
    then ``model`` is the batched run's unused model with the member's weights loaded (shared by the
    members: valid until the next member's ``model``)."""

    def __init__(self, make, outcome: TrainOutcome, weights: dict, scratch: torch.nn.Module):
        self._make, self._outcome, self._weights, self._scratch = make, outcome, weights, scratch
        self._run = None

    def run(self):
        """The member as a :class:`Training` (made on first use)."""
        if self._run is None:
            self._run = self._make()
        return self._run

    @property
    def outcome(self) -> TrainOutcome:
        return self._run.outcome if self._run is not None else self._outcome

    @property
    def epochs_done(self) -> int:
        return self._run.epochs_done if self._run is not None else len(self._outcome.curve)

    @property
    def finished(self) -> bool:
        if self._run is not None:
            return self._run.finished
        return self._outcome.diverged or self._outcome.stopped_early

    @property
    def model(self) -> torch.nn.Module:
        return self._run.model if self._run is not None else load_member(self._scratch, self._weights)

    def go_on(self, epochs: int, **kwargs) -> TrainOutcome:
        if self._run is None and (epochs <= 0 or self.finished):     # a stopped run does not go on
            return self._outcome
        return self.run().go_on(epochs, **kwargs)


def _screening_runs(model, spec, task, data, seed, config, budget, device, deadline, lrs: list[float],
                    epochs: int, early_stop, **keep):
    """:func:`train_batched` of the screen's runs at ``lrs`` (the task's screening steps, horizon and
    seed); a timeout or an error as the protocol reports them (:class:`NotBatchable` passes)."""
    from .run_parts import _error, _Failure
    try:
        return train_batched(model, spec.genome, lrs, data.train, epochs=epochs,
                             steps_per_epoch=budget.screen_steps_per_epoch, total_steps=budget.total_steps,
                             warmup_steps=budget.warmup_steps, loss_fn=task.loss, accuracy_fn=task.accuracy,
                             device=device, seed=seed, early_stop=early_stop, deadline=deadline,
                             check_every=config.nan_check_every, **keep)
    except NotBatchable:
        raise
    except TrainingTimeout as exc:
        raise _Failure("timeout", f"timeout after {config.timeout_s} s ({exc})") from None
    except Exception as exc:  # noqa: BLE001
        raise _error(task, f"batched training (lrs={lrs})", exc) from None


def _genome_problem(spec, budget) -> str | None:
    """Why ``spec``'s genome cannot be stacked (said once per reason), or None."""
    from ..optim.compiler import compile_genome, member_problem
    problem = member_problem(compile_genome(spec.genome, budget.total_steps))
    if problem is not None and problem not in _warned_genomes:
        _warned_genomes.add(problem)
        log.warning("genome %s: %s; screening one LR at a time", spec.genome.to_text(), problem)
    return problem


def _not_batchable(task, exc) -> None:
    """Say once per task that its model cannot be batched."""
    if task.name not in _warned_tasks:
        _warned_tasks.add(task.name)
        log.warning("task %r: its model cannot be batched (%s); screening one LR at a time", task.name, exc)


def paused_batched_screen(sequential, runs: dict, start_run, spec, task, data, seed, config, budget, device,
                          deadline):
    """A ``screen_lrs(lrs, epochs=None, lazy=False)`` for the protocol's runs that pause
    (``reuse_screen``): the LRs without a run yet train ``config.batch_lrs`` at a time in one batched
    run; then every member becomes an ordinary paused run in ``runs`` (a new model and optimizer from
    ``start_run(lr)`` given the member's weights, buffers, optimizer state and data order:
    :meth:`Training.skip_to`), and ``sequential`` makes the screen's entries from them as from its
    own.  Halving's later rungs, its pruning and the full run go on from them one LR at a time."""
    from .run_parts import _seeded_model
    from .stops import BlowUpStop
    k = check_k(config.batch_lrs)
    if _genome_problem(spec, budget) is not None:
        return sequential
    factor = config.diverge_factor
    batchable = [True]

    def batched(lrs: list[float], epochs: int) -> None:
        stops = [BlowUpStop(factor) for _ in lrs]
        model = _seeded_model(task, data, seed, device)
        snapshots: list = []
        stacked: list = []
        try:
            outcomes, finals = _screening_runs(model, spec, task, data, seed, config, budget, device, deadline, lrs,
                                               epochs, lambda i, epoch, record: stops[i](epoch, record),
                                               snapshots=snapshots, optimizer=stacked)
        except NotBatchable as exc:
            _not_batchable(task, exc)
            batchable[0] = False
            return

        def member_run(i: int, lr: float):
            def make():
                run = start_run(lr)
                load_member(run.model, finals[i])
                member_state(stacked[0], i, run.optimizer)
                run.skip_to(outcomes[i], snapshots[i])
                return run
            return _Member(make, outcomes[i], finals[i], model)
        for i, lr in enumerate(lrs):
            runs[lr] = (member_run(i, lr), stops[i])

    def screen_lrs(lrs, epochs: int | None = None, lazy: bool = False):
        epochs = epochs or budget.screen_epochs
        new = [v for v in lrs if v not in runs]
        for start in range(0, len(new), k):
            chunk = new[start:start + k]
            if len(chunk) > 1 and batchable[0]:
                batched(chunk, epochs)
        sequential(lrs, epochs, lazy=lazy)
    return screen_lrs
