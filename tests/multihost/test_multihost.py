"""Multi-host SCOOP, for real: a search across namespace hosts with their own sshd (netns_hosts.py).

Three hosts, ``node0`` (where the search is launched: SCOOP's broker and origin) and ``node1``,
``node2`` reached over ssh with a key, one worker each.  The tiny search of test_search_run.py with
four timesteps runs

* with ``deapnos run --hostfile FILE`` and with ``python -m scoop --hostfile FILE -n 3 deapnos.run``
  from the project root: evaluations run on every host, and the evaluation log and hall of fame are
  those of a serial run with the same seed;
* while ``node2`` dies (every process of it killed, sshd included) in the middle of an
  evaluation: the run finishes on the other hosts, or stops with a message and ``--resume``
  finishes it; either way every record is in the log once and the log is the serial one;
* stopped (SIGTERM) and resumed on another set of hosts (``node0``, ``node1``);
* with hosts whose environment differs from the origin's (plugin autoloading on one, another
  deapnos installed on the other): the run stops before the search with a message naming both
  hosts and the differences; also when the workers are checked only by their first evaluation.

Slow (``-m slow``), and it needs Linux, root and network namespaces: without them it is skipped
with the reason.  Run it with ``python -m pytest -m slow tests/multihost -p no:randomly``.
"""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE), str(HERE.parent)]

from netns_hosts import NamespaceHosts, Unavailable, unavailable_reason  # noqa: E402
from test_search_run import ROOT, env, hof, log_rows, tiny_config  # noqa: E402

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]

OVERRIDES = ["search.timesteps=4"]
AUTOLOAD_OFF = {"DEAPNOS_DISABLE_PLUGIN_AUTOLOAD": "1"}     # as the tests' own environment (env())


def namespace_hosts(**kw) -> NamespaceHosts:
    reason = unavailable_reason()
    if reason:
        pytest.skip(f"no namespace hosts on this machine: {reason}")
    try:
        return NamespaceHosts(3, **kw).__enter__()
    except Unavailable as exc:
        pytest.skip(f"no namespace hosts on this machine: {exc}")


@pytest.fixture(scope="module")
def hosts():
    h = namespace_hosts(env=AUTOLOAD_OFF)
    try:
        yield h
    finally:
        h.close()


@pytest.fixture(scope="module")
def config(tmp_path_factory):
    return tiny_config(tmp_path_factory.mktemp("cfg"))


