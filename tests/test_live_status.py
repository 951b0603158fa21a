"""The live view of a search (deapnos/live.py), `deapnos status` (deapnos/status.py) and the
start-up check of the workers' environments (deapnos/distributed.py).

Real searches on the tiny config of test_search_run.py: off a terminal (plain progress lines at a
steady interval), on a pseudo-terminal (the bar and its status lines), `--quiet`; `deapnos status`
on a finished run, on a run being written (without ever taking its lock), with a torn last line,
and on a killed run.
"""
from __future__ import annotations

import copy
import json
import os
import pty
import select
import shutil
import signal
import struct
import subprocess
import sys
import time

import pytest

from test_search_run import ROOT, env, log_rows, reference, tiny_config  # noqa: F401 (fixture)

from deapnos import distributed as D
from deapnos.live import SearchProgress, format_view, plan
from deapnos.search.config import load_config
from deapnos.search.store import WRITER_LOCK, FolderLock


def deapnos(*args, timeout=240, **kw):
    return subprocess.run([sys.executable, "-m", "deapnos.cli", *map(str, args)], cwd=ROOT, env=env(),
                          capture_output=True, text=True, timeout=timeout, **kw)


def status(run_dir, *extra):
    r = deapnos("status", run_dir, *extra, timeout=60)
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout) if "--json" in extra else r.stdout


def test_plan_counts_what_the_config_asks_for(tmp_path):
    cfg = load_config(tiny_config(tmp_path))
    p = plan(cfg, validation_tasks=[])
    # 2 x 2 initial genomes; 2 particles x 2 mutants per timestep; the rung: (2 candidates + adam) x 2 seeds
    assert p == {"init": 4, "timestep:1": 4, "timestep:2": 4, "timestep:3": 4, "rung:0": 6, "validation": 0}
    assert plan(cfg)["validation"] is None          # held-out tasks unknown without the installed tasks


def test_the_view_from_the_log_matches_the_log(reference):
    """Replaying a finished run's log: every evaluation counted once, in its phase."""
    rows = log_rows(reference)
    snap = status(reference, "--json")
    evals = [r for r in rows if r["event"] == "evaluation"]
    assert snap["state"] == "finished" and snap["phase"]["key"] == "done"
    assert snap["run"]["done"] == len(evals) == snap["run"]["planned"]
    assert snap["evaluations"]["cached"] == sum(1 for r in evals if r.get("cached"))
    assert snap["evaluations"]["trained"] == sum(1 for r in evals if not r.get("cached"))
    assert snap["rejected"] == {"integrity": sum(r["event"] == "rejected" for r in rows),
                                "duplicate": sum(r["event"] == "duplicate" for r in rows)}
    hof = json.loads((reference / "hall_of_fame.json").read_text())
    assert snap["best"]["genome"] == hof[0]["genome"] and snap["best"]["fitness"] == hof[0]["mean"]
    text = status(reference)
    assert text.splitlines()[0].endswith(": finished")
    assert f"best: {hof[0]['mean']:+.4f}" in text and "by the integrity check" in text


def test_status_tolerates_a_torn_last_line_and_never_takes_the_lock(reference, tmp_path):
    run = tmp_path / "copy"
    shutil.copytree(reference, run)
    before = status(run, "--json")
    with open(run / "evaluations.jsonl", "a") as fh:
        fh.write('{"event":"evaluation","seq":999,"kind":"mutant","timestep":3,"st')      # a writer mid-line
    lock = FolderLock(run / WRITER_LOCK).acquire("a test writer")
    try:
        t0 = time.monotonic()
        after = status(run, "--json")
        assert time.monotonic() - t0 < 30
        assert FolderLock(run / WRITER_LOCK).is_held()          # still ours
        assert json.loads((run / WRITER_LOCK).read_text())["role"] == "a test writer"
    finally:
        lock.release()
    assert after["run"] == before["run"] and after["rejected"] == before["rejected"]
    assert deapnos("status", tmp_path / "nothing").returncode == 2


