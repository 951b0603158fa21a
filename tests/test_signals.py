"""Clean stops, one writer, torn logs (issue 8), with real SCOOP, real process pools and real signals.

Every run here is the tiny config of tests/test_search_run.py.  A run is stopped mid-way (inside its
second timestep) by a signal sent to the `deapnos run` launcher ALONE (not its process group); then
no process of the run may remain 15 s later (processes are found by a marker in their environment,
which every child inherits), and resuming must give exactly the records of an uninterrupted run
with the same seed, each once.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from test_search_run import ROOT, env, hof, log_rows, reference, tiny_config  # noqa: F401 (fixture)

MARK = "DEAPNOS_TEST_RUN_MARK"


def launch(tmp_path: Path, run_dir: Path, *extra, mark: str | None = None) -> subprocess.Popen:
    e = env()
    e[MARK] = mark or uuid.uuid4().hex
    return subprocess.Popen([sys.executable, "-m", "deapnos.cli", "run", "--config", str(tiny_config(tmp_path)),
                             "--run-dir", str(run_dir), *map(str, extra)], cwd=ROOT, env=e,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def run_processes(mark: str) -> list[int]:
    """Pids of live processes whose environment holds the marker (the run's processes)."""
    out = []
    needle = f"{MARK}={mark}".encode()
    for d in os.listdir("/proc"):
        if not d.isdigit() or int(d) == os.getpid():
            continue
        try:
            with open(f"/proc/{d}/environ", "rb") as fh:
                if needle not in fh.read():
                    continue
            with open(f"/proc/{d}/stat", "rb") as fh:
                if fh.read().rsplit(b")", 1)[1].split()[0] in (b"Z", b"X"):
                    continue
        except OSError:
            continue
        out.append(int(d))
    return out


def wait_mid_run(proc: subprocess.Popen, run_dir: Path, timeout: float = 120) -> None:
    """Until the run is inside its second timestep: after the first timestep's checkpoint and two
    more evaluations."""
    log, parts = run_dir / "evaluations.jsonl", run_dir / "particles.jsonl"
    deadline = time.time() + timeout
    seen = None
    while time.time() < deadline:
        assert proc.poll() is None, "the run ended before it could be stopped mid-way: " + proc.stderr.read()
        if parts.exists() and '"timestep":1' in parts.read_text():
            n = log.read_text().count('"event":"evaluation"')
            if seen is None:
                seen = n
            elif n >= seen + 2:
                return
        time.sleep(0.02)
    raise AssertionError("the run did not reach its second timestep in time")


def assert_gone(mark: str, since: float, within: float = 15.0) -> None:
    while True:
        left = run_processes(mark)
        if not left:
            return
        if time.time() - since > within:
            cmds = []
            for pid in left:
                try:
                    cmds.append(open(f"/proc/{pid}/cmdline").read().replace("\0", " ")[:120])
                except OSError:
                    pass
            raise AssertionError(f"{len(left)} process(es) of the run remain {within} s after the stop: {cmds}")
        time.sleep(0.1)


def kill_serial_run_mid_way(tmp_path: Path, run_dir: Path, *extra) -> subprocess.Popen:
    """Launch a serial run in ``run_dir`` (``extra``: more arguments) and SIGKILL it once it is
    part-way through; returns the finished process."""
    proc = launch(tmp_path, run_dir, *extra)
    try:
        wait_mid_run(proc, run_dir)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.communicate()
    return proc


def resume(run_dir: Path, *extra, timeout=240) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "deapnos.cli", "run", "--resume", str(run_dir), *extra], cwd=ROOT,
                          env=env(), capture_output=True, text=True, timeout=timeout)


def assert_same_records(run_dir: Path, reference: Path) -> None:
    rows, ref = log_rows(run_dir), log_rows(reference)
    seqs = [r["seq"] for r in rows]
    assert len(seqs) == len(set(seqs)), "a record was logged twice"
    assert [r["seq"] for r in ref] == seqs, "records are missing or extra"
    for got, want in zip(rows, ref):
        assert got == want
    assert hof(run_dir) == hof(reference)


def stop_with_signal(tmp_path, reference, backend: str, signame: str, resume_backend: str) -> None:
    run_dir = tmp_path / "run"
    mark = uuid.uuid4().hex
    proc = launch(tmp_path, run_dir, "--backend", backend, "--workers", "2", mark=mark)
    try:
        wait_mid_run(proc, run_dir)
        assert len(run_processes(mark)) >= 3          # the launcher and its workers (SCOOP: and launchers)
        signum = getattr(signal, signame)
        os.kill(proc.pid, signum)                       # the launcher alone, not its group
        t0 = time.time()
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 128 + signum, err
    assert "Traceback" not in err, err
    last = err.strip().splitlines()[-1]
    assert f"interrupted by {signame}" in last and f"deapnos run --resume {run_dir.resolve()}" in last, err
    size = (run_dir / "evaluations.jsonl").stat().st_size
    assert_gone(mark, t0)
    time.sleep(1.0)
    assert (run_dir / "evaluations.jsonl").stat().st_size == size, "the run went on writing after its stop"
    status = json.loads((run_dir / "status.json").read_text())
    assert status["status"] == "interrupted" and status["resume"] == f"deapnos run --resume {run_dir.resolve()}"
    r = resume(run_dir, "--backend", resume_backend)
    assert r.returncode == 0, r.stderr
    assert_same_records(run_dir, reference)


