"""Tiny fake datasets in the real on-disk formats, so tests exercise the real loading code."""
from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np


def write_cifar10(root: Path, per_batch: int = 24, test: int = 20, seed: int = 0) -> Path:
    """``root/cifar-10-batches-py/data_batch_1..5`` and ``test_batch`` (python pickles, as the official
    archive).  Returns the ``cifar-10-batches-py`` folder."""
    rng = np.random.default_rng(seed)
    folder = Path(root) / "cifar-10-batches-py"
    folder.mkdir(parents=True, exist_ok=True)
    names = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]
    for name in names:
        n = test if name == "test_batch" else per_batch
        labels = rng.integers(0, 10, n)
        data = rng.integers(0, 256, (n, 3072), dtype=np.uint8)
        data[:, :1024] = (labels[:, None] * 25).astype(np.uint8)   # a learnable signal in the red plane
        with open(folder / name, "wb") as f:
            pickle.dump({b"batch_label": name.encode(), b"labels": [int(v) for v in labels], b"data": data,
                         b"filenames": [b"x.png"] * n}, f)
    return folder


def write_cifar100(root: Path, n_train: int = 60, n_test: int = 20, seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    folder = Path(root) / "cifar-100-python"
    folder.mkdir(parents=True, exist_ok=True)
    for name, n in (("train", n_train), ("test", n_test)):
        with open(folder / name, "wb") as f:
            pickle.dump({b"data": rng.integers(0, 256, (n, 3072), dtype=np.uint8),
                         b"fine_labels": [int(v) for v in rng.integers(0, 100, n)],
                         b"coarse_labels": [int(v) for v in rng.integers(0, 20, n)]}, f)
    return folder


def _image(rng, size: int, fmt: str, path: Path):
    from PIL import Image
    arr = rng.integers(0, 256, (size, size, 3), dtype=np.uint8)
    Image.fromarray(arr).save(path, format=fmt)


def write_tinyimagenet(root: Path, classes: int = 3, per_class: int = 4, val_per_class: int = 2,
                       size: int = 16, seed: int = 0) -> Path:
    """``tiny-imagenet-200/`` with wnids.txt, train/<wnid>/images/*.JPEG, val/images + annotations."""
    rng = np.random.default_rng(seed)
    folder = Path(root) / "tiny-imagenet-200"
    wnids = [f"n{1000 + i:08d}" for i in range(classes)]
    (folder / "val" / "images").mkdir(parents=True, exist_ok=True)
    (folder / "wnids.txt").write_text("\n".join(wnids) + "\n")
    lines = []
    for w in wnids:
        d = folder / "train" / w / "images"
        d.mkdir(parents=True, exist_ok=True)
        for k in range(per_class):
            _image(rng, size, "JPEG", d / f"{w}_{k}.JPEG")
        (folder / "train" / w / f"{w}_boxes.txt").write_text("")
        for k in range(val_per_class):
            name = f"val_{w}_{k}.JPEG"
            _image(rng, size, "JPEG", folder / "val" / "images" / name)
            lines.append(f"{name}\t{w}\t0\t0\t10\t10")
    (folder / "val" / "val_annotations.txt").write_text("\n".join(lines) + "\n")
    return folder


def write_image_folder(root: Path, classes: int = 3, per_class: int = 3, size: int = 20, seed: int = 0,
                       splits=("train", "val")) -> Path:
    """``root/{train,val}/<class>/*.jpg`` (and .png) images."""
    rng = np.random.default_rng(seed)
    for split in splits:
        for c in range(classes):
            d = Path(root) / split / f"class_{c:02d}"
            d.mkdir(parents=True, exist_ok=True)
            for k in range(per_class):
                fmt, ext = ("PNG", "png") if k % 2 else ("JPEG", "jpg")
                _image(rng, size, fmt, d / f"img{k}.{ext}")
    return Path(root)


PTB_SENTENCES = [
    "the company said it expects to report a loss",
    "the market fell sharply in early trading",
    "investors said the company 's shares fell",
    "a spokesman said the loss was expected",
]


def write_ptb(root: Path, lines: int = 60, seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    folder = Path(root)
    folder.mkdir(parents=True, exist_ok=True)
    for name, n in (("ptb.train.txt", lines), ("ptb.valid.txt", lines // 3), ("ptb.test.txt", lines // 3)):
        text = "\n".join(" " + PTB_SENTENCES[int(rng.integers(len(PTB_SENTENCES)))] + " <unk> " for _ in range(n))
        (folder / name).write_text(text + "\n")
    return folder
