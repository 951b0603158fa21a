"""``deapnos reproduce`` (the paper's final comparison) on a tiny budget, and Opt4's last step."""
from __future__ import annotations

import json

import pytest
import torch

from deapnos import zoo
from deapnos.cli import main
from deapnos.reproduce import (PAPER_BASELINES, PAPER_TASKS, SUITE_TASKS, plan_tasks, published,
                               published_schedules, unpaired_difference)
from deapnos.space import Genome
import deapnos

from fake_data import write_cifar10

torch.set_num_threads(1)

TINY = ["--lrs", "0.1,0.01", "--seeds", "2", "--step-scale", "0.05", "--epochs", "2", "--no-progress"]


def test_the_comparison_is_the_papers():
    assert published() == ["a1", "a2", "a3", "a4", "a5"] + [f"opt{i}" for i in range(1, 11)]
    assert published_schedules() == [f"lr{i}" for i in range(1, 10)]
    assert PAPER_BASELINES[0] == "torch:Adam"         # the reference: torch's Adam, default betas
    assert set(PAPER_BASELINES[1:]) == {"torch:RMSprop", "torch:SGD", "torch:SGD(momentum=0.9, nesterov=True)",
                                        "powersign", "addsign", "qhm"}
    assert list(PAPER_TASKS) == ["cifar100-effnetv2s", "tinyimagenet-effnetv2s", "flowers102-finetune",
                                 "cars196-finetune", "caltech101-finetune"]


def test_the_papers_tasks_when_found_else_a_named_stand_in(tmp_path):
    from deapnos import plugins
    from fake_data import write_cifar100
    tasks = plugins.all_tasks(plugins.get_plugin_manager())
    empty = plan_tasks(tasks, str(tmp_path / "nothing-here"))
    assert empty.tasks == list(SUITE_TASKS) and empty.stand_in and list(empty.missing) == list(PAPER_TASKS)
    assert "cs.toronto.edu" in empty.missing["cifar100-effnetv2s"]          # where to get it
    assert "STAND-IN" in empty.title and "cifar100-effnetv2s" in empty.title
    write_cifar10(tmp_path)
    assert plan_tasks(tasks, str(tmp_path)).tasks == ["cifar10-convnet48"]   # the search's surrogate
    write_cifar100(tmp_path)
    found = plan_tasks(tasks, str(tmp_path))
    assert found.tasks == ["cifar100-effnetv2s"] and not found.stand_in       # a paper task: no stand-in
    assert "cifar100-effnetv2s" not in found.missing and "tinyimagenet-effnetv2s" in found.missing
    chosen = plan_tasks(tasks, None, ["digits-hard"])
    assert chosen.tasks == ["digits-hard"] and chosen.stand_in and "--tasks" in chosen.title


def test_without_data_the_missing_tasks_come_first_and_the_stand_in_is_named(tmp_path, capsys):
    out_dir = tmp_path / "out"
    rc = main(["reproduce", "--data-path", str(tmp_path / "no-data"), "--optimizers", "opt10",
               "--baseline", "torch:Adam", "--lrs", "0.1", "--seeds", "1", "--step-scale", "0.02",
               "--epochs", "1", "--no-progress", "--out", str(out_dir)])
    out = capsys.readouterr().out
    assert rc == 0, out
    lines = out.splitlines()
    assert lines[0].startswith("the paper's final tasks are missing (5 of 5): " + ", ".join(PAPER_TASKS))
    assert [ln.split()[1].rstrip(":") for ln in lines[1:6]] == list(PAPER_TASKS)
    assert lines[6] == f"instead: {', '.join(SUITE_TASKS)} (a stand-in, not the paper's comparison)"
    title = next(ln for ln in lines if ln.startswith("STAND-IN"))
    assert all(t in title for t in SUITE_TASKS) and all(t in title for t in PAPER_TASKS)
    doc = json.loads((out_dir / "results.json").read_text())
    assert doc["stand_in"] is True and doc["tasks"] == list(SUITE_TASKS) and doc["title"] == title
    assert list(doc["paper_tasks_missing"]) == list(PAPER_TASKS)


