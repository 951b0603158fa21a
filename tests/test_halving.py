"""Successive halving over the LR grid (protocol.screen_schedule = "halving")."""
import math

import pytest

from deapnos import plugins
from deapnos.evaluate.halving import n_keep, rank_key, survivors
from deapnos.evaluate.protocol import ProtocolConfig, evaluate_genome


def _e(lr, score, val=None):
    e = {"lr": lr, "score": score}
    if val is not None:
        e["val_score"] = val
    return e


def test_ranking_is_the_protocols_choice_rule():
    # validation score counts only with enough progress; then progress; ties go to the earlier LR
    entries = [_e(10.0, -3.0), _e(1.0, 0.5, 0.7), _e(0.1, 0.01, 0.99), _e(0.01, 0.4, 0.7), _e(1e-3, 0.3, 0.6)]
    assert rank_key(entries[2], 0.02) == (-math.inf, 0.01)
    assert survivors(entries, 0.02, 2) == [1.0, 0.01]
    assert survivors(entries, 0.02, 3) == [1.0, 0.01, 1e-3]
    assert survivors(entries, 0.0, 1) == [0.1]            # with min_progress 0 its 0.99 counts
    assert [n_keep(n) for n in (1, 2, 3, 7, 9)] == [1, 2, 2, 3, 3]


@pytest.fixture(scope="module")
def ill_conditioned():
    return plugins.all_tasks(plugins.get_plugin_manager())["ill-conditioned"]


def test_halving_screens_the_best_third_fully_and_agrees_with_the_grid(ill_conditioned):
    grid = evaluate_genome("adam", ill_conditioned, seed=0, config=ProtocolConfig(screen_schedule="grid"),
                           device="cpu")
    halving = evaluate_genome("adam", ill_conditioned, seed=0, config=ProtocolConfig(screen_schedule="halving"),
                              device="cpu")
    assert grid.status == halving.status == "ok"
    assert len(grid.screen) == 7 and len(halving.screen) == 3
    full = ProtocolConfig().screen_epochs
    assert all(e["epochs"] == full for e in halving.screen if not e["stopped_early"])
    assert halving.lr in [e["lr"] for e in halving.screen]
    # the survivors ran exactly as the grid's runs at the same LR (same seed, same steps)
    by_lr = {e["lr"]: e for e in grid.screen}
    for e in halving.screen:
        assert e["score"] == by_lr[e["lr"]]["score"]
    assert halving.lr == grid.lr and halving.fitness == grid.fitness


def test_a_bad_schedule_is_a_one_line_error():
    with pytest.raises(ValueError) as exc:
        ProtocolConfig.from_dict({"screen_schedule": "fast"})
    assert str(exc.value) == "config field protocol.screen_schedule = 'fast': allowed values: grid, halving"


def test_when_every_survivor_diverges_the_rest_of_the_grid_is_screened():
    """An LR that looked best after one epoch and blew up later (a large LR in the warm-up): when all
    survivors did, halving gives the other LRs their full screening run, as the grid would."""
    from deapnos.evaluate.halving import successive_halving
    first = {10.0: 0.5, 1.0: 0.4, 0.1: 0.3, 0.01: 0.2, 1e-3: 0.1, 1e-4: 0.05, 1e-5: 0.0}
    calls = []

    def screen_lrs(lrs, epochs):
        calls.append((list(lrs), epochs))
        for lr in lrs:   # the three largest LRs blow up after the first epoch; the others train
            blown = epochs > 1 and lr >= 0.1
            screen.append({"lr": lr, "score": -3.0 if blown else first[lr] + epochs / 10, "diverged": blown,
                           "val_score": None if blown else first[lr]})
    screen: list = []
    successive_halving(screen_lrs, list(first), screen, 4, 0.02)
    assert calls == [(list(first), 1), ([10.0, 1.0, 0.1], 4), ([0.01, 1e-3, 1e-4, 1e-5], 4)]
    assert [e["lr"] for e in screen if not e["diverged"]] == [0.01, 1e-3, 1e-4, 1e-5]


@pytest.mark.parametrize("reference", [None, 10.0])
def test_first_rung_validates_only_runs_that_made_progress(ill_conditioned, monkeypatch, reference):
    """Below min_progress a run ranks by progress alone, so the first rung leaves it unvalidated
    (a survivor gets its score later when the pruner needs it): the same result as validating every
    run, with fewer validation passes.  A reference of 10 (log_loss) makes every survivor hopeless,
    so the pruner runs."""
    from deapnos.evaluate import halving, protocol, training
    calls = []
    real = training.validate

    def counted(*args, **kwargs):
        calls.append(1)
        return real(*args, **kwargs)
    monkeypatch.setattr(training, "validate", counted)

    def run():
        calls.clear()
        r = evaluate_genome("signsgd", ill_conditioned, seed=0, config=ProtocolConfig(), device="cpu",
                            reference=reference)
        return r, len(calls)
    lazy, lazy_passes = run()
    eager_halving = halving.successive_halving

    def eager(*args, validate_late=None, **kwargs):     # the oracle: every run of the first rung validated
        return eager_halving(*args, **kwargs)
    monkeypatch.setattr(halving, "successive_halving", eager)
    every, every_passes = run()
    assert lazy.to_dict() | {"seconds": 0} == every.to_dict() | {"seconds": 0}
    assert lazy_passes < every_passes
    assert protocol.ProtocolConfig().screen_schedule == "halving"
