"""The integrity-check base (deapnos.evaluate.integrity) and the shifted-sphere check (paper-spec §5.3)."""
from __future__ import annotations

import math
import random
import warnings

import pytest
import torch
from deap import gp

from deapnos.evaluate.integrity import CheckResult, IntegrityCheck, run_integrity_checks
from deapnos.space import MOMENTUM_KINDS, Genome, Tensor, builtin_space, parse_tree
from deapnos_plugins import sphere
from deapnos_plugins.sphere import ShiftedSphereCheck

torch.set_num_threads(1)

ADAM = "none ~ div(v_hat, sqrt(s_hat))"
SGD = "none ~ g"


@pytest.fixture(scope="module")
def batched():
    return ShiftedSphereCheck()


@pytest.fixture(scope="module")
def sequential():
    return ShiftedSphereCheck(sequential=True)


# -- the sphere check: what passes and what fails ---------------------------------------------

@pytest.mark.parametrize("text", [ADAM, SGD, "mom ~ g", "nest ~ sign_g", "nesterov ~ g"])
def test_sound_optimizers_pass_unflipped(batched, text):
    res = batched.check(Genome.parse(text))
    assert res.passed and res.flip is False, res.reason
    assert res.lr in sphere.PEAK_LRS
    assert len(res.losses) == 12 and len(res.trials) == 12
    first = res.trials[sphere.PEAK_LRS.index(res.lr)]
    assert first["loss"] < 3.5 and first["flip"] is False
    # every earlier trial in the order failed
    assert all(not (t["loss"] < 3.5) for t in res.trials[:sphere.PEAK_LRS.index(res.lr)])


def test_paper_numbers_are_the_defaults(batched):
    assert batched.target == (0.5, 1.5, -0.3, -1.2, 0.75)
    assert batched.start == (1.1, 0.9, 1.1, 0.9, 1.0)
    assert batched.peak_lrs == (1.0, 1e-1, 1e-2, 1e-3, 1e-4, 1e-5)
    assert (batched.total_steps, batched.warmup_steps, batched.updates, batched.threshold) == (35, 6, 34, 3.5)
    assert batched.flips == (False, True)
    # f(x0) = 7.1525: a genome that never moves keeps it
    res = batched.check(Genome.parse("none ~ sub(g, g)"))
    assert not res.passed
    assert all(math.isclose(v, 7.1525, rel_tol=1e-6) for v in res.losses)


@pytest.mark.parametrize("text", ["none ~ neg(g)", "none ~ neg(div(v_hat, sqrt(s_hat)))", "mom ~ neg(sign_g)"])
def test_sign_flipped_optimizers_pass_flipped(batched, text):
    res = batched.check(Genome.parse(text))
    assert res.passed and res.flip is True, res.reason
    assert all(not (t["loss"] < 3.5) for t in res.trials[:6])    # no unflipped trial passed


def test_degenerate_constant_direction_fails(batched):
    # U = 1 moves every coordinate alike: the best reachable loss is 4.34 > 3.5
    res = batched.check(Genome.parse("none ~ one"))
    assert not res.passed and res.flip is None and res.lr is None
    assert "at every LR and flip" in res.reason and "≥ 3.5" in res.reason
    assert min(res.losses) > 4.3


def test_non_finite_genome_fails_with_reason(batched):
    res = batched.check(Genome.parse("none ~ exp(inv(sub(g, g)))"))
    assert not res.passed
    assert res.reason == "non-finite loss at every LR and flip"
    assert all(not math.isfinite(v) for v in res.losses)


def test_nan_never_passes():
    chk = ShiftedSphereCheck()
    res = chk._judge([float("nan")] * 11 + [0.1])
    assert res.passed and res.flip is True and res.lr == 1e-5
    res = chk._judge([float("nan")] * 12)
    assert not res.passed


def test_every_number_is_configurable():
    g = Genome.parse("none ~ one")
    assert not ShiftedSphereCheck().check(g).passed
    assert ShiftedSphereCheck(threshold=1e9).check(g).passed
    chk = ShiftedSphereCheck(target=(1.0, 1.0), start=(0.0, 0.0), peak_lrs=(1e-2, 1e-1), total_steps=20,
                             warmup_steps=2, threshold=0.5, flips=(True, False))
    res = chk.check(Genome.parse(SGD))
    assert res.passed and res.flip is False and res.lr == 1e-1
    assert [(t["flip"], t["lr"]) for t in res.trials] == [(True, 1e-2), (True, 1e-1), (False, 1e-2), (False, 1e-1)]
    seq = ShiftedSphereCheck(target=(1.0, 1.0), start=(0.0, 0.0), peak_lrs=(1e-2, 1e-1), total_steps=20,
                             warmup_steps=2, threshold=0.5, flips=(True, False), sequential=True)
    assert (seq.check(Genome.parse(SGD)).lr, seq.check(Genome.parse(SGD)).flip) == (1e-1, False)
    with pytest.raises(ValueError):
        ShiftedSphereCheck(target=(1.0,), start=(0.0, 0.0))
    with pytest.raises(ValueError):
        ShiftedSphereCheck(updates=40)


def test_check_ignores_the_genomes_own_flip(batched):
    assert batched.check(Genome.parse(SGD + " | flip")).flip is False
    assert batched.check(Genome.parse("none ~ neg(g) | flip")).flip is True


def test_hook_returns_the_paper_check():
    checks = sphere.deapnos_integrity_checks()
    assert [c.name for c in checks] == ["sphere"]
    assert isinstance(checks[0], IntegrityCheck) and not checks[0].sequential


# -- batched == sequential --------------------------------------------------------------------

