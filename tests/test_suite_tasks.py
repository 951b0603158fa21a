"""The embedded surrogate suite (digits-hard, stdlib-lm, ill-conditioned, tabular) and the log_loss metric."""
from __future__ import annotations

import math
import pickle

import numpy as np
import pytest
import torch

from deapnos.evaluate.protocol import ProtocolConfig, evaluate_genome
from deapnos.evaluate.tasks import METRICS, TaskDataError
from deapnos.evaluate.training import score_from, validate

torch.set_num_threads(1)

SUITE = ("digits-hard", "stdlib-lm", "ill-conditioned", "tabular")


def _tasks():
    from deapnos_plugins.digits_hard import digits_hard_task
    from deapnos_plugins.ill_conditioned import ill_conditioned_task
    from deapnos_plugins.stdlib_lm import stdlib_lm_task
    from deapnos_plugins.tabular import tabular_task
    return {t.name: t for t in (digits_hard_task(), stdlib_lm_task(), ill_conditioned_task(), tabular_task())}


def _arrays(data):
    """Every tensor the data factory made: training inputs/targets and all validation batches."""
    out = [data.train.inputs.numpy(), data.train.targets.numpy()]
    for x, y in data.val:
        out += [x.numpy(), y.numpy()]
    return out


# -- the log_loss metric -------------------------------------------------------------------------

def test_log_loss_score_is_minus_log_of_mean_validation_loss():
    assert "log_loss" in METRICS
    assert score_from("log_loss", 0.3, 0.5) == pytest.approx(math.log(2.0))
    assert score_from("log_loss", 0.3, math.e) == pytest.approx(-1.0)
    assert score_from("log_loss", 0.3, float("nan")) == -math.inf
    assert score_from("log_loss", 0.3, float("inf")) == -math.inf
    # through validate(): a fixed linear model on two batches, against a hand computation
    torch.manual_seed(0)
    model = torch.nn.Linear(3, 4)
    x, y = torch.randn(10, 3), torch.tensor([0, 1, 2, 3, 0, 1, 2, 3, 0, 1])
    batches = [(x[:6], y[:6]), (x[6:], y[6:])]
    with torch.no_grad():
        logits = model(x).double()
        per_row = -(logits.log_softmax(dim=1)[torch.arange(10), y])
    mean_loss = float(per_row.mean())
    acc = float((logits.argmax(1) == y).double().mean())
    rec = validate(model, batches, "cpu", metric="log_loss")
    assert rec["val_loss"] == pytest.approx(mean_loss, rel=1e-6)
    assert rec["val_score"] == pytest.approx(-math.log(mean_loss), rel=1e-6)
    assert rec["val_acc"] == pytest.approx(acc)          # accuracy is still reported


# -- the tasks -----------------------------------------------------------------------------------

def test_suite_tasks_are_registered_surrogates_that_pickle():
    from deapnos.plugins import get_plugin_manager, surrogates
    found = surrogates(get_plugin_manager())
    for name, task in _tasks().items():
        assert name in found and found[name].kind == "surrogate" and found[name].metric == "log_loss"
        back = pickle.loads(pickle.dumps(task))
        assert back.name == name and back.data_factory is task.data_factory


@pytest.mark.parametrize("name", SUITE)
def test_data_is_deterministic_and_the_model_trains(name):
    task = _tasks()[name]
    a, b = task.build_data("cpu", 0), task.build_data("cpu", 1)
    arrays_a, arrays_b = _arrays(a), _arrays(b)
    assert len(arrays_a) == len(arrays_b)
    for u, v in zip(arrays_a, arrays_b):         # the evaluation seed orders batches, not the data
        np.testing.assert_array_equal(u, v)
    assert len(a.train.inputs) > 0 and a.num_classes == task.num_classes
    # the batch order follows the seed
    a.generator.manual_seed(3)
    first = next(iter(a.train))[1]
    a.generator.manual_seed(3)
    assert torch.equal(first, next(iter(a.train))[1])

    torch.manual_seed(0)
    model = task.build_model(a.num_classes)
    x, y = next(iter(a.train))
    with torch.no_grad():
        before = float(task.loss(model(x), y))
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    for _ in range(8):                           # a few real steps on one batch: the loss must fall
        opt.zero_grad()
        loss = task.loss(model(x), y)
        loss.backward()
        opt.step()
    with torch.no_grad():
        assert float(task.loss(model(x), y)) < 0.9 * before


@pytest.mark.parametrize("name", SUITE)
def test_adam_beats_the_untrained_model(name):
    task = _tasks()[name]
    data = task.build_data("cpu", 0)
    torch.manual_seed(0)
    untrained = validate(task.build_model(data.num_classes), data.val, "cpu", metric="log_loss")["val_score"]
    lr = {"stdlib-lm": 1e-3}.get(name, 1e-2)
    r = evaluate_genome("adam", task, seed=0, config=ProtocolConfig(lr=lr), device="cpu")
    assert r.ok, r.message
    assert r.fitness > untrained + 0.1             # at least 10% lower validation loss
    assert r.fitness < 1.0                         # far from solved: loss above 1/e
    assert all("val_acc" in rec and 0.0 < rec["val_acc"] < 1.0 for rec in r.curve)


def test_generated_tasks_have_a_loss_floor_below_adam():
    from deapnos_plugins.ill_conditioned import ill_conditioned_arrays
    from deapnos_plugins.suite_data import log_scales
    *_, bayes = ill_conditioned_arrays()
    assert 0.2 < bayes < 1.0
    scales = log_scales(32, 1e3)
    assert (scales.max() / scales.min()) ** 2 == pytest.approx(1e3)


# -- stdlib-lm's data ----------------------------------------------------------------------------

def test_stdlib_lm_fails_clearly_without_its_files(tmp_path):
    from deapnos_plugins.stdlib_text import TRAIN_FILES, lm_arrays
    (tmp_path / TRAIN_FILES[0]).write_text("x = 1\n")
    task = _tasks()["stdlib-lm"].replace(options={"stdlib_dir": str(tmp_path)})
    with pytest.raises(TaskDataError) as err:
        task.build_data("cpu", 0)
    msg = str(err.value)
    assert str(tmp_path) in msg and TRAIN_FILES[1] in msg and "stdlib-lm" in msg
    assert TRAIN_FILES[0] not in msg.split("lacks")[1]          # only the missing files are named
    r = evaluate_genome("adam", task, seed=0, config=ProtocolConfig(lr=1e-3), device="cpu")
    assert r.status == "error" and str(tmp_path) in r.message
    with pytest.raises(TaskDataError):
        lm_arrays(tmp_path / "nowhere")


def test_stdlib_text_encoding_and_windows():
    from deapnos_plugins.stdlib_text import VOCAB, encode, windows
    codes = encode("ab\u00e9\n")
    assert codes.tolist() == [97, 98, 0, 10] and codes.max() < VOCAB
    x, y = windows(np.arange(11), 3)
    assert x.tolist() == [[0, 1, 2], [3, 4, 5], [6, 7, 8]] and y.tolist() == [[1, 2, 3], [4, 5, 6], [7, 8, 9]]
    x, _ = windows(np.arange(101), 10, limit=4)          # evenly spaced over the 10 windows
    assert x[:, 0].tolist() == [0, 30, 60, 90]
