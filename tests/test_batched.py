"""Batched LR screening (deapnos/evaluate/batched.py) against one run per LR."""
import logging
import math

import pytest
import torch

from deapnos import plugins
from deapnos.evaluate import batched
from deapnos.evaluate.protocol import ProtocolConfig, evaluate_genome


@pytest.fixture(scope="module")
def tasks():
    return plugins.all_tasks(plugins.get_plugin_manager())


def _screens_match(a, b):
    assert a.status == b.status == "ok" and a.lr == b.lr
    assert [e["lr"] for e in a.screen] == [e["lr"] for e in b.screen]
    for x, y in zip(a.screen, b.screen):
        assert x["diverged"] == y["diverged"]
        assert x["score"] == pytest.approx(y["score"], rel=1e-4, abs=1e-6)
        if x.get("val_score") is not None:
            assert x["val_score"] == pytest.approx(y["val_score"], rel=1e-4, abs=1e-6)
    assert a.fitness == pytest.approx(b.fitness, rel=1e-5)


@pytest.mark.parametrize("genome", ["adam", "momentum"])
@pytest.mark.parametrize("k", [3, 7])
def test_batched_screen_equals_sequential(tasks, genome, k):
    task = tasks["ill-conditioned"]
    grid = {"step_scale": 0.2, "screen_schedule": "grid"}
    seq = evaluate_genome(genome, task, seed=0, config=ProtocolConfig(**grid), device="cpu")
    bat = evaluate_genome(genome, task, seed=0, config=ProtocolConfig(**grid, batch_lrs=k), device="cpu")
    _screens_match(seq, bat)
    assert any(e["diverged"] for e in seq.screen) and any(not e["diverged"] for e in seq.screen)


@pytest.mark.parametrize("text", ["momentum", "none ~ norm(g)", "mom ~ id(norm(sign_lion))"])
def test_batched_final_params_equal_sequential_runs(tasks, text):
    """train_batched's member k ends where a separate EvolvedOptimizer run at LR k ends; also for
    ``norm``, which clips each parameter tensor: each member's own, not the K stacked copies."""
    from deapnos.optim.optimizer import EvolvedOptimizer
    from deapnos.evaluate.training import train
    from deapnos import zoo
    from deapnos.space.genome import Genome
    task = tasks["ill-conditioned"]
    genome = zoo.get(text) if "~" not in text else Genome.parse(text)
    data = task.build_data(torch.device("cpu"), 0)
    lrs = [0.3, 0.01, 1e-4]

    def fresh():
        torch.manual_seed(0)
        data.generator.manual_seed(0)
        return task.build_model(data.num_classes)
    outcomes, finals = batched.train_batched(fresh(), genome, lrs, data.train, epochs=2, steps_per_epoch=5,
                                             total_steps=10, warmup_steps=2, loss_fn=task.loss,
                                             accuracy_fn=task.accuracy, device="cpu")
    for lr, outcome, weights in zip(lrs, outcomes, finals):
        model = fresh()
        opt = EvolvedOptimizer(model.parameters(), genome, lr=lr, total_steps=10, warmup_steps=2)
        ref = train(model, opt, data.train, epochs=2, steps_per_epoch=5, loss_fn=task.loss,
                    accuracy_fn=task.accuracy, device="cpu")
        for name, p in model.named_parameters():
            torch.testing.assert_close(weights[name], p.detach(), rtol=1e-4, atol=1e-6)
        assert [r["train_loss"] for r in outcome.curve] == pytest.approx([r["train_loss"] for r in ref.curve],
                                                                          rel=1e-5)


def test_batch_norm_model_is_batched_with_running_stats_per_member(tasks):
    """digits-hard's ConvNet has batch norm: its buffers are stacked, one set per LR, and each
    member's validation uses its own running statistics.  (SGD with momentum: Adam divides the
    float noise of the gradient of a bias in front of batch norm, zero in exact arithmetic, by its own
    size, so those biases, and the running means, differ by O(lr) between any two summation orders.)"""
    task = tasks["digits-hard"]
    batched._warned_tasks.discard(task.name)
    grid = {"step_scale": 0.4, "screen_schedule": "grid"}
    seq = evaluate_genome("momentum", task, seed=0, config=ProtocolConfig(**grid), device="cpu")
    bat = evaluate_genome("momentum", task, seed=0, config=ProtocolConfig(**grid, batch_lrs=7), device="cpu")
    _screens_match(seq, bat)
    assert task.name not in batched._warned_tasks


