"""Shared helpers of the embedded surrogate suite (``digits-hard``, ``stdlib-lm``, ``ill-conditioned``,
``tabular``): in-memory arrays -> :class:`~deapnos.evaluate.tasks.TaskData`, and seeded generators of
synthetic classification data.

Every generator draws from ``numpy.random.default_rng(seed)`` with a fixed seed chosen by the task, so
the arrays are the same on every machine and every call; the evaluation seed only orders the batches
(and initialises the model).  Labels are *sampled* from a teacher's softmax, not taken as its argmax:
the Bayes loss is then well above zero and the tasks cannot saturate.
"""
from __future__ import annotations

import numpy as np
import torch

from deapnos.evaluate.data import TensorBatches
from deapnos.evaluate.tasks import Task, TaskData

#: ``protocol_overrides`` of every suite task: the paper screen's accuracy thresholds (for
#: ``ProtocolConfig(screen="paper")``; they assume a 10-class problem trained for 800 steps) are off,
#: so that screen rejects only divergence.  The default ``relative`` screen needs nothing.
NO_ACCURACY_THRESHOLDS = {"screen_early_stop_acc": 0.0, "stage_a_threshold": 0.0, "threshold": 0.0,
                          "full_early_stop_acc": 0.0}


def arrays_data(task: Task, device: torch.device, seed: int, arrays: tuple, num_classes: int,
                val_batch: int = 1024, info: dict | None = None) -> TaskData:
    """``TaskData`` of in-memory numpy arrays ``(x_train, y_train, x_val, y_val)``: shuffled training
    batches of ``task.batch_size`` drawn from a generator seeded with ``seed``, validation in order."""
    xt, yt, xv, yv = (torch.from_numpy(np.ascontiguousarray(a)).to(device) for a in arrays)
    gen = torch.Generator().manual_seed(seed)
    train = TensorBatches(xt, yt, task.batch_size, shuffle=task.shuffle, generator=gen)
    val = TensorBatches(xv, yv, val_batch, shuffle=False)
    return TaskData(train=train, val=val, num_classes=num_classes, generator=gen,
                    info={"n_train": len(yt), "n_val": len(yv), **(info or {})})


def sample_labels(logits: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """One label per row drawn from ``softmax(logits)`` (Gumbel-max), int64."""
    gumbel = -np.log(-np.log(rng.uniform(1e-12, 1.0, size=logits.shape)))
    return np.argmax(logits + gumbel, axis=1).astype(np.int64)


def bayes_loss(logits: np.ndarray, labels: np.ndarray) -> float:
    """Mean cross-entropy of the teacher's own softmax on ``labels``: the loss floor of the task."""
    z = logits - logits.max(axis=1, keepdims=True)
    logp = z - np.log(np.exp(z).sum(axis=1, keepdims=True))
    return float(-logp[np.arange(len(labels)), labels].mean())


def log_scales(dim: int, condition: float) -> np.ndarray:
    """Per-feature standard deviations, log-spaced so the feature covariance has condition number
    ``condition`` (scales from ``condition**-0.25`` to ``condition**0.25``), in a fixed shuffled order."""
    exps = np.linspace(-0.25, 0.25, dim)
    order = np.random.default_rng(12345).permutation(dim)
    return (condition ** exps[order]).astype(np.float64)


def split(n_train: int, *arrays):
    """``(a[:n_train] for a) + (a[n_train:] for a)`` for each array, as train arrays then val arrays."""
    return tuple(a[:n_train] for a in arrays) + tuple(a[n_train:] for a in arrays)