def _wait_for(pred, timeout, what):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        got = pred()
        if got:
            return got
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


def test_status_of_a_run_in_progress_then_killed(tmp_path):
    """While a run writes its folder: `deapnos status` shows it running with its progress; after
    SIGKILL it says stopped and how to continue."""
    run = tmp_path / "live"
    proc = subprocess.Popen([sys.executable, "-m", "deapnos.cli", "run", "--config", tiny_config(tmp_path),
                             "--run-dir", run, "--backend", "pool", "--workers", "2", "search.timesteps=4",
                             "--progress-interval", "0.5"], cwd=ROOT, env=env(), stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    seen = []
    try:
        def running_with_progress():
            if not (run / "status.json").exists():
                return None
            snap = status(run, "--json")
            seen.append(snap)
            return snap if snap["state"] == "running" and snap["phase"]["key"] and \
                snap["phase"]["key"].startswith("timestep") and snap["updated_ago_s"] is not None else None
        snap = _wait_for(running_with_progress, 180, "a running timestep in deapnos status")
        assert snap["workers"]["available"] == 2 and snap["pid"] == proc.pid
        assert snap["run"]["done"] >= 4 and snap["rate_per_min"] and snap["rate_per_min"] > 0
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
        stopped = status(run, "--json")
        assert stopped["state"] == "stopped" and "gone" in stopped["message"]
        assert stopped["resume"].startswith("deapnos run --resume ")
        assert stopped["workers"]["busy"] == 0 and stopped["eta_run_s"] is None
        assert "continue with: deapnos run --resume" in status(run).splitlines()[0]
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.communicate(timeout=30)
    dones = [s["run"]["done"] for s in seen]
    assert dones == sorted(dones)


def test_off_a_terminal_progress_lines_at_a_steady_interval(tmp_path):
    r = deapnos("run", "--config", tiny_config(tmp_path), "--run-dir", tmp_path / "lines", "--progress-interval", "1")
    assert r.returncode == 0, r.stderr[-2000:]
    lines = [x for x in r.stderr.splitlines() if "deapnos.live: progress:" in x]
    assert len(lines) >= 3, r.stderr[-3000:]
    assert all(" evaluations, " in x and "best: " in x and "rejected: " in x and "workers: " in x for x in lines)
    assert any("timestep " in x for x in lines)
    assert "\r" not in r.stderr and "\x1b[" not in r.stderr          # no bar off a terminal
    assert "progress:" in (tmp_path / "lines" / "search.log").read_text()


def run_on_a_terminal(args, cols=140, timeout=240):
    """Run ``deapnos ARGS`` with stdout and stderr on a pseudo-terminal; returns (rc, output)."""
    master, slave = pty.openpty()
    import fcntl
    import termios
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 50, cols, 0, 0))
    e = env()
    e.pop("COLUMNS", None)
    proc = subprocess.Popen([sys.executable, "-m", "deapnos.cli", *map(str, args)], cwd=ROOT, env=e,
                            stdin=slave, stdout=slave, stderr=slave, close_fds=True)
    os.close(slave)
    out = bytearray()
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([master], [], [], 0.2)
            if ready:
                try:
                    chunk = os.read(master, 65536)
                except OSError:          # the terminal closed: the program ended
                    break
                if not chunk:
                    break
                out += chunk
            elif proc.poll() is not None:
                break
        rc = proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
        os.close(master)
    return rc, out.decode("utf-8", "replace")


@pytest.mark.slow   # a whole search under a pseudo-terminal: about 30 s
def test_on_a_terminal_a_bar_with_status_lines(tmp_path):
    rc, out = run_on_a_terminal(["run", "--config", tiny_config(tmp_path), "--run-dir", tmp_path / "tty",
                                 "search.timesteps=4"])
    assert rc == 0, out[-3000:]
    assert "eval/min" in out and "ETA" in out
    assert any(f"timestep {t}/4: " in out for t in (1, 2, 3, 4)), out[-3000:]
    assert "workers: " in out and "best: " in out and "by the integrity check" in out
    assert "\x1b[A" in out                                          # tqdm redraws in place
    assert "deapnos.live: progress:" not in out                     # no plain lines on a terminal
    rc, out = run_on_a_terminal(["run", "--config", tiny_config(tmp_path), "--run-dir", tmp_path / "quiet", "--quiet"])
    assert rc == 0 and "eval/min" not in out and "workers: " not in out and "leaderboard" in out
    assert "deapnos.live: progress:" not in out