def test_unbatchable_model_falls_back_and_says_so_once(tasks, caplog):
    # dropout draws random numbers: vmap refuses it (randomness="error"), so the screen runs per LR
    task = tasks["digits-hard"].replace(options={**tasks["digits-hard"].options, "dropout": 0.2})
    batched._warned_tasks.discard(task.name)
    seq = evaluate_genome("adam", task, seed=0, config=ProtocolConfig(step_scale=0.1), device="cpu")
    with caplog.at_level(logging.WARNING, logger="deapnos.evaluate.batched"):
        for _ in range(2):
            bat = evaluate_genome("adam", task, seed=0, config=ProtocolConfig(step_scale=0.1, batch_lrs=4),
                                  device="cpu")
    msgs = [r.getMessage() for r in caplog.records if "cannot be batched" in r.getMessage()]
    assert len(msgs) == 1 and "digits-hard" in msgs[0] and "\n" not in msgs[0]
    assert [e["score"] for e in bat.screen] == [e["score"] for e in seq.screen]
    assert bat.fitness == seq.fitness


def test_genome_with_random_ops_is_screened_one_lr_at_a_time(tasks, caplog):
    """A dropout op draws one mask over the K stacked copies, not the K runs' masks: such a genome
    (and plugin code, which may mix elements) is not batched, with one warning naming the op."""
    task = tasks["ill-conditioned"]
    text = "none ~ drop10(g)"
    with pytest.raises(batched.NotBatchable, match="drop10"):
        batched.train_batched(task.build_model(4), text, [0.1, 0.01], task.build_data(torch.device("cpu"), 0).train,
                              epochs=1, steps_per_epoch=2, total_steps=4, warmup_steps=0, loss_fn=task.loss,
                              accuracy_fn=task.accuracy, device="cpu")
    grid = {"step_scale": 0.2, "screen_schedule": "grid"}
    batched._warned_genomes.clear()
    with caplog.at_level(logging.WARNING, logger="deapnos.evaluate.batched"):
        runs = [evaluate_genome(text, task, seed=0, config=ProtocolConfig(**grid, batch_lrs=7), device="cpu")
                for _ in range(2)]
    seq = evaluate_genome(text, task, seed=0, config=ProtocolConfig(**grid), device="cpu")
    said = [r.getMessage() for r in caplog.records if "one LR at a time" in r.getMessage()]
    assert len(said) == 1 and "drop10" in said[0] and "random" in said[0]
    for run in runs:       # the same runs as without batching: bit for bit
        assert run.fitness == seq.fitness and [e["score"] for e in run.screen] == [e["score"] for e in seq.screen]


@pytest.mark.parametrize("bad", [-1, 1.5, True])
def test_bad_batch_size_is_one_line_error(bad):
    with pytest.raises(ValueError, match="batch_lrs") as info:
        ProtocolConfig(batch_lrs=bad)
    assert "\n" not in str(info.value)
    with pytest.raises(ValueError, match="K >= 1"):
        batched.check_k(0)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_batched_screen_on_cuda(tasks):
    task = tasks["ill-conditioned"]
    seq = evaluate_genome("adam", task, seed=0, config=ProtocolConfig(step_scale=0.2), device="cuda")
    bat = evaluate_genome("adam", task, seed=0, config=ProtocolConfig(step_scale=0.2, batch_lrs=7), device="cuda")
    assert bat.device == "cuda" and math.isfinite(bat.fitness)
    _screens_match(seq, bat)


def _counting_train_batched(monkeypatch):
    """train_batched as is, recording the LRs of each call."""
    calls = []
    real = batched.train_batched

    def counted(model, genome, lrs, *args, **kwargs):
        calls.append(list(lrs))
        return real(model, genome, lrs, *args, **kwargs)
    monkeypatch.setattr(batched, "train_batched", counted)
    return calls


@pytest.mark.parametrize("task_name, genome", [("digits-hard", "momentum"), ("ill-conditioned", "adam"),
                                                ("ill-conditioned", "opt10")])