def test_cifar10_fixture_reports_a_test_score_and_an_lr_chosen_on_validation(tmp_path, capsys):
    # 5 x 12 training images: the last 6 validate; the test batch has 23: scores on 6 and on 23
    # examples are multiples of 1/6 and 1/23, which only 0 and 1 both are
    write_cifar10(tmp_path, per_batch=12, test=23)
    out_dir = tmp_path / "out"
    rc = main(["reproduce", "--data-path", str(tmp_path), "--optimizers", "opt10", "--baseline", "torch:Adam",
               "--lrs", "0.1,0.001", "--seeds", "2", "--step-scale", "0.005", "--epochs", "1", "--no-progress",
               "--out", str(out_dir)])
    out = capsys.readouterr().out
    assert rc == 0, out
    assert out.splitlines()[6] == "instead: cifar10-convnet48 (a stand-in, not the paper's comparison)"
    doc = json.loads((out_dir / "results.json").read_text())
    assert doc["tasks"] == ["cifar10-convnet48"] and doc["stand_in"] is True
    assert doc["splits"]["cifar10-convnet48"] == {"validation": 6, "test": 23, "metric": "accuracy",
                                                   "test_split": "the task's own test split"}
    rows = {r["optimizer"]: r for r in doc["summary"]}
    assert set(rows) == {"torch:Adam", "opt10"}
    for name, row in rows.items():
        # the LR chosen on validation: the grid LR with the best mean validation score over the runs
        by_lr = {}
        for run in doc["runs"]:
            if run["optimizer"] == name:
                by_lr.setdefault(run["lr"], []).append(run["fitness"])
        best = max(by_lr, key=lambda lr: (sum(by_lr[lr]) / len(by_lr[lr]), lr))
        assert row["lr_chosen_on_validation"] == best, (name, by_lr)
        chosen_runs = [r for r in doc["results"] if r["optimizer"] == name]
        assert {r["lr"] for r in chosen_runs} == {best} and len(chosen_runs) == 2
        tests = [r["test_accuracy"] for r in chosen_runs]
        vals = [r["fitness"] for r in chosen_runs]
        assert row["test_mean"] == pytest.approx(sum(tests) / 2) and row["test_ci95"] is not None
        assert row["validation_mean"] == pytest.approx(sum(vals) / 2)
        assert all(abs(v * 23 - round(v * 23)) < 1e-6 for v in tests)     # scored on the 23 test images
        assert all(abs(v * 6 - round(v * 6)) < 1e-6 for v in vals)        # chosen on the 6 validation images
    scores = [r["test_accuracy"] for r in doc["results"]] + [r["fitness"] for r in doc["results"]]
    assert any(0 < v < 1 for v in scores)
    assert "Test score, final model" in out and "LR chosen on validation" in out


def test_lr_schedules_run_on_adam_and_the_table_has_95_intervals(tmp_path, capsys):
    rc = main(["reproduce", "--tasks", "digits-hard", "--optimizers", "opt4,lr3", "--baseline", "torch:Adam,qhm",
               "--out", str(tmp_path), *TINY])
    out = capsys.readouterr().out
    assert rc == 0, out
    grid = out.split("Test score, final model")[1].split("\n\n")[0].splitlines()
    assert [ln.split()[0] for ln in grid[3:]] == ["torch:Adam", "qhm", "opt4", "lr3"]
    assert all("±" in ln for ln in grid[3:])
    doc = json.loads((tmp_path / "results.json").read_text())
    assert doc["format"] == "deapnos.reproduce" and doc["reference"] == "torch:Adam" and doc["paired"] is True
    assert doc["stand_in"] is True and doc["chosen_with_tasks"] is True
    assert all(r["test_ci95"] is not None and r["n_ok"] == 2 for r in doc["summary"])
    assert len(doc["runs"]) == 4 * 2 * 2                      # optimizers x LRs x seeds, all tuned alike
    lr3 = next(r for r in doc["runs"] if r["optimizer"] == "lr3 (torch:Adam)")
    assert lr3["genome"] == "torch:Adam with schedule lr3"


