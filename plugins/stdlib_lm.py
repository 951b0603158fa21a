"""``stdlib-lm``: a tiny character-level transformer language model on standard-library Python sources.

Data (no download): the files of :mod:`.stdlib_text` in the running interpreter's stdlib folder
(``options["stdlib_dir"]`` to change it), ASCII-coded (vocabulary 128), cut into non-overlapping
windows of 32 characters (5,782 training windows on Python 3.11); validation: 128 windows spread
evenly over two other stdlib files (4,096 characters).

Model: :class:`~.char_transformer.CharTransformer`, 2 pre-LN layers, d = 64, 4 heads, context 32
(about 120k parameters).

Budget: batch 16 windows, ``EPOCHS`` x ``STEPS`` = 10 x 15 steps (T = 150, under half a pass over
the text), W = 15; screening 4 x 4 steps (about the warm-up).  The model is far from converged at the
end (validation loss about 2.6 nats per character, next-character accuracy about 0.39), so the score
measures how fast an optimizer makes a transformer learn.

Metric ``log_loss``: -ln(mean validation cross-entropy in nats per character); the curve also holds
next-character accuracy.  The paper's accuracy thresholds (for ``screen="paper"``) are set to 0, as for
``ptb-lstm``: next-character accuracy is not comparable with 10-class accuracies.
"""
from __future__ import annotations

import torch

from deapnos.evaluate.tasks import Task, TaskData
from deapnos.hookspecs import hookimpl

from .char_transformer import CharTransformer
from .stdlib_text import VOCAB, lm_arrays
from .suite_data import NO_ACCURACY_THRESHOLDS, arrays_data

EPOCHS, STEPS = 10, 15


def stdlib_lm_data(task: Task, device: torch.device, seed: int) -> TaskData:
    o = task.options
    arrays = lm_arrays(o.get("stdlib_dir"), o.get("context", 32), o.get("val_windows", 128), task.name)
    return arrays_data(task, device, seed, arrays, VOCAB, val_batch=256)


def stdlib_lm_model(task: Task, num_classes: int) -> torch.nn.Module:
    o = task.options
    return CharTransformer(num_classes, o.get("d", 64), o.get("layers", 2), o.get("heads", 4),
                           o.get("context", 32))


def stdlib_lm_task() -> Task:
    return Task(
        name="stdlib-lm",
        description="char-level transformer LM (2 layers, d=64, context 32) on stdlib .py sources; log_loss",
        data_factory=stdlib_lm_data, model_factory=stdlib_lm_model,
        steps_per_epoch=STEPS, epochs=EPOCHS, screen_steps_per_epoch=4, batch_size=16,
        warmup_steps=EPOCHS * STEPS // 10, metric="log_loss", num_classes=VOCAB,
        options={"context": 32, "d": 64, "layers": 2, "heads": 4, "val_windows": 128},
        protocol_overrides=dict(NO_ACCURACY_THRESHOLDS),
        plugin="stdlib_lm", kind="surrogate", suite=True)


@hookimpl
def deapnos_surrogates():
    return [stdlib_lm_task()]