@pytest.mark.parametrize("beatable", [True, False])
def test_batched_first_rung_goes_on_as_sequential_runs(tasks, monkeypatch, task_name, genome, beatable):
    """With runs that pause (the default), halving's first rung is one batched run of the 7 LRs whose
    members become ordinary runs: weights, batch norm statistics, optimizer state (the momentum buffer
    scaled by each member's LR: opt10 is Nesterov, momentum heavy ball) and data order.  The survivors,
    the pruning and the cut, and the full run then go on from them as from sequential runs: the
    same LR, screen and curve (to float rounding) and no second batched run.  ``beatable``: a
    reference the candidate reaches (the full run goes to its end, its screened epochs validated
    from the members' snapshots) or one it cannot (the survivors are pruned, the full run is cut)."""
    task = tasks[task_name]
    config: dict = {}
    seq = evaluate_genome(genome, task, seed=0, config=ProtocolConfig(**config), device="cpu")
    reference = seq.fitness - 0.5 if beatable else seq.fitness + 0.5
    seq = evaluate_genome(genome, task, seed=0, config=ProtocolConfig(**config), device="cpu", reference=reference)
    calls = _counting_train_batched(monkeypatch)
    bat = evaluate_genome(genome, task, seed=0, config=ProtocolConfig(**config, batch_lrs=7), device="cpu",
                          reference=reference)
    assert calls == [[10.0, 1e-2, 1e-5, 1.0, 0.1, 1e-3, 1e-4]]
    _screens_match(seq, bat)
    assert [e["epochs"] for e in bat.screen] == [e["epochs"] for e in seq.screen]
    assert len(bat.curve) == len(seq.curve) and bat.stopped_early == seq.stopped_early == (not beatable)
    for x, y in zip(bat.curve, seq.curve):
        assert x["val_score"] == pytest.approx(y["val_score"], rel=1e-4, abs=1e-6)
        assert x["train_loss"] == pytest.approx(y["train_loss"], rel=1e-4, abs=1e-6)


def test_a_run_that_trained_cannot_skip_ahead(tasks):
    from deapnos.evaluate.training import Training, TrainOutcome
    from deapnos.zoo import get
    from deapnos.optim.optimizer import EvolvedOptimizer
    task = tasks["ill-conditioned"]
    data = task.build_data(torch.device("cpu"), 0)
    model = task.build_model(data.num_classes)
    run = Training(model, EvolvedOptimizer(model.parameters(), get("adam"), lr=0.01, total_steps=4),
                   data.train, steps_per_epoch=2, loss_fn=task.loss, accuracy_fn=task.accuracy)
    run.go_on(1)
    with pytest.raises(RuntimeError, match="trained already"):
        run.skip_to(TrainOutcome(steps=2))


def test_losses_read_back_every_n_steps(tasks):
    """``check_every`` (the protocol's ``nan_check_every``: fewer waits for a GPU): a member whose loss
    goes non-finite is reported at the end of the span of steps that holds that step, as
    :class:`Training` reports it; the other members train exactly as when every step is checked."""
    from deapnos import zoo
    task = tasks["digits-hard"]
    data = task.build_data(torch.device("cpu"), 0)
    lrs = [1e4, 0.01]       # momentum at 1e4 has a NaN loss at step 6 on digits-hard

    def fresh():
        torch.manual_seed(0)
        data.generator.manual_seed(0)
        return task.build_model(data.num_classes)

    def run(check_every):
        return batched.train_batched(fresh(), zoo.get("momentum"), lrs, data.train, epochs=3, steps_per_epoch=5,
                                     total_steps=15, warmup_steps=2, loss_fn=task.loss, accuracy_fn=task.accuracy,
                                     device="cpu", check_every=check_every)
    (every, every_w), (third, third_w), (fourth, _) = run(1), run(3), run(4)
    assert every[0].diverged and every[0].divergence == "loss is nan at step 6 (epoch 1)" and every[0].steps == 6
    # checked after steps 2, 5, 8: the NaN of step 6 shows at step 8
    assert third[0].diverged and third[0].divergence == "non-finite loss within steps 6-8 (epoch 1)"
    assert third[0].steps == 8 and third[0].curve == every[0].curve
    # checked after step 3, at the first epoch's end (after step 4, the span going on) and after step 7,
    # as Training checks
    assert fourth[0].divergence == "non-finite loss within steps 4-7 (epoch 1)" and fourth[0].steps == 7
    assert not third[1].diverged and third[1].curve == every[1].curve
    for name, value in every_w[1].items():
        assert torch.equal(third_w[1][name], value), name
    with pytest.raises(ValueError, match="check_every must be >= 1"):
        run(0)


def test_the_protocol_passes_its_nan_check_every_to_batched_runs(tasks, monkeypatch):
    seen = []
    real = batched.train_batched

    def spy(*args, **kwargs):
        seen.append(kwargs["check_every"])
        return real(*args, **kwargs)
    monkeypatch.setattr(batched, "train_batched", spy)
    config = {"step_scale": 0.2, "nan_check_every": 3}
    bat = evaluate_genome("adam", tasks["ill-conditioned"], seed=0, config=ProtocolConfig(**config, batch_lrs=7),
                          device="cpu")
    seq = evaluate_genome("adam", tasks["ill-conditioned"], seed=0, config=ProtocolConfig(**config), device="cpu")
    assert seen == [3]
    _screens_match(seq, bat)
