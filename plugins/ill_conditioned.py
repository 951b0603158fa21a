"""``ill-conditioned``: an MLP on generated data whose input features are badly scaled.

Provides ``deapnos_surrogates`` (:func:`ill_conditioned_task`) and :func:`ill_conditioned_arrays`: a
fixed draw whose input covariance has condition number ``CONDITION``, labels from a random teacher
that weighs every standardised feature alike, so per-coordinate (adaptive) steps matter.
Data, model, budget and the loss floor: docs/evaluation.md, "The embedded suite".
"""
from __future__ import annotations

import numpy as np
import torch

from deapnos.evaluate.tasks import Task, TaskData
from deapnos.hookspecs import hookimpl

from .mlp import MLP
from .suite_data import (NO_ACCURACY_THRESHOLDS, arrays_data, bayes_loss, log_scales, sample_labels,
                         split)

DIM, CLASSES, CONDITION, SEED = 32, 8, 1e3, 2024
N_TRAIN, N_VAL = 2000, 2000
EPOCHS, STEPS = 20, 10


def ill_conditioned_arrays(dim: int = DIM, classes: int = CLASSES, condition: float = CONDITION,
                           n_train: int = N_TRAIN, n_val: int = N_VAL, seed: int = SEED,
                           teacher_scale: float = 2.0):
    """``(x_train, y_train, x_val, y_val, bayes)``: float32 inputs, int64 labels and the teacher's
    own validation loss (the floor no model can beat on average)."""
    rng = np.random.default_rng(seed)
    n = n_train + n_val
    z = rng.standard_normal((n, dim))
    a = rng.standard_normal((dim, 2 * dim)) / np.sqrt(dim)
    b = rng.standard_normal((2 * dim, classes)) * teacher_scale / np.sqrt(2 * dim)
    logits = np.tanh(z @ a * 1.5) @ b * 3.0
    y = sample_labels(logits, rng)
    x = (z * log_scales(dim, condition)).astype(np.float32)
    xt, yt, xv, yv = split(n_train, x, y)
    return xt, yt, xv, yv, bayes_loss(logits[n_train:], yv)


def ill_conditioned_data(task: Task, device: torch.device, seed: int) -> TaskData:
    o = task.options
    *arrays, bayes = ill_conditioned_arrays(condition=o.get("condition", CONDITION))
    return arrays_data(task, device, seed, tuple(arrays), CLASSES, info={"bayes_loss": bayes})


def ill_conditioned_model(task: Task, num_classes: int) -> torch.nn.Module:
    return MLP(DIM, tuple(task.options.get("hidden", (64,))), num_classes, task.options.get("act", "tanh"))


def ill_conditioned_task() -> Task:
    return Task(
        name="ill-conditioned",
        description=f"MLP on generated data with badly scaled features (covariance condition {CONDITION:.0e}); "
                    "log_loss",
        data_factory=ill_conditioned_data, model_factory=ill_conditioned_model,
        steps_per_epoch=STEPS, epochs=EPOCHS, screen_steps_per_epoch=STEPS, batch_size=64,
        warmup_steps=EPOCHS * STEPS // 10, metric="log_loss", num_classes=CLASSES,
        options={"condition": CONDITION, "hidden": (64,), "act": "tanh"},
        protocol_overrides=dict(NO_ACCURACY_THRESHOLDS),
        plugin="ill_conditioned", kind="surrogate", suite=True)


@hookimpl
def deapnos_surrogates():
    return [ill_conditioned_task()]
