"""Map backends and the worker side: order, streaming results, device claims."""
from __future__ import annotations

import pytest
import torch

from deapnos import distributed as D


def _square(x):
    return x * x


def test_serial_map_streams_in_order():
    seen = []
    out = D.SerialBackend().map(_square, [1, 2, 3], on_result=lambda i, r: seen.append((i, r)))
    assert out == [1, 4, 9] and seen == [(0, 1), (1, 4), (2, 9)]


def test_toolbox_map_is_the_backend_map():
    backend = D.SerialBackend()
    tb = D.toolbox_with_map(backend)
    assert list(tb.map(_square, [2, 3])) == [4, 9]


def test_scoop_backend_needs_scoop():
    with pytest.raises(RuntimeError, match="python -m scoop"):
        D.make_backend("scoop")
    with pytest.raises(ValueError, match="serial, pool, scoop"):
        D.make_backend("mpi")


def test_each_worker_claims_one_gpu(monkeypatch, tmp_path):
    """Worker index (first free lock file of the launch) modulo the GPU count; set_device called."""
    monkeypatch.setenv("DEAPNOS_RUN_TOKEN", f"test-{tmp_path.name}")
    from deapnos.evaluate import worker
    monkeypatch.setattr(worker.tempfile, "gettempdir", lambda: str(tmp_path))
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    chosen = []
    monkeypatch.setattr(torch.cuda, "set_device", lambda k: chosen.append(k))
    assert [D.claim_device("auto") for _ in range(3)] == ["cuda:0", "cuda:1", "cuda:0"]
    assert chosen == [0, 1, 0]
    assert D.claim_device("auto", index=5) == "cuda:1"
    assert D.claim_device("cpu") == "cpu"


def test_no_gpu_means_cpu_unless_cuda_is_demanded(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert D.claim_device("auto") == "cpu"
    with pytest.raises(RuntimeError, match="no GPU"):
        D.claim_device("cuda")


def test_payload_is_plain_data():
    import json
    p = D.make_payload("none ~ g", "digits", 3, {"epochs": 2}, ["digits"], task_overrides={"epochs": 2})
    assert json.loads(json.dumps(p)) == p


def _scoop_backend_outside_scoop(stall_timeout: float) -> D.ScoopBackend:
    """A ScoopBackend without SCOOP, to drive its stall watchdog by hand (its map needs SCOOP)."""
    backend = object.__new__(D.ScoopBackend)
    backend.stall_timeout = stall_timeout
    backend.on_stall = None
    backend._pending, backend._slowest, backend._watchdog = 0, 0.0, None
    return backend


def test_stall_limit_is_the_timeout_or_three_slowest_evaluations():
    b = _scoop_backend_outside_scoop(20.0)
    assert b.stall_limit() == 20.0
    b._slowest = 9.0
    assert b.stall_limit() == 27.0
    assert _scoop_backend_outside_scoop(0.0).stall_limit() == 0.0


def test_the_watchdog_reports_a_stall_only_while_evaluations_are_out():
    import threading
    import time
    b = _scoop_backend_outside_scoop(0.5)
    called = threading.Event()
    messages = []
    b.on_stall = lambda m: (messages.append(m), called.set())
    b._last_result = time.monotonic() - 10
    b._pending = 0
    b._start_watchdog()
    assert not called.wait(1.5), "nothing was out, yet the watchdog fired"
    b._pending = 2
    assert called.wait(5)
    assert "no result from any SCOOP worker" in messages[0] and "2 evaluation(s) were out" in messages[0]
    assert "run.stall_timeout = 0.5 s" in messages[0]


def test_the_launcher_ends_a_job_that_wrote_its_outcome_but_hangs(tmp_path):
    import subprocess
    import sys
    import time
    from deapnos.run import wait_for_job
    from deapnos.search.store import RunStore
    store = RunStore(tmp_path / "run", create=True)
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"], process_group=0)
    store.write_status("failed", "no result from any SCOOP worker")
    t0 = time.monotonic()
    rc = wait_for_job(proc, store, grace=1.0)
    assert rc != 0 and proc.poll() is not None
    assert time.monotonic() - t0 < 30
