"""The LR screen chooses on validation, and a run's fitness is its score at the end of the schedule.

On a small data set a large LR removes the most training loss and overfits: the screen of the paper's
reading of "progress" picked it for the reference (issue 15: Adam at LR 0.1 on wine).  The default
screen now scores each screening run's final model on the validation split.
"""
from __future__ import annotations

import torch
from torch import nn

from deapnos.evaluate.data import TensorBatches
from deapnos.evaluate.protocol import ProtocolConfig, evaluate_genome
from deapnos.evaluate.tasks import Task, TaskData
from deapnos.search.config import config_from_dict, load_config

torch.set_num_threads(1)
LRS = {"screen_lrs_a": (1e-1, 1e-2, 1e-3), "screen_lrs_b": ()}


def tiny_data(task, device, seed, dim=30, classes=3, n_train=48):
    g = torch.Generator().manual_seed(99)              # the same small, noisy problem for every seed
    teacher = torch.randn(dim, classes, generator=g)
    x = torch.randn(n_train + 400, dim, generator=g)
    y = (x @ teacher + 3.0 * torch.randn(n_train + 400, classes, generator=g)).argmax(1)
    gen = torch.Generator().manual_seed(seed)
    return TaskData(train=TensorBatches(x[:n_train], y[:n_train], 16, shuffle=True, generator=gen),
                    val=TensorBatches(x[n_train:], y[n_train:], 400, shuffle=False), num_classes=classes,
                    generator=gen)


def tiny_model(task, num_classes, dim=30):
    return nn.Sequential(nn.Linear(dim, 64), nn.Tanh(), nn.Linear(64, num_classes))


def overfitting_task() -> Task:
    """48 training examples, 30 features, a 64-unit hidden layer: easy to memorise."""
    return Task(name="tiny-overfit", data_factory=tiny_data, model_factory=tiny_model, steps_per_epoch=6, epochs=8,
                screen_steps_per_epoch=6, batch_size=16, warmup_steps=4, num_classes=3, metric="log_loss")


def test_the_reference_is_no_longer_tuned_into_overfitting():
    task = overfitting_task()
    search_protocol = config_from_dict({}).protocol          # what the search uses for candidates and references
    assert search_protocol.screen_choice == "validation"
    cfg = ProtocolConfig(**{**search_protocol.to_dict(), **LRS})
    new = evaluate_genome("adam", task, seed=0, config=cfg, device="cpu")
    old = evaluate_genome("adam", task, seed=0, config=ProtocolConfig(screen_choice="progress", **LRS), device="cpu")
    assert new.status == old.status == "ok"
    progress = {e["lr"]: e["score"] for e in new.screen}
    val = {e["lr"]: e["val_score"] for e in new.screen}
    # the oracle: the screen's own numbers; the most training progress and the best validation disagree here
    assert old.lr == max(progress, key=progress.get) == 0.1
    assert new.lr == max(val, key=val.get) != old.lr
    # and the model the user gets is better on validation for it (-ln(val loss): higher is better)
    assert new.fitness > old.fitness + 0.5


def test_the_fitness_is_the_final_validation_score_and_the_peak_is_kept_in_the_curve():
    task = overfitting_task()
    final = evaluate_genome("adam", task, seed=0, config=ProtocolConfig(lr=0.1), device="cpu")
    best = evaluate_genome("adam", task, seed=0, config=ProtocolConfig(lr=0.1, score="best"), device="cpu")
    scores = [r["val_score"] for r in final.curve]
    assert final.fitness == scores[-1] and best.fitness == max(scores)
    assert best.fitness > final.fitness             # an overfitting run peaks early: the two differ here
    assert final.curve == best.curve                # same run, same seed: only the summary differs


def test_presets_keep_the_paper_screen_and_score():
    paper = load_config("paper").protocol
    assert paper.screen == "paper" and paper.score == "best"
    compat = config_from_dict({"run": {"compat": True}}).protocol
    assert compat.screen == "paper" and compat.score == "best"
    quick = load_config("quickstart").protocol
    assert quick.screen == "relative" and quick.screen_choice == "validation" and quick.score == "final"


def test_bad_screen_choice_and_score_are_one_line_errors():
    import pytest

    from deapnos.search.config import ConfigError
    with pytest.raises(ConfigError, match="protocol.screen_choice"):
        config_from_dict({"protocol": {"screen_choice": "train"}})
    with pytest.raises(ConfigError, match="protocol.score"):
        config_from_dict({"protocol": {"score": "peak"}})
