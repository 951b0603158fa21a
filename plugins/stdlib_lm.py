"""``stdlib-lm``: a tiny character-level transformer language model on standard-library Python sources.

Provides ``deapnos_surrogates`` (:func:`stdlib_lm_task`): :class:`~.char_transformer.CharTransformer`
on the text of :mod:`.stdlib_text` (no download), metric ``log_loss``, a budget far too short to
converge, so the score measures how fast an optimizer makes a transformer learn.
Data, model and budget: docs/evaluation.md, "The embedded suite".
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
        # vmap has no batching rule for attention: batched LR screening runs it member by member, and
        # measured no faster than one run per LR (docs/evaluation.md, "Batched LR screening")
        protocol_overrides={**NO_ACCURACY_THRESHOLDS, "batch_lrs": 0},
        plugin="stdlib_lm", kind="surrogate", suite=True)


@hookimpl
def deapnos_surrogates():
    return [stdlib_lm_task()]
