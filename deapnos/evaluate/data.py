"""Small data helpers that task plugins share: in-memory batching and batched image augmentation.

Everything random draws from the :class:`torch.Generator` it is given (a CPU generator), so a seeded
run sees the same batches and the same augmentations on any device.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F


class TensorBatches:
    """Batches ``(inputs[idx], targets[idx])`` of in-memory tensors, one pass per ``iter()``.

    ``shuffle``: draw a new permutation from ``generator`` at the start of every pass (the default);
    ``shuffle=False`` reads in order on every pass, as the paper's tf.data pipeline did.
    ``transform(inputs, generator) -> inputs`` runs on each batch (augmentation, normalisation,
    dtype conversion).  ``drop_last=False`` keeps a short last batch, as ``tf.data.batch`` did.
    """

    def __init__(self, inputs: torch.Tensor, targets: torch.Tensor, batch_size: int, shuffle: bool = True,
                 generator: torch.Generator | None = None, drop_last: bool = False,
                 transform: Callable | None = None):
        if len(inputs) != len(targets):
            raise ValueError(f"inputs ({len(inputs)}) and targets ({len(targets)}) differ in length")
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.inputs, self.targets = inputs, targets
        self.batch_size, self.shuffle, self.drop_last = batch_size, shuffle, drop_last
        self.generator = generator
        self.transform = transform

    def __len__(self) -> int:
        n, b = len(self.inputs), self.batch_size
        return n // b if self.drop_last else (n + b - 1) // b

    def __iter__(self):
        n, b = len(self.inputs), self.batch_size
        stop = n - n % b if self.drop_last else n
        perm = None
        if self.shuffle:
            perm = torch.randperm(n, generator=self.generator).to(self.inputs.device)
        for start in range(0, stop, b):
            if perm is None:
                x, y = self.inputs[start:start + b], self.targets[start:start + b]
            else:
                idx = perm[start:start + b]
                x, y = self.inputs[idx], self.targets[idx]
            if self.transform is not None:
                x = self.transform(x, self.generator)
            yield x, y


def to_float(x: torch.Tensor, scale: float = 1.0 / 255.0) -> torch.Tensor:
    """uint8 images -> float32 times ``scale``."""
    return x.to(torch.float32).mul_(scale)


def normalize(x: torch.Tensor, mean: Sequence[float], std: Sequence[float]) -> torch.Tensor:
    """Per-channel ``(x - mean) / std`` of an ``(N, C, H, W)`` batch (same units as mean and std)."""
    m = torch.as_tensor(mean, dtype=x.dtype, device=x.device).view(1, -1, 1, 1)
    s = torch.as_tensor(std, dtype=x.dtype, device=x.device).view(1, -1, 1, 1)
    return (x - m) / s


def _draw(generator, high: int, n: int, device) -> torch.Tensor:
    return torch.randint(0, high, (n,), generator=generator).to(device)


def random_crop_reflect(x: torch.Tensor, pad: int, generator: torch.Generator | None) -> torch.Tensor:
    """Reflect-pad by ``pad`` pixels, then crop each image back to its size at a random offset."""
    if pad <= 0:
        return x
    n, c, h, w = x.shape
    padded = F.pad(x, (pad, pad, pad, pad), mode="reflect")
    oy = _draw(generator, 2 * pad + 1, n, x.device)
    ox = _draw(generator, 2 * pad + 1, n, x.device)
    rows = (oy[:, None] + torch.arange(h, device=x.device)[None, :])          # (N, H)
    cols = (ox[:, None] + torch.arange(w, device=x.device)[None, :])          # (N, W)
    b = torch.arange(n, device=x.device)[:, None, None, None]
    ch = torch.arange(c, device=x.device)[None, :, None, None]
    return padded[b, ch, rows[:, None, :, None], cols[:, None, None, :]]


def random_hflip(x: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
    """Flip each image left-right with probability 1/2."""
    flip = _draw(generator, 2, x.shape[0], x.device).bool().view(-1, 1, 1, 1)
    return torch.where(flip, x.flip(3), x)


def random_cutout(x: torch.Tensor, size: int, generator: torch.Generator | None, fill: float = 0.0) -> torch.Tensor:
    """Cutout with tensorflow-addons' ``random_cutout`` semantics (docs/paper.md §5.4.1): the centre is
    uniform over the image, the ``size`` x ``size`` patch ``[c - size//2, c + size//2)`` is clipped at
    the borders, and filled with ``fill``."""
    if size % 2:
        raise ValueError(f"cutout size must be even (as in tfa), got {size}")
    n, _, h, w = x.shape
    cy = _draw(generator, h, n, x.device)[:, None]
    cx = _draw(generator, w, n, x.device)[:, None]
    r = torch.arange(h, device=x.device)[None, :]
    c = torch.arange(w, device=x.device)[None, :]
    in_r = (r >= cy - size // 2) & (r < cy + size // 2)                     # (N, H)
    in_c = (c >= cx - size // 2) & (c < cx + size // 2)                     # (N, W)
    mask = (in_r[:, :, None] & in_c[:, None, :])[:, None]                   # (N, 1, H, W)
    return x.masked_fill(mask, fill)


def channel_stats(images_uint8: torch.Tensor) -> tuple[list[float], list[float]]:
    """Per-channel mean and std of ``(N, C, H, W)`` uint8 images, in 0-255 units (float64 sums)."""
    x = images_uint8.to(torch.float64)
    dims = (0, 2, 3)
    return x.mean(dim=dims).tolist(), x.std(dim=dims, unbiased=False).tolist()
