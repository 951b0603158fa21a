"""The cheaper protocol of docs/evaluation.md, "Throughput": runs that pause and go on, the full run
that goes on from its screening run, and the cut of full runs that cannot catch up with the reference."""
from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

from deapnos import zoo
from deapnos.evaluate.protocol import ProtocolConfig, evaluate_genome
from deapnos.evaluate.training import Training, train
from deapnos.optim.optimizer import EvolvedOptimizer

sys.path.insert(0, str(Path(__file__).resolve().parent))
from test_evaluate import toy_task  # noqa: E402  (shuffled batches, dropout: both draw random numbers)

torch.set_num_threads(1)


def _fresh(task, data, seed=0):
    torch.manual_seed(seed)
    data.generator.manual_seed(seed)
    model = task.build_model(data.num_classes)
    return model, EvolvedOptimizer(model.parameters(), zoo.get("adam"), lr=0.01, total_steps=40, warmup_steps=4)


def test_paused_runs_go_on_as_if_never_stopped():
    """Two runs trained alternately an epoch at a time (each pausing) end exactly where each ends alone:
    a pause keeps the run's batches (mid-pass: 4 steps of an 8-batch pass) and its dropout draws."""
    task = toy_task()
    data = task.build_data(torch.device("cpu"), 0)
    alone = []
    for seed in (0, 1):
        model, opt = _fresh(task, data, seed)
        out = train(model, opt, data.train, epochs=5, steps_per_epoch=4, val_data=data.val, device="cpu")
        alone.append((out.curve, [p.detach().clone() for p in model.parameters()]))
    runs = []
    for seed in (0, 1):
        model, opt = _fresh(task, data, seed)
        runs.append(Training(model, opt, data.train, steps_per_epoch=4, device="cpu", generator=data.generator))
    for _ in range(5):
        for run in runs:
            run.go_on(1, val_data=data.val, pause=True)
    for run, (curve, params) in zip(runs, alone):
        assert run.epochs_done == 5 and run.outcome.curve == curve
        for p, q in zip(run.model.parameters(), params):
            assert torch.equal(p.detach(), q)


def test_snapshots_score_the_unvalidated_epochs_as_validation_would_have():
    task = toy_task()
    data = task.build_data(torch.device("cpu"), 0)
    model, opt = _fresh(task, data)
    validated = train(model, opt, data.train, epochs=4, steps_per_epoch=4, val_data=data.val, device="cpu")
    model, opt = _fresh(task, data)
    run = Training(model, opt, data.train, steps_per_epoch=4, device="cpu", generator=data.generator, snapshots=True)
    run.go_on(3, pause=True)
    assert all("val_score" not in r for r in run.outcome.curve)
    run.fill_validation(data.val)
    run.go_on(1, val_data=data.val)
    assert run.outcome.curve == validated.curve
    with pytest.raises(RuntimeError, match="no snapshots"):
        bare = Training(*_fresh(task, data), data.train, steps_per_epoch=4, device="cpu")
        bare.go_on(1)
        bare.fill_validation(data.val)


@pytest.mark.parametrize("schedule", ["grid", "halving"])
@pytest.mark.parametrize("genome", ["adam", "torch:SGD(momentum=0.9)"])
def test_full_run_going_on_from_its_screening_run_changes_nothing(schedule, genome):
    """reuse_screen: the same LR, screen, curve (validation included) and fitness as a full run
    trained again from the start, for a genome and for a torch.optim optimizer."""
    task = toy_task()
    again = evaluate_genome(genome, task, seed=2, device="cpu",
                            config=ProtocolConfig(screen_schedule=schedule, reuse_screen=False))
    reused = evaluate_genome(genome, task, seed=2, device="cpu",
                             config=ProtocolConfig(screen_schedule=schedule, reuse_screen=True))
    assert again.status == reused.status == "ok", (again.message, reused.message)
    assert reused.lr == again.lr and reused.screen == again.screen
    assert reused.curve == again.curve and reused.fitness == again.fitness and reused.steps == again.steps
    assert len(reused.curve) == task.epochs and all("val_score" in r for r in reused.curve)


