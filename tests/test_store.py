"""The run folder: log appended and flushed at once, atomic checkpoints, resume bookkeeping."""
from __future__ import annotations

import json
import os
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
    doc = json.loads((tmp_path / "r" / CHECKPOINT).read_text())      # plain JSON, nothing to unpickle
    assert doc["state"] == {"timestep": 3}
    (tmp_path / "r" / CHECKPOINT).write_text(json.dumps({**doc, "version": 999}))
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
    store.write_status("failed", "boom", traceback="tb")
    st = store.read_status()
    assert st["status"] == "failed" and st["error"] == "boom" and st["traceback"] == "tb"
    with pytest.raises(ValueError, match="status.json: unknown field detail"):     # declared fields only
        store.write_status("failed", "boom", detail=1)
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


# -- issue 8: torn tails, JSON checkpoints, one writer ---------------------------------------------

@pytest.mark.parametrize("tail,kept", [
    (b"", 2),                                   # complete: nothing cut
    (b'{"seq": 2, "a":', 2),                     # torn mid-record
    (b'{"seq": 2, "a":' + b"\0" * 64, 2),        # torn, NUL-padded
    (b"\0" * 4096, 2),                           # only NULs after the last line
    (b'{"seq": 2}', 3),                          # a whole record that lost its newline: kept
    (b'{"seq": 2, "a": [1,\n\0\0\n', 2),          # several broken lines at the end
])
def test_repair_tail_cuts_back_to_the_last_complete_line(tmp_path, tail, kept):
    from deapnos.search.store import repair_tail
    path = tmp_path / "log.jsonl"
    head = b'{"seq": 0}\n{"seq": 1}\n'
    path.write_bytes(head + tail)
    repair_tail(path)
    data = path.read_bytes()
    assert data.endswith(b"\n") and b"\0" not in data
    assert [json.loads(x)["seq"] for x in data.splitlines()] == list(range(kept))
    assert data.startswith(head)


def test_append_after_a_torn_line_starts_a_line_of_its_own(tmp_path):
    store = RunStore(tmp_path / "r", create=True)
    for i in range(3):
        store.append({"event": "evaluation", "seq": i})
    store.close()
    log = tmp_path / "r" / LOG
    log.write_bytes(log.read_bytes()[:-7])             # the last record torn
    again = RunStore(tmp_path / "r")
    assert again.append({"event": "evaluation", "seq": 2})
    assert again.append({"event": "evaluation", "seq": 3})
    again.close()
    assert [r["seq"] for r in read_jsonl(log)] == [0, 1, 2, 3]


def test_a_truncated_checkpoint_names_the_file_and_the_way_out(tmp_path):
    store = RunStore(tmp_path / "r", create=True)
    store.save_checkpoint({"timestep": 2}, config={"sha256": "x", "fields": {}})
    path = tmp_path / "r" / CHECKPOINT
    path.write_bytes(path.read_bytes()[:20])
    with pytest.raises(StoreError, match=r"checkpoint.json is damaged.*move it away.*--resume"):
        store.load_checkpoint()


HOLD = """
import sys, time
from deapnos.search.store import FolderLock
FolderLock(sys.argv[1]).acquire("a test holder")
print("held", flush=True)
time.sleep(60)
"""


def test_folder_lock_names_its_holder_and_dies_with_it(tmp_path):
    import signal
    import socket

    from deapnos.search.store import FolderLock, RunLockError
    lock_path = tmp_path / "run.lock"
    holder = subprocess.Popen([sys.executable, "-c", HOLD, str(lock_path)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(RunLockError) as err:
            FolderLock(lock_path).acquire("a second run")
        assert f"pid {holder.pid} on host {socket.gethostname()}" in str(err.value)
        assert "a test holder" in str(err.value)
        holder.send_signal(signal.SIGKILL)
        holder.wait(timeout=10)
        lock = FolderLock(lock_path).acquire("after the holder died", wait=5)   # no stale lock
        lock.release()
    finally:
        if holder.poll() is None:
            holder.kill()
            holder.wait()
