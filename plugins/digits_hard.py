"""``digits-hard``: sklearn's 8x8 digits made hard enough that optimizers do not all saturate.

Provides ``deapnos_surrogates`` (:func:`digits_hard_task`) and :func:`digits_hard_arrays`: the digits
with fixed Gaussian pixel noise, a small ConvNet and a 50-step budget, so the score measures how far an
optimizer gets in a short run.  Data, model, budget and why: docs/evaluation.md, "The embedded suite".
"""
from __future__ import annotations

import numpy as np
import torch

from deapnos.evaluate.tasks import Task, TaskData
from deapnos.hookspecs import hookimpl

from .convnet import ConvNet
from .digits import digits_arrays
from .suite_data import NO_ACCURACY_THRESHOLDS, arrays_data, split

N_TRAIN, NOISE, SEED = 1000, 0.5, 7
EPOCHS, STEPS = 10, 5


def digits_hard_arrays(n_train: int = N_TRAIN, noise: float = NOISE):
    """``(x_train, y_train, x_val, y_val)``: noisy ``(N, 1, 8, 8)`` float32 images and int64 labels."""
    x, y = digits_arrays()
    x = (x + noise * np.random.default_rng(SEED).standard_normal(x.shape)).astype(np.float32)
    return split(n_train, x, y)


def digits_hard_data(task: Task, device: torch.device, seed: int) -> TaskData:
    o = task.options
    arrays = digits_hard_arrays(o.get("n_train", N_TRAIN), o.get("noise", NOISE))
    return arrays_data(task, device, seed, arrays, 10)


def digits_hard_model(task: Task, num_classes: int) -> torch.nn.Module:
    o = task.options
    return ConvNet(base=o.get("base", 8), num_classes=num_classes, in_channels=1,
                   dropout=o.get("dropout", 0.0), bn_momentum=o.get("bn_momentum", 0.1))


def digits_hard_task() -> Task:
    return Task(
        name="digits-hard",
        description=f"sklearn digits with pixel noise (std {NOISE}), {N_TRAIN} training images, ConvNet base 8, "
                    f"{EPOCHS * STEPS} steps; log_loss",
        data_factory=digits_hard_data, model_factory=digits_hard_model,
        steps_per_epoch=STEPS, epochs=EPOCHS, screen_steps_per_epoch=STEPS, batch_size=64,
        warmup_steps=EPOCHS * STEPS // 10, metric="log_loss", num_classes=10,
        options={"n_train": N_TRAIN, "noise": NOISE, "base": 8, "bn_momentum": 0.1, "dropout": 0.0},
        protocol_overrides=dict(NO_ACCURACY_THRESHOLDS),
        plugin="digits_hard", kind="surrogate", suite=True)


@hookimpl
def deapnos_surrogates():
    return [digits_hard_task()]
