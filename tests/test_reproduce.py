"""``deapnos reproduce`` (the paper's final comparison) on a tiny budget, and Opt4's last step."""
from __future__ import annotations

import json

import pytest
import torch

from deapnos import zoo
from deapnos.cli import main
from deapnos.reproduce import PAPER_BASELINES, SUITE_TASKS, default_tasks, published
from deapnos.space import Genome
import deapnos

torch.set_num_threads(1)

TINY = ["--lrs", "0.1,0.01", "--seeds", "2", "--step-scale", "0.2", "--epochs", "2", "--no-progress"]


def test_the_comparison_is_the_papers():
    assert published() == ["a1", "a2", "a3", "a4", "a5"] + [f"opt{i}" for i in range(1, 11)]
    assert PAPER_BASELINES[0] == "torch:Adam"         # the reference: torch's Adam, default betas
    assert set(PAPER_BASELINES[1:]) == {"torch:RMSprop", "torch:SGD", "torch:SGD(momentum=0.9, nesterov=True)",
                                        "powersign", "addsign", "qhm"}


def test_default_tasks_cifar10_when_found_else_the_suite(tmp_path):
    from deapnos import plugins
    tasks = plugins.all_tasks(plugins.get_plugin_manager())
    missing = tmp_path / "nothing-here"
    assert default_tasks(tasks, str(missing)) == list(SUITE_TASKS)
    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch", "batches.meta"]:
        (folder / name).write_bytes(b"")
    assert default_tasks(tasks, str(tmp_path)) == ["cifar10-convnet48"]


def test_reproduce_prints_a_table_with_95_intervals(tmp_path, capsys):
    rc = main(["reproduce", "--task", "digits-hard", "--optimizers", "opt4,opt10",
               "--baselines", "torch:Adam;qhm", "--out", str(tmp_path), *TINY])
    out = capsys.readouterr().out
    assert rc == 0, out
    assert "fitness (mean ± 95% CI)" in out and "Δ vs reference" in out
    rows = [line for line in out.splitlines() if line.startswith("digits-hard")]
    assert [r.split()[1] for r in rows] == ["torch:Adam", "qhm", "opt4", "opt10"]
    assert all("±" in r for r in rows) and "reference" in rows[0]
    doc = json.loads((tmp_path / "results.json").read_text())
    assert doc["format"] == "deapnos.reproduce" and doc["reference"] == "torch:Adam"
    assert all(r["fitness_ci95"] is not None and r["n_ok"] == 2 for r in doc["summary"])
    assert len(doc["runs"]) == 4 * 2 * 2                      # optimizers x LRs x seeds, all tuned alike


def test_reproduce_compat_refuses_opt3(capsys):
    rc = main(["reproduce", "--task", "digits-hard", "--optimizers", "opt3,opt5", "--baselines", "torch:Adam",
               "--compat", *TINY])
    out = capsys.readouterr().out
    assert rc == 0
    assert "refused: opt3" in out and "EMA of g^2" in out
    assert [line.split()[1] for line in out.splitlines() if line.startswith("digits-hard")] == ["torch:Adam", "opt5"]


def test_reproduce_names_a_bad_request(capsys):
    assert main(["reproduce", "--optimizers", "opt99", *TINY]) == 2
    assert "opt99" in capsys.readouterr().err
    assert main(["reproduce", "--baselines", "torch:Nope", *TINY]) == 2
    assert "torch:Nope" in capsys.readouterr().err


# -- Opt4: safe at its last step, or refused -----------------------------------------------------

def _step_sizes(genome: Genome, T: int, W: int, base: str = "warmup_cosine") -> list[float]:
    torch.manual_seed(0)
    p = torch.nn.Parameter(torch.randn(50))
    opt = deapnos.optimizer(genome, [p], lr=0.1, total_steps=T, warmup_steps=W, base_schedule=base)
    sizes = []
    for _ in range(T):
        before = p.detach().clone()
        p.grad = p.detach() + 0.1 * torch.randn(50)
        opt.step()
        sizes.append(float((p.detach() - before).norm()))
    return sizes


@pytest.mark.parametrize("T", [4, 10, 60, 400, 2000])
def test_opt4_last_step_is_no_larger_than_the_run(T):
    for use_decay in (True, False):
        sizes = _step_sizes(zoo.get("opt4", use_decay=use_decay), T, T // 10)
        assert sizes[-1] <= 2 * max(sizes[:-1]), (use_decay, sizes[-3:])
    # the published formula without the guard: the last step explodes (what the guard prevents)
    bare = Genome.parse(zoo.text("opt4").replace("atan(max(a13, mul(a1, a2)))", "atan(a13)"))
    sizes = _step_sizes(bare, T, T // 10)
    assert sizes[-1] > 5 * max(sizes[:-1])


def test_opt4_is_refused_where_its_horizon_explodes():
    p = torch.nn.Parameter(torch.zeros(3))
    for kw in (dict(base_schedule="constant"), dict(warmup_steps=20, hold_steps=180)):
        with pytest.raises(ValueError, match="needs a base schedule that decays to 0"):
            deapnos.optimizer(zoo.get("opt4"), [p], lr=0.1, total_steps=200, **kw)
    assert zoo.horizon_problem(zoo.get("opt4"), 200, 20) is None
    assert zoo.horizon_problem(zoo.get("opt5"), 200, 0, "constant") is None    # only Opt4 is concerned
    deapnos.optimizer(zoo.get("opt5"), [p], lr=0.1, total_steps=200, base_schedule="constant")
