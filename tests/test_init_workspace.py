"""`deapnos init DIR` and SCOOP from a folder outside the project, as the docs tell a user who only
ran `pip install`: `deapnos init .`, then `python -m scoop -n 2 deapnos.run` in that folder."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from deapnos.search.config import load_config
from deapnos.workspace import CONFIG_NAME, ENTRY_NAME, TASKS_NAME, init_workspace

ROOT = Path(__file__).resolve().parent.parent

# the tiny search of tests/test_search_run.py, with the workspace's template task as the held-out task
TINY = """
[run]
name = "ws"
seed = 5
workers = 2
plugins = ["sphere", "digits", "my_tasks"]
report = true

[search]
particles = 2
timesteps = 1
mutants = 1
init_factor = 1
attempts = 2
init_task = "digits"
task = "digits"
max_age = 1
reeval_top = 0

[protocol]
epochs = 3
step_scale = 0.3
screen_lrs_a = [1e-1, 1e-2]
screen_lrs_b = [1e-3]
stage_a_threshold = 0.0
threshold = 0.15

[elimination]
candidates = 1
baselines = ["adam"]

[[elimination.rungs]]
task = "digits"
seeds = [0, 1]
keep = 0.5

[validation]
tasks = ["my-task"]
seeds = [0, 1]
candidates = 1
horizon_factor = 0
"""


def user_env() -> dict:
    """A user's environment: the installed deapnos, nothing of the project on the path."""
    e = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    e["DEAPNOS_DISABLE_PLUGIN_AUTOLOAD"] = "1"      # the tiny config names its plugins
    return e


def deapnos_cmd() -> list[str]:
    """The installed `deapnos` console script (next to this Python), else `python -m deapnos.cli`."""
    script = Path(sys.executable).with_name("deapnos")
    return [str(script)] if script.exists() else [sys.executable, "-m", "deapnos.cli"]


def test_init_writes_a_workspace_and_keeps_existing_files(tmp_path):
    r = subprocess.run([*deapnos_cmd(), "init", str(tmp_path / "ws")], capture_output=True, text=True,
                       env=user_env(), timeout=60)
    assert r.returncode == 0, r.stderr
    ws = tmp_path / "ws"
    assert sorted(p.name for p in ws.iterdir()) == sorted([ENTRY_NAME, CONFIG_NAME, TASKS_NAME])
    compile((ws / ENTRY_NAME).read_text(), ENTRY_NAME, "exec")
    # the workspace config is the quickstart, under a header that says how to use it
    mine, quick = load_config(ws / CONFIG_NAME), load_config("quickstart")
    assert mine.run.name == "workspace"
    mine.run.name, mine.source = quick.run.name, quick.source
    assert mine.to_toml() == quick.to_toml()
    assert "python -m scoop -n 2 deapnos.run" in (ws / CONFIG_NAME).read_text()
    # a second init keeps the user's files: one line, exit 2; --force rewrites them
    (ws / CONFIG_NAME).write_text("# mine\n")
    again = subprocess.run([*deapnos_cmd(), "init", str(ws)], capture_output=True, text=True, env=user_env(),
                           timeout=60)
    assert again.returncode == 2
    assert again.stderr.strip().count("\n") == 0 and "--force" in again.stderr and ENTRY_NAME in again.stderr
    assert (ws / CONFIG_NAME).read_text() == "# mine\n"
    init_workspace(ws, force=True)
    assert (ws / CONFIG_NAME).read_text().startswith("# deapnos workspace config")


def test_the_task_template_is_a_working_plugin(tmp_path, monkeypatch):
    init_workspace(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    from deapnos import plugins
    pm = plugins.get_plugin_manager(["my_tasks"], autoload=False)
    task = plugins.all_tasks(pm)["my-task"]
    assert task.kind == "fitness"
    data = task.build_data("cpu", 0)
    x, y = next(iter(data.train))
    assert tuple(x.shape) == (32, 16) and int(y.max()) < 4
    model = task.build_model(data.num_classes)
    assert model(x).shape == (32, 4)


@pytest.fixture
def workspace(tmp_path):
    """`deapnos init .` in a folder outside the project, with the tiny config as its deapnos.toml."""
    ws = tmp_path / "ws"
    ws.mkdir()
    assert ROOT not in ws.parents
    r = subprocess.run([*deapnos_cmd(), "init", "."], cwd=ws, capture_output=True, text=True, env=user_env(),
                       timeout=60)
    assert r.returncode == 0, r.stderr
    (ws / CONFIG_NAME).write_text(TINY)
    yield ws
    shutil.rmtree(ws, ignore_errors=True)


def test_scoop_from_a_workspace_outside_the_project(workspace):
    """The documented steps: `python -m scoop -n 2 deapnos.run` in the workspace reads deapnos.toml,
    runs the search on 2 SCOOP workers, validates on the template task and exits 0."""
    t0 = time.monotonic()
    r = subprocess.run([sys.executable, "-m", "scoop", "-n", "2", ENTRY_NAME], cwd=workspace, env=user_env(),
                       capture_output=True, text=True, timeout=240)
    out = r.stdout + r.stderr
    assert r.returncode == 0, out
    runs = list((workspace / "runs").glob("ws-*"))
    assert len(runs) == 1, out
    run = runs[0]
    status = json.loads((run / "status.json").read_text())
    assert status["status"] == "ok", status
    assert (status["backend"], status["workers"]) == ("scoop", 2)
    assert "backend scoop with 2 worker(s)" in (run / "report.md").read_text()
    rows = [json.loads(x) for x in (run / "evaluations.jsonl").read_text().splitlines() if x.strip()]
    assert {x["worker"] for x in rows if x.get("event") == "evaluation" and not x.get("cached")}
    validation = json.loads((run / "validation.json").read_text())
    assert validation["tasks"] == ["my-task"] and validation["rows"]
    # `deapnos status RUN_DIR`, the documented way to check an outcome, agrees
    st = subprocess.run([*deapnos_cmd(), "status", str(run)], cwd=workspace, env=user_env(),
                        capture_output=True, text=True, timeout=60)
    assert st.returncode == 0, st.stdout + st.stderr
    assert st.stdout.startswith(f"{run}: finished")
    assert time.monotonic() - t0 < 200


def test_a_failed_scoop_launch_from_a_workspace_exits_nonzero(workspace):
    """SCOOP itself exits 0 whatever the program did; the entry file makes it exit non-zero."""
    r = subprocess.run([sys.executable, "-m", "scoop", "-n", "2", ENTRY_NAME, "search.task=digts"],
                       cwd=workspace, env=user_env(), capture_output=True, text=True, timeout=120)
    assert r.returncode != 0, r.stdout + r.stderr
    assert "search.task = 'digts': no such task (did you mean digits?)" in r.stderr
    assert not (workspace / "runs").exists()        # checked before any run folder was written
    # `deapnos run` in the workspace reads the same deapnos.toml and imports my_tasks from the folder
    r = subprocess.run([*deapnos_cmd(), "run", "search.task=my-tsk"], cwd=workspace, env=user_env(),
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 2, r.stdout + r.stderr
    assert "config: deapnos.toml" in r.stderr
    assert "search.task = 'my-tsk': no such task (did you mean my-task?)" in r.stderr
