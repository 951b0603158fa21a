"""EvolvedOptimizer against torch.optim, resume, dtypes, param groups, horizon handling."""
import copy
import warnings

import pytest
import torch

from deapnos.space import Genome
import deapnos

ADAM = "none ~ div(v_hat, sqrt(s_hat))"


def train(make_model, loss_fn, make_opt, steps, closure=False):
    model = make_model()
    opt = make_opt(model.parameters())
    for _ in range(steps):
        opt.zero_grad()
        if closure:
            def c():
                opt.zero_grad()
                loss = loss_fn(model)
                loss.backward()
                return loss
            opt.step(c)
        else:
            loss_fn(model).backward()
            opt.step()
    return torch.cat([p.detach().reshape(-1) for p in model.parameters()]), opt, model


def test_adam_genome_matches_torch_adam(tiny_mlp_problem):
    make_model, loss_fn = tiny_mlp_problem
    g = Genome.parse(ADAM)
    ours, _, _ = train(make_model, loss_fn, lambda ps: deapnos.optimizer(g, ps, lr=1e-2, total_steps=200,
                                                                    base_schedule="constant"), 200)
    ref, _, _ = train(make_model, loss_fn, lambda ps: torch.optim.Adam(ps, lr=1e-2, betas=(0.9, 0.99), eps=1e-7), 200)
    start = torch.cat([p.detach().reshape(-1) for p in make_model().parameters()])
    assert (ref - start).abs().max() > 0.1          # it really trained
    torch.testing.assert_close(ours, ref, atol=5e-5, rtol=0)


@pytest.mark.parametrize("kind,nesterov", [("mom", False), ("nesterov", True)])
def test_momentum_kinds_match_torch_sgd(tiny_mlp_problem, kind, nesterov):
    make_model, loss_fn = tiny_mlp_problem
    g = Genome.parse(f"{kind} ~ g")
    ours, _, _ = train(make_model, loss_fn, lambda ps: deapnos.optimizer(g, ps, lr=0.05, total_steps=100,
                                                                    base_schedule="constant", momentum=0.9), 100)
    ref, _, _ = train(make_model, loss_fn,
                      lambda ps: torch.optim.SGD(ps, lr=0.05, momentum=0.9, nesterov=nesterov), 100)
    torch.testing.assert_close(ours, ref, atol=1e-5, rtol=0)


def test_sgd_matches_and_closure_returns_loss(tiny_mlp_problem):
    make_model, loss_fn = tiny_mlp_problem
    g = Genome.parse("none ~ g")
    ours, opt, model = train(make_model, loss_fn, lambda ps: deapnos.optimizer(g, ps, lr=0.1, total_steps=30,
                                                                          base_schedule="constant"), 30, closure=True)
    ref, _, _ = train(make_model, loss_fn, lambda ps: torch.optim.SGD(ps, lr=0.1), 30)
    torch.testing.assert_close(ours, ref, atol=1e-6, rtol=0)
    # a 31st step of a 30-step schedule: it says so, keeps the last step's values, returns the loss
    with pytest.warns(RuntimeWarning, match="stepped past total_steps=30"):
        loss = opt.step(lambda: loss_fn(model))
    assert isinstance(loss, torch.Tensor) and loss.ndim == 0


def test_search_nest_variant_differs_from_standard_nesterov():
    # paper-spec §1.5: Nest ~ w += M_new + s lr U, standard: w += m M_new + s lr U
    p1 = torch.tensor([1.0], requires_grad=True)
    p2 = torch.tensor([1.0], requires_grad=True)
    kw = dict(lr=0.1, total_steps=10, base_schedule="constant", momentum=0.5)
    o1 = deapnos.optimizer(Genome.parse("nest ~ g"), [p1], **kw)
    o2 = deapnos.optimizer(Genome.parse("nesterov ~ g"), [p2], **kw)
    for p, o in ((p1, o1), (p2, o2)):
        p.grad = torch.tensor([1.0])
        o.step()
    # M = -0.1; nest: 1 - 0.1 - 0.1 = 0.8; nesterov: 1 + 0.5*(-0.1) - 0.1 = 0.85
    assert p1.item() == pytest.approx(0.8)
    assert p2.item() == pytest.approx(0.85)


