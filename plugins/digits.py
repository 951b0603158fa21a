"""``digits``: the embedded default surrogate; no download, seconds per evaluation on one CPU core.

Data: scikit-learn's bundled ``load_digits`` (1,797 8x8 grey images of the digits 0-9, pixel values
0-16, scaled to [0, 1]).  A fixed split, the same on every machine: a permutation drawn with
``numpy.random.default_rng(0)``; the first 1,497 images train, the last 300 validate.

Model: the paper's ConvNet (docs/paper.md §5.4.2) on 8x8x1 inputs with ``base`` = 16 (16/32/64 channels,
8x8 -> 4x4 -> 2x2), Keras-like initialisation, BN eps 1e-3 and momentum 0.01.

Budget: batch 64; 40 epochs x 10 steps (T = 400, about 17 passes over the training set), W = 40, so
screening runs (4 x 10 steps) see exactly the warm-up, as in the paper (4 x 200 steps, W = 800,
T = 8000).  BN momentum stays Keras' 0.99 (PyTorch 0.01): with 400 steps the running statistics
converge (0.99^400 < 2%); much shorter budgets would need ``options={"bn_momentum": 0.1}``.
"""
from __future__ import annotations

import numpy as np
import torch

from deapnos.evaluate.data import TensorBatches
from deapnos.evaluate.tasks import Task, TaskData
from deapnos.hookspecs import hookimpl

from .convnet import ConvNet

N_TRAIN = 1497


def digits_arrays() -> tuple[np.ndarray, np.ndarray]:
    """Images ``(1797, 1, 8, 8)`` float32 in [0, 1] and labels ``(1797,)`` int64, in the fixed split
    order (the first :data:`N_TRAIN` are the training set)."""
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
