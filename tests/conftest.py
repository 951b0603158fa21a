import os

import pytest
import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("MPLBACKEND", "Agg")
torch.set_num_threads(1)


@pytest.fixture
def tiny_mlp_problem():
    """A seeded MLP factory and a fixed batch: the small model the optimizer tests train."""
    gen = torch.Generator().manual_seed(0)
    X = torch.randn(64, 10, generator=gen)
    Y = torch.randint(0, 3, (64,), generator=gen)

    def make_model(seed=0):
        torch.manual_seed(seed)
        return torch.nn.Sequential(torch.nn.Linear(10, 32), torch.nn.Tanh(), torch.nn.Linear(32, 3))

    def loss_fn(model):
        return torch.nn.functional.cross_entropy(model(X), Y)

    return make_model, loss_fn
