"""The example fitness plugin (examples/fitness_plugin): discovered through a real entry point."""
from __future__ import annotations

import importlib.metadata
from pathlib import Path

import pytest
import torch

torch.set_num_threads(1)
EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "fitness_plugin"


@pytest.fixture
def installed_blobs(tmp_path, monkeypatch):
    """What ``pip install examples/fitness_plugin`` leaves behind: the module on sys.path and a
    dist-info whose entry_points.txt registers ``blobs`` in group ``deapnos``."""
    dist = tmp_path / "deapnos_blobs-0.1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: deapnos-blobs\nVersion: 0.1.0\n")
    (dist / "entry_points.txt").write_text("[deapnos]\nblobs = deapnos_blobs\n")
    monkeypatch.syspath_prepend(str(EXAMPLE))
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delenv("DEAPNOS_DISABLE_PLUGIN_AUTOLOAD", raising=False)
    yield
    import sys
    sys.modules.pop("deapnos_blobs", None)


def test_example_declares_the_entry_point():
    text = (EXAMPLE / "pyproject.toml").read_text()
    assert "[project.entry-points.deapnos]" in text and 'blobs = "deapnos_blobs"' in text
    assert (EXAMPLE / "README.md").exists()


def test_discovered_and_evaluated_through_the_protocol(installed_blobs):
    eps = {ep.name: ep for ep in importlib.metadata.entry_points(group="deapnos")}
    assert eps["blobs"].value == "deapnos_blobs"
    from deapnos.evaluate.protocol import evaluate_genome
    from deapnos.plugins import all_tasks, get_plugin_manager
    pm = get_plugin_manager()
    assert pm.sources["blobs"].dist == "deapnos-blobs"
    task = all_tasks(pm)["blobs"]
    assert task.plugin == "blobs" and task.kind == "fitness"
    good = evaluate_genome("adam", task, seed=0, device="cpu")
    assert good.status == "ok" and good.fitness > 0.6, good.message
    bad = evaluate_genome("none ~ one", task, seed=0, device="cpu")
    assert bad.score() < good.score()


def test_cli_finds_the_plugin(installed_blobs, capsys):
    from deapnos.cli import main
    assert main(["evaluate", "-O", "sgd", "--task", "blobs", "--device", "cpu", "--no-progress"]) == 0
    assert "blobs" in capsys.readouterr().out
