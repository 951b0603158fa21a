"""Issue 19, the smaller things: a stop while the report is written, `deapnos status` while SCOOP
starts and after a pid was reused, the command a run lock records, a log of another config on
resume, SCOOP's long warnings, a search.log on a full disk, and a late SCOOP worker that refuses
work in another environment.  Real runs, real signals, real SCOOP; /dev/full is a real full disk."""
from __future__ import annotations

import json
import logging
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from deapnos.cli import main
from deapnos.search.config import config_from_dict
from deapnos.search.store import RunStore
from deapnos.status import collect
from test_search_run import ROOT, env, tiny_config
from test_signals import assert_gone, run_processes

TESTS = Path(__file__).resolve().parent
GATE = "DEAPNOS_TEST_GATED_RUN"


def gated_env(run_dir: Path, mark: str) -> dict:
    e = env()
    e["PYTHONPATH"] = os.pathsep.join([str(TESTS), e["PYTHONPATH"]])
    e[GATE] = str(run_dir)
    e["DEAPNOS_TEST_RUN_MARK"] = mark
    return e


def status_of(run_dir: Path) -> dict:
    try:
        return json.loads((run_dir / "status.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}


@pytest.mark.parametrize("backend", ["serial", pytest.param("scoop", marks=pytest.mark.slow)])
def test_a_stop_while_the_report_is_written_says_so_and_keeps_the_search(tmp_path, backend):
    """SIGINT reaches `deapnos run` while its report is being written (the gate plugin holds the
    report there): exit 130, one line that says the search finished and how to write the report;
    status.json keeps "ok"; no process is left; `deapnos report` then writes it.  Under SCOOP, the
    run lock records the command as typed, and `deapnos status` says "starting" (never "not
    started") from the launch until the search writes "running"."""
    run = tmp_path / "run"
    mark = f"gate-{os.getpid()}-{backend}"
    cfg = tiny_config(tmp_path, report=True, extra_plugins=["report_gate_plugin"])
    proc = subprocess.Popen([sys.executable, "-m", "deapnos.cli", "run", "--config", str(cfg), "--run-dir", str(run),
                             "--backend", backend, "--quiet"], cwd=ROOT, env=gated_env(run, mark),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    states, lock_record = [], None
    deadline = time.time() + 240
    while not (run / "report-gate.txt").exists():
        assert proc.poll() is None and time.time() < deadline, proc.communicate()
        if (run / "config.toml").exists():
            state = collect(run)["state"]
            if not states or states[-1] != state:
                states.append(state)
            if lock_record is None and (run / "run.lock").stat().st_size:
                lock_record = json.loads((run / "run.lock").read_text(encoding="utf-8"))
        time.sleep(0.05)
    assert status_of(run)["status"] == "ok"
    since = time.time()
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, (out, err)
    # log lines aside (deapnos's "INFO name: ...", SCOOP's "[date] launcher INFO ..."), one line
    lines = [ln for ln in err.splitlines()
             if ln.strip() and not ln.startswith(("INFO", "WARNING", "[20", "Launching "))]
    assert len(lines) == 1 and "Traceback" not in err, err
    assert "after the search finished (status 'ok')" in lines[0] and f"deapnos report {run}" in lines[0], err
    assert status_of(run)["status"] == "ok" and not (run / "report.md").exists()
    assert_gone(mark, since)
    assert not run_processes(mark)
    if backend == "scoop":
        # "not started" only before the launcher wrote "starting" (the first states), never after it
        assert "starting" in states, states
        assert "not started" not in states[states.index("starting"):], states
        assert lock_record["command"].startswith("deapnos run --config "), lock_record
    e = env()
    e["PYTHONPATH"] = os.pathsep.join([str(TESTS), e["PYTHONPATH"]])        # no gate now
    r = subprocess.run([sys.executable, "-m", "deapnos.cli", "report", str(run)], cwd=ROOT, env=e,
                       capture_output=True, text=True, timeout=240)
    assert r.returncode == 0 and (run / "report.md").exists(), r.stderr


def quickstart_folder(tmp_path: Path, status: dict) -> Path:
    run = tmp_path / "run"
    store = RunStore(run, create=True)
    store.write_config(config_from_dict({}).to_toml())
    store.write_status(status.pop("status"), **status)
    return run


def test_status_tells_a_reused_pid_from_the_run_that_wrote_it(tmp_path):
    """status.json says "running" with the pid of a process that started after the run began: the
    pid was reused, the run is gone.  The same pid with a later start time of the run is alive."""
    young = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        time.sleep(0.5)
        here = socket.gethostname()
        run = quickstart_folder(tmp_path / "a", {"status": "running", "pid": young.pid, "host": here,
                                                 "started": time.time() - 3600})
        snap = collect(run)
        assert snap["state"] == "stopped" and f"pid {young.pid}" in snap["message"], snap
        run = quickstart_folder(tmp_path / "b", {"status": "running", "pid": young.pid, "host": here,
                                                 "started": time.time()})
        assert collect(run)["state"] == "running"
    finally:
        young.kill()
        young.wait()


def test_status_of_a_finished_run_imports_no_torch(tmp_path):
    """`deapnos status` reads config, checkpoint and logs; none of it needs torch (seconds to import)."""
    run = quickstart_folder(tmp_path, {"status": "ok", "seconds": 1.0})
    (run / "validation.json").write_text('{"tasks": ["digits"]}', encoding="utf-8")
    code = (f"import sys\nfrom deapnos.cli import main\nrc = main(['status', {str(run)!r}])\n"
            "print('torch' in sys.modules, rc)\n")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, env=env())
    assert r.returncode == 0 and r.stdout.splitlines()[-1] == "False 0", (r.stdout, r.stderr)
    assert f"{run}: finished" in r.stdout


def test_a_resume_onto_a_log_of_another_config_stops_with_one_line(tmp_path, capsys, monkeypatch):
    """A finished tiny run, its config edited and its checkpoint moved away (as the damaged-checkpoint
    hint says): the resume stops before any work with one line naming the log line, exit 2."""
    monkeypatch.setenv("DEAPNOS_DISABLE_PLUGIN_AUTOLOAD", "1")
    run = tmp_path / "run"
    assert main(["run", "--config", str(tiny_config(tmp_path)), "--run-dir", str(run), "--quiet"]) == 0
    records = (run / "evaluations.jsonl").read_text(encoding="utf-8")
    text = (run / "config.toml").read_text(encoding="utf-8")
    assert "step_scale = 0.3" in text
    (run / "config.toml").write_text(text.replace("step_scale = 0.3", "step_scale = 0.5"), encoding="utf-8")
    os.replace(run / "checkpoint.json", tmp_path / "moved-away.json")
    capsys.readouterr()
    assert main(["run", "--resume", str(run)]) == 2
    err = [ln for ln in capsys.readouterr().err.splitlines() if ln.strip()]
    assert len(err) == 1 and "evaluations.jsonl line 1: written under another config" in err[0], err
    assert (run / "evaluations.jsonl").read_text(encoding="utf-8") == records


def test_scoop_warnings_are_cut_to_one_short_line():
    import scoop
    from deapnos.launch import _shorten_scoop_warnings
    _shorten_scoop_warnings()
    _shorten_scoop_warnings()                                # once only
    logger = scoop.logger
    assert sum(type(f).__name__ == "_Shorten" for f in logger.filters) == 1
    record = logger.makeRecord(logger.name, logging.WARNING, __file__, 1, "Lost track of future %s. Resending it...",
                               ("x" * 1500,), None)
    for f in logger.filters:
        f.filter(record)
    text = record.getMessage()
    assert text.startswith("Lost track of future xxx") and len(text) < 260 and "1338 more characters" in text


def test_a_full_disk_under_search_log_is_one_warning_not_a_traceback(capsys):
    """/dev/full: every write fails with ENOSPC, as on a full disk."""
    from deapnos.run import QuietFileHandler
    log = logging.getLogger("deapnos.test-full-disk")
    handler = QuietFileHandler("/dev/full")
    log.addHandler(handler)
    try:
        for i in range(3):
            log.error("record %d", i)
    finally:
        log.removeHandler(handler)
        handler.close()
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err and "--- Logging error ---" not in err, err
    assert "cannot write /dev/full" in err and "No space left" in err


def test_a_worker_in_another_environment_refuses_its_first_task():
    """The SCOOP task wrapper on a worker not yet checked: with the origin's fingerprint, a worker
    whose environment differs does not run the task, it reports its fingerprint only."""
    from deapnos.evaluate import worker
    from deapnos.worker_entry import worker_context
    calls = []
    mine = worker.environment_fingerprint((), False, worker_context)
    other = dict(mine, deapnos=str(mine.get("deapnos")) + "+other")
    saved = dict(worker._WORKER)
    try:
        worker._WORKER.pop("reported", None)
        answer = worker.call_reporting_environment(calls.append, 1, (), False, other, worker_context)
        assert answer["refused"] and answer["result"] is None and calls == []
        worker._WORKER.pop("reported", None)
        answer = worker.call_reporting_environment(calls.append, 2, (), False, mine, worker_context)
        assert not answer.get("refused") and calls == [2]
        assert worker.call_reporting_environment(calls.append, 3, (), False, other, worker_context) is None
        assert calls == [2, 3]
    finally:
        worker._WORKER.clear()
        worker._WORKER.update(saved)
