"""Run folders and dataset folders are data, never code; names from them stay inside them; one-line
errors for what a user can get wrong (issue 8).

A finished run of the tiny config (tests/test_search_run.py) is copied, then one file at a time is
replaced by a malicious pickle, a crafted label, a link out of the folder or a damaged file, and
`deapnos run --resume` and `deapnos report` are pointed at it: nothing outside the folder changes,
no pickle is ever executed, and each failure is one line that names the file and the way out.
"""
from __future__ import annotations

import json
import os
import pickle
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from test_search_run import ROOT, env, log_rows, run_in_process, tiny_config

PAYLOAD_FILES = ("checkpoint.json", "checkpoint.pkl", "evaluations.jsonl", "particles.jsonl", "hall_of_fame.json",
                 "elimination.json", "summary.json", "status.json", "validation.json", "config.toml")


class Payload:
    """Unpickling this runs ``touch MARKER``: what a crafted pickle does."""

    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def evil_pickle(marker: Path, protocol: int = 2) -> bytes:
    return pickle.dumps({b"data": Payload(marker), b"labels": [0], "state": Payload(marker)}, protocol=protocol)


def cli(*args, cwd=None, timeout=180, extra_env=None):
    e = env()
    e.update(extra_env or {})
    return subprocess.run([sys.executable, "-m", "deapnos.cli", *map(str, args)], cwd=cwd or ROOT, env=e,
                          capture_output=True, text=True, timeout=timeout)


def last_line(r) -> str:
    lines = [ln for ln in r.stderr.strip().splitlines() if ln.strip()]
    return lines[-1] if lines else ""


def assert_one_line_error(r, *needles):
    assert r.returncode != 0, r.stdout + r.stderr
    assert "Traceback" not in r.stderr, r.stderr
    line = last_line(r)
    for needle in needles:
        assert needle in line, (needle, r.stderr)


def tree(path: Path) -> dict:
    """Every file under ``path`` with its size and mtime (to see that nothing changed)."""
    out = {}
    for p in sorted(Path(path).rglob("*")):
        try:
            st = p.lstat()
        except FileNotFoundError:
            continue
        out[str(p)] = (st.st_size, st.st_mtime_ns)
    return out


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    """A finished tiny run (serial, no report), made once."""
    tmp = tmp_path_factory.mktemp("finished")
    old = os.environ.get("DEAPNOS_DISABLE_PLUGIN_AUTOLOAD")
    os.environ["DEAPNOS_DISABLE_PLUGIN_AUTOLOAD"] = "1"
    try:
        assert run_in_process(tmp / "run", tiny_config(tmp)) == 0
    finally:
        if old is None:
            os.environ.pop("DEAPNOS_DISABLE_PLUGIN_AUTOLOAD", None)
        else:
            os.environ["DEAPNOS_DISABLE_PLUGIN_AUTOLOAD"] = old
    return tmp / "run"


def copy_run(finished: Path, dest: Path) -> Path:
    shutil.copytree(finished, dest, ignore=shutil.ignore_patterns("*.lock"))
    return dest


# ----------------------------------------------------------------------------------------------
# 1. no pickle: run folders and dataset folders
# ----------------------------------------------------------------------------------------------

def test_nothing_under_the_package_unpickles_without_restriction():
    """No ``pickle.load(s)``/``Unpickler`` of a user's file: the CIFAR loaders use the restricted
    unpickler, torch.load only with weights_only=True."""
    offenders = []
    for base in ("deapnos", "plugins"):
        for path in (ROOT / base).rglob("*.py"):
            text = path.read_text(encoding="utf-8")
            for n, line in enumerate(text.splitlines(), 1):
                code = line.split("#", 1)[0]
                if re.search(r"\bpickle\.loads?\(|\bcloudpickle\b|\bdill\b|\bshelve\b|\bmarshal\.loads?\(", code):
                    offenders.append(f"{path}:{n}: {line.strip()}")
                if re.search(r"\bpickle\.Unpickler\b", code) and "class CifarUnpickler" not in code:
                    offenders.append(f"{path}:{n}: {line.strip()}")
                if "torch.load(" in code and "weights_only=True" not in code:
                    offenders.append(f"{path}:{n}: {line.strip()}")
    assert not offenders, offenders