def test_flip_ascends():
    p = torch.tensor([1.0], requires_grad=True)
    o = deapnos.optimizer(Genome.parse("none ~ g | flip"), [p], lr=0.1, total_steps=5, base_schedule="constant")
    p.grad = torch.tensor([2.0])
    o.step()
    assert p.item() == pytest.approx(1.2)


def test_warmup_cosine_lr_and_momentum_schedule():
    p = torch.zeros(3, requires_grad=True)
    o = deapnos.optimizer(Genome.parse("mom ~ g"), [p], lr=0.5, total_steps=10, warmup_steps=4)
    assert o.lr_at(0) == 0.0 and o.lr_at(2) == pytest.approx(0.25) and o.lr_at(4) == pytest.approx(0.5)
    assert o.lr_at(9) == pytest.approx(0.5 * 0.5 * (1 + torch.cos(torch.tensor(torch.pi * 5 / 6)).item()))
    m = o.momentum_values
    assert m[0] == pytest.approx(0.95) and m[3] == pytest.approx(0.85) and m[4] == pytest.approx(0.85)
    assert m[-1] == pytest.approx(0.95) and len(m) == 10


def test_schedule_tree_multiplies_lr():
    p = torch.zeros(1, requires_grad=True)
    o = deapnos.optimizer(Genome.parse("none ~ g | lr = a1"), [p], lr=1.0, total_steps=4, base_schedule="constant")
    assert [o.lr_at(t) for t in range(4)] == pytest.approx([1.0, 0.75, 0.5, 0.25])


def test_stepping_past_total_steps_holds_last_value_and_warns():
    p = torch.ones(2, requires_grad=True)
    o = deapnos.optimizer(Genome.parse("none ~ decay(a1, g)"), [p], lr=1.0, total_steps=3, base_schedule="constant")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for _ in range(6):
            p.grad = torch.ones(2)
            o.step()
    assert sum("past total_steps" in str(w.message) for w in caught) == 1
    # a1 = 1, 2/3, 1/3, then 1/3 held for 3 more steps
    assert p.detach() == pytest.approx(torch.full((2,), 1 - (1 + 2 / 3 + 1 / 3 * 4)))


def test_total_steps_required():
    with pytest.raises(ValueError, match="total_steps is required"):
        deapnos.optimizer(Genome.parse(ADAM), [torch.zeros(1, requires_grad=True)], lr=1e-3)


@pytest.mark.parametrize("text", [ADAM, "nesterov ~ i1e(i1e(decay(mul(a13, a2), g)))",
                                  "mom ~ add(ema(g), drop30(delta(sign_v_hat)))",
                                  "none ~ norm(runmax(agg_s)) | lr = a3"])
def test_resume_continues_identical_trajectory(tiny_mlp_problem, text):
    make_model, loss_fn = tiny_mlp_problem
    g = Genome.parse(text)
    def make_opt(ps):
        return deapnos.optimizer(g, ps, lr=1e-2, total_steps=40, warmup_steps=5, seed=3)

    full, _, _ = train(make_model, loss_fn, make_opt, 40)

    model = make_model()
    opt = make_opt(model.parameters())
    for _ in range(17):
        opt.zero_grad()
        loss_fn(model).backward()
        opt.step()
    saved_model = copy.deepcopy(model.state_dict())
    saved_opt = copy.deepcopy(opt.state_dict())
    model2 = make_model(seed=99)
    model2.load_state_dict(saved_model)
    opt2 = make_opt(model2.parameters())
    opt2.load_state_dict(saved_opt)
    for _ in range(23):
        opt2.zero_grad()
        loss_fn(model2).backward()
        opt2.step()
    resumed = torch.cat([p.detach().reshape(-1) for p in model2.parameters()])
    assert torch.equal(resumed, full)


def test_state_dict_refuses_another_genome():
    p = torch.zeros(2, requires_grad=True)
    o = deapnos.optimizer(Genome.parse(ADAM), [p], total_steps=5)
    p.grad = torch.ones(2)
    o.step()
    other = deapnos.optimizer(Genome.parse("none ~ g"), [p], total_steps=5)
    with pytest.raises(ValueError, match="state dict is for genome"):
        other.load_state_dict(o.state_dict())


