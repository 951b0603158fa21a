"""The Python API: deapnos.run_search (the tiny search, a task plugin defined in the test itself, as
in a notebook) and deapnos.compare (the same numbers as `deapnos evaluate` with the same settings)."""
from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

import deapnos
from deapnos.run import RunError

ROOT = Path(__file__).resolve().parent.parent

# tests/test_search_run.py's tiny search, as run_search overrides (Python values, not TOML text)
TINY = {"run.name": "api", "run.seed": 5, "run.backend": "serial", "run.plugins": ["sphere", "digits"],
        "search.particles": 2, "search.timesteps": 2, "search.mutants": 2, "search.init_factor": 2,
        "search.attempts": 2, "search.init_task": "digits", "search.task": "digits", "search.max_age": 1,
        "search.reeval_top": 0,
        "protocol.epochs": 4, "protocol.step_scale": 0.3, "protocol.screen_lrs_a": [1e-1, 1e-2],
        "protocol.screen_lrs_b": [1e-3], "protocol.stage_a_threshold": 0.0, "protocol.threshold": 0.15,
        "elimination.candidates": 2, "elimination.baselines": ["adam"],
        "elimination.rungs": [{"task": "digits", "seeds": [0, 1], "keep": 0.5}],
        "validation.tasks": ["notebook-blobs"], "validation.seeds": [0, 1], "validation.candidates": 1,
        "validation.horizon_factor": 0}


class NotebookTasks:
    """A task plugin defined where it is used (a notebook cell), not in an installed module."""

    def __init__(self):
        self.built = 0

    @deapnos.hookimpl
    def deapnos_fitness_tasks(self):
        import torch
        from torch import nn

        from deapnos.evaluate.data import TensorBatches
        from deapnos.evaluate.tasks import Task, TaskData

        def data(task, device, seed):
            self.built += 1
            g = torch.Generator().manual_seed(0)
            y = torch.randint(0, 3, (384,), generator=g)
            x = torch.randn(3, 8, generator=g)[y] + torch.randn(384, 8, generator=g)
            order = torch.Generator().manual_seed(seed)
            return TaskData(train=TensorBatches(x[:256], y[:256], 32, shuffle=True, generator=order),
                            val=TensorBatches(x[256:], y[256:], 128, shuffle=False), num_classes=3,
                            generator=order)

        def model(task, num_classes):
            return nn.Sequential(nn.Linear(8, 16), nn.Tanh(), nn.Linear(16, num_classes))

        return [Task(name="notebook-blobs", data_factory=data, model_factory=model, steps_per_epoch=4, epochs=5,
                     batch_size=32, warmup_steps=4, num_classes=3, kind="fitness")]


@pytest.fixture
def no_autoload(monkeypatch):
    monkeypatch.setenv("DEAPNOS_DISABLE_PLUGIN_AUTOLOAD", "1")


def test_run_search_returns_leaderboard_and_validation_with_a_notebook_plugin(tmp_path, no_autoload):
    plugin = NotebookTasks()
    result = deapnos.run_search(overrides={**TINY, "run.output_dir": str(tmp_path)}, plugins=[plugin])
    assert isinstance(result, deapnos.SearchResult)
    assert result.run_dir.parent == tmp_path and result.run_dir.name.startswith("api-")
    status = json.loads((result.run_dir / "status.json").read_text())
    assert status["status"] == "ok"
    # the leaderboard is the run's, with the reference and at least one candidate
    assert result.leaderboard == status["leaderboard"]
    labels = [row["label"] for row in result.leaderboard]
    assert "adam" in labels and any(not row["baseline"] for row in result.leaderboard)
    top = next(row for row in result.leaderboard if not row["baseline"])
    assert result.best == top["genome"] and result.best_genome.to_text() == top["genome"]
    # the held-out validation ran on the task defined here, in this process
    assert plugin.built > 0
    assert result.validation["tasks"] == ["notebook-blobs"] and result.validation["seeds"] == [0, 1]
    assert [row["genome"] for row in result.validation["rows"]] == [top["genome"]]
    assert result.validation["rows"][0]["overall"]["verdict"] in ("better", "worse", "tie")
    # what ran, recorded and reported; the same outputs as `deapnos run`
    assert (result.backend, result.workers) == ("serial", 1)
    report = result.report.read_text()
    assert "backend serial with 1 worker(s)" in report
    assert result.winners and result.winners[0].suffix == ".py"
    # config.toml holds the plugins by name only: the object lives in this process
    assert tomllib.loads((result.run_dir / "config.toml").read_text())["run"]["plugins"] == ["sphere", "digits"]