@pytest.fixture(scope="module")
def serial(config, tmp_path_factory):
    run = tmp_path_factory.mktemp("serial") / "run"
    r = subprocess.run([sys.executable, "-m", "deapnos.cli", "run", "--config", config, "--run-dir", run,
                        "--backend", "serial", "--quiet", *OVERRIDES], cwd=ROOT, env=env(), capture_output=True,
                       text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    return run


def on_node0(h: NamespaceHosts, argv, **kw) -> subprocess.Popen:
    # a session of its own, so that a test that gives up can take down every process it started
    return subprocess.Popen(h.command(h.origin, [str(a) for a in argv]), cwd=ROOT, env=kw.pop("env", h.environ(env())),
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True,
                            **kw)


def deapnos_run(h, *args) -> list[str]:
    return [sys.executable, "-m", "deapnos.cli", "run", *map(str, args)]


def finish(proc: subprocess.Popen, timeout: float = 300) -> tuple[int, str]:
    try:
        out, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        try:
            os.killpg(proc.pid, signal.SIGKILL)       # the whole session: SCOOP's processes hold the pipe
        except ProcessLookupError:
            pass
        try:
            out, _ = proc.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            out = "(no output: the pipe stayed open)"
        raise AssertionError(f"timed out after {timeout} s:\n{out[-4000:]}") from None
    return proc.returncode, out


def raw_log(run: Path) -> list[dict]:
    return [json.loads(x) for x in (run / "evaluations.jsonl").read_text().splitlines() if x.strip()]


def hosts_that_trained(run: Path) -> Counter:
    return Counter(r["worker"].rsplit(":", 1)[0] for r in raw_log(run)
                   if r["event"] == "evaluation" and not r.get("cached"))


def assert_same_as_serial(run: Path, serial: Path) -> None:
    seqs = [r["seq"] for r in raw_log(run)]
    assert len(seqs) == len(set(seqs)), "a record is in the log twice"
    assert log_rows(run) == log_rows(serial)
    assert hof(run) == hof(serial)
    assert json.loads((run / "status.json").read_text())["status"] == "ok"


def test_deapnos_run_with_a_hostfile(hosts, config, serial, tmp_path):
    run = tmp_path / "run"
    rc, out = finish(on_node0(hosts, deapnos_run(hosts, "--config", config, "--run-dir", run, "--backend", "scoop",
                                                 "--workers", 3, "--hostfile", hosts.hostfile(1), "--quiet",
                                                 *OVERRIDES)))
    assert rc == 0, out[-4000:]
    trained = hosts_that_trained(run)
    assert set(trained) == {"node0", "node1", "node2"}, trained
    assert "environment check: 3 worker(s) on node0, node1, node2 match the origin" in \
        (run / "search.log").read_text()
    assert_same_as_serial(run, serial)


def test_python_m_scoop_from_the_project_root(hosts, config, serial, tmp_path):
    run = tmp_path / "run"
    rc, out = finish(on_node0(hosts, [sys.executable, "-m", "scoop", "--hostfile", hosts.hostfile(1), "-n", "3",
                                      "deapnos.run", "--config", config, "--run-dir", run, "--quiet", *OVERRIDES]))
    assert rc == 0, out[-4000:]
    assert set(hosts_that_trained(run)) == {"node0", "node1", "node2"}
    assert_same_as_serial(run, serial)


def _cpu_ticks(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/stat") as fh:
            fields = fh.read().rsplit(")", 1)[1].split()
        return int(fields[11]) + int(fields[12])
    except (OSError, IndexError, ValueError):
        return 0


def busy(h: NamespaceHosts, host: str, span: float = 0.3) -> bool:
    """Whether a process of ``host`` is computing (CPU time grows by a third of ``span``)."""
    pids = h.pids(host)
    before = {p: _cpu_ticks(p) for p in pids}
    time.sleep(span)
    return any(_cpu_ticks(p) - t >= span * 100 / 3 for p, t in before.items())


def test_a_host_taken_away_mid_run(config, serial, tmp_path):
    """node2 dies while it evaluates: the run ends on node0 and node1 (SCOOP sends the lost
    evaluation again once the broker stops hearing from node2), or stops with a message and
    `--resume` ends it; the log is the serial one either way."""
    h = namespace_hosts(env=AUTOLOAD_OFF)
    try:
        run = tmp_path / "run"
        t0 = time.monotonic()
        # SCOOP may never send again a future that died with node2: the stall timeout ends the run
        proc = on_node0(h, deapnos_run(h, "--config", config, "--run-dir", run, "--backend", "scoop", "--workers", 3,
                                       "--hostfile", h.hostfile(1), "--quiet", *OVERRIDES, "run.stall_timeout=20"))
        killed = None
        while proc.poll() is None and killed is None and time.monotonic() - t0 < 240:
            if (run / "evaluations.jsonl").exists() and hosts_that_trained(run).get("node2", 0) >= 1 \
                    and busy(h, "node2"):
                killed = h.kill_host("node2")
                t_kill = time.monotonic() - t0
            time.sleep(0.1)
        assert killed, "node2 never evaluated, or the run ended first"
        before = hosts_that_trained(run)
        rc, out = finish(proc, timeout=400)
        took = time.monotonic() - t0
        status = json.loads((run / "status.json").read_text())
        if rc == 0:
            outcome = "finished on node0 and node1"
        else:
            assert "error:" in out and status["status"] != "ok", out[-3000:]
            outcome = f"stopped: {out.strip().splitlines()[-1]}"
            hostfile = h.hostfile(1, hosts=["node0", "node1"])
            rc2, out2 = finish(on_node0(h, deapnos_run(h, "--resume", run, "--workers", 2, "--hostfile", hostfile,
                                                       "--quiet")))
            assert rc2 == 0, out2[-4000:]
        print(f"\nnode2 taken away {t_kill:.1f} s into the run ({len(killed)} processes); run {outcome} "
              f"{took:.1f} s after its start")
        after = hosts_that_trained(run)
        assert before["node2"] >= 1 and after["node2"] == before["node2"]
        assert set(after) == {"node0", "node1", "node2"}
        assert_same_as_serial(run, serial)
    finally:
        h.close()


def test_stopped_then_resumed_on_another_set_of_hosts(hosts, config, serial, tmp_path):
    run = tmp_path / "run"
    proc = on_node0(hosts, deapnos_run(hosts, "--config", config, "--run-dir", run, "--backend", "scoop",
                                       "--workers", 3, "--hostfile", hosts.hostfile(1), "--quiet", *OVERRIDES))
    deadline = time.monotonic() + 240
    while proc.poll() is None and time.monotonic() < deadline:
        parts = run / "particles.jsonl"
        if parts.exists() and any(json.loads(x).get("timestep") == 2 for x in parts.read_text().splitlines()
                                  if x.strip().endswith("}")):
            proc.send_signal(signal.SIGTERM)
            break
        time.sleep(0.1)
    rc, out = finish(proc)
    assert rc == 128 + signal.SIGTERM, out[-3000:]
    assert "continue with: deapnos run --resume" in out
    assert json.loads((run / "status.json").read_text())["status"] == "interrupted"
    before = hosts_that_trained(run)
    assert set(before) == {"node0", "node1", "node2"}
    two = hosts.hostfile(1, hosts=["node0", "node1"])
    rc, out = finish(on_node0(hosts, deapnos_run(hosts, "--resume", run, "--workers", 2, "--hostfile", two,
                                                 "--quiet")))
    assert rc == 0, out[-4000:]
    after = hosts_that_trained(run)
    assert after["node2"] == before["node2"] and after["node1"] > before["node1"]
    assert_same_as_serial(run, serial)


def test_hosts_with_another_environment_stop_the_run_at_start(config, tmp_path):
    """node1 loads every installed plugin (DEAPNOS_DISABLE_PLUGIN_AUTOLOAD is not set there);
    node2 has another deapnos installed at the same path."""
    other = tmp_path / "other"
    shutil.copytree(ROOT / "deapnos", other / "deapnos", ignore=shutil.ignore_patterns("__pycache__"))
    init = other / "deapnos" / "__init__.py"
    import deapnos
    init.write_text(init.read_text() + '\n__version__ += "+other"\n')
    h = namespace_hosts(env=AUTOLOAD_OFF, host_env={"node1": {"DEAPNOS_DISABLE_PLUGIN_AUTOLOAD": "0"}},
                        host_mounts={"node2": {ROOT / "deapnos": other / "deapnos"}})
    try:
        run = tmp_path / "run"
        rc, out = finish(on_node0(h, deapnos_run(h, "--config", config, "--run-dir", run, "--backend", "scoop",
                                                 "--workers", 3, "--hostfile", h.hostfile(1), "--quiet")))
        assert rc == 1, out[-4000:]
        error = next(line for line in out.splitlines() if line.startswith("error: the search failed"))
        assert "WorkerEnvironmentError" in error and "(node0, 'here')" in error
        assert "host node1: plugin autoloading is off (DEAPNOS_DISABLE_PLUGIN_AUTOLOAD=1) here, on there" in error
        assert "plugins loaded there but not here:" in error
        assert f"host node2: deapnos {deapnos.__version__} here, {deapnos.__version__}+other there" in error
        assert not any(r["event"] == "evaluation" for r in raw_log(run)) if (run / "evaluations.jsonl").exists() \
            else True
        # a worker that starts after the check (here: no wait at all) refuses its first task, or, when the
        # origin and node0 did all the work (a loaded machine), is checked when the search ends: either
        # way the run stops, and no result of node1 or node2 is in the log
        run2 = tmp_path / "run2"
        proc = on_node0(h, deapnos_run(h, "--config", config, "--run-dir", run2, "--backend", "scoop", "--workers", 3,
                                       "--hostfile", h.hostfile(1), "--quiet"),
                        env={**h.environ(env()), "DEAPNOS_WORKER_CHECK_WAIT": "0"})
        rc, out = finish(proc)
        assert rc == 1, out[-4000:]
        error = next(line for line in out.splitlines() if line.startswith("error: the search failed"))
        assert "WorkerEnvironmentError" in error and ("host node1: " in error or "host node2: " in error)
        assert not ({"node1", "node2"} & set(hosts_that_trained(run2))) if (run2 / "evaluations.jsonl").exists() \
            else True
    finally:
        h.close()
