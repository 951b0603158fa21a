"""Whole searches on a tiny budget: determinism, kill + resume, SCOOP, failures, observers, report.

Tiny: 2 particles, 3 timesteps of 2 mutants on `digits` with a few optimizer steps per run
(ProtocolConfig epochs/step_scale), built-in plugins named explicitly with autoloading off.
"""
from __future__ import annotations

import importlib.util
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parent.parent
VOLATILE = {"seconds", "worker", "device", "time"}

TINY = """
[run]
name = "tiny"
seed = 5
backend = "serial"
workers = 2
plugins = ["sphere", "digits"{extra_plugins}]
report = {report}

[search]
particles = 2
timesteps = 3
mutants = 2
init_factor = 2
attempts = 2
init_task = "digits"
task = "digits"
max_age = 1

[protocol]
epochs = 4
step_scale = 0.3
screen_lrs_a = [1e-1, 1e-2]
screen_lrs_b = [1e-3]
stage_a_threshold = 0.0
threshold = 0.15

[elimination]
candidates = 2
baselines = ["adam"]

[[elimination.rungs]]
task = "digits"
seeds = [0, 1]
keep = 0.5
"""


def tiny_config(tmp_path: Path, report: bool = False, extra_plugins=()) -> Path:
    path = tmp_path / "tiny.toml"
    extra = "".join(f', "{p}"' for p in extra_plugins)
    path.write_text(TINY.format(report="true" if report else "false", extra_plugins=extra), encoding="utf-8")
    return path


def env() -> dict:
    e = dict(os.environ)
    e["DEAPNOS_DISABLE_PLUGIN_AUTOLOAD"] = "1"
    e["PYTHONPATH"] = str(ROOT) + os.pathsep + e.get("PYTHONPATH", "")
    return e


def deapnos(*args, cwd=None, timeout=240, **kw):
    return subprocess.run([sys.executable, "-m", "deapnos.cli", "run", *map(str, args)], cwd=cwd or ROOT, env=env(),
                          capture_output=True, text=True, timeout=timeout, **kw)


def log_rows(run_dir: Path) -> list[dict]:
    rows = [json.loads(line) for line in (run_dir / "evaluations.jsonl").read_text().splitlines() if line.strip()]
    return sorted(({k: v for k, v in r.items() if k not in VOLATILE} for r in rows), key=lambda r: r["seq"])


def hof(run_dir: Path):
    return json.loads((run_dir / "hall_of_fame.json").read_text())


def run_in_process(run_dir: Path, config: Path, *extra) -> int:
    from deapnos.run import main
    return main(["--config", str(config), "--run-dir", str(run_dir), *map(str, extra)])


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """One uninterrupted serial run (in-process) of the tiny config."""
    tmp = tmp_path_factory.mktemp("ref")
    old = os.environ.get("DEAPNOS_DISABLE_PLUGIN_AUTOLOAD")
    os.environ["DEAPNOS_DISABLE_PLUGIN_AUTOLOAD"] = "1"
    try:
        assert run_in_process(tmp / "run", tiny_config(tmp, report=True)) == 0
    finally:
        if old is None:
            os.environ.pop("DEAPNOS_DISABLE_PLUGIN_AUTOLOAD", None)
        else:
            os.environ["DEAPNOS_DISABLE_PLUGIN_AUTOLOAD"] = old
    torch.set_num_threads(1)
    return tmp / "run"


def test_reference_run_is_complete(reference):
    status = json.loads((reference / "status.json").read_text())
    assert status["status"] == "ok"
    rows = log_rows(reference)
    kinds = {r.get("kind") for r in rows}
    assert {"init", "mutant", "rung"} <= kinds
    assert any(r["event"] == "rejected" and r["message"] for r in rows)     # integrity rejections are logged
    assert all(r["event"] != "evaluation" or r["status"] for r in rows)
    board = status["leaderboard"]
    assert any(r["label"] == "adam" for r in board) and any(not r["baseline"] for r in board)
    parts = [json.loads(x) for x in (reference / "particles.jsonl").read_text().splitlines()]
    assert {p["timestep"] for p in parts} == {0, 1, 2, 3}
    assert (reference / "checkpoint.json").exists() and (reference / "config.toml").exists()
    assert not (reference / "checkpoint.pkl").exists()


