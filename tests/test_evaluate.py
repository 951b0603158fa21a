"""The evaluation protocol, the training loop and optimizer resolution (deapnos.evaluate)."""
from __future__ import annotations

import json
import math
import pickle

import pytest
import torch
from torch import nn

from deapnos import Genome
from deapnos.evaluate.data import TensorBatches
from deapnos.evaluate.integrity import CheckResult, IntegrityCheck
from deapnos.evaluate.protocol import (Budget, ProtocolConfig, choose_lr, evaluate_genome,
                                       resolve_optimizer)
from deapnos.evaluate.result import EvalResult
from deapnos.evaluate.tasks import Task, TaskData
from deapnos.evaluate.training import train

# the full-grid LR screen (every LR the whole screening run), which some tests below spell out
GRID = ProtocolConfig(screen_schedule="grid")

torch.set_num_threads(1)


# -- a tiny synthetic task (module-level factories: tasks must pickle) ---------------------------

def toy_data(task: Task, device, seed: int) -> TaskData:
    fixed = torch.Generator().manual_seed(0)
    x = torch.randn(384, 8, generator=fixed)
    y = (x[:, 0] + 0.5 * x[:, 1] > 0).long() + 2 * (x[:, 2] > 0).long()
    gen = torch.Generator().manual_seed(seed)
    train_b = TensorBatches(x[:256].to(device), y[:256].to(device), task.batch_size, shuffle=task.shuffle,
                            generator=gen)
    val = TensorBatches(x[256:].to(device), y[256:].to(device), 128, shuffle=False)
    return TaskData(train=train_b, val=val, num_classes=4, generator=gen)


def toy_model(task: Task, num_classes: int) -> nn.Module:
    return nn.Sequential(nn.Linear(8, 16), nn.Tanh(), nn.Dropout(0.1), nn.Linear(16, num_classes))


def boom_model(task: Task, num_classes: int) -> nn.Module:
    raise RuntimeError("boom in the model factory")


def boom_data(task: Task, device, seed: int) -> TaskData:
    raise KeyError("no such shard")


def toy_task(**kw) -> Task:
    args = dict(name="toy", data_factory=toy_data, model_factory=toy_model, steps_per_epoch=4, epochs=8,
                batch_size=32, warmup_steps=16, num_classes=4)
    args.update(kw)
    return Task(**args)


# -- optimizer resolution -----------------------------------------------------------------------

def test_resolve_optimizer_zoo_text_file_and_torch(tmp_path):
    adam = resolve_optimizer("adam")
    assert adam.genome is not None and adam.name == "adam"
    assert adam.text == adam.genome.to_text()
    text = resolve_optimizer("none ~ div(v_hat, sqrt(s_hat))")
    assert text.genome == adam.genome
    path = tmp_path / "g.json"
    adam.genome.save(path)
    from_file = resolve_optimizer(str(path))
    assert from_file.genome == adam.genome and from_file.name == str(path)
    t = resolve_optimizer("torch:adam")
    assert t.torch_class == "Adam" and t.genome is None and t.text == "torch:Adam"
    sgd = resolve_optimizer("torch:SGD(momentum=0.9, nesterov=True)")
    assert sgd.torch_class == "SGD" and sgd.kwargs == {"momentum": 0.9, "nesterov": True}
    assert resolve_optimizer(sgd) is sgd
    assert resolve_optimizer(adam.genome).genome is adam.genome


@pytest.mark.parametrize("spec, words", [
    ("torch:NoSuchOpt", "no optimizer"),
    ("torch:SGD(lr=0.1)", "do not pass lr"),
    ("torch:SGD(momentum=__import__('os'))", "not a literal"),
    ("torch:SGD(0.9)", "keyword=value"),
    ("not-a-zoo-name", "zoo"),
])
def test_resolve_optimizer_rejects(spec, words):
    with pytest.raises(ValueError, match=words):
        resolve_optimizer(spec)


