"""The paper's CIFAR-10 surrogates ``cifar10-convnet`` and ``cifar10-convnet48`` (docs/paper.md §5.4.1-5.4.4).

Provides ``deapnos_surrogates`` (:func:`cifar10_tasks`) and :func:`read_cifar10`, which reads the official
python-format batches with :class:`CifarUnpickler`: only plain containers and numpy arrays are built, any
other global is refused before anything runs.  Models, augmentation, budgets, the split, the data layout
and where it is looked for: docs/evaluation.md, "cifar10-convnet, cifar10-convnet48".
"""
from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import torch

from deapnos.evaluate.data import (TensorBatches, channel_stats, normalize, random_crop_reflect, random_cutout,
                                   random_hflip, to_float)
from deapnos.evaluate.tasks import Task, TaskData, TaskDataError
from deapnos.hookspecs import hookimpl

from .convnet import ConvNet

CIFAR10_URL = "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"
CIFAR10_HOW = (f"Download the official python version from {CIFAR10_URL} and extract it "
               "(tar xzf cifar-10-python.tar.gz): the folder cifar-10-batches-py must contain "
               "data_batch_1 ... data_batch_5 and test_batch.")
TRAIN_FILES = tuple(f"data_batch_{i}" for i in range(1, 6))


class CifarUnpickler(pickle.Unpickler):
    """Unpickles the python-format CIFAR files and nothing else: the only globals it resolves are
    numpy's array and scalar reconstructors (as numpy 1.x and 2.x name them) and ``_codecs.encode``
    (bytes pickled by Python 3 with protocol 2).  Every other global raises UnpicklingError, so a
    crafted file cannot call anything."""

    ALLOWED = frozenset({
        ("numpy", "ndarray"), ("numpy", "dtype"),
        ("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
        ("numpy.core.multiarray", "scalar"), ("numpy._core.multiarray", "scalar"),
        ("numpy.core.numeric", "_frombuffer"), ("numpy._core.numeric", "_frombuffer"),
        ("_codecs", "encode"),
    })

    def find_class(self, module, name):
        if (module, name) not in self.ALLOWED:
            raise pickle.UnpicklingError(f"global {module}.{name} is not allowed in a CIFAR file (only numpy "
                                         f"arrays, numbers, bytes, lists and dicts)")
        return super().find_class(module, name)


def read_cifar_file(path: Path, label_key: bytes = b"labels", task: str = "cifar") -> tuple[np.ndarray, np.ndarray]:
    """Images ``(N, 3, 32, 32)`` uint8 and labels ``(N,)`` int64 of one python-format CIFAR file."""
    path = Path(path)
    try:
        with open(path, "rb") as f:
            # the official CIFAR format is a pickle: read by the restricted unpickler only
            d = CifarUnpickler(f, encoding="bytes").load()
    except (OSError, pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError, IndexError,
            KeyError, RecursionError, MemoryError) as exc:
        raise TaskDataError(f"task {task!r}: cannot read {str(path)!r} as a python-format CIFAR file: "
                            f"{type(exc).__name__}: {exc}") from None
    if not isinstance(d, dict) or b"data" not in d or label_key not in d:
        keys = sorted(k for k in d) if isinstance(d, dict) else type(d).__name__
        raise TaskDataError(f"task {task!r}: {str(path)!r} is not a CIFAR batch: expected keys b'data' and "
                            f"{label_key!r}, found {keys}")
    data = np.asarray(d[b"data"])
    labels = np.asarray(d[label_key], dtype=np.int64)
    if data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3072:
        raise TaskDataError(f"task {task!r}: {str(path)!r}: b'data' must be uint8 of shape (N, 3072), got "
                            f"{data.dtype} {data.shape}")
    if labels.shape != (data.shape[0],):
        raise TaskDataError(f"task {task!r}: {str(path)!r}: {len(labels)} labels for {data.shape[0]} images")
    return data.reshape(-1, 3, 32, 32), labels


def read_cifar10(folder: Path, task: str = "cifar10", test: bool = False):
    """(train images, train labels, test images or None, test labels or None) of a CIFAR-10 folder."""
    parts = [read_cifar_file(folder / name, task=task) for name in TRAIN_FILES]
    x = np.concatenate([p[0] for p in parts])
    y = np.concatenate([p[1] for p in parts])
    xt = yt = None
    if test and (folder / "test_batch").exists():
        xt, yt = read_cifar_file(folder / "test_batch", task=task)
    for labels in (y, yt):
        if labels is not None and len(labels) and (labels.min() < 0 or labels.max() > 9):
            raise TaskDataError(f"task {task!r}: labels outside 0..9 in {str(folder)!r}")
    return x, y, xt, yt


def validation_split(n: int, n_val: int = 5000) -> int:
    """Index where validation starts: 45,000 for the real 50,000 images, the last tenth otherwise."""
    return n - n_val if n >= 2 * n_val else n - max(1, n // 10)


class CifarTransform:
    """Batch transform of uint8 images (picklable): /255, or augment + normalise (module docstring)."""

    def __init__(self, mean=None, std=None, augment: bool = False, pad: int = 4, cutout: int = 8):
        self.mean, self.std, self.augment, self.pad, self.cutout = mean, std, augment, pad, cutout

    def __call__(self, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        if self.mean is None:
            return to_float(x)
        x = x.to(torch.float32)               # 0-255 units, as the statistics
        if self.augment:
            x = random_crop_reflect(x, self.pad, generator)
            x = random_hflip(x, generator)
        x = normalize(x, self.mean, self.std)
        if self.augment and self.cutout:
            x = random_cutout(x, self.cutout, generator)
        return x


def cifar_task_data(task: Task, device: torch.device, seed: int, x: np.ndarray, y: np.ndarray,
                    xt: np.ndarray | None, yt: np.ndarray | None, num_classes: int) -> TaskData:
    """TaskData of CIFAR arrays: the train/val split, the preprocessing of ``task.options``
    (``normalize``, ``augment``), in-memory batches on ``device``."""
    split = validation_split(len(y), task.options.get("n_val", 5000))
    X = torch.from_numpy(x).to(device)
    Y = torch.from_numpy(y).to(device)
    if task.options.get("normalize"):
        mean, std = channel_stats(X)
        train_tf = CifarTransform(mean, std, augment=bool(task.options.get("augment")),
                                  cutout=task.options.get("cutout", 8))
        val_tf = CifarTransform(mean, std, augment=False)
    else:
        train_tf = val_tf = CifarTransform()
    gen = torch.Generator().manual_seed(seed)
    train = TensorBatches(X[:split], Y[:split], task.batch_size, shuffle=task.shuffle, generator=gen,
                          transform=train_tf)
    val = TensorBatches(X[split:], Y[split:], 1000, shuffle=False, transform=val_tf)
    test = None
    if xt is not None:
        test = TensorBatches(torch.from_numpy(xt).to(device), torch.from_numpy(yt).to(device), 1000,
                             shuffle=False, transform=val_tf)
    return TaskData(train=train, val=val, test=test, num_classes=num_classes, generator=gen,
                    info={"n_train": split, "n_val": len(y) - split})


def cifar10_data(task: Task, device: torch.device, seed: int) -> TaskData:
    folder = task.data_dir()
    x, y, xt, yt = read_cifar10(folder, task.name, test=task.options.get("test", True))
    return cifar_task_data(task, device, seed, x, y, xt, yt, 10)


def convnet_model(task: Task, num_classes: int) -> torch.nn.Module:
    return ConvNet(base=task.options.get("base", 32), num_classes=num_classes, in_channels=3,
                   bn_momentum=task.options.get("bn_momentum", 0.01))


def _cifar10_task(name: str, description: str, **kw) -> Task:
    return Task(name=name, description=description, data_factory=cifar10_data, model_factory=convnet_model,
                batch_size=128, epochs=40, warmup_steps=800, num_classes=10, data_env="DEAPNOS_CIFAR10",
                data_subdir="cifar-10-batches-py", required_files=TRAIN_FILES, how_to_get=CIFAR10_HOW,
                plugin="cifar10", kind="surrogate", **kw)


def cifar10_tasks() -> list[Task]:
    return [
        _cifar10_task("cifar10-convnet", "CIFAR-10, ConvNet base 32, pixels/255, 40x200 steps (paper's "
                      "initial-population surrogate)", steps_per_epoch=200, options={"base": 32}),
        _cifar10_task("cifar10-convnet48", "CIFAR-10, ConvNet base 48, normalised + pad/crop/flip/cutout, "
                      "40x400 steps (paper's evolution surrogate)", steps_per_epoch=400, screen_steps_per_epoch=200,
                      options={"base": 48, "normalize": True, "augment": True, "cutout": 8}),
    ]


@hookimpl
def deapnos_surrogates():
    return cifar10_tasks()