def test_same_seed_same_log_serial(reference, tmp_path, monkeypatch):
    monkeypatch.setenv("DEAPNOS_DISABLE_PLUGIN_AUTOLOAD", "1")
    assert run_in_process(tmp_path / "again", tiny_config(tmp_path)) == 0
    assert log_rows(tmp_path / "again") == log_rows(reference)
    assert hof(tmp_path / "again") == hof(reference)
    # another seed is another run
    assert run_in_process(tmp_path / "other", tiny_config(tmp_path), "--seed", "6", "search.timesteps=1") == 0
    assert [r["genome"] for r in log_rows(tmp_path / "other")][:4] != [r["genome"] for r in log_rows(reference)][:4]


def test_sigkill_then_resume_gives_the_same_hall_of_fame(reference, tmp_path):
    run_dir = tmp_path / "killed"
    proc = subprocess.Popen([sys.executable, "-m", "deapnos.cli", "run", "--config", str(tiny_config(tmp_path)),
                             "--run-dir", str(run_dir)], cwd=ROOT, env=env(),
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    log = run_dir / "evaluations.jsonl"
    parts = run_dir / "particles.jsonl"
    deadline = time.time() + 180
    killed_at = None
    try:
        while time.time() < deadline and proc.poll() is None:
            # mid-way: after the first timestep's checkpoint, inside the second timestep
            if parts.exists() and '"timestep":1' in parts.read_text():
                n = log.read_text().count('"event":"evaluation"')
                if killed_at is None:
                    killed_at = n
                elif n >= killed_at + 2:
                    os.kill(proc.pid, signal.SIGKILL)
                    break
            time.sleep(0.02)
    finally:
        proc.wait(timeout=60)
    assert proc.returncode == -signal.SIGKILL, "the run ended before it could be killed mid-way"
    assert json.loads((run_dir / "status.json").read_text())["status"] == "running"
    before = {r["seq"] for r in log_rows(run_dir)}
    r = deapnos("--resume", run_dir)
    assert r.returncode == 0, r.stderr
    assert hof(run_dir) == hof(reference)
    assert log_rows(run_dir) == log_rows(reference)          # nothing logged twice, nothing missing
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["evaluator"]["resumed"] >= 1               # finished evaluations were not re-run
    assert len(before) < len(log_rows(reference))


def test_scoop_two_workers(reference, tmp_path):
    run_dir = tmp_path / "scoop"
    r = deapnos("--config", tiny_config(tmp_path), "--run-dir", run_dir, "--backend", "scoop", "--workers", "2",
                cwd=tmp_path)
    assert r.returncode == 0, r.stdout + r.stderr
    rows = [json.loads(x) for x in (run_dir / "evaluations.jsonl").read_text().splitlines()]
    workers = {x["worker"] for x in rows if x["event"] == "evaluation" and not x["cached"]}
    assert len(workers) >= 2, workers
    # the backend does not change the search
    assert log_rows(run_dir) == log_rows(reference)
    assert "leaderboard" in r.stdout


def test_scoop_exact_command_from_the_project_root(tmp_path):
    """`python -m scoop -n 2 deapnos.run --config FILE overrides`, as the docs write it."""
    out = tmp_path / "runs"
    r = subprocess.run([sys.executable, "-m", "scoop", "-n", "2", "deapnos.run", "--config",
                        str(tiny_config(tmp_path)), f"run.output_dir={out}", "search.timesteps=1"],
                       cwd=ROOT, env=env(), capture_output=True, text=True, timeout=240)
    dirs = list(out.glob("tiny-*"))
    assert len(dirs) == 1, r.stdout + r.stderr
    status = json.loads((dirs[0] / "status.json").read_text())
    assert status["status"] == "ok", status
    assert "scoop" in (dirs[0] / "config.toml").read_text()


def test_a_bad_task_under_scoop_is_refused_before_scoop_starts(tmp_path):
    r = deapnos("--config", tiny_config(tmp_path), "--run-dir", tmp_path / "bad", "--backend", "scoop",
                "--workers", "2", "search.task=no-such-task")
    assert r.returncode == 2
    assert "search.task" in r.stderr and "digits" in r.stderr
    assert not (tmp_path / "bad").exists()            # checked in the launcher, before any folder or worker


def test_bad_config_is_reported_before_anything_runs(tmp_path):
    r = deapnos("--config", tiny_config(tmp_path), "--run-dir", tmp_path / "x", "search.restart=never")
    assert r.returncode == 2
    assert "search.restart" in r.stderr and "fresh, hof" in r.stderr
    assert not (tmp_path / "x").exists()


OBSERVER = '''
from deapnos.hookspecs import hookimpl
CALLS = {"evaluation": 0, "timestep": [], "run": 0}

@hookimpl
def deapnos_evaluation_finished(result):
    CALLS["evaluation"] += 1

@hookimpl
def deapnos_timestep_finished(run_dir, timestep, particles):
    CALLS["timestep"].append((timestep, len(particles)))

@hookimpl
def deapnos_run_finished(run_dir, hall_of_fame):
    CALLS["run"] += 1
'''


def test_random_search_and_observers(tmp_path, monkeypatch):
    monkeypatch.setenv("DEAPNOS_DISABLE_PLUGIN_AUTOLOAD", "1")
    (tmp_path / "obs_plugin_search.py").write_text(OBSERVER)
    monkeypatch.syspath_prepend(str(tmp_path))
    cfg = tiny_config(tmp_path, extra_plugins=["obs_plugin_search"])
    assert run_in_process(tmp_path / "rnd", cfg, "--algorithm", "random", "search.timesteps=2") == 0
    import obs_plugin_search
    rows = log_rows(tmp_path / "rnd")
    trained = [r for r in rows if r["event"] == "evaluation" and not r["cached"]]
    assert obs_plugin_search.CALLS["evaluation"] == len(trained)
    assert obs_plugin_search.CALLS["timestep"] == [(1, 2), (2, 2)]
    assert obs_plugin_search.CALLS["run"] == 1
    assert "mutant" not in {r.get("kind") for r in rows} and "random" in {r.get("kind") for r in rows}


def test_report_and_exported_winner(reference):
    report = (reference / "report.md").read_text()
    assert "## Leaderboard" in report and "adam" in report and "$$" in report
    for png in ("particles.png", "schedules.png", "curves.png"):
        assert (reference / "plots" / png).stat().st_size > 1000
    py = sorted((reference / "winners").glob("*.py"))
    assert py
    spec = importlib.util.spec_from_file_location("exported_winner", py[0])
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    cls = next(getattr(mod, n) for n in dir(mod) if n.startswith("Evolved") and isinstance(getattr(mod, n), type)
               and issubclass(getattr(mod, n), torch.optim.Optimizer))
    p = torch.nn.Parameter(torch.ones(3))
    opt = cls([p], lr=0.01, total_steps=10)
    p.grad = torch.ones(3)
    opt.step()
    assert torch.isfinite(p).all()
    # `deapnos report RUN_DIR` rewrites it
    r = subprocess.run([sys.executable, "-m", "deapnos.cli", "report", str(reference), "--no-plots"], env=env(),
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr


def test_worker_never_raises(monkeypatch):
    monkeypatch.setenv("DEAPNOS_DISABLE_PLUGIN_AUTOLOAD", "1")
    from deapnos.distributed import evaluate_payload, make_payload
    out = evaluate_payload(make_payload("none ~ g", "no-such-task", 0, plugins=["digits"]))
    assert out["status"] == "error" and "no-such-task" in out["message"] and out["worker"]
    out = evaluate_payload(make_payload("none ~ nosuchop(g)", "digits", 0, plugins=["digits"]))
    assert out["status"] == "error" and "nosuchop" in out["message"]


def test_process_pool_gives_the_same_search(reference, tmp_path):
    run_dir = tmp_path / "pool"
    r = deapnos("--config", tiny_config(tmp_path), "--run-dir", run_dir, "--backend", "pool", "--workers", "2")
    assert r.returncode == 0, r.stderr
    assert log_rows(run_dir) == log_rows(reference)
    assert hof(run_dir) == hof(reference)