def test_torch_spec_builds_warmup_cosine_schedule():
    p = [nn.Parameter(torch.zeros(3))]
    opt, sched = resolve_optimizer("torch:SGD").build(p, lr=0.5, total_steps=10, warmup_steps=4)
    lrs = []
    for _ in range(10):
        lrs.append(opt.param_groups[0]["lr"])
        p[0].grad = torch.ones(3)
        opt.step()
        sched.step()
    assert lrs[0] == 0.0 and lrs[2] == pytest.approx(0.25) and lrs[4] == pytest.approx(0.5)
    assert lrs[9] < lrs[5] < 0.5


# -- protocol pieces ----------------------------------------------------------------------------

def test_choose_lr_argmax_ties_to_earliest():
    assert choose_lr([0.3, 0.5, 0.5, 0.1]) == 1
    assert choose_lr([0.7, 0.2, 0.7]) == 0
    with pytest.raises(ValueError):
        choose_lr([])


def test_paper_defaults_and_budgets():
    c = ProtocolConfig()
    assert c.screen_lrs_a == (10.0, 1e-2, 1e-5) and c.screen_lrs_b == (1.0, 1e-1, 1e-3, 1e-4)
    assert (c.screen_epochs, c.screen_early_stop_epoch, c.screen_early_stop_acc) == (4, 2, 0.25)
    assert (c.stage_a_threshold, c.threshold) == (0.25, 0.40)
    assert (c.full_early_stop_epoch, c.full_early_stop_acc) == (4, 0.40)
    from deapnos_plugins.cifar10 import cifar10_tasks
    base, b48 = cifar10_tasks()
    assert Budget.of(base, c) == Budget(40, 200, 4, 200, 8000, 800)
    assert Budget.of(b48, c) == Budget(40, 400, 4, 200, 16000, 800)
    small = Budget.of(base, ProtocolConfig(step_scale=0.01))
    assert (small.steps_per_epoch, small.total_steps, small.warmup_steps) == (2, 80, 8)
    assert Budget.of(base, ProtocolConfig(epochs=10)).total_steps == 2000
    with pytest.raises(ValueError):
        ProtocolConfig(step_scale=0)


def test_task_overrides_apply_to_config():
    t = toy_task(protocol_overrides={"threshold": 0.1})
    assert ProtocolConfig().for_task(t).threshold == 0.1
    assert ProtocolConfig(apply_task_overrides=False).for_task(t).threshold == 0.4
    bad = toy_task(protocol_overrides={"no_such_field": 1})
    r = evaluate_genome("adam", bad, device="cpu")
    assert r.status == "error" and "no_such_field" in r.message


# -- whole evaluations on the toy task ----------------------------------------------------------

def test_ok_result_records_everything():
    r = evaluate_genome("adam", toy_task(), seed=3, config=GRID, device="cpu")
    assert r.status == "ok", r.message
    assert r.optimizer == "adam" and r.genome == Genome.parse("none ~ div(v_hat, sqrt(s_hat))").to_text()
    assert [e["lr"] for e in r.screen] == [10.0, 1e-2, 1e-5, 1.0, 1e-1, 1e-3, 1e-4]
    assert r.lr == r.screen[choose_lr([e["score"] for e in r.screen])]["lr"]
    assert len(r.curve) == 8 and r.steps == 32
    assert r.fitness == max(c["val_acc"] for c in r.curve)
    assert r.final_accuracy == r.curve[-1]["val_acc"] and r.final_train_loss == r.curve[-1]["train_loss"]
    assert {"epoch", "step", "train_loss", "train_acc", "val_acc", "val_loss", "val_score"} <= set(r.curve[0])
    assert r.seed == 3 and r.device == "cpu" and ":" in r.worker and r.seconds > 0
    assert r.flip is False
    back = EvalResult.from_dict(json.loads(json.dumps(r.to_dict())))
    assert back == r


def test_same_seed_same_result_different_seed_differs():
    cfg = ProtocolConfig(screen_lrs_b=(1e-1,))
    a = evaluate_genome("adam", toy_task(), seed=7, config=cfg, device="cpu")
    b = evaluate_genome("adam", toy_task(), seed=7, config=cfg, device="cpu")
    c = evaluate_genome("adam", toy_task(), seed=8, config=cfg, device="cpu")
    assert a.ok and b.ok and c.ok
    assert a.fitness == b.fitness and a.curve == b.curve and a.screen == b.screen and a.lr == b.lr
    assert a.curve != c.curve