def test_halving_survivors_go_on_from_their_first_rung():
    """Halving with reuse: a survivor's screening entry equals the grid's for the same LR (its first
    epoch is not trained twice, and going on gives the same run)."""
    task = toy_task()
    grid = evaluate_genome("adam", task, seed=1, device="cpu", config=ProtocolConfig(screen_schedule="grid"))
    halving = evaluate_genome("adam", task, seed=1, device="cpu", config=ProtocolConfig())
    by_lr = {e["lr"]: e for e in grid.screen}
    assert len(halving.screen) == 3
    for entry in halving.screen:
        assert entry == by_lr[entry["lr"]]


def test_a_full_run_far_behind_the_reference_is_cut():
    task = toy_task(epochs=12)
    grid = ProtocolConfig(screen_schedule="grid")       # the full run's cut alone (no survivors to drop)
    plain = evaluate_genome("sgd", task, seed=0, device="cpu", config=grid)
    assert plain.ok and len(plain.curve) == 12 and not plain.stopped_early
    # a reference no run can reach: cut at the screen's last epoch (the first the cut looks at)
    cut = evaluate_genome("sgd", task, seed=0, device="cpu", config=grid, reference=plain.fitness + 5.0)
    first = grid.screen_epochs - 1
    assert cut.ok and cut.stopped_early and f"cut at epoch {first}:" in cut.message
    assert cut.lr == plain.lr and len(cut.curve) == first + 1 and cut.curve == plain.curve[:first + 1]
    assert cut.fitness == cut.curve[-1]["val_score"] < plain.fitness + 5.0
    # a reference it beats, no reference, or the cut turned off: the full run goes to its end
    off = [{"reference": plain.fitness + 5.0, "config": ProtocolConfig(screen_schedule="grid", cut_factor=v)}
           for v in (None, 0)]       # 0: the way to turn it off in a TOML config, which has no None
    for kw in ({"reference": plain.fitness - 1.0}, {}, *off):
        full = evaluate_genome("sgd", task, seed=0, device="cpu", **{"config": grid, **kw})
        assert full.fitness == plain.fitness and len(full.curve) == 12 and "cut" not in full.message


def test_halving_drops_survivors_that_cannot_catch_up():
    """With a reference out of reach, halving's survivors stop after their second epoch but one (the
    best by the protocol's rule): its verdict is known, so the screen ends with it and its full run
    is cut there, the run it would have been.  With one in reach, all three finish the screen."""
    task = toy_task(epochs=12)
    plain = evaluate_genome("sgd", task, seed=0, device="cpu")
    assert plain.ok and len(plain.screen) == 3 and all(e["epochs"] == 4 for e in plain.screen)
    far = evaluate_genome("sgd", task, seed=0, device="cpu", reference=plain.fitness + 5.0)
    assert far.ok and len(far.screen) == 1 and far.screen[0]["epochs"] == 2 and far.screen[0]["hopeless"]
    assert far.stopped_early and "cut at epoch 1:" in far.message and len(far.curve) == 2
    assert far.lr in [e["lr"] for e in plain.screen]
    # the cut run is that LR's full run, stopped: its first two epochs to the last digit
    alone = evaluate_genome("sgd", task, seed=0, device="cpu", config=ProtocolConfig(lr=far.lr))
    assert far.curve == alone.curve[:2] and far.fitness == alone.curve[1]["val_score"]
    # a best survivor that has not yet made min_progress finishes the screen: whether the candidate is
    # screened out is decided by its fourth epoch, as the grid decides it
    # (0.35: above every survivor's progress after two epochs, 0.338 at most)
    strict = ProtocolConfig(min_progress=0.35)
    slow = evaluate_genome("sgd", task, seed=0, device="cpu", config=strict, reference=plain.fitness + 5.0)
    assert [e["epochs"] for e in slow.screen] == [4] and not slow.screen[0].get("hopeless")
    assert slow.status == "screened_out"
    near = evaluate_genome("sgd", task, seed=0, device="cpu", reference=plain.fitness - 1.0)
    assert near.screen == plain.screen and near.fitness == plain.fitness


