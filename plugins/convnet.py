"""The paper's surrogate ConvNet (docs/paper.md §5.4.2), ported from Keras.

Three 3x3 convolutions with ``base``, ``2*base`` and ``4*base`` channels and strides 1, 2, 2, each with a
bias and followed by BatchNorm and swish; global average pooling; Dropout(0.2); a linear layer (the
softmax is in the loss).  Keras defaults kept: glorot-uniform kernels, zero biases, BN eps 1e-3 and
momentum 0.99 (PyTorch ``momentum=0.01``), and TF "same" padding, which for stride 2 pads the
bottom/right only.  With ``base=32`` on 32x32x3 inputs it has 94,986 trainable parameters, with
``base=48`` 211,594 (counted with ``sum(p.numel() for p in model.parameters())``).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class SameConv2d(nn.Conv2d):
    """A 3x3 convolution with TensorFlow's "same" padding (asymmetric for stride 2 on even sizes)."""

    def __init__(self, in_ch: int, out_ch: int, stride: int):
        super().__init__(in_ch, out_ch, 3, stride=stride, padding=0, bias=True)

    def forward(self, x):
        pads = []
        for size in (x.shape[-1], x.shape[-2]):          # F.pad order: last dim first
            s = self.stride[0]
            out = -(-size // s)
            total = max((out - 1) * s + 3 - size, 0)
            pads += [total // 2, total - total // 2]
        if any(pads):
            x = F.pad(x, pads)
        return F.conv2d(x, self.weight, self.bias, self.stride)


class ConvNet(nn.Module):
    """ConvNet(act=swish, base) of docs/paper.md §5.4.2 for ``in_channels`` inputs of any size."""

    def __init__(self, base: int = 32, num_classes: int = 10, in_channels: int = 3, dropout: float = 0.2,
                 bn_momentum: float = 0.01):
        super().__init__()
        chans = [in_channels, base, 2 * base, 4 * base]
        layers = []
        for i, stride in enumerate((1, 2, 2)):
            layers += [SameConv2d(chans[i], chans[i + 1], stride),
                       nn.BatchNorm2d(chans[i + 1], eps=1e-3, momentum=bn_momentum), nn.SiLU()]
        self.features = nn.Sequential(*layers)
        self.dropout = nn.Dropout(dropout)
        self.fc = nn.Linear(4 * base, num_classes)
        for m in self.modules():
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                nn.init.xavier_uniform_(m.weight)
                nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.features(x)
        x = x.mean(dim=(2, 3))
        return self.fc(self.dropout(x))