def test_evaluation_restores_global_rng():
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    evaluate_genome("sgd", toy_task(), config=ProtocolConfig(lr=0.1, epochs=2), device="cpu")
    assert torch.equal(torch.rand(3), expected)


def test_torch_optimizer_through_the_same_protocol():
    r = evaluate_genome("torch:Adam", toy_task(), config=GRID, device="cpu")
    assert r.status == "ok", r.message
    assert r.genome == "torch:Adam" and r.flip is None and len(r.screen) == 7 and r.fitness > 0.5


def test_fixed_lr_skips_the_screen():
    r = evaluate_genome("sgd", toy_task(), config=ProtocolConfig(lr=0.3), device="cpu")
    assert r.ok and r.screen == [] and r.lr == 0.3


def test_degenerate_genome_is_screened_out_at_stage_a_of_the_paper_screen():
    r = evaluate_genome("none ~ one", toy_task(), config=ProtocolConfig(screen="paper"), device="cpu")
    assert r.status == "screened_out" and "screen A" in r.message
    assert len(r.screen) == 3 and r.fitness is None and r.score() == -1.0


def test_relative_screen_scores_progress_and_screens_out_an_optimizer_that_does_not_train():
    # sub(g, g) = 0 never moves the weights: no LR removes the initial loss (beyond dropout's noise)
    r = evaluate_genome("none ~ sub(g, g)", toy_task(), config=GRID, device="cpu")
    assert r.status == "screened_out" and "progress" in r.message, (r.status, r.message)
    assert len(r.screen) == 7 and all(abs(e["score"]) < ProtocolConfig().min_progress for e in r.screen)
    adam = evaluate_genome("adam", toy_task(), config=GRID, device="cpu")
    assert adam.ok and max(e["score"] for e in adam.screen) > 0.3
    # the chosen LR is the one that removed the largest share of the initial loss
    best = max(adam.screen, key=lambda e: e["score"])
    assert adam.lr == best["lr"]


def test_relative_screen_counts_a_blow_up_as_divergence():
    cfg = ProtocolConfig(screen_lrs_a=(1e6,), screen_lrs_b=(), diverge_factor=1.5)
    r = evaluate_genome("sgd", toy_task(), config=cfg, device="cpu")
    assert r.status == "diverged" and r.screen[0]["diverged"], (r.status, r.screen)


def test_diverging_genome_is_diverged():
    r = evaluate_genome("none ~ exp(inv(g))", toy_task(), device="cpu")
    assert r.status == "diverged", (r.status, r.message)
    assert all(e["diverged"] for e in r.screen) and "nan" in r.message.lower()


class NaNAfter(nn.Module):
    """A model whose training forward returns NaN from its 11th call on (divergence in epoch 2), or
    from call ``after + 1``."""

    def __init__(self, num_classes, after: int = 10):
        super().__init__()
        self.inner = toy_model(None, num_classes)
        self.calls, self.after = 0, after

    def forward(self, x):
        out = self.inner(x)
        if self.training:
            self.calls += 1
            if self.calls > self.after:
                return out * float("nan")
        return out


def nan_after_model(task, num_classes):
    return NaNAfter(num_classes)


def nan_at_once_model(task, num_classes):
    return NaNAfter(num_classes, after=0)


def test_full_run_divergence_and_keep_best():
    r = evaluate_genome("sgd", toy_task(model_factory=nan_at_once_model), config=ProtocolConfig(lr=0.3), device="cpu")
    assert r.status == "diverged" and "full run" in r.message and r.fitness is None
    late = toy_task(model_factory=nan_after_model)
    r = evaluate_genome("sgd", late, config=ProtocolConfig(lr=0.3), device="cpu")
    assert r.status == "diverged" and len(r.curve) == 2 and "step 10" in r.message
    r = evaluate_genome("sgd", late, config=ProtocolConfig(lr=0.3, keep_best_on_divergence=True), device="cpu")
    assert r.status == "ok" and r.fitness == max(c["val_acc"] for c in r.curve) and "stopped" in r.message