def test_the_cut_projects_the_runs_best_recent_gain():
    """BehindStop: a run gaining fast enough to reach the reference goes on; the same scores with
    the gain slowing down are cut; never before first_epoch nor at the last epoch."""
    from deapnos.evaluate.stops import BehindStop

    def stop(scores, reference=1.0, factor=2.0, epochs=10, first=3):
        s = BehindStop(lambda e, r: False, reference, factor, epochs, first, "final")
        fired = [s(e, {"val_score": v}) for e, v in enumerate(scores)]
        return fired, s
    # 0.6 at epoch 3, gaining 0.1 an epoch: 0.6 + 2 * 0.1 * 6 = 1.8 >= 1.0, goes on
    assert not any(stop([0.3, 0.4, 0.5, 0.6])[0])
    # gaining 0.01 an epoch: 0.63 + 2 * 0.01 * 6 = 0.75 < 1.0, cut at epoch 3 and not earlier
    fired, s = stop([0.6, 0.61, 0.62, 0.63])
    assert fired == [False, False, False, True] and "cut at epoch 3" in s.why
    assert not any(stop([0.0] * 10, first=10)[0])             # before first_epoch: never
    assert stop([0.0] * 9, epochs=10, first=8)[0][-1] is True   # the last-but-one epoch may cut
    assert not stop([0.0] * 10, epochs=10, first=9)[0][-1]      # the last epoch never (nothing to save)


def test_the_reference_travels_in_the_payload():
    from deapnos.distributed import evaluate_payload, make_payload
    from deapnos.search.evaluator import EvalRequest, Evaluator
    sgd = zoo.get("sgd").to_text()          # payloads carry genome text
    payload = make_payload(sgd, "ill-conditioned", 0, protocol={"step_scale": 0.4}, reference=50.0)
    assert payload["reference"] == 50.0 and "reference" not in make_payload(sgd, "digits-hard", 0)
    out = evaluate_payload(payload)
    assert out["status"] == "ok" and out["stopped_early"] and "cut at epoch" in out["message"], out["message"]
    ev = Evaluator(None, None, None, {"protocol": {}}, map_fn=map)
    assert ev._payload(EvalRequest("sgd", "sgd", "digits-hard", 0, 1, reference=-0.25))["reference"] == -0.25
    assert "reference" not in ev._payload(EvalRequest("sgd", "sgd", "digits-hard", 0, 1))


def test_bad_protocol_values_are_one_line_errors():
    for field, bad in (("cut_factor", -1), ("cut_factor", "x"), ("reuse_screen", 2), ("screen_schedule", "fast")):
        with pytest.raises(ValueError) as err:
            ProtocolConfig.from_dict({field: bad})
        assert f"protocol.{field}" in str(err.value) and "\n" not in str(err.value)


def test_kept_data_and_untrained_loss_change_nothing():
    """The second evaluation of a (task, seed) reuses the first one's data and untrained loss
    (evaluate/task_cache.py): its result equals one computed with nothing kept; another seed or
    another task object gets its own."""
    from deapnos.evaluate import task_cache
    task = toy_task()
    task_cache.clear()
    fresh = evaluate_genome("adam", task, seed=4, device="cpu")
    data = task_cache.cached(task, "cpu", 4, "data", lambda: None)
    assert data is not None                               # kept by the evaluation above
    again = evaluate_genome("adam", task, seed=4, device="cpu")
    assert task_cache.cached(task, "cpu", 4, "data", lambda: None) is data
    assert again.to_dict() | {"seconds": 0, "worker": ""} == fresh.to_dict() | {"seconds": 0, "worker": ""}
    assert task_cache.cached(task, "cpu", 5, "data", lambda: "new") == "new"
    other = toy_task()
    assert task_cache.cached(other, "cpu", 4, "data", lambda: "other") == "other"
    assert len(task_cache._entries) == task_cache.KEEP    # the oldest key was let go
    task_cache.clear()