@pytest.mark.parametrize("name", PAYLOAD_FILES)
def test_a_malicious_pickle_in_a_run_folder_is_never_executed(finished, tmp_path, name, monkeypatch):
    monkeypatch.setenv("DEAPNOS_DISABLE_PLUGIN_AUTOLOAD", "1")
    run_dir = copy_run(finished, tmp_path / "run")
    marker = tmp_path / "PWNED"
    if name == "checkpoint.pkl":
        (run_dir / "checkpoint.json").unlink()
    (run_dir / name).write_bytes(evil_pickle(marker))
    from deapnos.report import main as report_main
    from deapnos.run import main as run_main
    rc_report = report_main([str(run_dir), "--no-plots"])
    rc_resume = run_main(["--resume", str(run_dir)])
    assert not marker.exists(), f"a pickle planted as {name} was executed"
    if name in ("checkpoint.json", "checkpoint.pkl", "config.toml"):
        assert rc_resume != 0                      # refused, with a message (tested below)
    if name in ("hall_of_fame.json", "elimination.json", "summary.json", "status.json", "config.toml"):
        assert rc_report != 0


def test_legacy_pickled_checkpoint_is_refused_and_the_way_out_works(finished, tmp_path):
    run_dir = copy_run(finished, tmp_path / "run")
    marker = tmp_path / "PWNED"
    (run_dir / "checkpoint.json").unlink()
    (run_dir / "checkpoint.pkl").write_bytes(evil_pickle(marker))
    r = cli("run", "--resume", run_dir)
    assert_one_line_error(r, "checkpoint.pkl", "never loaded", f"mv {run_dir / 'checkpoint.pkl'}",
                          f"deapnos run --resume {run_dir}")
    assert not marker.exists()
    # the way out the message gives: move it away and resume; the search replays from the log
    before = log_rows(run_dir)
    (run_dir / "checkpoint.pkl").rename(run_dir / "checkpoint.pkl.old")
    r = cli("run", "--resume", run_dir)
    assert r.returncode == 0, r.stderr
    assert log_rows(run_dir) == before                   # nothing logged twice, nothing trained again
    assert json.loads((run_dir / "summary.json").read_text())["evaluator"]["evaluated"] == 0
    assert not marker.exists()


def test_malicious_cifar_files_are_never_executed(tmp_path):
    """`deapnos evaluate --task cifar10-convnet --data-path X` with crafted batches: refused by the
    restricted unpickler before anything runs (the issue's reproduction)."""
    marker = tmp_path / "PWNED"
    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        (folder / name).write_bytes(evil_pickle(marker, protocol=4))
    r = cli("evaluate", "-p", "cifar10", "-O", "adam", "--task", "cifar10-convnet", "--data-path", folder,
            "--seeds", "1", "--epochs", "1", "--no-progress")
    assert r.returncode != 0
    assert "Traceback" not in r.stderr, r.stderr
    assert "is not allowed in a CIFAR file" in r.stderr and "data_batch_1" in r.stderr, r.stderr
    assert not marker.exists()
    # every loader of the python-format CIFAR files (CIFAR-10 and CIFAR-100) refuses them
    from deapnos.evaluate.tasks import TaskDataError
    from deapnos_plugins.cifar10 import read_cifar_file
    for name, key in (("data_batch_1", b"labels"), ("test_batch", b"labels")):
        for proto in (0, 2, 4, 5):
            (folder / name).write_bytes(evil_pickle(marker, protocol=proto))
            with pytest.raises(TaskDataError, match="not allowed"):
                read_cifar_file(folder / name, key)
    assert not marker.exists()


