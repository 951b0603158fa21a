"""The evaluation protocol: LR screen, full run, fitness, as one function that never raises.

Provides :func:`evaluate_genome` (a genome or a real ``torch.optim`` optimizer on a task, with a seed),
:class:`ProtocolConfig` (every number of the protocol) and :func:`resolve_optimizer`.
Details (the steps, the ``relative`` and ``paper`` screens, seeds, statuses, differences from the
original): docs/evaluation.md, "The protocol".
"""
from __future__ import annotations

import ast
import dataclasses
import logging
import math
import os
import re
import time
from dataclasses import dataclass, field
from typing import Any
from collections.abc import Iterable

import torch

from ..optim.schedules import base_lr_table
from ..space.genome import Genome
from .protocol_config import COMPAT_PROTOCOL, SCREENS, ProtocolConfig, protocol_config, protocol_table
from .result import EvalResult
from .tasks import Task
from .task_cache import cached
from .stops import AccuracyStop, BehindStop, BlowUpStop, cuts, pruner
from .training import Training, TrainingTimeout
from .ident import worker_id
from .run_parts import _error, _Failure, _seeded_model, _untrained_loss, _val_score, _where, progress  # noqa: F401

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Budget:
    """Step counts of one evaluation of a task under a config."""
    epochs: int
    steps_per_epoch: int
    screen_epochs: int
    screen_steps_per_epoch: int
    total_steps: int
    warmup_steps: int

    @classmethod
    def of(cls, task: Task, config: ProtocolConfig) -> Budget:
        s = config.step_scale

        def scaled(n: int) -> int:
            return max(1, int(round(n * s)))
        epochs = config.epochs or task.epochs
        spe = scaled(task.steps_per_epoch)
        T = scaled(task.total_steps) if task.total_steps else epochs * spe
        screen_spe = scaled(task.screen_steps)
        # a screening run must not outlast the optimizer's horizon (decays and LR are tables of T)
        T = max(T, config.screen_epochs * screen_spe)
        W = min(int(round(task.warmup_steps * s)), T)
        return cls(epochs, spe, config.screen_epochs, screen_spe, T, W)


# -- optimizers --------------------------------------------------------------------------------

class _TableLambda:
    """Picklable ``lr_lambda``: a per-step table, its last value held past the end."""

    def __init__(self, table: list[float]):
        self.table = table

    def __call__(self, step: int) -> float:
        # LambdaLR asks for step T after the last optimizer step: hold the last value, quietly
        return self.table[min(step, len(self.table) - 1)]


@dataclass
class OptimizerSpec:
    """An optimizer the protocol can build: a genome, or a ``torch.optim`` class with keyword args."""
    name: str
    genome: Genome | None = None
    torch_class: str | None = None
    kwargs: dict[str, Any] = field(default_factory=dict)

    @property
    def text(self) -> str:
        """What the result record stores in ``genome``: the genome text, or ``torch:NAME(...)``."""
        if self.genome is not None:
            return self.genome.to_text()
        args = ", ".join(f"{k}={v!r}" for k, v in self.kwargs.items())
        return f"torch:{self.torch_class}" + (f"({args})" if args else "")

    def build(self, params, lr: float, total_steps: int, warmup_steps: int, seed: int = 0,
              check_finite: bool = False):
        """(optimizer, scheduler or None) for one run, with the base warm-up + cosine schedule."""
        if self.genome is not None:
            from ..optim.optimizer import EvolvedOptimizer
            opt = EvolvedOptimizer(params, self.genome, lr=lr, total_steps=total_steps,
                                   warmup_steps=warmup_steps, check_finite=check_finite, seed=seed)
            return opt, None
        assert self.torch_class is not None, f"optimizer {self.name!r} names neither a genome nor a torch class"
        cls = getattr(torch.optim, self.torch_class)
        opt = cls(params, lr=lr, **self.kwargs)
        table = base_lr_table(total_steps, warmup_steps, "warmup_cosine")
        return opt, torch.optim.lr_scheduler.LambdaLR(opt, _TableLambda(table))


_TORCH_SPEC = re.compile(r"^torch:\s*([A-Za-z_][A-Za-z0-9_]*)\s*(?:\((.*)\))?\s*$", re.S)