def test_only_needed_state_is_allocated():
    p = torch.zeros(4, requires_grad=True)
    o = deapnos.optimizer(Genome.parse("none ~ div(v_hat, sqrt(s_hat))"), [p], total_steps=5)
    p.grad = torch.ones(4)
    o.step()
    assert set(o.state[p]) == {"v", "s"}
    o = deapnos.optimizer(Genome.parse("nesterov ~ i1e(g)"), [p], total_steps=5)
    o.step()
    assert set(o.state[p]) == {"M"}
    assert Genome.parse("mom ~ add(ema(g), lam_hat)").state_needed() == ["lam", "ema#1", "M"]


def test_param_groups_have_their_own_lr():
    a = torch.ones(2, requires_grad=True)
    b = torch.ones(3, requires_grad=True)
    o = deapnos.optimizer(Genome.parse("none ~ g"), [{"params": [a]}, {"params": [b], "lr": 0.5}], lr=0.1,
                                           total_steps=3, base_schedule="constant")
    a.grad, b.grad = torch.ones(2), torch.ones(3)
    o.step()
    assert a.detach() == pytest.approx(torch.full((2,), 0.9))
    assert b.detach() == pytest.approx(torch.full((3,), 0.5))


def test_params_without_grad_are_skipped_and_state_survives_bucket_change():
    a = torch.ones(2, requires_grad=True)
    b = torch.ones(2, requires_grad=True)
    o = deapnos.optimizer(Genome.parse("mom ~ g"), [a, b], lr=0.1, total_steps=10, base_schedule="constant",
                          momentum=0.5)
    a.grad = torch.ones(2)
    o.step()                                   # only a moves; b has no grad
    assert torch.equal(b.detach(), torch.ones(2))
    a.grad, b.grad = torch.ones(2), torch.ones(2)
    o.step()                                   # bucket rebuilt with both; a keeps its momentum
    assert a.detach() == pytest.approx(torch.full((2,), 1 - 0.1 - (0.05 + 0.1)))
    assert b.detach() == pytest.approx(torch.full((2,), 0.9))


def test_bfloat16_parameters_step_with_float32_state():
    torch.manual_seed(0)
    w32 = torch.randn(50, requires_grad=True)
    w16 = w32.detach().to(torch.bfloat16).requires_grad_()
    o32 = deapnos.optimizer(Genome.parse(ADAM), [w32], lr=1e-2, total_steps=20)
    o16 = deapnos.optimizer(Genome.parse(ADAM), [w16], lr=1e-2, total_steps=20)
    for _ in range(20):
        w32.grad = 2 * w32.detach()
        w16.grad = (2 * w16.detach().float()).to(torch.bfloat16)
        o32.step()
        o16.step()
    assert w16.dtype == torch.bfloat16
    assert o16.state[w16]["v"].dtype == torch.float32
    assert (w16.float() - w32.detach()).abs().max() < 0.05


def test_non_finite_update_is_detected_not_applied():
    p = torch.ones(3, requires_grad=True)
    o = deapnos.optimizer(Genome.parse("none ~ exp(exp(exp(g)))"), [p], lr=1.0, total_steps=3, check_finite=True,
                                                          base_schedule="constant")
    p.grad = torch.full((3,), 10.0)
    o.step()
    assert o.diverged and "non-finite" in o.divergence
    assert torch.equal(p.detach(), torch.ones(3))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_matches_cpu():
    g = Genome.parse("nesterov ~ i1e(i1e(decay(mul(a13, a2), g)))")
    torch.manual_seed(0)
    cpu = torch.randn(1000, requires_grad=True)
    gpu = cpu.detach().cuda().requires_grad_()
    oc = deapnos.optimizer(g, [cpu], lr=1e-2, total_steps=10)
    og = deapnos.optimizer(g, [gpu], lr=1e-2, total_steps=10)
    for _ in range(10):
        cpu.grad = torch.sin(cpu.detach())
        gpu.grad = torch.sin(gpu.detach())
        oc.step()
        og.step()
    torch.testing.assert_close(gpu.detach().cpu(), cpu.detach(), atol=1e-5, rtol=1e-5)


# ---- torch-style options: horizon, warm-up and momentum live in the param groups ----

