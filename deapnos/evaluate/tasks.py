"""Tasks: what an optimizer is scored on.

Provides :class:`Task` (mostly data: model and data factories, a step budget, a batch size, a metric,
where the data lives), :class:`TaskData` and :class:`TaskDataError`; the training loop
(:mod:`deapnos.evaluate.training`) and the protocol do the rest.  Fields, the factories' signatures,
the data lookup order and why a task must pickle: docs/evaluation.md, "Tasks".
"""
from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from collections.abc import Callable, Iterable

import torch
import torch.nn.functional as F

DATA_ROOT_ENV = "DEAPNOS_DATA"
METRICS = ("accuracy", "inv_perplexity", "log_loss")


class TaskDataError(RuntimeError):
    """The data (or a checkpoint) a task needs is not where it was looked for.

    The message names the task, the path, what is missing and how to obtain it.
    """


def cross_entropy(output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean cross-entropy of logits; ``(..., C)`` outputs against ``(...)`` integer targets, so
    classifiers ``(B, C)`` and language models ``(B, L, V)`` share it."""
    return F.cross_entropy(output.reshape(-1, output.shape[-1]), target.reshape(-1))


def accuracy_counts(output: torch.Tensor, target: torch.Tensor) -> tuple[torch.Tensor, int]:
    """(number of correct argmax predictions as a 0-d tensor, number of predictions)."""
    pred = output.reshape(-1, output.shape[-1]).argmax(dim=1)
    target = target.reshape(-1)
    return (pred == target).sum(), target.numel()


@dataclass
class TaskData:
    """What a data factory returns.

    ``train``: a re-iterable of ``(inputs, targets)`` batches; the training loop starts a new pass
    when one is exhausted (so a pass may be shuffled anew).  ``val`` (and the optional ``test``):
    re-iterables of batches, read in full after each epoch.  ``generator``: the
    :class:`torch.Generator` that orders (and augments) the training data; the protocol re-seeds it
    before every training run, so a data factory is called once per evaluation.  ``num_classes``: the
    model's output size (classes, or vocabulary size).
    """
    train: Iterable
    val: Iterable
    num_classes: int
    test: Iterable | None = None
    generator: torch.Generator | None = None
    info: dict = field(default_factory=dict)


@dataclass
class Task:
    """A task an optimizer is trained on (see the module docstring for the two hooks).

    Budget: the full run trains ``epochs`` x ``steps_per_epoch`` optimizer steps (an "epoch" is a
    number of steps, not a data pass, as in the paper); LR-screening runs train
    ``ProtocolConfig.screen_epochs`` x ``screen_steps_per_epoch`` steps.  The optimizer's horizon is
    ``total_steps`` (default: the full run's length) with ``warmup_steps`` of linear warm-up.

    ``check(task)``: an extra availability check (raise :class:`TaskDataError`), e.g. for a checkpoint.
    ``options``: free-form settings the factories read (model width, image size, ``shuffle``, ...).

    ``metric``: ``accuracy`` (fitness = best validation accuracy), ``inv_perplexity`` (fitness =
    best exp(-validation loss) = 1/perplexity, for language models) or ``log_loss`` (fitness = best
    -ln(mean validation loss): unbounded; the difference of two scores is the log of the ratio of
    their losses, so it is comparable across tasks and does not saturate as accuracy does).
    ``protocol_overrides``: fields of :class:`~deapnos.evaluate.protocol.ProtocolConfig` that this task
    needs changed (e.g. the screening thresholds, which assume accuracies of a 10-class problem).
    """
    name: str
    data_factory: Callable[..., TaskData]
    model_factory: Callable[..., torch.nn.Module]
    description: str = ""
    steps_per_epoch: int = 200
    epochs: int = 40
    screen_steps_per_epoch: int | None = None
    batch_size: int = 128
    total_steps: int | None = None
    warmup_steps: int = 800
    metric: str = "accuracy"
    loss: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] = cross_entropy
    accuracy: Callable[[torch.Tensor, torch.Tensor], tuple] = accuracy_counts
    num_classes: int | None = None
    data_path: str | None = None
    data_env: str | None = None
    data_subdir: str | None = None
    required_files: tuple[str, ...] = ()
    how_to_get: str = ""
    options: dict[str, Any] = field(default_factory=dict)
    protocol_overrides: dict[str, Any] = field(default_factory=dict)
    check: Callable[[Task], None] | None = None
    plugin: str = ""
    kind: str = "surrogate"
    suite: bool = False     # one of the embedded suite: a default held-out validation task of a search

    def __post_init__(self):
        if not self.name or not isinstance(self.name, str):
            raise ValueError("a task needs a non-empty string name")
        if self.metric not in METRICS:
            raise ValueError(f"task {self.name!r}: metric {self.metric!r} is not one of {', '.join(METRICS)}")
        for attr in ("steps_per_epoch", "epochs", "batch_size"):
            value = getattr(self, attr)
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"task {self.name!r}: {attr} must be a positive integer, got {value!r}")
        if not callable(self.data_factory) or not callable(self.model_factory):
            raise TypeError(f"task {self.name!r}: data_factory and model_factory must be callables")

    @property
    def provider(self) -> str:
        """Who provides the task, for messages: its plugin (set by the plugin manager), else the module
        of its data factory."""
        return self.plugin or getattr(self.data_factory, "__module__", "") or "?"

    # -- budget --------------------------------------------------------------------------------

    @property
    def shuffle(self) -> bool:
        """Whether the training data is shuffled each pass (``options["shuffle"]``, default True;
        the protocol sets it False for ``ProtocolConfig(shuffle=False)``, the paper's fixed order)."""
        return bool(self.options.get("shuffle", True))

    @property
    def horizon(self) -> int:
        """The optimizer's T: ``total_steps`` or the full run's length."""
        return self.total_steps or self.epochs * self.steps_per_epoch

    @property
    def screen_steps(self) -> int:
        return self.screen_steps_per_epoch or self.steps_per_epoch

    def replace(self, **changes) -> Task:
        """A copy with some fields changed (``options`` given here are merged into the old ones)."""
        if "options" in changes:
            changes["options"] = {**self.options, **changes["options"]}
        return dataclasses.replace(self, **changes)

    # -- data location -------------------------------------------------------------------------

    def resolve_data_path(self) -> Path | None:
        """Where the task's data is looked for (see the module docstring); None if it needs none."""
        if self.data_path:
            return Path(self.data_path).expanduser()
        if self.data_env and os.environ.get(self.data_env):
            return Path(os.environ[self.data_env]).expanduser()
        if self.data_subdir is None:
            return None
        root = os.environ.get(DATA_ROOT_ENV)
        return (Path(root).expanduser() if root else Path("data")) / self.data_subdir

    def _where(self) -> str:
        hints = ["set the task's data_path (config or --data-path)"]
        if self.data_env:
            hints.append(f"set ${self.data_env}")
        if self.data_subdir:
            hints.append(f"or put it at ${DATA_ROOT_ENV}/{self.data_subdir}")
        return ", ".join(hints)

    def check_available(self) -> Path | None:
        """Raise :class:`TaskDataError` unless the data is present; return the folder that holds it.

        The folder is the resolved path, or its child ``data_subdir`` when the required files are
        there (so both ``.../cifar-10-batches-py`` and the folder above it work).  Then the task's
        ``check`` hook (if any) runs, e.g. for a checkpoint file.
        """
        path = self.resolve_data_path()
        if path is not None:
            path = self._locate(path)
        if self.check is not None:
            self.check(self)
        return path

    def data_dir(self) -> Path:
        """The checked data folder (what data factories read)."""
        path = self.check_available()
        if path is None:
            raise TaskDataError(f"task {self.name!r} declares no data location (data_path, data_env or "
                                "data_subdir)")
        return path

    def _locate(self, path: Path) -> Path:
        if not path.exists():
            raise TaskDataError(
                f"task {self.name!r}: data folder {str(path)!r} does not exist. {self.how_to_get} "
                f"To point deapnos at it, {self._where()}.".replace("  ", " ").strip())
        missing = [f for f in self.required_files if not (path / f).exists()]
        if missing and self.data_subdir:
            child = path / self.data_subdir
            if child.is_dir() and all((child / f).exists() for f in self.required_files):
                return child
        if missing:
            raise TaskDataError(
                f"task {self.name!r}: data folder {str(path)!r} lacks {', '.join(missing)}. "
                f"{self.how_to_get} To point deapnos at it, {self._where()}.".replace("  ", " ").strip())
        return path

    def data_error(self, path, problem: str) -> TaskDataError:
        """A :class:`TaskDataError` naming this task, ``path`` and how to get the data."""
        return TaskDataError(f"task {self.name!r}: {problem} ({str(path)!r}). {self.how_to_get}".strip())

    # -- building ------------------------------------------------------------------------------

    def build_data(self, device: torch.device | str = "cpu", seed: int = 0) -> TaskData:
        self.check_available()
        data = self.data_factory(self, torch.device(device), seed)
        if not isinstance(data, TaskData):
            raise TypeError(f"task {self.name!r}: data_factory returned {type(data).__name__}, not TaskData")
        return data

    def build_model(self, num_classes: int | None = None) -> torch.nn.Module:
        n = num_classes if num_classes is not None else self.num_classes
        model = self.model_factory(self, n)
        if not isinstance(model, torch.nn.Module):
            raise TypeError(f"task {self.name!r}: model_factory returned {type(model).__name__}, "
                            "not a torch.nn.Module")
        return model

    def summary(self) -> str:
        return (f"{self.name}: {self.epochs}x{self.steps_per_epoch} steps (T={self.horizon}, "
                f"W={self.warmup_steps}), batch {self.batch_size}, metric {self.metric}")