def _torch_optimizer_class(name: str) -> str:
    classes = {n: n for n in dir(torch.optim)
               if isinstance(getattr(torch.optim, n), type)
               and issubclass(getattr(torch.optim, n), torch.optim.Optimizer) and n != "Optimizer"}
    if name in classes:
        return name
    lower = {n.lower(): n for n in classes}
    if name.lower() in lower:
        return lower[name.lower()]
    raise ValueError(f"torch.optim has no optimizer {name!r}; known: {', '.join(sorted(classes))}")


def _parse_kwargs(text: str, spec: str) -> dict:
    out: dict[str, Any] = {}
    if not text or not text.strip():
        return out
    try:
        call = ast.parse(f"f({text})", mode="eval").body
    except SyntaxError as exc:
        raise ValueError(f"{spec!r}: cannot read the arguments ({exc.msg})") from None
    if not isinstance(call, ast.Call) or call.args:
        raise ValueError(f"{spec!r}: arguments must be keyword=value")
    for kw in call.keywords:
        if kw.arg is None:
            raise ValueError(f"{spec!r}: ** is not allowed")
        try:
            out[kw.arg] = ast.literal_eval(kw.value)    # literals only: numbers, bools, tuples, strings
        except ValueError:
            raise ValueError(f"{spec!r}: the value of {kw.arg!r} is not a literal") from None
    return out


def resolve_optimizer(spec, space=None, zoo_registry=None) -> OptimizerSpec:
    """An :class:`OptimizerSpec` from a zoo name, a genome file, genome text, a :class:`Genome`, or
    ``torch:NAME`` / ``torch:NAME(key=value, ...)`` for a ``torch.optim`` class (values are literals;
    read with :func:`ast.literal_eval`, never evaluated).  ``space`` and ``zoo_registry``: see
    :func:`deapnos.resolve_genome`."""
    if isinstance(spec, OptimizerSpec):
        return spec
    if isinstance(spec, Genome):
        return OptimizerSpec(name=spec.to_text(), genome=spec)
    if isinstance(spec, os.PathLike):
        spec = os.fspath(spec)
    if not isinstance(spec, str):
        raise TypeError(f"an optimizer is a zoo name, genome file, genome text, Genome or 'torch:NAME', "
                        f"not {type(spec).__name__}")
    text = spec.strip()
    if text.startswith("torch:"):
        m = _TORCH_SPEC.match(text)
        if m is None:
            raise ValueError(f"{spec!r}: expected 'torch:NAME' or 'torch:NAME(key=value, ...)'")
        cls = _torch_optimizer_class(m.group(1))
        kwargs = _parse_kwargs(m.group(2) or "", spec)
        if "lr" in kwargs:
            raise ValueError(f"{spec!r}: the peak lr is chosen by the protocol; do not pass lr")
        return OptimizerSpec(name=text, torch_class=cls, kwargs=kwargs)
    from .. import resolve_genome
    genome = resolve_genome(text, space, zoo_registry)
    name = text if ("~" not in text or os.path.exists(text)) else genome.to_text()
    return OptimizerSpec(name=name, genome=genome)


# -- the protocol ------------------------------------------------------------------------------

def default_device() -> str:
    return "cuda" if torch.cuda.is_available() else "cpu"


def evaluate_genome(genome, task: Task, seed: int = 0, config: ProtocolConfig | None = None,
                    device: str | torch.device | None = None, integrity_checks=None,
                    reference: float | None = None) -> EvalResult:
    """Evaluate ``genome`` on ``task`` under the protocol (module docstring).  Never raises.

    ``genome``: a :class:`Genome`, genome text, zoo name, genome file, ``torch:NAME`` or an
    :class:`OptimizerSpec` (see :func:`resolve_optimizer`).  ``integrity_checks``: checks (list or
    ``{name: check}``) to run first; None runs none.  ``device``: default CUDA when available.
    """
    t0 = time.perf_counter()
    device_name = str(device) if device is not None else default_device()
    config = config or ProtocolConfig()
    task_name = getattr(task, "name", str(task))
    result = EvalResult(genome=genome if isinstance(genome, str) else "", task=task_name, seed=int(seed),
                        status="error", device=device_name, worker=worker_id())
    try:
        _evaluate(genome, task, int(seed), config, torch.device(device_name), integrity_checks, result,
                  reference)
        result.status = "ok"
    except _Failure as f:
        result.status, result.message = f.status, f.message
        result.fitness = None
    except Exception as exc:  # noqa: BLE001 - the protocol never raises
        result.status, result.message = "error", _error(None, "the protocol", exc).message
        result.fitness = None
    result.seconds = time.perf_counter() - t0
    if result.status != "ok":
        log.debug("%s on %s: %s %s", result.optimizer or result.genome, task_name, result.status, result.message)
    return result


