"""``deapnos evaluate`` (deapnos.evaluate.compare)."""
from __future__ import annotations

import json

import pytest
import torch

from deapnos.cli import main
from deapnos.evaluate.compare import format_table, summarize
from deapnos.evaluate.result import EvalResult

torch.set_num_threads(1)
QUICK = ["--step-scale", "0.3", "--epochs", "6", "--device", "cpu", "--threads", "1", "--no-progress"]


def test_evaluate_grid_tunes_everyone_alike_and_reports_intervals(tmp_path, capsys):
    out = tmp_path / "res"
    rc = main(["evaluate", "-O", "adam", "-O", "torch:SGD(momentum=0.9)", "-O", "none ~ one", "--task", "digits",
               "--seeds", "2", "--lrs", "1,0.1,0.01", "--out", str(out), *QUICK])
    text = capsys.readouterr().out
    assert rc == 0
    assert "fitness (mean ± 95% CI)" in text and "torch:SGD(momentum=0.9)" in text and "tuning: grid" in text
    doc = json.loads((out / "results.json").read_text())
    # every optimizer: 3 LRs x 2 seeds full runs; the summary keeps the chosen LR's 2 seeds
    assert doc["seeds"] == [0, 1] and len(doc["runs"]) == 3 * 3 * 2 and len(doc["results"]) == 3 * 2
    assert doc["tuning"] == "grid" and doc["lrs"] == [1.0, 0.1, 0.01]
    rows = {r["optimizer"]: r for r in doc["summary"]}
    for name, row in rows.items():
        runs = [r for r in doc["runs"] if r["optimizer"] == name]
        by_lr = {}
        for r in runs:
            by_lr.setdefault(r["lr"], []).append(r["fitness"] if r["status"] == "ok" else None)
        # the chosen LR is the one with the best mean validation score (all seeds trained here)
        best = max(by_lr, key=lambda lr: sum(by_lr[lr]) / 2 if None not in by_lr[lr] else -1)
        assert row["lrs"] == [best], (name, by_lr, row["lrs"])
        assert row["fitness_mean"] == pytest.approx(sum(by_lr[best]) / 2)
    assert rows["adam"]["verdict"] == "reference" and rows["adam"]["fitness_mean"] > 0.5
    # a constant update is far worse than adam on every seed.  With 2 seeds (1 degree of freedom) the
    # 95% interval is +-12.7 standard errors, so whether it excludes zero depends on the CPU's rounding:
    # check the arithmetic of the interval and the verdict that follows from it, not a fixed verdict.
    vs = rows["none ~ one"]["vs_reference"]
    diffs = [a["fitness"] - b["fitness"] for a in doc["results"] if a["optimizer"] == "none ~ one"
             for b in doc["results"] if b["optimizer"] == "adam" and b["seed"] == a["seed"]]
    assert len(diffs) == 2 and all(d < 0 for d in diffs)
    half = 12.706 * abs(diffs[0] - diffs[1]) / 2 ** 0.5 / 2 ** 0.5
    assert vs["mean"] == pytest.approx(sum(diffs) / 2) and vs["ci95"] == pytest.approx(half)
    assert rows["none ~ one"]["verdict"] == ("worse" if vs["high"] < 0 else "tie")
    assert doc["config"]["step_scale"] == 0.3 and doc["config"]["epochs"] == 6
    png = (out / "curves.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 5000


def test_evaluate_screen_tuning_is_the_search_protocol(tmp_path, capsys):
    out = tmp_path / "res"
    assert main(["evaluate", "-O", "adam", "--task", "digits", "--seeds", "1", "--tuning", "screen",
                 "--out", str(out), *QUICK]) == 0
    doc = json.loads((out / "results.json").read_text())
    # the default screen: successive halving keeps the best third of the 7 LRs for the full screening run
    assert doc["tuning"] == "screen" and len(doc["runs"]) == 1 and len(doc["runs"][0]["screen"]) == 3


def test_evaluate_command_reports_bad_input(capsys):
    assert main(["evaluate", "-O", "adam", "--task", "no-such-task", *QUICK]) == 2
    err = capsys.readouterr().err
    assert "unknown task" in err and "digits" in err
    assert main(["evaluate", "-O", "torch:NoSuch", "--task", "digits", *QUICK]) == 2
    assert "no optimizer" in capsys.readouterr().err


def test_evaluate_command_error_exit_code(tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("DEAPNOS_CIFAR10", raising=False)
    rc = main(["evaluate", "-O", "adam", "--task", "cifar10-convnet", "--data-path", str(tmp_path / "none"), *QUICK])
    assert rc == 2
    captured = capsys.readouterr()
    assert captured.out == "" and "cifar-10-python.tar.gz" in captured.err and str(tmp_path / "none") in captured.err


def test_summary_statistics():
    rs = [EvalResult("g", "t", s, "ok", fitness=f, lr=0.1, optimizer="a", seconds=1.0)
          for s, f in enumerate((0.5, 0.7))]
    rs.append(EvalResult("g", "t", 2, "diverged", optimizer="a", seconds=1.0, message="nan"))
    (row,) = summarize(rs)
    assert row["n"] == 3 and row["n_ok"] == 2 and row["fitness_mean"] == pytest.approx(0.6)
    assert row["fitness_std"] == pytest.approx(0.1414, abs=1e-3) and row["statuses"] == {"ok": 2, "diverged": 1}
    # 95% t-interval with 1 degree of freedom: 12.706 x 0.1414 / sqrt(2) = 1.2706
    assert row["fitness_ci95"] == pytest.approx(1.2706, abs=1e-3)
    assert "0.6000 ± 1.2706" in format_table([row])


def test_summary_verdicts_are_paired_and_never_claim_a_win_inside_the_noise():
    def runs(name, fits):
        return [EvalResult("g", "t", s, "ok", fitness=f, optimizer=name) for s, f in enumerate(fits)]
    ref = runs("ref", [0.50, 0.60, 0.70])
    clear = runs("clear", [0.52, 0.62, 0.72])        # +0.02 on every seed: a paired win
    noisy = runs("noisy", [0.60, 0.50, 0.75])        # +0.017 on average, inside the noise
    rows = {r["optimizer"]: r for r in summarize(ref + clear + noisy, reference="ref")}
    assert rows["ref"]["verdict"] == "reference"
    assert rows["clear"]["verdict"] == "better" and rows["clear"]["vs_reference"]["mean"] == pytest.approx(0.02)
    assert rows["noisy"]["verdict"] == "tie" and rows["noisy"]["vs_reference"]["low"] < 0
    failed = runs("failed", [0.9, 0.9]) + [EvalResult("g", "t", 2, "diverged", optimizer="failed")]
    assert {r["optimizer"]: r for r in summarize(ref + failed, reference="ref")}["failed"]["verdict"] == "worse"