def test_raising_task_code_is_an_error_naming_task_and_plugin():
    r = evaluate_genome("adam", toy_task(name="exploding", model_factory=boom_model, plugin="myplugin"),
                        device="cpu")
    assert r.status == "error"
    assert "'exploding'" in r.message and "'myplugin'" in r.message and "boom in the model factory" in r.message
    assert "building the model" in r.message
    r = evaluate_genome("adam", toy_task(name="nodata", data_factory=boom_data), device="cpu")
    assert r.status == "error" and "'nodata'" in r.message and "KeyError" in r.message
    assert "test_evaluate" in r.message          # the plugin defaults to the factory's module


def test_raising_plugin_task_through_the_plugin_manager():
    from deapnos import hookimpl
    from deapnos.plugins import all_tasks, get_plugin_manager

    class BrokenPlugin:
        @hookimpl
        def deapnos_fitness_tasks(self):
            return [toy_task(name="broken-task", model_factory=boom_model)]

    pm = get_plugin_manager(extra_plugins=[BrokenPlugin()], autoload=False)
    task = all_tasks(pm)["broken-task"]
    r = evaluate_genome("adam", task, device="cpu")
    assert r.status == "error" and "BrokenPlugin" in r.message and "broken-task" in r.message


def test_never_raises_on_bad_inputs():
    r = evaluate_genome("none ~ nosuchop(g)", toy_task(), device="cpu")
    assert r.status == "error" and "nosuchop" in r.message
    r = evaluate_genome("adam", "not a task", device="cpu")
    assert r.status == "error" and "Task" in r.message


def test_timeout():
    r = evaluate_genome("adam", toy_task(), config=ProtocolConfig(timeout_s=1e-9), device="cpu")
    assert r.status == "timeout" and "timeout" in r.message


class _Reject(IntegrityCheck):
    name = "always-no"

    def check(self, genome):
        return CheckResult(False, reason="degenerate on purpose")


class _Flip(IntegrityCheck):
    name = "flipper"

    def check(self, genome):
        return CheckResult(True, flip=True, reason="descends flipped")


def test_integrity_rejection_and_flip():
    r = evaluate_genome("adam", toy_task(), integrity_checks=[_Reject()], device="cpu")
    assert r.status == "rejected" and "degenerate on purpose" in r.message and r.screen == []
    # a flipped adam ascends: it cannot learn
    r = evaluate_genome("adam", toy_task(), integrity_checks=[_Flip()],
                        config=ProtocolConfig(lr=0.01, epochs=2), device="cpu")
    assert r.flip is True and r.genome.endswith("| flip")
    assert resolve_optimizer("adam").genome.flip is False       # the zoo genome is untouched


def test_no_shuffle_is_the_papers_fixed_order():
    t = toy_task()
    data = t.replace(options={"shuffle": False}).build_data("cpu", 0)
    first = [y.tolist() for _, y in data.train]
    assert first == [y.tolist() for _, y in data.train]
    shuffled = t.build_data("cpu", 0)
    assert [y.tolist() for _, y in shuffled.train] != [y.tolist() for _, y in shuffled.train]
    r = evaluate_genome("sgd", t, config=ProtocolConfig(lr=0.3, epochs=2, shuffle=False), device="cpu")
    assert r.ok


def test_tasks_pickle():
    t = toy_task()
    back = pickle.loads(pickle.dumps(t))
    assert back.name == "toy" and back.data_factory is toy_data


# -- the training loop --------------------------------------------------------------------------

def _linear_problem():
    torch.manual_seed(0)
    model = nn.Linear(4, 2)
    x = torch.randn(64, 4)
    y = (x[:, 0] > 0).long()
    return model, TensorBatches(x, y, 16, generator=torch.Generator().manual_seed(0)), TensorBatches(x, y, 64, False)