def test_real_cifar_pickles_still_load(tmp_path):
    """The restricted unpickler reads the official layout, written with every pickle protocol
    (numpy arrays, lists of ints, bytes)."""
    import numpy as np

    from fake_data import write_cifar10
    from deapnos_plugins.cifar10 import read_cifar10, read_cifar_file
    folder = write_cifar10(tmp_path)
    x, y, xt, yt = read_cifar10(folder, test=True)
    assert x.shape == (120, 3, 32, 32) and xt.shape == (20, 3, 32, 32)
    data = np.arange(2 * 3072, dtype=np.uint8).reshape(2, 3072)
    for proto in range(0, pickle.HIGHEST_PROTOCOL + 1):
        p = tmp_path / f"b{proto}"
        p.write_bytes(pickle.dumps({b"data": data, b"labels": np.array([3, 4]), b"filenames": [b"a", b"b"]},
                                   protocol=proto))
        xs, ys = read_cifar_file(p)
        assert (xs.reshape(2, 3072) == data).all() and ys.tolist() == [3, 4]


# ----------------------------------------------------------------------------------------------
# 2. everything stays inside the run folder
# ----------------------------------------------------------------------------------------------

@pytest.mark.parametrize("label", ["../../x", "ABSOLUTE", "a/b", "..", "c1.py", "c 1", ""])
def test_crafted_labels_write_nothing_outside_the_folder(finished, tmp_path, label):
    outside = tmp_path / "outside"
    outside.mkdir()
    run_dir = copy_run(finished, tmp_path / "a" / "b" / "run")
    if label == "ABSOLUTE":
        label = str(outside / "x")
    elim = json.loads((run_dir / "elimination.json").read_text())
    row = next(r for r in elim["leaderboard"] if not r["baseline"])
    old = row["label"]
    row["label"] = label
    for rung in elim["rungs"]:
        for e in rung["entries"]:
            if e["label"] == old:
                e["label"] = label
    (run_dir / "elimination.json").write_text(json.dumps(elim))
    before = tree(tmp_path)
    r = cli("report", run_dir, "--no-plots")
    assert_one_line_error(r, "elimination.json", "not a plain name")
    after = tree(tmp_path)
    assert after == before, set(after) ^ set(before)