def test_a_plugin_object_needs_the_serial_backend(tmp_path, no_autoload):
    with pytest.raises(RunError) as info:
        deapnos.run_search(overrides={**TINY, "run.output_dir": str(tmp_path), "run.backend": "pool",
                                      "run.workers": 2}, plugins=[NotebookTasks()])
    assert info.value.code == 2
    assert "only the serial backend" in str(info.value) and "\n" not in str(info.value)
    assert list(tmp_path.iterdir()) == []          # refused before any run folder was written


def test_run_search_checks_names_and_keys_before_running(tmp_path, no_autoload):
    with pytest.raises(RunError, match=r"search.task = 'digts': no such task \(did you mean digits\?\)") as info:
        deapnos.run_search(overrides={**TINY, "run.output_dir": str(tmp_path), "search.task": "digts"})
    assert info.value.code == 2 and list(tmp_path.iterdir()) == []
    with pytest.raises(ValueError, match="section.field"):
        deapnos.run_search(overrides={"particles": 3})


def evaluate_cli(*args: str) -> subprocess.CompletedProcess:
    e = dict(os.environ)
    e["DEAPNOS_DISABLE_PLUGIN_AUTOLOAD"] = "1"
    e["PYTHONPATH"] = str(ROOT) + os.pathsep + e.get("PYTHONPATH", "")
    return subprocess.run([sys.executable, "-m", "deapnos.cli", "evaluate", *args], capture_output=True, text=True,
                          env=e, timeout=300, cwd=ROOT)


def test_compare_gives_what_deapnos_evaluate_gives(tmp_path, no_autoload):
    """Same optimizers, task, seeds, LR grid and budget: the same chosen LRs and scores as the command
    (run here, on this machine), and summary rows that follow from the runs."""
    settings = dict(task="digits", seeds=2, lrs=[0.1, 0.01], epochs=2, step_scale=0.3, threads=1, device="cpu")
    result = deapnos.compare(["sgd", "adam"], reference="adam", plugins=["digits"], **settings)
    out = tmp_path / "cli"
    r = evaluate_cli("-O", "sgd", "-O", "adam", "--reference", "adam", "-p", "digits", "--task", "digits",
                     "--seeds", "2", "--lrs", "0.1,0.01", "--epochs", "2", "--step-scale", "0.3", "--threads", "1",
                     "--device", "cpu", "--no-progress", "--out", str(out))
    assert r.returncode == 0, r.stderr
    cli = json.loads((out / "results.json").read_text())
    assert result.reference == "adam" and result.tuning == "grid" and result.seeds == [0, 1]
    assert result.chosen_lr == cli["chosen_lr"]
    assert len(result.runs) == 2 * 2 * 2 and len(result.results) == 2 * 2
    mine = {(x["optimizer"], x["seed"]): x["fitness"] for x in (r.to_dict() for r in result.results)}
    theirs = {(x["optimizer"], x["seed"]): x["fitness"] for x in cli["results"]}
    assert mine == theirs
    assert [(row["optimizer"], row["verdict"]) for row in result.rows] == \
        [(row["optimizer"], row["verdict"]) for row in cli["summary"]]
    # the row is the statistics of its runs: mean over seeds, paired difference to the reference
    sgd = result.row("sgd")
    fits = [mine[("sgd", s)] for s in (0, 1)]
    assert sgd["fitness_mean"] == pytest.approx(statistics.fmean(fits))
    diffs = [mine[("sgd", s)] - mine[("adam", s)] for s in (0, 1)]
    assert sgd["vs_reference"]["mean"] == pytest.approx(statistics.fmean(diffs))
    assert "sgd" in result.table and "adam" in result.table
    with pytest.raises(ValueError, match="digts"):
        deapnos.compare("adam", task="digts", plugins=["digits"], seeds=1)