def test_train_records_epochs_and_continues_across_passes():
    model, tr, va = _linear_problem()
    out = train(model, torch.optim.SGD(model.parameters(), lr=0.5), tr, epochs=3, steps_per_epoch=6, val_data=va)
    assert out.steps == 18 and [r["step"] for r in out.curve] == [6, 12, 18]   # 4 batches a pass
    assert not out.diverged and out.curve[-1]["val_acc"] > 0.8
    assert all(0 <= r["train_acc"] <= 1 for r in out.curve)


def test_train_stops_on_nan_and_on_early_stop():
    model, tr, va = _linear_problem()
    calls = []

    def loss_fn(out, y):       # finite for 5 steps, then NaN
        calls.append(1)
        loss = nn.functional.cross_entropy(out, y)
        return loss if len(calls) <= 5 else loss * float("nan")

    out = train(model, torch.optim.SGD(model.parameters(), lr=0.1), tr, epochs=5, steps_per_epoch=4,
                loss_fn=loss_fn)
    assert out.diverged and out.steps == 5 and "step 5" in out.divergence and len(out.curve) == 1
    calls.clear()
    model, tr, va = _linear_problem()
    out = train(model, torch.optim.SGD(model.parameters(), lr=0.1), tr, epochs=5, steps_per_epoch=4,
                loss_fn=loss_fn, check_every=3)
    assert out.diverged and "steps 3-5" in out.divergence and len(out.curve) == 1
    calls.clear()
    model, tr, va = _linear_problem()
    out = train(model, torch.optim.SGD(model.parameters(), lr=0.1), tr, epochs=5, steps_per_epoch=4,
                loss_fn=loss_fn, check_every=10)         # the epoch end checks what is pending
    assert out.diverged and "steps 0-7" in out.divergence and len(out.curve) == 1

    model, tr, va = _linear_problem()
    out = train(model, torch.optim.SGD(model.parameters(), lr=0.1), tr, epochs=5, steps_per_epoch=2,
                early_stop=lambda epoch, rec: epoch >= 1)
    assert out.stopped_early and len(out.curve) == 2


def test_train_threads_restored_and_empty_data():
    model, tr, va = _linear_problem()
    before = torch.get_num_threads()
    train(model, torch.optim.SGD(model.parameters(), lr=0.1), tr, epochs=1, steps_per_epoch=1, num_threads=1)
    assert torch.get_num_threads() == before
    empty = TensorBatches(torch.zeros(0, 4), torch.zeros(0, dtype=torch.long), 4)
    with pytest.raises(ValueError, match="no batches"):
        train(model, torch.optim.SGD(model.parameters(), lr=0.1), empty, epochs=1, steps_per_epoch=1)


def test_inv_perplexity_metric():
    from deapnos.evaluate.training import score_from
    assert score_from("inv_perplexity", 0.0, math.log(100.0)) == pytest.approx(0.01)
    assert score_from("inv_perplexity", 0.0, float("nan")) == 0.0
    assert score_from("accuracy", 0.7, 1.0) == 0.7


# -- digits: the embedded default ---------------------------------------------------------------

@pytest.mark.slow      # about 15 s of training
def test_adam_beats_degenerate_optimizers_on_digits():
    from deapnos_plugins.digits import digits_task
    task = digits_task()
    adam = evaluate_genome("adam", task, seed=0, device="cpu")
    assert adam.status == "ok" and adam.fitness > 0.9, (adam.status, adam.fitness, adam.message)
    assert adam.seconds < 60
    none = evaluate_genome("none ~ one", task, seed=0, device="cpu")
    assert none.score() < 0.5 < adam.score()
    tiny = evaluate_genome("sgd", task, seed=0, config=ProtocolConfig(lr=1e-5), device="cpu")
    assert tiny.ok and tiny.fitness < 0.5 < adam.fitness


