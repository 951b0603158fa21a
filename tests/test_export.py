"""Exported standalone modules: only torch, same trajectory as EvolvedOptimizer, CLI show/export."""
import ast
import copy
import importlib.util
import sys

import pytest
import torch

from deapnos import zoo
from deapnos.cli import main
from deapnos.optim.export import export_source
from deapnos.space import Genome
import deapnos

STDLIB = set(sys.stdlib_module_names)


def load_module(path, name):
    spec = importlib.util.spec_from_file_location(name, path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def imported_roots(source):
    roots = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            roots |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            roots.add(node.module.split(".")[0])
    return roots


def run_pair(genome, module, steps=30):
    torch.manual_seed(0)
    a = [torch.randn(20, 3, requires_grad=True), torch.randn(7, requires_grad=True)]
    b = [p.detach().clone().requires_grad_() for p in a]
    oa = deapnos.optimizer(genome, a, lr=3e-2, total_steps=steps, warmup_steps=4, seed=5)
    ob = module.Optimizer(b, lr=3e-2, total_steps=steps, warmup_steps=4, seed=5)
    for _ in range(steps):
        for p in a + b:
            p.grad = torch.sin(3 * p.detach()) + 0.05 * p.detach()
        oa.step()
        ob.step()
    return a, b


@pytest.mark.parametrize("name", zoo.names())
def test_every_zoo_optimizer_exports_and_reproduces_trajectory(tmp_path, name):
    genome = zoo.get(name)
    source = export_source(genome, name)
    assert imported_roots(source) - STDLIB == {"torch"}
    path = tmp_path / f"exported_{name}.py"
    path.write_text(source)
    mod = load_module(path, f"exported_{name}")
    a, b = run_pair(genome, mod)
    assert any(not torch.equal(p, p0) for p, p0 in zip(a, [torch.randn(1)] * 2))
    for pa, pb in zip(a, b):
        assert torch.equal(pa, pb), name


@pytest.mark.parametrize("text", ["mom ~ add(ema(g), drop30(delta(sign_v_hat))) | lr = div(erfc(erfc(a4)), dtanh(a8))",
                                  "none ~ norm(runmax(agg_s)) | lr = a3",
                                  "nest ~ mul(decay(min(a12, a9), two), g) | flip", "none ~ one",
                                  # the compiler's fused clip kernels, which call ops' helpers
                                  "none ~ add(clip(g, v_hat), clip(v_hat, sqrt(s_hat)))"])
def test_stateful_stochastic_and_constant_genomes_export_exactly(tmp_path, text):
    genome = Genome.parse(text)
    path = tmp_path / "m.py"
    path.write_text(export_source(genome, "custom"))
    a, b = run_pair(genome, load_module(path, "m_custom"))
    for pa, pb in zip(a, b):
        assert torch.equal(pa, pb)


def test_exported_state_dict_round_trip(tmp_path):
    genome = zoo.get("opt9")
    path = tmp_path / "o9.py"
    path.write_text(export_source(genome, "opt9"))
    mod = load_module(path, "o9")
    p = torch.ones(5, requires_grad=True)
    opt = mod.Opt9([p], lr=1e-2, total_steps=10)
    p.grad = torch.ones(5)
    opt.step()
    sd = opt.state_dict()
    q = torch.ones(5, requires_grad=True)
    opt2 = deapnos.optimizer(genome, [q], lr=1e-2, total_steps=10)
    opt2.load_state_dict(sd)            # the same identity: EvolvedOptimizer accepts it
    assert opt2.step_count == 1 and torch.equal(opt2.state[q]["M"], opt.state[p]["M"])


def test_exported_optimizer_keeps_schedule_options_in_groups_and_resumes_exactly(tmp_path):
    genome = Genome.parse("nesterov ~ add(ema(g), drop30(delta(sign_v_hat))) | lr = a3")
    path = tmp_path / "ex.py"
    path.write_text(export_source(genome, "ex"))
    mod = load_module(path, "ex_groups")
    torch.manual_seed(3)
    start = [torch.randn(6, 2), torch.randn(5)]

    def make(cls, params, **over):
        kw = {**dict(lr=2e-2, total_steps=24, warmup_steps=4, seed=7), **over}
        return cls([{"params": params[:1]}, {"params": params[1:], "momentum": 0.7, "hold_steps": 2}], **kw)

    def run(opt, params, steps):
        for _ in range(steps):
            for x in params:
                x.grad = torch.sin(2 * x.detach()) + 0.1 * x.detach()
            opt.step()

    def evolved(params):
        return make(lambda groups, **kw: deapnos.optimizer(genome, groups, **kw), params)

    full = [x.clone().requires_grad_() for x in start]
    run(evolved(full), full, 24)
    part = [x.clone().requires_grad_() for x in start]
    opt = make(mod.Optimizer, part)
    assert opt.state_dict()["param_groups"][1]["momentum"] == 0.7
    run(opt, part, 9)
    sd = opt.state_dict()
    for target in (lambda ps: make(mod.Optimizer, ps), evolved):   # exported -> exported, exported -> evolved
        resumed = [x.detach().clone().requires_grad_() for x in part]
        opt2 = target(resumed)
        opt2.load_state_dict(copy.deepcopy(sd))
        run(opt2, resumed, 15)
        assert all(torch.equal(a, b) for a, b in zip(resumed, full))
    with pytest.raises(ValueError, match="total_steps=24, but this optimizer has total_steps=48"):
        make(mod.Optimizer, [x.clone().requires_grad_() for x in start], total_steps=48).load_state_dict(sd)
    with pytest.raises(ValueError, match="param group 1 has total_steps=5, but total_steps is global"):
        mod.Optimizer([{"params": [torch.zeros(1, requires_grad=True)]},
                       {"params": [torch.zeros(1, requires_grad=True)], "total_steps": 5}], total_steps=24)


def test_cli_show_and_export(tmp_path, capsys):
    assert main(["show", "opt10"]) == 0
    out = capsys.readouterr().out
    assert "bessel_i1e(bessel_i1e([(a13)*(a2)][g]))" in out and "state    : M" in out and "LaTeX" in out
    target = tmp_path / "adam_like.py"
    assert main(["export", "adam", "-o", str(target)]) == 0
    mod = load_module(target, "adam_like")
    assert mod.Adam.__name__ == "Adam" and mod.GENOME == zoo.get("adam").to_text()
    assert main(["show", "none ~ nope(g)"]) == 2
    assert "unknown Tensor name 'nope'" in capsys.readouterr().err