evaluate = evaluate_genome


def evaluate_optimizer(spec, task: Task, seed: int = 0, config: ProtocolConfig | None = None,
                       device=None) -> EvalResult:
    """The protocol for any optimizer spec, e.g. ``"torch:Adam"`` (same as :func:`evaluate_genome`
    without integrity checks)."""
    return evaluate_genome(spec, task, seed=seed, config=config, device=device)


def _evaluate(genome, task: Task, seed: int, config: ProtocolConfig, device: torch.device, checks,
              result: EvalResult, reference: float | None = None) -> None:
    if not isinstance(task, Task):
        raise _Failure("error", f"expected a deapnos Task, got {type(task).__name__}")
    try:
        spec = resolve_optimizer(genome)
    except Exception as exc:  # noqa: BLE001
        raise _Failure("error", f"cannot resolve optimizer {genome!r}: {type(exc).__name__}: {exc}") from None
    result.genome, result.optimizer = spec.text, spec.name
    try:
        config = config.for_task(task)
        budget = Budget.of(task, config)
    except Exception as exc:  # noqa: BLE001
        raise _error(task, "its protocol settings", exc) from None
    deadline = time.monotonic() + config.timeout_s if config.timeout_s else None
    if not config.shuffle:
        task = task.replace(options={"shuffle": False})

    # 0. integrity
    if spec.genome is not None:
        result.flip = bool(spec.genome.flip)
    if checks is not None and spec.genome is not None:
        from .integrity import run_integrity_checks
        genome_copy = spec.genome.copy()
        try:
            res = run_integrity_checks(genome_copy, checks)
        except Exception as exc:  # noqa: BLE001 - a configuration error (unknown check name)
            raise _Failure("error", f"integrity checks: {type(exc).__name__}: {exc}") from None
        if not res.passed:
            raise _Failure("error" if getattr(res, "error", False) else "rejected", res.reason or "rejected")
        spec = dataclasses.replace(spec, genome=genome_copy)
        result.flip = bool(genome_copy.flip)
        result.genome = genome_copy.to_text()

    # data (once per evaluation; the generator is re-seeded before each run)
    threads_before = torch.get_num_threads()
    if config.num_threads:
        torch.set_num_threads(config.num_threads)
    devices = ([device.index if device.index is not None else torch.cuda.current_device()]
               if device.type == "cuda" else [])
    try:
        with torch.random.fork_rng(devices=devices, enabled=True):
            torch.manual_seed(seed)
            try:
                data = cached(task, device, seed, "data", lambda: task.build_data(device, seed))
            except Exception as exc:  # noqa: BLE001
                raise _error(task, "loading data", exc) from None
            _run_protocol(spec, task, data, seed, config, budget, device, deadline, result, reference)
    finally:
        if config.num_threads:
            torch.set_num_threads(threads_before)


def _start_run(spec: OptimizerSpec, task: Task, data, seed: int, lr: float, config: ProtocolConfig,
               budget: Budget, device, deadline, *, steps_per_epoch: int, snapshots: bool = False) -> Training:
    """A fresh model and optimizer at ``lr``, ready to train (see :class:`Training`)."""
    if config.fresh_seed:            # the original's noise: a new initialisation for every run
        seed = int.from_bytes(os.urandom(4), "little")
    model = _seeded_model(task, data, seed, device)
    try:
        opt, sched = spec.build(model.parameters(), lr, budget.total_steps, budget.warmup_steps, seed=seed,
                                check_finite=config.check_finite)
    except Exception as exc:  # noqa: BLE001
        raise _Failure("error", f"building optimizer {spec.name!r}: {type(exc).__name__}: {exc}") from None
    return Training(model, opt, data.train, steps_per_epoch=steps_per_epoch, scheduler=sched, loss_fn=task.loss,
                    accuracy_fn=task.accuracy, metric=task.metric, device=device, deadline=deadline,
                    check_every=config.nan_check_every, generator=data.generator, snapshots=snapshots)