def test_links_in_a_run_folder_are_never_written_through(finished, tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    victim = outside / "victim.txt"
    victim.write_text("precious")
    run_dir = copy_run(finished, tmp_path / "run")
    (run_dir / "report.md").symlink_to(victim)
    r = cli("report", run_dir, "--no-plots")
    assert_one_line_error(r, "report.md", "symbolic link")
    (run_dir / "report.md").unlink()
    (run_dir / "winners").symlink_to(outside, target_is_directory=True)
    r = cli("report", run_dir, "--no-plots")
    assert_one_line_error(r, "winners", "not a link")
    (run_dir / "winners").unlink()
    (run_dir / "evaluations.jsonl").rename(tmp_path / "log.jsonl")
    (run_dir / "evaluations.jsonl").symlink_to(victim)
    r = cli("run", "--resume", run_dir)
    assert_one_line_error(r, "evaluations.jsonl", "symbolic link")
    assert victim.read_text() == "precious" and sorted(os.listdir(outside)) == ["victim.txt"]


@pytest.mark.parametrize("name", ["../x", "/tmp/deapnos-abs-name", "a/b", "..", "x.y"])
def test_run_names_that_are_not_plain_are_rejected(tmp_path, name):
    out = tmp_path / "a" / "runs"
    out.mkdir(parents=True)
    cfg = tiny_config(tmp_path)
    before = tree(tmp_path)
    r = cli("run", "--config", cfg, f"run.output_dir={out}", f'run.name="{name}"')
    assert_one_line_error(r, "run.name")
    assert r.returncode == 2
    assert tree(tmp_path) == before
    assert not Path("/tmp/deapnos-abs-name").exists()


EVIL_PLUGIN = "from pathlib import Path\nPath({marker!r}).write_text('imported')\n"


def test_report_imports_no_plugin_unless_asked(finished, tmp_path):
    marker = tmp_path / "IMPORTED"
    mods = tmp_path / "mods"
    mods.mkdir()
    (mods / "evil_report_plugin.py").write_text(EVIL_PLUGIN.format(marker=str(marker)))
    run_dir = copy_run(finished, tmp_path / "run")
    cfg = (run_dir / "config.toml").read_text()
    cfg = re.sub(r'plugins = \[[^\]]*\]', 'plugins = ["evil_report_plugin"]', cfg, count=1)
    (run_dir / "config.toml").write_text(cfg)
    extra = {"PYTHONPATH": f"{mods}{os.pathsep}{ROOT}"}
    r = cli("report", run_dir, "--no-plots", extra_env=extra)
    assert r.returncode == 0, r.stderr
    assert not marker.exists(), "deapnos report imported a module named by the run folder"
    assert (run_dir / "report.md").exists()
    r = cli("report", run_dir, "--no-plots", "--load-plugins", extra_env=extra)
    assert marker.exists()                        # the explicit flag does import them


# ----------------------------------------------------------------------------------------------
# 6. one-line errors
# ----------------------------------------------------------------------------------------------

def test_genome_json_errors_are_one_line(tmp_path):
    deep = tmp_path / "deep.json"
    nest = "[" * 1000 + "]" * 1000
    deep.write_text('{"format": "deapnos.genome", "version": 1, "momentum": "none", "flip": false, '
                    f'"update": {nest}, "schedule": "one"}}')
    r = cli("show", deep)
    assert_one_line_error(r, "deep.json", "nested too deeply")
    boolean = tmp_path / "bool.json"
    boolean.write_text('{"format": "deapnos.genome", "version": true, "momentum": "none", "flip": false, '
                       '"update": "g", "schedule": "one"}')
    r = cli("show", boolean)
    assert_one_line_error(r, "bool.json", "'version'", "True")
    r = cli("show", "/dev/zero", timeout=30)
    assert_one_line_error(r, "/dev/zero", "not a regular file")


def test_export_refuses_a_class_name_that_cannot_import(tmp_path):
    out = tmp_path / "none_opt.py"
    r = cli("export", "adam", "-o", out, "--class-name", "none")
    assert_one_line_error(r, "--class-name", "'None'")
    assert not out.exists()
    r = cli("export", "adam", "-o", out, "--class-name", "my-opt")
    assert r.returncode == 0, r.stderr
    compile(out.read_text(), str(out), "exec")
    # a class named like one of the module's own helpers would shadow it and break step()
    helper = tmp_path / "shadow.py"
    r = cli("export", "opt10", "-o", helper, "--class-name", "OperandContext")
    assert_one_line_error(r, "'OperandContext'", "helper", "--class-name")
    assert not helper.exists()


@pytest.mark.parametrize("name,content,needles", [
    ("hall_of_fame.json", "[{\"rank\": 1,", ["hall_of_fame.json", "damaged"]),
    ("hall_of_fame.json", "{\"a\": 1}", ["hall_of_fame.json", "expected a JSON array"]),
    ("hall_of_fame.json", "[1, 2]", ["hall_of_fame.json", "entry 0"]),
    ("elimination.json", "{\"leaderboard\": 3}", ["elimination.json", "'leaderboard'"]),
    ("elimination.json", "\x00\x00\x00", ["elimination.json", "damaged"]),
    ("summary.json", "nan nan", ["summary.json", "damaged"]),
    ("status.json", "[]", ["status.json", "expected a JSON object"]),
    ("config.toml", "[run\nname = 3", ["config.toml", "not valid TOML"]),
    ("config.toml", "\xff\xfe garbage", ["config.toml", "not valid TOML"]),
    ("evaluations.jsonl", "[1, 2, 3]\n", ["evaluations.jsonl line 1", "not a JSON object"]),
    ("evaluations.jsonl", "{\"event\": \"evaluation\", \"seq\": \"x\"}\n", ["evaluations.jsonl line 1", "'seq'"]),
    ("particles.jsonl", "{\"timestep\": [1], \"particle\": 0}\n", ["particles.jsonl line 1", "'timestep'"]),
])
def test_a_damaged_run_file_gives_report_a_one_line_error(finished, tmp_path, name, content, needles):
    run_dir = copy_run(finished, tmp_path / "run")
    (run_dir / name).write_bytes(content.encode("latin-1"))
    r = cli("report", run_dir, "--no-plots")
    assert_one_line_error(r, *needles)
    assert r.returncode == 2


def test_resume_errors_are_one_line(finished, tmp_path):
    run_dir = copy_run(finished, tmp_path / "run")
    # a log line that is JSON of the wrong shape
    log = run_dir / "evaluations.jsonl"
    good = log.read_text()
    log.write_text(good + '{"event": "evaluation", "rep": "k", "task": 3, "seed": 0}\n')
    r = cli("run", "--resume", run_dir)
    assert_one_line_error(r, "evaluations.jsonl line", "'task'")
    log.write_text(good)
    # a truncated checkpoint
    ck = run_dir / "checkpoint.json"
    full = ck.read_bytes()
    ck.write_bytes(full[: len(full) // 2])
    r = cli("run", "--resume", run_dir)
    assert_one_line_error(r, str(ck), "damaged", f"mv {ck}", "deapnos run --resume")
    ck.write_bytes(full)
    # a checkpoint state of the wrong shape
    doc = json.loads(full)
    doc["state"]["timestep"] = "three"
    ck.write_text(json.dumps(doc))
    r = cli("run", "--resume", run_dir)
    assert_one_line_error(r, str(ck), "state.timestep")
    ck.write_bytes(full)


def test_run_dir_and_hostfile_errors_are_one_line(tmp_path):
    a_file = tmp_path / "file"
    a_file.write_text("x")
    cfg = tiny_config(tmp_path)
    r = cli("run", "--config", cfg, "--run-dir", a_file)
    assert_one_line_error(r, str(a_file), "is a file, not a folder")
    r = cli("run", "--config", cfg, "--run-dir", a_file / "sub")
    assert_one_line_error(r, str(a_file / "sub"), "cannot create")
    r = cli("run", "--resume", a_file)
    assert_one_line_error(r, str(a_file), "not a folder")
    missing = tmp_path / "hosts.txt"
    r = cli("run", "--config", cfg, "--backend", "scoop", "--hostfile", missing, "--run-dir", tmp_path / "r")
    assert_one_line_error(r, "--hostfile", str(missing), "no such file", "hostname workers")
    assert "--resume" not in r.stderr
    assert not (tmp_path / "r").exists()
    missing.write_text("node1 four cores\n")
    r = cli("run", "--config", cfg, "--backend", "scoop", "--hostfile", missing, "--run-dir", tmp_path / "r")
    assert_one_line_error(r, "--hostfile", "line 1")
    r = cli("run", "--config", cfg, "--hostfile", missing, "--run-dir", tmp_path / "r")
    assert_one_line_error(r, "--hostfile", "--backend scoop")


def test_a_changed_config_is_refused_on_resume_but_backend_and_workers_may_change(finished, tmp_path):
    run_dir = copy_run(finished, tmp_path / "run")
    text = (run_dir / "config.toml").read_text()
    (run_dir / "config.toml").write_text(text.replace("mutants = 2", "mutants = 3").replace("seed = 5", "seed = 6"))
    r = cli("run", "--resume", run_dir)
    assert_one_line_error(r, "config.toml", "search.mutants: 2 -> 3", "run.seed: 5 -> 6", "deapnos run --config")
    assert r.returncode == 2
    (run_dir / "config.toml").write_text(text)
    r = cli("run", "--resume", run_dir, "--backend", "pool", "--workers", "3", "run.torch_threads=1")
    assert r.returncode == 0, r.stderr
    assert 'backend = "pool"' in (run_dir / "config.toml").read_text()
    r = cli("run", "--resume", run_dir, "search.mutants=3")
    assert_one_line_error(r, "only run.backend", "search.mutants=3")
