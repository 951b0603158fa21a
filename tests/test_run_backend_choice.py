"""`deapnos run` does what its flags say: --workers N > 1 with a config that names no backend runs
the process pool, a flag that cannot be honoured is a one-line error (exit 2), task names are
checked before any worker starts, and the run folder and report.md record what actually ran."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from deapnos.search.config import DEFAULT_PARALLEL_BACKEND, config_from_dict

ROOT = Path(__file__).resolve().parent.parent

# a tiny search whose config names no run.backend (the case of the issue: `--workers 2 --config my.toml`)
NO_BACKEND = """
[run]
name = "nob"
seed = 3
plugins = ["sphere", "digits"]

[search]
particles = 2
timesteps = 1
mutants = 1
init_factor = 1
attempts = 2
init_task = "digits"
task = "digits"
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
seeds = [0]
keep = 1.0

[validation]
enabled = false

[report]
plots = false
"""


def write_config(tmp_path: Path, extra: str = "") -> Path:
    path = tmp_path / "my.toml"
    path.write_text(NO_BACKEND.replace("[run]\n", "[run]\n" + extra, 1))
    return path


def cli(*args, timeout: float = 240) -> subprocess.CompletedProcess:
    e = dict(os.environ)
    e["DEAPNOS_DISABLE_PLUGIN_AUTOLOAD"] = "1"
    e["PYTHONPATH"] = str(ROOT) + os.pathsep + e.get("PYTHONPATH", "")
    return subprocess.run([sys.executable, "-m", "deapnos.cli", "run", *map(str, args)], cwd=ROOT, env=e,
                          capture_output=True, text=True, timeout=timeout)


def run_in_process(*args) -> int:
    from deapnos.run import main
    return main([*map(str, args)])


def test_a_config_without_backend_runs_serial_for_one_worker_and_pool_for_more():
    assert DEFAULT_PARALLEL_BACKEND == "pool"
    assert config_from_dict({}).run.backend == "serial"
    assert config_from_dict({}, ["run.workers=3"]).run.backend == "pool"
    assert config_from_dict({"run": {"workers": 3}}).run.backend == "pool"
    assert config_from_dict({"run": {"backend": "serial", "workers": 3}}).run.backend == "serial"
    assert config_from_dict({"run": {"backend": "scoop"}}, ["run.workers=4"]).run.backend == "scoop"


def test_workers_flag_with_a_config_naming_no_backend_runs_the_pool(tmp_path):
    run_dir = tmp_path / "run"
    r = cli("--workers", "2", "--config", write_config(tmp_path), "--run-dir", run_dir, "--quiet")
    assert r.returncode == 0, r.stdout + r.stderr
    assert "backend pool, 2 worker(s)" in r.stderr
    status = json.loads((run_dir / "status.json").read_text())
    assert (status["status"], status["backend"], status["workers"]) == ("ok", "pool", 2)
    assert 'backend = "pool"' in (run_dir / "config.toml").read_text()
    rows = [json.loads(x) for x in (run_dir / "evaluations.jsonl").read_text().splitlines() if x.strip()]
    pids = {x["worker"] for x in rows if x.get("event") == "evaluation" and not x.get("cached")}
    assert pids and all(not p.endswith(f":{os.getpid()}") for p in pids)     # not this process
    assert "backend pool with 2 worker(s)" in (run_dir / "report.md").read_text()


@pytest.mark.parametrize("args, where", [
    (["--backend", "serial", "--workers", "4"], "--backend serial"),
    (["--workers", "4"], "run.backend = 'serial' in"),
    (["run.workers=4"], "run.backend = 'serial' in"),
])
def test_a_worker_count_the_serial_backend_cannot_honour_is_an_error(tmp_path, capsys, monkeypatch, args, where):
    monkeypatch.setenv("DEAPNOS_DISABLE_PLUGIN_AUTOLOAD", "1")
    config = write_config(tmp_path, 'backend = "serial"\n') if "--backend" not in args else write_config(tmp_path)
    rc = run_in_process("--config", config, "--run-dir", tmp_path / "run", *args)
    err = capsys.readouterr().err.strip()
    assert rc == 2
    assert err.count("\n") == 0 and "runs in one process" in err and where in err and "4" in err
    assert not (tmp_path / "run").exists()


def test_a_misspelled_task_is_reported_before_scoop_starts(tmp_path):
    t0 = time.monotonic()
    r = cli("--config", write_config(tmp_path), "--run-dir", tmp_path / "run", "--backend", "scoop", "--workers", "2",
            "elimination.rungs=[{task = \"digitz\", seeds = [0], keep = 1.0}]")
    assert r.returncode == 2, r.stdout + r.stderr
    assert r.stderr.strip() == ("error: config field elimination.rungs[0].task = 'digitz': no such task (did you "
                                "mean digits?); allowed values: digits")
    assert "launching" not in r.stdout + r.stderr and not (tmp_path / "run").exists()
    assert time.monotonic() - t0 < 60
