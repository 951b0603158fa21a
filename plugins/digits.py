"""``digits``: the embedded default surrogate; no download, seconds per evaluation on one CPU core.

Provides ``deapnos_surrogates`` (:func:`digits_task`) and :func:`digits_arrays` (scikit-learn's
``load_digits`` in a fixed split, the same on every machine): the paper's ConvNet on 8x8 inputs with a
budget whose screening runs see exactly the warm-up.  Data, model, budget and measurements:
docs/evaluation.md, "digits".
"""
from __future__ import annotations

import functools

import numpy as np
import torch

from deapnos.evaluate.data import TensorBatches
from deapnos.evaluate.tasks import Task, TaskData
from deapnos.hookspecs import hookimpl

from .convnet import ConvNet

N_TRAIN = 1497


def digits_arrays() -> tuple[np.ndarray, np.ndarray]:
    """Images ``(1797, 1, 8, 8)`` float32 in [0, 1] and labels ``(1797,)`` int64, in the fixed split
    order (the first :data:`N_TRAIN` are the training set).  Fresh copies of arrays read once per
    process (parsing sklearn's CSV took ~20 ms, a tenth of a cheap evaluation)."""
    x, y = _read_digits()
    return x.copy(), y.copy()


@functools.lru_cache(maxsize=1)
def _read_digits() -> tuple[np.ndarray, np.ndarray]:
    from sklearn.datasets import load_digits
    d = load_digits()
    x = (d.data.astype(np.float32) / 16.0).reshape(-1, 1, 8, 8)
    y = d.target.astype(np.int64)
    perm = np.random.default_rng(0).permutation(len(y))
    return x[perm], y[perm]


def digits_data(task: Task, device: torch.device, seed: int) -> TaskData:
    x, y = digits_arrays()
    x, y = torch.from_numpy(x).to(device), torch.from_numpy(y).to(device)
    gen = torch.Generator().manual_seed(seed)
    n = task.options.get("n_train", N_TRAIN)
    train = TensorBatches(x[:n], y[:n], task.batch_size, shuffle=task.shuffle, generator=gen)
    val = TensorBatches(x[N_TRAIN:], y[N_TRAIN:], 512, shuffle=False)
    return TaskData(train=train, val=val, num_classes=10, generator=gen,
                    info={"n_train": n, "n_val": len(y) - N_TRAIN})


def digits_model(task: Task, num_classes: int) -> torch.nn.Module:
    return ConvNet(base=task.options.get("base", 16), num_classes=num_classes, in_channels=1,
                   bn_momentum=task.options.get("bn_momentum", 0.01))


def digits_task() -> Task:
    return Task(
        name="digits",
        description="sklearn digits 8x8, the paper's ConvNet (base 16); seconds per evaluation on a CPU",
        data_factory=digits_data, model_factory=digits_model,
        steps_per_epoch=10, epochs=40, batch_size=64, warmup_steps=40, num_classes=10,
        options={"base": 16}, plugin="digits", kind="surrogate")


@hookimpl
def deapnos_surrogates():
    return [digits_task()]
