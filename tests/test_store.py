"""The run folder: log appended and flushed at once, atomic checkpoints, resume bookkeeping."""
from __future__ import annotations

import json
import os
import pickle
import subprocess
import sys

import pytest

from deapnos.search.store import (CHECKPOINT, LOG, RunStore, StoreError, atomic_write_text, new_run_dir,
                                  read_jsonl)


def test_log_lines_are_on_disk_at_once(tmp_path):
    store = RunStore(tmp_path / "r", create=True)
    store.append({"event": "evaluation", "seq": 0, "key": "k", "task": "t", "seed": 0, "status": "ok"})
    # another reader sees the line before the store is closed (flushed at once)
    with open(tmp_path / "r" / LOG, encoding="utf-8") as fh:
        assert json.loads(fh.readline())["seq"] == 0
    store.close()


def test_records_survive_a_sigkilled_writer(tmp_path):
    code = (
        "import os, sys, signal\n"
        "from deapnos.search.store import RunStore\n"
        f"s = RunStore({str(tmp_path / 'r')!r}, create=True)\n"
        "for i in range(5):\n"
        "    s.append({'event': 'evaluation', 'seq': i, 'rep': 'k%d' % i, 'task': 't', 'seed': 0})\n"
        "os.kill(os.getpid(), signal.SIGKILL)\n")
    proc = subprocess.run([sys.executable, "-c", code])
    assert proc.returncode == -9
    assert [r["seq"] for r in RunStore(tmp_path / "r").read_log()] == [0, 1, 2, 3, 4]


def test_torn_last_line_is_skipped(tmp_path):
    path = tmp_path / "x.jsonl"
    path.write_text('{"a": 1}\n{"a": 2}\n{"a": ', encoding="utf-8")
    assert read_jsonl(path) == [{"a": 1}, {"a": 2}]


def test_seq_already_logged_is_not_written_again(tmp_path):
    store = RunStore(tmp_path / "r", create=True)
    assert store.append({"seq": 3, "event": "evaluation"})
    store.close()
    again = RunStore(tmp_path / "r")
    assert not again.append({"seq": 3, "event": "evaluation"})
    assert again.append({"seq": 4, "event": "evaluation"})
    again.close()
    assert [r["seq"] for r in read_jsonl(tmp_path / "r" / LOG)] == [3, 4]


def test_result_cache_from_the_log(tmp_path):
    store = RunStore(tmp_path / "r", create=True)
    store.append({"event": "evaluation", "seq": 0, "key": "a", "rep": "A", "task": "t", "seed": 1, "fitness": 0.5})
    store.append({"event": "rejected", "seq": 1, "genome": "none ~ g", "status": "rejected"})
    store.append({"event": "evaluation", "seq": 2, "key": "b", "rep": "A", "task": "t", "seed": 1, "fitness": 0.9})
    cache = store.result_cache()
    assert set(cache) == {("A", "t", 1)}
    assert cache[("A", "t", 1)]["fitness"] == 0.5     # the first answer wins
    store.close()


def test_checkpoint_is_atomic_and_versioned(tmp_path):
    store = RunStore(tmp_path / "r", create=True)
    assert store.load_checkpoint() is None
    store.save_checkpoint({"timestep": 2})
    assert store.load_checkpoint() == {"timestep": 2}
    store.save_checkpoint({"timestep": 3})
    assert store.load_checkpoint() == {"timestep": 3}
    assert sorted(os.listdir(tmp_path / "r")) == [CHECKPOINT]      # no temporary file left behind
    (tmp_path / "r" / CHECKPOINT).write_bytes(pickle.dumps({"version": 999, "state": None}))
    with pytest.raises(StoreError, match="version"):
        store.load_checkpoint()


def test_atomic_write_replaces_whole_files(tmp_path):
    path = tmp_path / "f.json"
    atomic_write_text(path, "old")
    atomic_write_text(path, "new")
    assert path.read_text() == "new"


def test_status_and_json(tmp_path):
    store = RunStore(tmp_path / "r", create=True)
    assert store.read_status() is None
    store.write_status("failed", "boom", detail=1)
    st = store.read_status()
    assert st["status"] == "failed" and st["error"] == "boom" and st["detail"] == 1
    store.write_json("hall_of_fame.json", [{"rank": 1}])
    assert store.read_json("hall_of_fame.json") == [{"rank": 1}]


def test_particles_rows_and_new_run_dirs(tmp_path):
    store = RunStore(tmp_path / "r", create=True)
    store.append_particles([{"timestep": 0, "particle": 0}, {"timestep": 0, "particle": 1}])
    assert len(store.read_particles()) == 2
    a, b = new_run_dir(tmp_path / "runs", "x"), new_run_dir(tmp_path / "runs", "x")
    assert a != b and a.is_dir() and b.is_dir()
    with pytest.raises(StoreError):
        RunStore(tmp_path / "missing")


def test_replayed_particle_rows_are_not_repeated(tmp_path):
    store = RunStore(tmp_path / "r", create=True)
    store.append_particles([{"timestep": 1, "particle": 0, "fitness": 0.5}])
    store.close()
    again = RunStore(tmp_path / "r")
    again.append_particles([{"timestep": 1, "particle": 0, "fitness": 0.5}, {"timestep": 1, "particle": 1}])
    assert [(r["timestep"], r["particle"]) for r in again.read_particles()] == [(1, 0), (1, 1)]
