"""``tabular``: a deeper MLP on a generated tabular classification problem with mixed feature types.

Provides ``deapnos_surrogates`` (:func:`tabular_task`) and :func:`tabular_arrays`: numeric and one-hot
categorical columns, labels from a teacher with pairwise feature interactions, an MLP with three hidden
ReLU layers of 64.  Data, model, budget and the loss floor: docs/evaluation.md, "The embedded suite".
"""
from __future__ import annotations

import numpy as np
import torch

from deapnos.evaluate.tasks import Task, TaskData
from deapnos.hookspecs import hookimpl

from .mlp import MLP
from .suite_data import NO_ACCURACY_THRESHOLDS, arrays_data, bayes_loss, sample_labels, split

NUMERIC, CATEGORICAL, LEVELS, CLASSES, SEED = 8, 4, 5, 4, 99
N_TRAIN, N_VAL = 3000, 2000
EPOCHS, STEPS = 20, 10
IN_DIM = NUMERIC + CATEGORICAL * LEVELS


def tabular_arrays(n_train: int = N_TRAIN, n_val: int = N_VAL, seed: int = SEED, hidden: int = 16,
                   sharpness: float = 3.0):
    """``(x_train, y_train, x_val, y_val, bayes)``: float32 ``(N, IN_DIM)`` rows, int64 labels and the
    teacher's validation loss."""
    rng = np.random.default_rng(seed)
    n = n_train + n_val
    num = rng.standard_normal((n, NUMERIC))
    half = NUMERIC // 2
    num[:, half:] = np.exp(num[:, half:])                        # heavy-tailed columns
    num = (num - num.mean(0)) / num.std(0)
    cats = rng.integers(0, LEVELS, size=(n, CATEGORICAL))
    onehot = np.zeros((n, CATEGORICAL * LEVELS))
    onehot[np.arange(n)[:, None], cats + LEVELS * np.arange(CATEGORICAL)] = 1.0
    # teacher: ReLU features of numeric + category embeddings, multiplied pairwise
    emb = rng.standard_normal((CATEGORICAL * LEVELS, hidden))
    w = rng.standard_normal((NUMERIC, hidden)) / np.sqrt(NUMERIC)
    h = np.maximum(num @ w + onehot @ emb / np.sqrt(CATEGORICAL) + rng.standard_normal(hidden) * 0.5, 0.0)
    h = h - h.mean(0)
    inter = h[:, : hidden // 2] * h[:, hidden // 2:]
    feats = np.concatenate([h, inter], axis=1)
    feats = feats / feats.std(0)
    out = rng.standard_normal((feats.shape[1], CLASSES)) / np.sqrt(feats.shape[1])
    logits = sharpness * feats @ out
    y = sample_labels(logits, rng)
    x = np.concatenate([num, onehot], axis=1).astype(np.float32)
    xt, yt, xv, yv = split(n_train, x, y)
    return xt, yt, xv, yv, bayes_loss(logits[n_train:], yv)


def tabular_data(task: Task, device: torch.device, seed: int) -> TaskData:
    *arrays, bayes = tabular_arrays()
    return arrays_data(task, device, seed, tuple(arrays), CLASSES, info={"bayes_loss": bayes})


def tabular_model(task: Task, num_classes: int) -> torch.nn.Module:
    o = task.options
    return MLP(IN_DIM, tuple(o.get("hidden", (64, 64, 64))), num_classes, o.get("act", "relu"))


def tabular_task() -> Task:
    return Task(
        name="tabular",
        description="3-layer ReLU MLP on a generated tabular problem (numeric + one-hot columns, "
                    "interacting teacher); log_loss",
        data_factory=tabular_data, model_factory=tabular_model,
        steps_per_epoch=STEPS, epochs=EPOCHS, screen_steps_per_epoch=STEPS, batch_size=64,
        warmup_steps=EPOCHS * STEPS // 10, metric="log_loss", num_classes=CLASSES,
        options={"hidden": (64, 64, 64), "act": "relu"},
        protocol_overrides=dict(NO_ACCURACY_THRESHOLDS),
        plugin="tabular", kind="surrogate", suite=True)


@hookimpl
def deapnos_surrogates():
    return [tabular_task()]
