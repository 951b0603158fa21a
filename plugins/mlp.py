"""A plain multi-layer perceptron for the suite's tabular tasks (``ill-conditioned``, ``tabular``).

``Linear -> act`` for each hidden width, then a linear output layer; PyTorch's default initialisation
(Kaiming-uniform with a = sqrt(5)), no normalisation and no dropout, so nothing but the optimizer
compensates for badly scaled inputs.
"""
from __future__ import annotations

from torch import nn

ACTIVATIONS = {"relu": nn.ReLU, "tanh": nn.Tanh, "gelu": nn.GELU, "silu": nn.SiLU}


class MLP(nn.Sequential):
    """``in_dim -> hidden[0] -> ... -> out_dim`` with ``act`` between layers."""

    def __init__(self, in_dim: int, hidden: tuple[int, ...] | list[int], out_dim: int, act: str = "relu"):
        if act not in ACTIVATIONS:
            raise ValueError(f"unknown activation {act!r}; known: {', '.join(ACTIVATIONS)}")
        layers, width = [], in_dim
        for h in hidden:
            layers += [nn.Linear(width, h), ACTIVATIONS[act]()]
            width = h
        layers.append(nn.Linear(width, out_dim))
        super().__init__(*layers)