def test_the_schedule_spec_drives_adam_with_the_zoo_schedule():
    from deapnos.reproduce import ScheduledSpec
    p = torch.nn.Parameter(torch.zeros(2))
    opt, sched = ScheduledSpec(name="lr5", torch_class="Adam", schedule="lr5").build([p], 0.1, 100, 10)
    ref = torch.optim.Adam([torch.nn.Parameter(torch.zeros(2))], lr=0.1)
    expected = zoo.schedule("lr5", ref, 100, 10)
    for _ in range(30):
        opt.step()
        sched.step()
        ref.step()
        expected.step()
        assert opt.param_groups[0]["lr"] == pytest.approx(ref.param_groups[0]["lr"])
    assert isinstance(opt, torch.optim.Adam)


def test_compat_says_runs_are_not_paired_and_refuses_opt3(tmp_path, capsys):
    rc = main(["reproduce", "--tasks", "digits-hard", "--optimizers", "opt3,opt5", "--baseline", "torch:Adam",
               "--compat", "--out", str(tmp_path), *TINY])
    out = capsys.readouterr().out
    assert rc == 0
    assert "refused: opt3" in out and "EMA of g^2" in out
    assert "NOT paired" in out and "Welch" in out
    doc = json.loads((tmp_path / "results.json").read_text())
    assert doc["paired"] is False
    row = next(r for r in doc["summary"] if r["optimizer"] == "opt5")
    assert row["difference"] == "unpaired (Welch)"
    ref = [r["test_accuracy"] for r in doc["results"] if r["optimizer"] == "torch:Adam"]
    mine = [r["test_accuracy"] for r in doc["results"] if r["optimizer"] == "opt5"]
    assert row["vs_reference"]["mean"] == pytest.approx(sum(mine) / 2 - sum(ref) / 2)


def test_unpaired_difference_is_welchs_interval():
    d = unpaired_difference([1.0, 2.0, 3.0], [0.0, 0.0, 1.0, 1.0])
    # by hand: va = 1/3, vb = 1/12, se = sqrt(5/12); Welch df = (5/12)^2 / ((1/3)^2/2 + (1/12)^2/3) = 3.1 -> 3
    assert d.mean == pytest.approx(1.5)
    assert d.half_width == pytest.approx(3.182 * (5 / 12) ** 0.5)


def test_a_task_without_a_test_split_gets_the_second_half_of_its_validation(tmp_path):
    from deapnos import plugins
    from deapnos.reproduce import HeldOutSplit
    from fake_data import write_tinyimagenet
    tasks = plugins.all_tasks(plugins.get_plugin_manager())
    digits = tasks["digits-hard"]
    whole = digits.build_data("cpu", 0)
    split = digits.replace(data_factory=HeldOutSplit(digits.data_factory)).build_data("cpu", 0)
    assert whole.test is None and split.info["test_split"] == "second half of validation"
    n = len(whole.val.inputs)
    assert (len(split.val.inputs), len(split.test.inputs)) == (n // 2, n - n // 2)
    assert torch.equal(torch.cat([split.val.inputs, split.test.inputs]), whole.val.inputs)   # disjoint halves
    write_tinyimagenet(tmp_path, classes=3, val_per_class=2)                 # no labelled test set: 6 val images
    tiny = tasks["tinyimagenet-effnetv2s"].replace(data_path=str(tmp_path), options={"num_workers": 0})
    data = tiny.replace(data_factory=HeldOutSplit(tiny.data_factory)).build_data("cpu", 0)
    assert (len(data.val.dataset), len(data.test.dataset)) == (3, 3)
    assert [y for _, y in data.val.dataset] + [y for _, y in data.test.dataset] == [0, 0, 1, 1, 2, 2]


def test_budget_only_estimates(capsys):
    rc = main(["reproduce", "--tasks", "digits-hard", "--optimizers", "opt10", "--baseline", "torch:Adam",
               "--budget", *TINY])
    out = capsys.readouterr().out
    assert rc == 0
    assert out.startswith("estimate: 8 training runs")           # 2 optimizers x 2 LRs x 2 seeds
    assert "  digits-hard: 8 runs, about " in out and "Test score" not in out


def test_reproduce_names_a_bad_request(capsys):
    assert main(["reproduce", "--optimizers", "opt99", *TINY]) == 2
    assert "opt99" in capsys.readouterr().err
    assert main(["reproduce", "--baseline", "torch:Nope", *TINY]) == 2
    assert "torch:Nope" in capsys.readouterr().err
    assert main(["reproduce", "--tasks", "nope", *TINY]) == 2
    assert "'nope'" in capsys.readouterr().err


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