def _random_genomes(n, seed):
    space = builtin_space()
    one = parse_tree("one", "schedule", space)
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        random.seed(rng.randrange(2**32))
        tree = gp.PrimitiveTree(gp.genGrow(space.update_pset, 1, 4, type_=Tensor))
        out.append(Genome(tree, gp.PrimitiveTree(list(one)), rng.choice(MOMENTUM_KINDS), False, space))
    return out


@pytest.mark.slow      # about 25 s; the batched check is also compared on the published optimizers in the fast suite
def test_batched_agrees_with_sequential_on_random_genomes(batched, sequential):
    genomes = _random_genomes(200, seed=2404)
    verdicts = {True: 0, False: 0}
    flipped = 0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for genome in genomes:
            rb, rs = batched.check(genome), sequential.check(genome)
            assert (rb.passed, rb.flip, rb.lr) == (rs.passed, rs.flip, rs.lr), \
                f"{genome.to_text()}: batched {rb.reason} / sequential {rs.reason}"
            verdicts[rb.passed] += 1
            flipped += bool(rb.flip)
    # the sample exercises both verdicts, flipped passes and random (dropout) ops
    assert verdicts[True] > 20 and verdicts[False] > 20 and flipped > 0
    assert sum(any(n.name.startswith("drop") for n in g.update) for g in genomes) > 10


@pytest.mark.parametrize("text", [ADAM, "nest ~ drop50(g)", "nesterov ~ add(drop30(v_hat), drop10(g))",
                                  "mom ~ norm(ema(g))", "none ~ div(delta(g), runmax(abs(g)))",
                                  "nest ~ decay(a3, add(g, w_1e3)) | lr = a2"])
def test_batched_losses_match_sequential_trial_by_trial(text):
    genome = Genome.parse(text)
    rb = ShiftedSphereCheck().check(genome)
    rs = ShiftedSphereCheck(sequential=True, stop_early=False).check(genome)
    for a, b in zip(rb.losses, rs.losses):
        assert math.isclose(a, b, rel_tol=1e-4, abs_tol=1e-6) or (math.isnan(a) and math.isnan(b)), (a, b)


def test_sequential_stops_at_first_pass_like_the_original(sequential):
    res = sequential.check(Genome.parse(SGD))
    assert res.passed and res.losses[0] < 3.5 and all(v is None for v in res.losses[1:])


# -- run_integrity_checks ---------------------------------------------------------------------

class _Always(IntegrityCheck):
    def __init__(self, name, passed=True, flip=None, plugin=""):
        self.name, self._passed, self._flip, self.plugin = name, passed, flip, plugin
        self.calls = 0

    def check(self, genome):
        self.calls += 1
        return CheckResult(self._passed, flip=self._flip, reason="ok" if self._passed else "nope")


class _Raising(IntegrityCheck):
    name = "boom"
    plugin = "badplugin"

    def check(self, genome):
        raise ZeroDivisionError("division by zero in check code")


def test_run_sets_flip_from_the_sphere_result_every_time():
    checks = {"sphere": ShiftedSphereCheck()}
    g = Genome.parse("none ~ neg(g)")
    res = run_integrity_checks(g, checks)
    assert res.passed and res.flip is True and g.flip is True and res.lr == 1.0
    # the original's bug: a flipped parent's mutant that passes unflipped kept flip=True.  Fixed:
    child = Genome.parse("none ~ g | flip")
    res = run_integrity_checks(child, checks)
    assert res.passed and child.flip is False and res.flip is False


def test_run_failure_keeps_flip_and_names_the_check():
    g = Genome.parse("none ~ one | flip")
    res = run_integrity_checks(g, [ShiftedSphereCheck()])
    assert not res.passed and g.flip is True and res.check == "sphere"
    assert res.reason.startswith("integrity check 'sphere'") and "at every LR and flip" in res.reason


def test_raising_check_is_a_failed_result_naming_it():
    later = _Always("later")
    g = Genome.parse(SGD)
    res = run_integrity_checks(g, [ShiftedSphereCheck(), _Raising(), later])
    assert not res.passed and res.error and res.check == "boom" and res.plugin == "badplugin"
    assert "'boom'" in res.reason and "badplugin" in res.reason
    assert "ZeroDivisionError: division by zero in check code" in res.reason
    assert later.calls == 0                       # stops at the first failure
    assert [d.check for d in res.details] == ["sphere", "boom"]
    assert g.flip is False                         # set by the sphere check before the failure


def test_check_returning_garbage_is_an_error():
    class Bad(IntegrityCheck):
        name = "bad"

        def check(self, genome):
            return True
    res = run_integrity_checks(Genome.parse(SGD), [Bad()])
    assert not res.passed and res.error and "not a CheckResult" in res.reason


def test_enabled_selection_and_defaults():
    a, b = _Always("a"), _Always("b", passed=False)
    b.enabled = False
    g = Genome.parse(SGD)
    assert run_integrity_checks(g, {"a": a, "b": b}).passed          # b is disabled
    assert not run_integrity_checks(g, {"a": a, "b": b}, enabled=["b"]).passed
    with pytest.raises(ValueError, match="unknown integrity check"):
        run_integrity_checks(g, {"a": a}, enabled=["nope"])
    res = run_integrity_checks(g, {})
    assert res.passed and "no integrity check" in res.reason


def test_checks_without_opinion_leave_flip_alone():
    g = Genome.parse("none ~ neg(g)")
    res = run_integrity_checks(g, [_Always("x"), ShiftedSphereCheck(), _Always("y")])
    assert res.passed and g.flip is True and res.lr == 1.0
    assert [d.check for d in res.details] == ["x", "sphere", "y"]
    assert res.to_dict()["details"][1]["check"] == "sphere"