SCHEDULE = dict(total_steps=1000, warmup_steps=50, hold_steps=10, base_schedule="warmup_cosine", momentum=0.9)


def test_schedule_options_are_defaults_and_saved_per_group():
    p = torch.zeros(2, requires_grad=True)
    o = deapnos.optimizer(Genome.parse("mom ~ g"), [p], lr=0.1, **SCHEDULE)
    expected = dict(lr=0.1, **SCHEDULE)
    assert {k: o.defaults[k] for k in expected} == expected
    assert {k: o.param_groups[0][k] for k in expected} == expected
    saved = o.state_dict()["param_groups"][0]
    assert {k: saved[k] for k in expected} == expected
    assert o.state_dict()["deapnos"]["momentum_kind"] == "mom"


def test_param_groups_set_their_own_warmup_schedule_and_momentum():
    # each group of one optimizer moves exactly as a one-group optimizer with the same settings
    g = Genome.parse("nesterov ~ div(v_hat, sqrt(s_hat))")
    torch.manual_seed(0)
    a, b = torch.randn(6, requires_grad=True), torch.randn(4, requires_grad=True)
    a1, b1, b0 = (x.detach().clone().requires_grad_() for x in (a, b, b))
    own = dict(warmup_steps=0, hold_steps=3, base_schedule="constant", momentum=0.5, lr=0.2)
    both = deapnos.optimizer(g, [{"params": [a]}, {"params": [b], **own}], lr=0.05, total_steps=20, warmup_steps=5)
    only_a = deapnos.optimizer(g, [a1], lr=0.05, total_steps=20, warmup_steps=5)
    only_b = deapnos.optimizer(g, [b1], total_steps=20, **own)
    b_lr_only = deapnos.optimizer(g, [b0], lr=0.2, total_steps=20, warmup_steps=5)   # the group's lr, not the rest
    for _ in range(20):
        for x in (a, b, a1, b1, b0):
            x.grad = torch.sin(3 * x.detach()) + 0.1 * x.detach()
        for o in (both, only_a, only_b, b_lr_only):
            o.step()
    assert torch.equal(a, a1) and torch.equal(b, b1)
    assert not torch.equal(b, b0)
    assert both.lr_at(2, group=0) == only_a.lr_at(2) and both.lr_at(2, group=1) == only_b.lr_at(2) == 0.2


def test_total_steps_must_agree_across_groups():
    a, b = torch.zeros(2, requires_grad=True), torch.zeros(2, requires_grad=True)
    with pytest.raises(ValueError, match=r"param group 1 has total_steps=50, but total_steps is global .*=100"):
        deapnos.optimizer(Genome.parse("none ~ g"), [{"params": [a]}, {"params": [b], "total_steps": 50}],
                          total_steps=100)
    with pytest.raises(ValueError, match=r"param group 1: warmup_steps must be an integer in \[0, total_steps=100\]"):
        deapnos.optimizer(Genome.parse("none ~ g"), [{"params": [a]}, {"params": [b], "warmup_steps": 500}],
                          total_steps=100)
    o = deapnos.optimizer(Genome.parse("none ~ g"), [a], total_steps=100)
    with pytest.raises(ValueError, match="param group 1: lr must be a non-negative number, got -1"):
        o.add_param_group({"params": [b], "lr": -1})
    assert len(o.param_groups) == 1
    o.param_groups[0]["total_steps"] = 7          # changed after construction: refused at the next step
    a.grad = torch.ones(2)
    with pytest.raises(ValueError, match="param group 0 has total_steps=7"):
        o.step()


def test_group_options_changed_after_construction_take_effect_like_lr():
    p = torch.zeros(1, requires_grad=True)
    o = deapnos.optimizer(Genome.parse("none ~ g"), [p], lr=1.0, total_steps=10, warmup_steps=4)
    assert o.lr_at(1) == 0.25
    o.param_groups[0]["warmup_steps"] = 2
    assert o.lr_at(1) == 0.5


@pytest.mark.parametrize("field,saved,mine", [("total_steps", 1000, 500), ("warmup_steps", 50, 0),
                                              ("hold_steps", 10, 0), ("base_schedule", "constant", "warmup_cosine"),
                                              ("momentum", 0.9, None), ("momentum", None, 0.5)])