def test_the_live_tracker_counts_a_batch_and_its_arrivals():
    class Req:
        def __init__(self, meta):
            self.meta = meta
    now = [100.0]
    p = SearchProgress(None, workers=3, clock=lambda: now[0])
    p.plan = {"init": 4, "timestep:1": 10}
    p.timesteps = 1
    bar = p.batch([Req({"kind": "mutant", "timestep": 1})] * 6, to_run=5)    # one answered from the cache
    snap = p.snapshot()
    assert snap["phase"]["label"] == "timestep 1/1" and snap["phase"]["done"] == 1
    assert snap["phase"]["planned"] == 10 and snap["workers"] == {"busy": 3, "available": 3}
    for k in range(4):
        now[0] += 15.0
        bar.update(1)
        p.evaluation({"worker": f"node{k % 2}:12", "status": "ok" if k else "diverged"})
    snap = p.snapshot()
    assert snap["phase"]["done"] == 5 and snap["workers"]["busy"] == 1
    assert snap["rate_per_min"] == pytest.approx(4 / 60 * 60)       # 4 in the 60 s since the start
    assert snap["eta_phase_s"] == pytest.approx(5 / 4 * 60)
    assert snap["hosts"] == {"node0": 2, "node1": 2} and snap["evaluations"]["failed"] == 1
    bar.close()
    p.rejected("rejected")
    p.rejected("duplicate")
    assert p.snapshot()["workers"]["busy"] == 0
    lines = format_view(p.snapshot())
    assert lines[0].startswith("timestep 1/1 [##########..........] 5/10 evaluations")
    assert "1 by the integrity check, 1 by the cache" in lines[3]


def test_a_worker_environment_that_differs_is_named():
    """The fingerprints are real (this process's); a copy changed as another host would be."""
    mine = D.environment_fingerprint(["sphere", "digits"])
    assert mine["error"] is None and {"sphere", "digits"} <= set(mine["plugins"])
    assert D.environment_differences(mine, copy.deepcopy(mine)) == ([], [])
    other = copy.deepcopy(mine)
    other.update(python="CPython 3.10.12", deapnos="0.2.0", autoload=not mine["autoload"], torch="0.0.1+other")
    del other["plugins"]["digits"]
    other["plugins"]["sphere"]["code"] = "0" * 16
    errors, warnings = D.environment_differences(mine, other)
    text = "; ".join(errors)
    assert f"Python {mine['python']} here, CPython 3.10.12 there" in text
    assert f"deapnos {mine['deapnos']} here, 0.2.0 there" in text
    assert "plugins loaded here but not there: digits" in text and "plugin sphere:" in text
    assert "plugin autoloading is" in text
    assert warnings == [f"torch {mine['torch']} here, 0.0.1+other there"]
    same_version = copy.deepcopy(mine)
    same_version["deapnos_code"] = "f" * 16
    assert "its code differs" in D.environment_differences(mine, same_version)[0][0]
    broken = dict(copy.deepcopy(mine), error="PluginError: cannot import plugin module 'x'", plugins={})
    assert D.environment_differences(mine, broken)[0][0].startswith("the run's plugins do not load there")
    msg = D.environment_message("node0", {"node2": errors})
    assert "host node2: Python" in msg and "(node0, 'here')" in msg


def test_check_workers_on_one_process():
    seen = D.check_workers(D.SerialBackend(), ["sphere", "digits"], wait=5)
    assert list(seen) == [D.worker_id()]
