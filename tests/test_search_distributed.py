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
    monkeypatch.setattr(D.tempfile, "gettempdir", lambda: str(tmp_path))
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
