"""Issue 19: configs as hostile input: one line, exit 2, no traceback, no hang, bounded memory."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from deapnos.search.config import ConfigError, read_toml
from deapnos.search.config_file import MAX_CONFIG_BYTES, MAX_DEPTH

ROOT = Path(__file__).resolve().parents[1]


def hostile(tmp_path: Path, kind: str) -> Path:
    if kind == "device":
        return Path("/dev/zero")                     # endless: read whole, it killed the process at 24 GiB
    if kind == "fifo":
        path = tmp_path / "fifo.toml"
        os.mkfifo(path)                              # nobody writes: an open without O_NONBLOCK hangs
        return path
    if kind == "folder":
        return tmp_path
    path = tmp_path / f"{kind}.toml"
    if kind == "latin1":
        path.write_bytes('[run]\nname = "caf\xe9"\n'.encode("latin-1"))
    elif kind == "nested":
        path.write_text("a = " + "[" * 10_000 + "]" * 10_000 + "\n")
    elif kind == "deep-tables":
        path.write_text("a = " + "[" * (MAX_DEPTH + 2) + "]" * (MAX_DEPTH + 2) + "\n")
    elif kind == "huge":
        path.write_text("# " + "x" * MAX_CONFIG_BYTES + "\n")
    return path


CASES = {"device": "not a regular file", "fifo": "not a regular file", "folder": "not a regular file",
         "latin1": "not UTF-8 text at byte 17", "nested": f"nested more than {MAX_DEPTH} deep",
         "deep-tables": f"nested more than {MAX_DEPTH} deep", "huge": f"more than {MAX_CONFIG_BYTES}"}


@pytest.mark.parametrize("kind", sorted(CASES))
def test_read_toml_refuses_hostile_files_with_one_line(tmp_path, kind):
    if kind == "device" and not Path("/dev/zero").exists():
        pytest.skip("no /dev/zero")
    with pytest.raises(ConfigError) as err:
        read_toml(hostile(tmp_path, kind))
    assert CASES[kind] in str(err.value) and "\n" not in str(err.value)


def cli(*args, timeout=60):
    env = {**os.environ, "DEAPNOS_DISABLE_PLUGIN_AUTOLOAD": "1"}
    return subprocess.run([sys.executable, "-m", "deapnos.cli", *map(str, args)], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=timeout)


@pytest.mark.parametrize("kind", ["fifo", "nested", "latin1"])
def test_run_with_a_hostile_config_is_one_line_and_exit_2(tmp_path, kind):
    r = cli("run", "--config", hostile(tmp_path, kind), "--run-dir", tmp_path / "run", timeout=60)
    assert r.returncode == 2, r.stderr
    assert "Traceback" not in r.stderr and len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert CASES[kind] in r.stderr


@pytest.mark.parametrize("command", [("report", "{run}", "--no-plots"), ("run", "--resume", "{run}")])
def test_a_run_folder_whose_config_is_deeply_nested_is_one_line(tmp_path, command):
    run = tmp_path / "run"
    run.mkdir()
    (run / "config.toml").write_text("a = " + "[" * 10_000 + "]" * 10_000 + "\n")
    r = cli(*(c.format(run=run) for c in command))
    assert r.returncode == 2, r.stderr
    assert "Traceback" not in r.stderr and len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert "config.toml" in r.stderr and "nested" in r.stderr
