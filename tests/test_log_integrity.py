"""Issue 19: the evaluation log checked end to end, the checkpoint checked for meaning, `deapnos
repair`, and disk faults (an injected ENOSPC) that end a run with one line and lose nothing."""
from __future__ import annotations

import errno
import json
import os

import pytest

from deapnos.search.config import config_fingerprint, config_from_dict
from deapnos.search.store import (CHECKPOINT, LOG, QUARANTINE, STATUS, DiskError, RunStore, StoreError,
                                  check_free_space, config_id, read_jsonl)


def fp(**protocol):
    return config_fingerprint(config_from_dict({"protocol": protocol} if protocol else {}))


def make_run(tmp_path, n=6, fingerprint=None, state=None):
    """A run folder with a log of ``n`` records (seq 0..n-1) under ``fingerprint``'s config and,
    with ``state``, a checkpoint of it."""
    fingerprint = fingerprint or fp()
    run = tmp_path / "run"
    store = RunStore(run, create=True)
    (run / "config.toml").write_text("", encoding="utf-8")
    store.bind_config(fingerprint)
    for i in range(n):
        store.append({"event": "evaluation", "seq": i, "rep": f"k{i}", "task": "t", "seed": 0, "status": "ok",
                      "timestep": i // 2, "fitness": 0.5})
    store.save_checkpoint(state, config=fingerprint)
    store.close()
    return run


def lines(run):
    return (run / LOG).read_text(encoding="utf-8").splitlines()


def rewrite(run, rows):
    (run / LOG).write_text("".join(r + "\n" for r in rows), encoding="utf-8")


# -- the log, end to end ---------------------------------------------------------------------------

def test_records_carry_the_config_id(tmp_path):
    run = make_run(tmp_path)
    ids = {json.loads(x)["config_id"] for x in lines(run)}
    assert ids == {config_id(fp())} and len(config_id(fp())) == 16
    assert config_id(fp()) != config_id(fp(step_scale=0.5))


def test_a_corrupt_line_mid_log_names_the_line_and_the_way_out(tmp_path):
    run = make_run(tmp_path)
    rows = lines(run)
    rows[4] = "garbage"                                     # sed -i '5s/.*/garbage/'
    rewrite(run, rows)
    with pytest.raises(StoreError) as err:
        RunStore(run).read_log()
    text = str(err.value)
    assert "evaluations.jsonl line 5: not JSON" in text and f"deapnos repair {run}" in text
    assert "\n" not in text
    with pytest.raises(StoreError, match="line 5"):          # an append never lands after it either
        RunStore(run).append({"event": "evaluation", "seq": 99})


def test_only_a_torn_last_line_is_passed_over(tmp_path):
    run = make_run(tmp_path)
    with open(run / LOG, "a", encoding="utf-8") as fh:
        fh.write('{"event":"evaluation","seq":6,"st')
    assert [r["seq"] for r in RunStore(run).read_log()] == list(range(6))
    rewrite(run, lines(run)[:-1] + ['{"event":"evaluation","seq":6,"st', lines(run)[-2]])
    with pytest.raises(StoreError, match="line 7: not JSON"):   # torn, but not last: refused
        RunStore(run).read_log()


def test_a_duplicated_record_is_refused(tmp_path):
    run = make_run(tmp_path)
    rows = lines(run)
    rewrite(run, rows + [rows[3]])
    with pytest.raises(StoreError, match=r"line 7: seq 3 again \(first on line 4\).*deapnos repair"):
        RunStore(run).read_log()


@pytest.mark.parametrize("record,needle", [
    ({"event": "evaluation"}, "field 'seq' is None"),
    ({"event": "evaluation", "seq": -1}, "field 'seq' is -1"),
    ({"seq": 7}, "no 'event' field"),
    ({"event": "evaluation", "seq": 7, "config_id": 3}, "field 'config_id' is 3"),
])
def test_records_outside_the_schema_are_refused(tmp_path, record, needle):
    run = make_run(tmp_path)
    rewrite(run, lines(run) + [json.dumps(record)])
    with pytest.raises(StoreError, match="line 7: " + needle.replace("(", r"\(")):
        RunStore(run).read_log()


def test_a_log_never_mixes_two_configs_even_without_the_checkpoint(tmp_path):
    run = make_run(tmp_path)
    os.replace(run / CHECKPOINT, tmp_path / "moved-away.json")     # what the damaged-checkpoint hint says
    store = RunStore(run)
    with pytest.raises(StoreError, match=r"line 1: written under another config.*undo the edit"):
        store.bind_config(fp(step_scale=0.5))
    with pytest.raises(StoreError):                                 # nor a first checkpoint of the new one
        RunStore(run).save_checkpoint(None, config=fp(step_scale=0.5))
    assert not (run / CHECKPOINT).exists()
    RunStore(run).bind_config(fp())                                 # the same config resumes
    # two configs inside the log itself
    other = json.loads(lines(run)[0])
    other.update(seq=6, config_id=config_id(fp(step_scale=0.5)))
    rewrite(run, lines(run) + [json.dumps(other)])
    with pytest.raises(StoreError, match=r"line 7: written under another config .*as line 1"):
        RunStore(run).read_log()


# -- the checkpoint, for meaning --------------------------------------------------------------------

GOOD = {"phase": "evolve", "timestep": 2, "seq": 6, "counts": {"evaluated": 6, "cached": 0, "resumed": 0}}


@pytest.mark.parametrize("change,needle", [
    ({"phase": "bogus"}, "state.phase is 'bogus'"),
    ({"timestep": 99}, r"state.timestep is 99, not in 0..5 \(search.timesteps\)"),
    ({"seq": -5}, "state.seq is -5"),
    ({"seq": 9}, "no record with seq 6"),
    ({"seq": 3, "timestep": 3}, "holds seq 3 from timestep 1"),
    ({"counts": {"evaluated": 50}}, "counts says 50"),
])
def test_an_impossible_checkpoint_value_is_refused(tmp_path, change, needle):
    run = make_run(tmp_path, state=dict(GOOD))
    assert RunStore(run).read_checkpoint()["state"]["seq"] == 6        # the unchanged one loads
    doc = json.loads((run / CHECKPOINT).read_text())
    doc["state"].update(change)
    doc["config"]["fields"]["search.timesteps"] = 5
    (run / CHECKPOINT).write_text(json.dumps(doc))
    with pytest.raises(StoreError) as err:
        RunStore(run).read_checkpoint()
    assert "\n" not in str(err.value) and "move it away" in str(err.value)
    import re
    assert re.search(needle, str(err.value)), str(err.value)


def test_records_past_the_checkpoint_from_a_crash_are_fine(tmp_path):
    run = make_run(tmp_path, n=9, state={"phase": "evolve", "timestep": 2, "seq": 6})
    # seqs 6..8 (timestep 3 and 4 by make_run's i // 2) were logged after the checkpoint; a gap there too
    rewrite(run, [x for x in lines(run) if json.loads(x)["seq"] != 7])
    assert RunStore(run).read_checkpoint()["state"]["timestep"] == 2


# -- deapnos repair -------------------------------------------------------------------------------------

def test_repair_quarantines_bad_lines_and_moves_a_disagreeing_checkpoint(tmp_path, capsys):
    from deapnos.cli import main
    run = make_run(tmp_path, state=dict(GOOD))
    rows = lines(run)
    rewrite(run, rows[:4] + ["garbage"] + rows[5:] + [rows[2]])
    assert main(["repair", str(run)]) == 0
    out = capsys.readouterr().out
    assert "evaluations.jsonl line 5: not JSON" in out and "line 7: seq 2 again" in out
    assert [r["seq"] for r in RunStore(run).read_log()] == [0, 1, 2, 3, 5]
    quarantined = read_jsonl(run / QUARANTINE)
    assert [(q["line"], q["text"]) for q in quarantined] == [(5, "garbage"), (7, rows[2])]
    assert not (run / CHECKPOINT).exists() and (run / (CHECKPOINT + ".damaged")).exists()   # seq 4 is gone
    assert main(["repair", str(run)]) == 0 and "nothing to repair" in capsys.readouterr().out
    assert main(["repair", str(tmp_path / "nowhere")]) == 2
    assert capsys.readouterr().err.count("\n") == 1


# -- disk faults -----------------------------------------------------------------------------------------

def enospc_in(folder, after: int = 0):
    """An ``os.write`` that fails with ENOSPC for files under ``folder`` once ``after`` writes there
    succeeded (the disk fills); other files are written as usual."""
    real, seen = os.write, {"n": 0}

    def write(fd, data):
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            target = ""
        if target.startswith(str(folder)):
            seen["n"] += 1
            if seen["n"] > after:
                raise OSError(errno.ENOSPC, "No space left on device")
        return real(fd, data)
    return write


@pytest.mark.skipif(not os.path.isdir("/proc/self/fd"), reason="needs /proc to tell the files apart")
def test_a_full_disk_gives_one_line_and_leaves_no_torn_line(tmp_path, monkeypatch):
    run = make_run(tmp_path)
    store = RunStore(run)
    store.bind_config(fp())
    store.write_status("running", pid=1, host="h", progress={"plan": {"x": 1}})
    monkeypatch.setattr(os, "write", enospc_in(run))
    with pytest.raises(DiskError) as err:
        store.append({"event": "evaluation", "seq": 6, "rep": "k", "task": "t", "seed": 0})
    text = str(err.value)
    assert "evaluations.jsonl" in text and "disk is full" in text and f"deapnos run --resume {run}" in text
    with pytest.raises(DiskError, match="checkpoint.json: the disk is full"):
        store.save_checkpoint({"phase": "evolve", "timestep": 3, "seq": 7}, config=fp())
    store.write_status("failed", text)          # lands all the same, in status.json's own bytes
    store.close()                               # never raises
    monkeypatch.undo()
    assert json.loads((run / STATUS).read_text())["status"] == "failed"
    assert [r["seq"] for r in RunStore(run).read_log()] == list(range(6))     # nothing torn, nothing lost
    again = RunStore(run)                       # space freed: the record goes in
    assert again.append({"event": "evaluation", "seq": 6, "rep": "k", "task": "t", "seed": 0})
    again.close()
    assert [r["seq"] for r in RunStore(run).read_log()] == list(range(7))


def test_a_partial_write_is_cut_back(tmp_path, monkeypatch):
    run = make_run(tmp_path)
    real = os.write
    calls = {"n": 0}

    def half_then_full(fd, data):
        calls["n"] += 1
        if calls["n"] == 1:
            return real(fd, bytes(data)[:10])   # the disk fills mid-line
        raise OSError(errno.ENOSPC, "No space left on device")
    store = RunStore(run)
    store.read_log()
    monkeypatch.setattr(os, "write", half_then_full)
    with pytest.raises(DiskError):
        store.append({"event": "evaluation", "seq": 6, "rep": "k", "task": "t", "seed": 0})
    monkeypatch.undo()
    assert (run / LOG).read_text().endswith("}\n")


def test_no_run_starts_on_a_nearly_full_disk(tmp_path):
    with pytest.raises(DiskError, match=r"MiB free on its disk.*free space or choose another folder"):
        check_free_space(tmp_path, need=1 << 62)
    check_free_space(tmp_path, need=1)
