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


def test_evaluate_command_table_json_and_plot(tmp_path, capsys):
    out = tmp_path / "res"
    rc = main(["evaluate", "-o", "adam", "-o", "torch:SGD(momentum=0.9)", "-o", "none ~ one", "--task", "digits",
               "--seeds", "2", "--out", str(out), *QUICK])
    text = capsys.readouterr().out
    assert rc == 0
    assert "fitness (mean ± std)" in text and "torch:SGD(momentum=0.9)" in text and "screened_out:2" in text
    doc = json.loads((out / "results.json").read_text())
    assert doc["seeds"] == [0, 1] and len(doc["results"]) == 6
    assert {r["status"] for r in doc["results"] if r["optimizer"] == "adam"} == {"ok"}
    rows = {r["optimizer"]: r for r in doc["summary"]}
    assert rows["adam"]["n_ok"] == 2 and rows["adam"]["fitness_mean"] > 0.5 and rows["none ~ one"]["n_ok"] == 0
    assert doc["config"]["step_scale"] == 0.3 and doc["config"]["epochs"] == 6
    png = (out / "curves.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 5000


def test_evaluate_command_reports_bad_input(capsys):
    assert main(["evaluate", "-o", "adam", "--task", "no-such-task", *QUICK]) == 2
    err = capsys.readouterr().err
    assert "unknown task" in err and "digits" in err
    assert main(["evaluate", "-o", "torch:NoSuch", "--task", "digits", *QUICK]) == 2
    assert "no optimizer" in capsys.readouterr().err


def test_evaluate_command_error_exit_code(tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("DEAPNOS_CIFAR10", raising=False)
    rc = main(["evaluate", "-o", "adam", "--task", "cifar10-convnet", "--data-path", str(tmp_path / "none"), *QUICK])
    assert rc == 1
    captured = capsys.readouterr()
    assert "error:1" in captured.out and "cifar-10-python.tar.gz" in captured.err


def test_summary_statistics():
    rs = [EvalResult("g", "t", s, "ok", fitness=f, lr=0.1, optimizer="a", seconds=1.0) for s, f in enumerate((0.5, 0.7))]
    rs.append(EvalResult("g", "t", 2, "diverged", optimizer="a", seconds=1.0, message="nan"))
    (row,) = summarize(rs)
    assert row["n"] == 3 and row["n_ok"] == 2 and row["fitness_mean"] == pytest.approx(0.6)
    assert row["fitness_std"] == pytest.approx(0.1414, abs=1e-3) and row["statuses"] == {"ok": 2, "diverged": 1}
    assert "0.6000 ± 0.1414" in format_table([row])