def _go_on(run: Training, task: Task, lr: float, config: ProtocolConfig, epochs: int, *, early_stop,
           val_data=None, pause: bool = False):
    """``run.go_on(epochs)``, its failures as the protocol reports them."""
    try:
        return run.go_on(epochs, val_data=val_data, early_stop=early_stop, pause=pause)
    except TrainingTimeout as exc:
        raise _Failure("timeout", f"timeout after {config.timeout_s} s ({exc})") from None
    except Exception as exc:  # noqa: BLE001
        raise _error(task, f"training (lr={lr:g})", exc) from None


def _one_run(spec: OptimizerSpec, task: Task, data, seed: int, lr: float, config: ProtocolConfig,
             budget: Budget, device, deadline, *, epochs: int, steps_per_epoch: int, early_stop, validate: bool):
    """Train a fresh model once; returns the TrainOutcome and the model."""
    run = _start_run(spec, task, data, seed, lr, config, budget, device, deadline, steps_per_epoch=steps_per_epoch)
    outcome = _go_on(run, task, lr, config, epochs, early_stop=early_stop, val_data=data.val if validate else None)
    return outcome, run.model


def _continues(config: ProtocolConfig, budget: Budget) -> bool:
    """Whether the full run can go on from its LR's screening run: the same steps per epoch and
    horizon, a fixed seed, and the relative screen (whose blow-up stop the full run shares)."""
    return (config.reuse_screen and config.screen == "relative" and not config.fresh_seed
            and budget.screen_steps_per_epoch == budget.steps_per_epoch and budget.screen_epochs <= budget.epochs)


def choose_lr(scores: list[float]) -> int:
    """Index of the best screening score, in screening order; ties go to the earliest."""
    if not scores:
        raise ValueError("no screening scores")
    return max(range(len(scores)), key=lambda i: (scores[i], -i))