@pytest.mark.parametrize("signame", ["SIGINT", pytest.param("SIGTERM", marks=pytest.mark.slow),
                                     pytest.param("SIGHUP", marks=pytest.mark.slow)])
def test_stop_signal_takes_the_scoop_run_down(reference, tmp_path, signame):
    stop_with_signal(tmp_path, reference, "scoop", signame, "scoop" if signame == "SIGINT" else "serial")


@pytest.mark.parametrize("signame", ["SIGTERM", pytest.param("SIGINT", marks=pytest.mark.slow),
                                     pytest.param("SIGHUP", marks=pytest.mark.slow)])
def test_stop_signal_takes_the_pool_run_down(reference, tmp_path, signame):
    stop_with_signal(tmp_path, reference, "pool", signame, "serial")


@pytest.mark.parametrize("backend", ["pool", pytest.param("scoop", marks=pytest.mark.slow)])
def test_workers_exit_when_the_launcher_is_killed(reference, tmp_path, backend):
    """SIGKILL leaves the launcher no chance to clean up: the workers notice their parent's death."""
    run_dir = tmp_path / "run"
    mark = uuid.uuid4().hex
    proc = launch(tmp_path, run_dir, "--backend", backend, "--workers", "2", mark=mark)
    try:
        wait_mid_run(proc, run_dir)
        os.kill(proc.pid, signal.SIGKILL)
        t0 = time.time()
        proc.wait(timeout=30)
        assert_gone(mark, t0)
        # the job did not go on without its launcher (it would have finished the run: status ok)
        assert json.loads((run_dir / "status.json").read_text())["status"] == "running"
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.communicate()
    r = resume(run_dir, "--backend", "serial")
    assert r.returncode == 0, r.stderr
    assert_same_records(run_dir, reference)


@pytest.mark.slow      # about 20 s; tests/test_store.py checks the writer lock itself
def test_two_resumes_at_once_one_writer(reference, tmp_path):
    run_dir = tmp_path / "run"
    kill_serial_run_mid_way(tmp_path, run_dir)
    cmd = [sys.executable, "-m", "deapnos.cli", "run", "--resume", str(run_dir)]
    a = subprocess.Popen(cmd, cwd=ROOT, env=env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    b = subprocess.Popen(cmd, cwd=ROOT, env=env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    outs = {p.pid: p.communicate(timeout=240) for p in (a, b)}
    codes = sorted((a.returncode, b.returncode))
    assert codes == [0, 1], (codes, outs)
    loser, winner = (a, b) if a.returncode == 1 else (b, a)
    err = outs[loser.pid][1]
    assert "Traceback" not in err
    import socket
    assert f"pid {winner.pid} on host {socket.gethostname()}" in err.strip().splitlines()[-1], err
    assert_same_records(run_dir, reference)


@pytest.mark.parametrize("tear", ["half-line", pytest.param("nul-padded", marks=pytest.mark.slow)])
def test_a_torn_log_is_repaired_before_appending(reference, tmp_path, tear):
    """A killed writer's torn last line (cut mid-record, or a NUL-padded tail as a crashed file system
    leaves it) is cut back on open: the resumed run holds exactly the uninterrupted run's records."""
    run_dir = tmp_path / "run"
    kill_serial_run_mid_way(tmp_path, run_dir)
    log = run_dir / "evaluations.jsonl"
    data = log.read_bytes()
    assert data.endswith(b"\n")
    last_start = data.rstrip(b"\n").rfind(b"\n") + 1
    torn_seq = json.loads(data[last_start:])["seq"]
    cut = data[:last_start + (len(data) - last_start) // 2]
    log.write_bytes(cut + (b"\0" * 300 if tear == "nul-padded" else b""))
    from deapnos.search.store import read_jsonl
    assert torn_seq not in {r["seq"] for r in read_jsonl(log)}      # the torn record is lost until resume
    r = resume(run_dir)
    assert r.returncode == 0, r.stderr
    assert b"\0" not in log.read_bytes()
    assert_same_records(run_dir, reference)
    assert torn_seq in {r["seq"] for r in log_rows(run_dir)}


def test_the_death_of_the_scoop_origin_is_named(tmp_path):
    run_dir = tmp_path / "run"
    mark = uuid.uuid4().hex
    proc = launch(tmp_path, run_dir, "--backend", "scoop", "--workers", "2", mark=mark)
    try:
        wait_mid_run(proc, run_dir)
        origin = json.loads((run_dir / "status.json").read_text())["pid"]
        os.kill(origin, signal.SIGKILL)
        t0 = time.time()
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 1
    last = err.strip().splitlines()[-1]
    assert f"SCOOP origin (pid {origin}) ended while the search was running" in last, err
    assert f"deapnos run --resume {run_dir.resolve()}" in last
    assert_gone(mark, t0)