@pytest.mark.slow
def test_every_zoo_optimizer_runs_the_digits_protocol():
    """Each zoo genome evaluates without an error; adam is good over three seeds (about 70 s)."""
    from deapnos import zoo
    from deapnos_plugins.digits import digits_task
    task = digits_task()
    for name in zoo.names():
        r = evaluate_genome(name, task, seed=0, device="cpu")
        assert r.status in ("ok", "screened_out", "diverged"), (name, r.status, r.message)
    fits = [evaluate_genome("adam", task, seed=s, device="cpu").fitness for s in range(3)]
    assert min(fits) > 0.9


# -- one source for the protocol's fields, the result's keys, the worker's payload --------------

def test_protocol_table_is_checked_in_one_place_naming_the_field():
    from deapnos.search.config import ConfigError, parse_config
    assert ProtocolConfig.from_dict({"screen": "paper", "screen_lrs_a": [1, 0.1]}).screen_lrs_a == (1.0, 0.1)
    with pytest.raises(ValueError, match=r"unknown config field protocol\.sreen \(allowed in \[protocol\]: screen, "):
        ProtocolConfig.from_dict({"sreen": "paper"})
    with pytest.raises(ValueError, match=r"config field protocol\.step_scale = 0: must be > 0"):
        ProtocolConfig.from_dict({"step_scale": 0})
    with pytest.raises(ConfigError, match=r"config field protocol\.screen = 'fast': allowed values: relative, paper"):
        parse_config({"protocol": {"screen": "fast"}})
    with pytest.raises(ConfigError, match=r"config section \[protocol\] must be a table"):
        parse_config({"protocol": 3})


def test_result_keys_and_score_come_from_evalresult():
    import dataclasses
    from deapnos.search.evaluator import RESULT_KEYS, score_of
    assert set(RESULT_KEYS) == {f.name for f in dataclasses.fields(EvalResult)} - {"task", "seed"}
    ok = EvalResult("none ~ g", "t", 0, "ok", fitness=0.75)
    bad = EvalResult("none ~ g", "t", 0, "diverged", fitness=0.75)
    assert [score_of(r.to_dict()) for r in (ok, bad)] == [ok.score(), bad.score()] == [0.75, -1.0]
    assert score_of(None) == -1.0


def test_a_worker_parses_the_genome_of_a_payload_once(monkeypatch):
    from types import SimpleNamespace

    from deapnos.evaluate import worker
    from deapnos.space import genome as genome_mod
    texts = []
    real = genome_mod._tokenize
    monkeypatch.setattr(genome_mod, "_tokenize", lambda text, source: texts.append(text) or real(text, source))
    # the worker's Context, handed down as the top layer (deapnos.worker_entry) hands it: the paper space
    toy = SimpleNamespace(pm=None, space=None, tasks={"toy": toy_task()})
    out = worker.evaluate_with(worker.make_payload("none ~ div(v_hat, sqrt(s_hat))", "toy", 0,
                                                   {"lr": 0.1, "epochs": 1}, device="cpu"), lambda plugins, compat: toy)
    assert out["status"] == "ok" and out["genome"] == "none ~ div(v_hat, sqrt(s_hat))"
    assert texts.count("none ~ div(v_hat, sqrt(s_hat))") == 1


def test_the_worker_entry_builds_its_context_once_through_build_context():
    """deapnos.worker_entry.evaluate_payload (what a search maps; deapnos.distributed's too) loads the
    payload's plugins with build_context once per process; the old evaluate-layer name says where it went."""
    from deapnos import distributed, worker_entry
    from deapnos.context import Context
    from deapnos.evaluate import worker
    assert distributed.evaluate_payload is worker_entry.evaluate_payload
    payload = worker.make_payload("torch:SGD", "no-such-task", 0, plugins=["sphere"], device="cpu")
    out = worker_entry.evaluate_payload(payload)
    assert out["status"] == "error" and "unknown task 'no-such-task'" in out["message"]
    ctx = worker_entry.worker_context(["sphere"], False)
    assert isinstance(ctx, Context) and ctx is worker_entry.worker_context(("sphere",), False)
    assert "sphere" in ctx.pm.sources
    with pytest.raises(AttributeError, match="moved to deapnos.worker_entry.evaluate_payload"):
        worker.evaluate_payload  # noqa: B018
