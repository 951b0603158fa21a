"""Fitness tasks on images with timm's EfficientNetV2: CIFAR-100 and TinyImageNet from scratch, three fine-tunings.

Provides ``deapnos_fitness_tasks`` (``cifar100-effnetv2s``, ``tinyimagenet-effnetv2s``, ``flowers102-finetune``,
``cars196-finetune``, ``caltech101-finetune``) and ``python -m deapnos_plugins.vision_tasks prepare``, which
writes the fine-tuning data layout.  Nothing is downloaded.  Data layouts, the local checkpoint (and how to
make it) and budgets: docs/evaluation.md, "Fitness tasks (plugin vision_tasks)".
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from deapnos.evaluate.tasks import Task, TaskData, TaskDataError
from deapnos.hookspecs import hookimpl

from .cifar10 import cifar_task_data, read_cifar_file

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
IMAGE_EXTS = (".jpg", ".jpeg", ".png")
CHECKPOINT_ENV = "DEAPNOS_EFFNETV2_CHECKPOINT"
# deapnos' choice (not the paper's nor the code's): the paper screen's thresholds lowered for 100-200 classes
FEW_CLASS_THRESHOLDS = {"screen_early_stop_acc": 0.05, "stage_a_threshold": 0.05, "threshold": 0.08,
                        "full_early_stop_acc": 0.08}

CIFAR100_HOW = ("Download the official python version from https://www.cs.toronto.edu/~kriz/cifar-100-python.tar.gz "
                "and extract it: the folder cifar-100-python must contain train and test.")
TINY_HOW = ("Download http://cs231n.stanford.edu/tiny-imagenet-200.zip and unzip it: the folder tiny-imagenet-200 "
            "must contain wnids.txt, train/<wnid>/images/*.JPEG and val/val_annotations.txt with val/images/.")
FOLDER_HOW = ("Expected an ImageFolder layout, train/<class>/*.jpg and val/<class>/*.jpg; create it with "
              "'python -m deapnos_plugins.vision_tasks prepare {name} ROOT OUT' on a machine where torchvision "
              "can download {dataset}.")


# -- models --------------------------------------------------------------------------------------

def timm_model(task: Task, num_classes: int) -> torch.nn.Module:
    """``timm.create_model(options["model"], pretrained=False, ...)``; loads ``options``' checkpoint
    when the task fine-tunes (``options["finetune"]``)."""
    import timm
    name = task.options.get("model", "efficientnetv2_s")
    model = timm.create_model(name, pretrained=False, num_classes=num_classes,
                              **task.options.get("model_kwargs", {}))
    if task.options.get("finetune"):
        load_checkpoint(model, checkpoint_path(task), task)
    return model


def checkpoint_path(task: Task) -> Path:
    if task.options.get("checkpoint"):
        return Path(task.options["checkpoint"]).expanduser()
    if os.environ.get(CHECKPOINT_ENV):
        return Path(os.environ[CHECKPOINT_ENV]).expanduser()
    root = os.environ.get("DEAPNOS_DATA") or "data"
    return Path(root).expanduser() / "checkpoints" / f"{task.options.get('model', 'tf_efficientnetv2_s')}.pth"


def check_checkpoint(task: Task) -> None:
    """Task ``check`` hook of the fine-tuning tasks: the checkpoint file must exist."""
    path = checkpoint_path(task)
    if not path.is_file():
        model = task.options.get("model", "tf_efficientnetv2_s")
        raise TaskDataError(
            f"task {task.name!r}: pretrained checkpoint {str(path)!r} not found. Set options['checkpoint'] or "
            f"${CHECKPOINT_ENV} to a timm state-dict file of {model!r}; make one on a connected machine with: "
            f"python -c \"import timm, torch; m = timm.create_model('{model}.in21k_ft_in1k', pretrained=True); "
            f"torch.save(m.state_dict(), '{path.name}')\"")


def load_checkpoint(model: torch.nn.Module, path: Path, task: Task) -> None:
    """Load a state dict into ``model``, skipping the classifier when its shape differs."""
    check_checkpoint(task)
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file
            state = load_file(str(path))
        else:
            state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001
        raise TaskDataError(f"task {task.name!r}: cannot read checkpoint {str(path)!r}: {type(exc).__name__}: "
                            f"{exc}") from None
    for key in ("state_dict", "model", "state_dict_ema"):
        if isinstance(state, dict) and key in state and isinstance(state[key], dict):
            state = state[key]
            break
    own = model.state_dict()
    kept = {k.removeprefix("module."): v for k, v in state.items()}
    skipped = [k for k, v in kept.items() if k in own and own[k].shape != v.shape]
    kept = {k: v for k, v in kept.items() if k not in skipped}
    missing, _unexpected = model.load_state_dict(kept, strict=False)
    classifier = _classifier(model)
    head = {f"{n}.{p}" for n, m in model.named_modules() if m is classifier for p in ("weight", "bias")}
    bad = [k for k in missing if k not in head]
    if bad:
        raise TaskDataError(f"task {task.name!r}: checkpoint {str(path)!r} does not fit model "
                            f"{task.options.get('model')!r}: {len(bad)} tensors missing, e.g. {bad[:3]}")


def _classifier(model):
    get = getattr(model, "get_classifier", None)
    return get() if get is not None else None


# -- file datasets ------------------------------------------------------------------------------

class ImageFiles(Dataset):
    """``(path, label)`` samples read with PIL (RGB) and a torchvision transform."""

    def __init__(self, samples: list[tuple[str, int]], transform):
        self.samples, self.transform = samples, transform

    def __len__(self):
        return len(self.samples)

    def __getitem__(self, i):
        from PIL import Image
        path, label = self.samples[i]
        with Image.open(path) as im:
            img = im.convert("RGB")
        return self.transform(img), label


def _images_in(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_EXTS)


def scan_image_folder(root: Path, classes: list[str] | None = None, task: str = "") -> tuple[list, list[str]]:
    """Samples of ``root/<class>/*`` and the class list (sorted folder names unless given)."""
    if not root.is_dir():
        raise TaskDataError(f"task {task!r}: folder {str(root)!r} does not exist")
    if classes is None:
        classes = sorted(p.name for p in root.iterdir() if p.is_dir())
    index = {c: i for i, c in enumerate(classes)}
    samples = []
    for d in sorted(p for p in root.iterdir() if p.is_dir()):
        if d.name not in index:
            raise TaskDataError(f"task {task!r}: class folder {str(d)!r} is not among the training classes")
        samples += [(str(p), index[d.name]) for p in _images_in(d)]
    if not samples:
        raise TaskDataError(f"task {task!r}: no images ({', '.join(IMAGE_EXTS)}) under {str(root)!r}")
    return samples, classes


def _transforms(task: Task, size: int, scratch_crop: bool):
    from torchvision import transforms as T
    norm = T.Normalize(task.options.get("mean", IMAGENET_MEAN), task.options.get("std", IMAGENET_STD))
    if scratch_crop:   # low-resolution from scratch: pad + crop + flip
        train = T.Compose([T.Resize(size), T.RandomCrop(size, padding=size // 16, padding_mode="reflect"),
                           T.RandomHorizontalFlip(), T.ToTensor(), norm])
        val = T.Compose([T.Resize(size), T.CenterCrop(size), T.ToTensor(), norm])
    else:              # fine-tuning at ImageNet-like resolution
        train = T.Compose([T.RandomResizedCrop(size, scale=(0.25, 1.0)), T.RandomHorizontalFlip(), T.ToTensor(),
                           norm])
        val = T.Compose([T.Resize(int(round(size * 256 / 224))), T.CenterCrop(size), T.ToTensor(), norm])
    return train, val


def _loaders(task: Task, device: torch.device, seed: int, train_samples, val_samples, test_samples,
             num_classes: int, scratch_crop: bool) -> TaskData:
    size = task.options.get("image_size", 224)
    train_tf, val_tf = _transforms(task, size, scratch_crop)
    workers = int(task.options.get("num_workers", 4))
    pin = device.type == "cuda"
    gen = torch.Generator().manual_seed(seed)

    def loader(samples, tf, shuffle, batch, train=False):
        # training drops a short last batch: a batch of one breaks BatchNorm at 1x1 resolution
        return DataLoader(ImageFiles(samples, tf), batch_size=batch, shuffle=shuffle,
                          generator=gen if shuffle else None, num_workers=workers, pin_memory=pin,
                          drop_last=train and len(samples) > batch)
    eval_batch = task.options.get("eval_batch_size", 2 * task.batch_size)
    return TaskData(train=loader(train_samples, train_tf, task.shuffle, task.batch_size, train=True),
                    val=loader(val_samples, val_tf, False, eval_batch),
                    test=loader(test_samples, val_tf, False, eval_batch) if test_samples else None,
                    num_classes=num_classes, generator=gen,
                    info={"n_train": len(train_samples), "n_val": len(val_samples)})


# -- data factories -----------------------------------------------------------------------------

def cifar100_data(task: Task, device: torch.device, seed: int) -> TaskData:
    folder = task.data_dir()
    x, y = read_cifar_file(folder / "train", b"fine_labels", task.name)
    xt = yt = None
    if (folder / "test").exists():
        xt, yt = read_cifar_file(folder / "test", b"fine_labels", task.name)
    if len(y) and (y.min() < 0 or y.max() > 99):
        raise TaskDataError(f"task {task.name!r}: fine labels outside 0..99 in {str(folder)!r}")
    return cifar_task_data(task, device, seed, x, y, xt, yt, 100)


def tinyimagenet_data(task: Task, device: torch.device, seed: int) -> TaskData:
    root = task.data_dir()
    wnids_file = root / "wnids.txt"
    if wnids_file.exists():
        wnids = [w.strip() for w in wnids_file.read_text().split() if w.strip()]
    else:
        wnids = sorted(p.name for p in (root / "train").iterdir() if p.is_dir())
    index = {w: i for i, w in enumerate(wnids)}
    train = []
    for w in wnids:
        folder = root / "train" / w / "images"
        if not folder.is_dir():
            raise TaskDataError(f"task {task.name!r}: {str(folder)!r} is missing (wnid listed in wnids.txt)")
        train += [(str(p), index[w]) for p in _images_in(folder)]
    val = []
    for n, line in enumerate((root / "val" / "val_annotations.txt").read_text().splitlines(), 1):
        parts = line.split("\t")
        if not line.strip():
            continue
        if len(parts) < 2 or parts[1] not in index:
            raise TaskDataError(f"task {task.name!r}: val/val_annotations.txt line {n}: expected "
                                f"'file<TAB>wnid<TAB>...' with a known wnid, got {line[:80]!r}")
        val.append((str(root / "val" / "images" / parts[0]), index[parts[1]]))
    if not train or not val:
        raise TaskDataError(f"task {task.name!r}: no training or validation images under {str(root)!r}")
    return _loaders(task, device, seed, train, val, None, len(wnids), scratch_crop=True)


def image_folder_data(task: Task, device: torch.device, seed: int) -> TaskData:
    root = task.data_dir()
    train, classes = scan_image_folder(root / "train", task=task.name)
    val, _ = scan_image_folder(root / "val", classes, task.name)
    test = scan_image_folder(root / "test", classes, task.name)[0] if (root / "test").is_dir() else None
    return _loaders(task, device, seed, train, val, test, len(classes), scratch_crop=False)


# -- tasks --------------------------------------------------------------------------------------

def _scratch(name, description, data_factory, spe, num_classes, options, **kw) -> Task:
    return Task(name=name, description=description, data_factory=data_factory, model_factory=timm_model,
                steps_per_epoch=spe, epochs=40, warmup_steps=4 * spe, batch_size=128, num_classes=num_classes,
                options={"model": "efficientnetv2_s", **options}, protocol_overrides=dict(FEW_CLASS_THRESHOLDS),
                plugin="vision_tasks", kind="fitness", **kw)


def _finetune(name, dataset, spe, num_classes) -> Task:
    return Task(name=name, description=f"fine-tune tf_efficientnetv2_s (local checkpoint) on {dataset}",
                data_factory=image_folder_data, model_factory=timm_model, steps_per_epoch=spe, epochs=40,
                warmup_steps=4 * spe, batch_size=32, num_classes=num_classes,
                data_env=f"DEAPNOS_{name.split('-')[0].upper()}", data_subdir=name.split("-")[0],
                required_files=("train", "val"), how_to_get=FOLDER_HOW.format(name=name.split("-")[0], dataset=dataset),
                options={"model": "tf_efficientnetv2_s", "finetune": True, "image_size": 224},
                protocol_overrides=dict(FEW_CLASS_THRESHOLDS), check=check_checkpoint, plugin="vision_tasks",
                kind="fitness")


def vision_tasks() -> list[Task]:
    return [
        _scratch("cifar100-effnetv2s", "CIFAR-100 from scratch, timm efficientnetv2_s", cifar100_data, 352, 100,
                 {"normalize": True, "augment": True, "cutout": 8}, data_env="DEAPNOS_CIFAR100",
                 data_subdir="cifar-100-python", required_files=("train",), how_to_get=CIFAR100_HOW),
        _scratch("tinyimagenet-effnetv2s", "TinyImageNet (64x64, 200 classes) from scratch, timm efficientnetv2_s",
                 tinyimagenet_data, 782, 200, {"image_size": 64}, data_env="DEAPNOS_TINYIMAGENET",
                 data_subdir="tiny-imagenet-200", required_files=("train", "val/val_annotations.txt"),
                 how_to_get=TINY_HOW),
        _finetune("flowers102-finetune", "Oxford Flowers-102", 32, 102),
        _finetune("cars196-finetune", "Stanford Cars (196 classes)", 230, 196),
        _finetune("caltech101-finetune", "Caltech-101", 150, 101),
    ]


@hookimpl
def deapnos_fitness_tasks():
    return vision_tasks()


# -- preparing the ImageFolder layouts (on a connected machine) ---------------------------------

def export_image_folder(items, out: Path, split: str) -> int:
    """Write ``(PIL image, class name)`` items as ``out/split/<class>/<n>.jpg``; returns the count."""
    n = 0
    for img, cls in items:
        folder = Path(out) / split / str(cls).replace("/", "_")
        folder.mkdir(parents=True, exist_ok=True)
        img.convert("RGB").save(folder / f"{n:06d}.jpg", quality=95)
        n += 1
    return n


def _split_indices(labels, fractions, seed: int = 0) -> list[list[int]]:
    """Per-class fixed split of indices by ``fractions`` (the rest goes to the last part)."""
    rng = np.random.default_rng(seed)
    parts: list[list[int]] = [[] for _ in fractions]
    labels = np.asarray(labels)
    for c in np.unique(labels):
        idx = rng.permutation(np.flatnonzero(labels == c))
        start = 0
        for k, frac in enumerate(fractions):
            end = len(idx) if k == len(fractions) - 1 else start + int(round(frac * len(idx)))
            parts[k] += idx[start:end].tolist()
            start = end
    return parts


def prepare(name: str, root: str, out: str) -> None:
    """Write the ImageFolder layout of ``flowers102``, ``cars196`` or ``caltech101`` from torchvision."""
    from torchvision import datasets
    out_path = Path(out)
    if name == "flowers102":
        for split in ("train", "val", "test"):
            ds = datasets.Flowers102(root, split=split, download=True)
            export_image_folder(((img, f"{label:03d}") for img, label in ds), out_path, split)
    elif name == "cars196":
        train = datasets.StanfordCars(root, split="train", download=False)
        labels = [label for _, label in train._samples]
        tr, va = _split_indices(labels, (0.9, 0.1))
        for split, idx in (("train", tr), ("val", va)):
            export_image_folder(((train[i][0], train.classes[train[i][1]]) for i in idx), out_path, split)
        test = datasets.StanfordCars(root, split="test", download=False)
        export_image_folder(((img, test.classes[label]) for img, label in test), out_path, "test")
    elif name == "caltech101":
        ds = datasets.Caltech101(root, target_type="category", download=True)
        keep = [i for i, y in enumerate(ds.y) if ds.categories[y] != "BACKGROUND_Google"]
        parts = _split_indices([ds.y[i] for i in keep], (0.70, 0.15, 0.15))
        for split, idx in zip(("train", "val", "test"), parts):
            export_image_folder(((ds[keep[i]][0], ds.categories[ds[keep[i]][1]]) for i in idx), out_path, split)
    else:
        raise SystemExit(f"unknown dataset {name!r}: flowers102, cars196 or caltech101")


if __name__ == "__main__":   # pragma: no cover - needs a network
    import sys
    if len(sys.argv) != 5 or sys.argv[1] != "prepare":
        raise SystemExit("usage: python -m deapnos_plugins.vision_tasks prepare {flowers102,cars196,caltech101} "
                         "ROOT OUT")
    prepare(sys.argv[2], sys.argv[3], sys.argv[4])