def _screen(spec, task, data, seed, config: ProtocolConfig, budget: Budget, device, deadline,
            screen: list, runs: dict | None = None, reference: float | None = None) -> float:
    """Run the LR screen (module docstring) into ``screen``; return the chosen LR or raise _Failure.

    ``runs``: when given, each LR's screening run stays there (by LR), paused, so that a later
    rung or the full run goes on from it instead of training the same steps again.  ``reference``:
    with ``runs`` and halving, survivors that cannot catch up with it stop early (:func:`_pruner`)."""
    paper = config.screen == "paper"
    # the relative screen chooses on validation (tasks without a validation split: on progress)
    on_validation = not paper and config.screen_choice == "validation" and data.val is not None
    untrained = 0.0
    if not paper:
        try:
            steps = budget.screen_steps_per_epoch
            untrained = cached(task, device, seed, ("untrained", steps),
                               lambda: _untrained_loss(task, data, seed, steps, device))
        except _Failure:
            raise
        except Exception as exc:  # noqa: BLE001
            raise _error(task, "scoring the untrained model", exc) from None

    def screen_lrs(lrs: Iterable[float], epochs: int | None = None, lazy: bool = False):
        """``lazy`` (runs that pause only): validate only the runs that made ``min_progress``, the
        only ones whose validation score can rank them; the others get theirs from :func:`validate_late`
        if they are still needed."""
        epochs = epochs or budget.screen_epochs
        for value in lrs:
            known = runs.get(value) if runs is not None else None
            # a kept run that stopped (it blew up) keeps its outcome: trained again, it would only repeat it
            if known is None or known[0].epochs_done > epochs:
                blow_up = None if paper else BlowUpStop(config.diverge_factor)
                stop = (AccuracyStop(config.screen_early_stop_epoch, config.screen_early_stop_acc) if paper
                        else blow_up)
                run = _start_run(spec, task, data, seed, value, config, budget, device, deadline,
                                 steps_per_epoch=budget.screen_steps_per_epoch, snapshots=runs is not None)
                known = (run, stop)
            run, stop = known
            # a run kept from an earlier rung goes on for the epochs it lacks
            outcome = _go_on(run, task, value, config, epochs - run.epochs_done, early_stop=stop,
                             pause=runs is not None)
            if runs is not None:
                runs[value] = known
            model = run.model
            diverged = outcome.diverged or (isinstance(stop, BlowUpStop) and stop.fired)
            # a diverged run scores below any run that did not (progress >= 1 - diverge_factor)
            if paper:
                score = outcome.best_train_acc
            else:
                score = -config.diverge_factor if diverged else progress(outcome, untrained)
            entry = {"lr": value, "score": score, "epochs": len(outcome.curve), "diverged": diverged,
                     "stopped_early": outcome.stopped_early}
            if on_validation:       # the model the screening run ends with, scored on held-back data
                # kept in the run's last epoch record too: the full run going on from it needs it
                last = outcome.curve[-1] if runs is not None and outcome.curve else None
                if lazy and runs is not None and not diverged and score < config.min_progress:
                    entry["val_score"], entry["unvalidated"] = None, True     # ranked by progress alone
                else:
                    entry["val_score"] = None if diverged else _val_score(model, task, data, device, last)
            if outcome.diverged:
                entry["divergence"] = outcome.divergence
            elif diverged:
                entry["divergence"] = f"train loss above {config.diverge_factor:g}x the initial loss"
            screen.append(entry)

    if not paper and config.batch_lrs and spec.genome is not None and not (config.fresh_seed or config.check_finite):
        from .batched import batched_screen, paused_batched_screen   # issue 16: K LRs in one vmapped run
        if runs is not None:        # its members become runs that pause, as the sequential screen's
            screen_lrs = paused_batched_screen(
                screen_lrs, runs, lambda lr: _start_run(spec, task, data, seed, lr, config, budget, device, deadline,
                                                        steps_per_epoch=budget.screen_steps_per_epoch, snapshots=True),
                spec, task, data, seed, config, budget, device, deadline)
        else:
            screen_lrs = batched_screen(screen_lrs, spec, task, data, seed, config, budget, device, deadline,
                                        untrained, on_validation, screen)

    def fail(stage: str, thr: float):
        scores = [e["score"] for e in screen]
        if all(e["diverged"] for e in screen):
            raise _Failure("diverged", f"every screening run diverged ({screen[0].get('divergence', '')} "
                                       f"at lr={screen[0]['lr']:g}, ...)")
        what = "train accuracy" if paper else "progress (share of the initial loss removed)"
        raise _Failure("screened_out", f"LR screen{stage}: best {what} {max(scores):.3f} < {thr}")

    def validate_late(entries: list[dict]) -> None:
        """Validate the runs of ``entries`` that a lazy :func:`screen_lrs` left unvalidated."""
        assert runs is not None
        for entry in entries:
            if entry.pop("unvalidated", False):
                run = runs[entry["lr"]][0]
                entry["val_score"] = _val_score(run.model, task, data, device, run.outcome.curve[-1])

    if not paper and config.screen_schedule == "halving":   # issue 16: evaluate/halving.py
        from .halving import successive_halving
        prune = (pruner(runs, config, budget.epochs, reference)
                 if runs is not None and on_validation and cuts(config, reference) else None)
        successive_halving(screen_lrs, config.screen_lrs_a + config.screen_lrs_b, screen, budget.screen_epochs,
                           config.min_progress, prune,
                           validate_late=validate_late if runs is not None and on_validation else None)
    else:
        screen_lrs(config.screen_lrs_a)
        if paper and max(e["score"] for e in screen) < config.stage_a_threshold:
            fail(" A", config.stage_a_threshold)
        screen_lrs(config.screen_lrs_b)
    scores = [e["score"] for e in screen]
    if paper and max(scores) < config.threshold:
        fail(" A+B", config.threshold)
    if not paper and max(scores) < config.min_progress:
        fail("", config.min_progress)
    if on_validation:
        # among the LRs that made progress, the best validation score (a diverged run has none)
        choice = [e["val_score"] if e["val_score"] is not None and e["score"] >= config.min_progress
                  and math.isfinite(e["val_score"]) else -math.inf for e in screen]
        if max(choice) > -math.inf:
            return screen[choose_lr(choice)]["lr"]
    return screen[choose_lr(scores)]["lr"]


