"""A tiny decoder-only transformer for character-level language modelling (``stdlib-lm``).

Provides :class:`CharTransformer`: pre-LayerNorm blocks of causal self-attention and a GELU MLP,
GPT-style initialisation, no dropout; outputs ``(B, L, vocab)`` logits.
Details: docs/evaluation.md, "The embedded suite".
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


class Block(nn.Module):
    """Pre-LN attention + MLP block."""

    def __init__(self, d: int, heads: int):
        super().__init__()
        if d % heads:
            raise ValueError(f"d={d} is not a multiple of heads={heads}")
        self.heads = heads
        self.ln1, self.ln2 = nn.LayerNorm(d), nn.LayerNorm(d)
        self.qkv = nn.Linear(d, 3 * d)
        self.proj = nn.Linear(d, d)
        self.fc = nn.Linear(d, 4 * d)
        self.out = nn.Linear(4 * d, d)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, d = x.shape
        q, k, v = self.qkv(self.ln1(x)).split(d, dim=2)
        q, k, v = (t.view(b, n, self.heads, d // self.heads).transpose(1, 2) for t in (q, k, v))
        a = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        x = x + self.proj(a.transpose(1, 2).reshape(b, n, d))
        return x + self.out(F.gelu(self.fc(self.ln2(x))))


class CharTransformer(nn.Module):
    """``layers`` blocks of width ``d`` over contexts of up to ``context`` tokens of a ``vocab``."""

    def __init__(self, vocab: int = 128, d: int = 64, layers: int = 2, heads: int = 4, context: int = 64):
        super().__init__()
        self.context = context
        self.tok = nn.Embedding(vocab, d)
        self.pos = nn.Parameter(torch.zeros(context, d))
        self.blocks = nn.ModuleList(Block(d, heads) for _ in range(layers))
        self.ln = nn.LayerNorm(d)
        self.head = nn.Linear(d, vocab)
        for m in self.modules():
            if isinstance(m, (nn.Linear, nn.Embedding)):
                nn.init.normal_(m.weight, 0.0, 0.02)
            if isinstance(m, nn.Linear):
                nn.init.zeros_(m.bias)
        nn.init.normal_(self.pos, 0.0, 0.02)
        for blk in self.blocks:
            for lin in (blk.proj, blk.out):
                lin.weight.data.mul_(1.0 / math.sqrt(2 * layers))

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        n = idx.shape[1]
        if n > self.context:
            raise ValueError(f"sequence of {n} tokens is longer than the context {self.context}")
        x = self.tok(idx) + self.pos[:n]
        for blk in self.blocks:
            x = blk(x)
        return self.head(self.ln(x))
