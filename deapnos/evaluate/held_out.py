"""A held-out test split for every task: its own test split where it has one, else the second half
of its validation split (the first half stays the one that chooses the LR).  ``deapnos reproduce``
scores on it, so that the split that picks the LR never scores it."""
from __future__ import annotations

import dataclasses


class HeldOutSplit:
    """A data factory that gives a task a test split: its own when it has one, else the second half of
    its validation split (the first half stays the validation split).  Picklable."""

    def __init__(self, factory):
        self.factory = factory

    def __call__(self, task, device, seed):
        data = self.factory(task, device, seed)
        if data.test is not None:
            return data
        val, test = split_in_two(data.val)
        info = {**data.info, "n_val": _size(val), "n_test": _size(test), "test_split": "second half of validation"}
        return dataclasses.replace(data, val=val, test=test, info=info)


def _size(batches) -> int | None:
    from torch.utils.data import DataLoader

    from .data import TensorBatches
    if isinstance(batches, TensorBatches):
        return len(batches.inputs)
    if isinstance(batches, DataLoader):
        return len(batches.dataset)          # type: ignore[arg-type]
    return None


def split_in_two(batches):
    """Two halves of an in-order validation set (``TensorBatches`` or a ``DataLoader``)."""
    from torch.utils.data import DataLoader, Subset

    from .data import TensorBatches
    if isinstance(batches, TensorBatches):
        n = len(batches.inputs)
        if n < 2:
            raise ValueError("a validation split of fewer than 2 examples cannot give a test split")
        h = n // 2

        def part(sl):
            return TensorBatches(batches.inputs[sl], batches.targets[sl], batches.batch_size, shuffle=False,
                                 transform=batches.transform)
        return part(slice(0, h)), part(slice(h, n))
    if isinstance(batches, DataLoader):
        n = len(batches.dataset)
        h = n // 2

        def loader(idx):
            return DataLoader(Subset(batches.dataset, idx), batch_size=batches.batch_size, shuffle=False,
                              num_workers=batches.num_workers, pin_memory=batches.pin_memory)
        return loader(range(0, h)), loader(range(h, n))
    raise TypeError(f"cannot split a validation set of type {type(batches).__name__} for a test split")


def split_sizes(task, device: str) -> dict:
    """How many examples choose the LR (validation) and score it (test), and where the test split comes from."""
    data = task.build_data("cpu" if device.startswith("cuda") else device, 0)
    return {"validation": data.info.get("n_val", _size(data.val)), "test": data.info.get("n_test", _size(data.test)),
            "test_split": data.info.get("test_split", "the task's own test split"), "metric": task.metric}