def _run_protocol(spec, task, data, seed, config: ProtocolConfig, budget: Budget, device, deadline,
                  result: EvalResult, reference: float | None = None):
    runs: dict | None = {} if config.lr is None and _continues(config, budget) else None
    lr = float(config.lr) if config.lr is not None else _screen(spec, task, data, seed, config, budget, device,
                                                                deadline, result.screen, runs, reference)
    result.lr = lr

    stop: AccuracyStop | BlowUpStop | BehindStop = (
        AccuracyStop(config.full_early_stop_epoch, config.full_early_stop_acc) if config.screen == "paper"
        else BlowUpStop(config.diverge_factor))
    kept = runs.pop(lr, None) if runs else None
    if kept is not None and not isinstance(kept[0], Training) and not kept[0].finished:
        kept = (kept[0].run(), kept[1])         # a batched run's member, as a run (batched.py)
    if runs:
        runs.clear()            # the other LRs' runs are not needed any more
    # halving ends the screen early with a survivor that cannot catch up with the reference (stops.pruner)
    hopeless = any(e.get("hopeless") and e["lr"] == lr for e in result.screen)
    behind = None
    if cuts(config, reference):
        assert reference is not None and config.cut_factor is not None
        first = min(budget.screen_epochs, budget.epochs) - 1
        if hopeless and kept is not None:
            first = min(first, kept[0].epochs_done - 1)
        stop = behind = BehindStop(stop, reference, config.cut_factor, budget.epochs, first, config.score)
    if kept is not None and not kept[0].finished and (kept[0].epochs_done == budget.screen_epochs or hopeless):
        # the full run's first screen_epochs epochs are its screening run's (same model, batches,
        # schedule and stop): go on from there, and score those epochs from their snapshots
        run = kept[0]
        if data.val is not None:
            try:
                run.fill_validation(data.val)
            except Exception as exc:  # noqa: BLE001
                raise _error(task, "validating the screened epochs", exc) from None
        run.snapshots = None
        if behind is not None:          # the screened epochs count for the cut as they would have
            for record in run.outcome.curve:
                behind.seen(record)
            if behind.hopeless(run.epochs_done - 1):
                run.outcome.stopped_early = run.finished = True
        outcome = _go_on(run, task, lr, config, budget.epochs - run.epochs_done, early_stop=stop, val_data=data.val)
        model = run.model
    else:
        outcome, model = _one_run(spec, task, data, seed, lr, config, budget, device, deadline,
                                  epochs=budget.epochs, steps_per_epoch=budget.steps_per_epoch, early_stop=stop,
                                  validate=True)
    result.curve = outcome.curve
    result.steps = outcome.steps
    result.stopped_early = outcome.stopped_early
    if behind is not None and behind.fired:
        result.message = behind.why
    if outcome.curve:
        last = outcome.curve[-1]
        result.final_accuracy = last.get("val_score")
        result.final_train_loss = last.get("train_loss")
        # the model a user gets is the last one; "best" is the peak over the epochs (the paper's)
        result.fitness = outcome.best("val_score") if config.score == "best" else last.get("val_score")
    if outcome.diverged:
        if not (config.keep_best_on_divergence and outcome.curve):
            raise _Failure("diverged", f"full run at lr={lr:g}: {outcome.divergence}")
        result.message = f"full run stopped: {outcome.divergence}"
    if result.fitness is None:
        raise _Failure("error", f"task {task.name!r}: the full run finished no epoch")
    if config.evaluate_test and data.test is not None:
        from .training import validate
        try:
            tested = validate(model, data.test, device, task.loss, task.accuracy, task.metric)
            result.test_accuracy = tested["val_score"]
        except Exception as exc:  # noqa: BLE001
            raise _error(task, "scoring the test split", exc) from None


__all__ = ["ProtocolConfig", "COMPAT_PROTOCOL", "SCREENS", "protocol_config", "protocol_table", "Budget",
           "choose_lr", "OptimizerSpec", "resolve_optimizer", "evaluate_genome", "evaluate", "evaluate_optimizer",
           "default_device", "worker_id"]