def test_load_state_dict_refuses_other_schedule_options(field, saved, mine):
    g = Genome.parse("mom ~ g")
    p = torch.ones(3, requires_grad=True)
    o = deapnos.optimizer(g, [p], lr=0.1, **{**SCHEDULE, field: saved})
    p.grad = torch.ones(3)
    o.step()
    fresh = deapnos.optimizer(g, [p], lr=0.1, **{**SCHEDULE, field: mine})
    before = copy.deepcopy(fresh.state_dict())
    with pytest.raises(ValueError) as err:
        fresh.load_state_dict(o.state_dict())
    msg = str(err.value)
    assert f"{field}={saved!r}" in msg and f"{field}={mine!r}" in msg and "param group 0" in msg
    assert fresh.state_dict()["deapnos"]["step"] == 0 and fresh.state_dict()["param_groups"] == before["param_groups"]


def test_load_state_dict_names_another_momentum_kind():
    p = torch.ones(3, requires_grad=True)
    o = deapnos.optimizer(Genome.parse("mom ~ g"), [p], total_steps=10)
    other = deapnos.optimizer(Genome.parse("nest ~ g"), [p], total_steps=10)
    with pytest.raises(ValueError, match=r"state dict is for genome 'mom ~ g'.*momentum kind 'mom', this one 'nest'"):
        other.load_state_dict(o.state_dict())


def _run(opt, params, steps):
    for _ in range(steps):
        for x in params:
            x.grad = torch.cos(2 * x.detach()) + 0.05 * x.detach()
        opt.step()


def _grouped(g, params):
    return deapnos.optimizer(g, [{"params": params[:1]}, {"params": params[1:], "warmup_steps": 0, "momentum": 0.8}],
                             lr=3e-2, total_steps=30, warmup_steps=6, hold_steps=2, seed=4)


@pytest.mark.parametrize("text", ["nesterov ~ add(ema(g), drop30(delta(sign_v_hat)))", ADAM])
def test_saved_through_torch_save_and_resumed_bit_identically(text):
    import io
    g = Genome.parse(text)
    torch.manual_seed(1)
    start = [torch.randn(5, 3), torch.randn(4)]
    full = [x.clone().requires_grad_() for x in start]
    _run(_grouped(g, full), full, 30)
    part = [x.clone().requires_grad_() for x in start]
    opt = _grouped(g, part)
    _run(opt, part, 11)
    buf = io.BytesIO()
    torch.save(opt.state_dict(), buf)
    buf.seek(0)
    resumed = [x.detach().clone().requires_grad_() for x in part]
    opt2 = _grouped(g, resumed)
    opt2.load_state_dict(torch.load(buf, weights_only=True))
    assert opt2.param_groups[1]["momentum"] == 0.8 and opt2.param_groups[1]["warmup_steps"] == 0
    _run(opt2, resumed, 19)
    assert all(torch.equal(a, b) for a, b in zip(resumed, full))


def test_old_state_dict_without_schedule_options_loads_with_a_warning():
    g = Genome.parse("mom ~ add(ema(g), lam_hat)")
    torch.manual_seed(2)
    start = [torch.randn(7)]
    full = [x.clone().requires_grad_() for x in start]
    _run(deapnos.optimizer(g, full, lr=1e-2, total_steps=20, warmup_steps=3), full, 20)
    part = [x.clone().requires_grad_() for x in start]
    opt = deapnos.optimizer(g, part, lr=1e-2, total_steps=20, warmup_steps=3)
    _run(opt, part, 8)
    old = copy.deepcopy(opt.state_dict())
    for group in old["param_groups"]:            # what deapnos saved before these were group options
        for key in SCHEDULE:
            del group[key]
    del old["deapnos"]["momentum_kind"]
    opt2 = deapnos.optimizer(g, part, lr=1e-2, total_steps=20, warmup_steps=3)
    with pytest.warns(UserWarning, match="no total_steps, warmup_steps, hold_steps, base_schedule, momentum"):
        opt2.load_state_dict(old)
    assert opt2.param_groups[0]["total_steps"] == 20 and opt2.param_groups[0]["warmup_steps"] == 3
    _run(opt2, part, 12)
    assert torch.equal(part[0], full[0])
