"""Example deapnos plugin: a fitness task.

``blobs``: classify points of 4 overlapping Gaussian blobs in 16 dimensions with a small MLP.  The data
is synthetic and fixed (drawn from a generator seeded with 0), so it needs no download and every
machine sees the same points: 1,024 training and 512 validation points.

A task is mostly data: a data factory, a model factory, a budget, a metric.  deapnos' shared training
loop and protocol (LR screen, full run, best validation accuracy) do the rest.  Only deapnos' public
API is used: ``deapnos.hookimpl``, ``deapnos.evaluate.tasks`` and ``deapnos.evaluate.data``.
"""
from __future__ import annotations

import torch
from torch import nn

from deapnos import hookimpl
from deapnos.evaluate.data import TensorBatches
from deapnos.evaluate.tasks import Task, TaskData

DIM, CLASSES, N_TRAIN, N_VAL = 16, 4, 1024, 512


def make_blobs(n: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """``n`` points: class centres on a fixed random simplex-ish set, unit noise (they overlap)."""
    centres = torch.randn(CLASSES, DIM, generator=torch.Generator().manual_seed(1234)) * 0.5
    y = torch.randint(0, CLASSES, (n,), generator=generator)
    x = centres[y] + torch.randn(n, DIM, generator=generator)
    return x, y


def blobs_data(task: Task, device: torch.device, seed: int) -> TaskData:
    """The data factory: called once per evaluation.  ``seed`` orders the training batches; the
    points themselves are fixed, so every optimizer and seed sees the same problem."""
    fixed = torch.Generator().manual_seed(0)
    x, y = make_blobs(N_TRAIN + N_VAL, fixed)
    x, y = x.to(device), y.to(device)
    order = torch.Generator().manual_seed(seed)    # the protocol re-seeds it before every run
    train = TensorBatches(x[:N_TRAIN], y[:N_TRAIN], task.batch_size, shuffle=task.shuffle, generator=order)
    val = TensorBatches(x[N_TRAIN:], y[N_TRAIN:], 512, shuffle=False)
    return TaskData(train=train, val=val, num_classes=CLASSES, generator=order)


def blobs_model(task: Task, num_classes: int) -> nn.Module:
    """The model factory: a fresh model per training run (the protocol seeds torch first)."""
    hidden = task.options.get("hidden", 32)
    return nn.Sequential(nn.Linear(DIM, hidden), nn.Tanh(), nn.Linear(hidden, num_classes))


def blobs_task() -> Task:
    return Task(
        name="blobs",
        description="4 Gaussian blobs in 16-D, MLP 16-32-4 (example fitness plugin)",
        data_factory=blobs_data, model_factory=blobs_model,
        steps_per_epoch=5, epochs=40, batch_size=32, warmup_steps=20,   # T = 200 steps
        num_classes=CLASSES, options={"hidden": 32}, kind="fitness")


@hookimpl
def deapnos_fitness_tasks():
    return [blobs_task()]
