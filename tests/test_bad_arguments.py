"""Every command, fed bad arguments, answers with one line on stderr and exit 2: never a traceback,
never a silent start.  Run in-process through the real CLI entry point (``deapnos.cli.main``)."""
from __future__ import annotations

import pytest

from deapnos.cli import COMMANDS, main

MISSING = "/nonexistent/deapnos-run"

BAD = [
    ("run", ["--log-level", "BOGUS"], "BOGUS"),
    ("run", ["--progress-interval", "-1"], "--progress-interval"),
    ("run", ["--progress-interval", "nan"], "--progress-interval"),
    ("run", ["--workers", "0"], "--workers"),
    ("run", ["--config", MISSING + ".toml"], "deapnos-run.toml"),
    ("run", ["--resume", MISSING], "deapnos-run"),
    ("run", ["search.no_such_field=3"], "no_such_field"),
    ("evaluate", ["-O", "adam", "--step-scale", "0"], "--step-scale"),
    ("evaluate", ["-O", "adam", "--step-scale", "-1"], "--step-scale"),
    ("evaluate", ["-O", "adam", "--epochs", "0"], "--epochs"),
    ("evaluate", ["-O", "adam", "--lr", "nan"], "--lr"),
    ("evaluate", ["-O", "adam", "--seeds", "0"], "--seeds"),
    ("evaluate", ["-O", "adam", "--out", "/proc/deapnos-x"], "/proc"),
    ("evaluate", ["-O", "no-such-optimizer"], "no-such-optimizer"),
    ("evaluate", ["-O", "adam", "--task", "no-such-task"], "no-such-task"),
    ("show", ["no-such-optimizer"], "no-such-optimizer"),
    ("show", ["none ~ bogus(g)"], "bogus"),
    ("export", ["adam", "-o", "x.py", "--class-name", "None"], "--class-name"),
    ("export", ["opt10", "-o", "x.py", "--class-name", "OperandContext"], "OperandContext"),
    ("export", ["no-such-optimizer", "-o", "x.py"], "no-such-optimizer"),
    ("report", [MISSING], "deapnos-run"),
    ("status", [MISSING], "deapnos-run"),
    ("reproduce", ["--step-scale", "0"], "--step-scale"),
    ("reproduce", ["--step-scale", "-1"], "--step-scale"),
    ("reproduce", ["--seeds", "0"], "--seeds"),
    ("reproduce", ["--tasks", "no-such-task"], "no-such-task"),
    ("plugins", ["--no-such-flag"], "--no-such-flag"),
    ("repair", [MISSING], "deapnos-run"),
    ("init", ["/proc/deapnos-workspace"], "/proc"),
]


@pytest.mark.parametrize("command,args,needle", BAD, ids=[f"{c}:{' '.join(a)}" for c, a, _ in BAD])
def test_bad_arguments_get_one_line_and_exit_2(command, args, needle, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)                 # nothing may be written where the test runs from
    try:
        rc = main([command, *args])
    except SystemExit as exc:                   # argparse's way out
        rc = exc.code
    out, err = capsys.readouterr()
    lines = [line for line in err.splitlines() if line.strip()]
    assert rc == 2, (rc, out, err)
    assert "Traceback" not in err + out
    assert len(lines) == 1, err
    assert needle in lines[0], (needle, err)
    assert not any(tmp_path.iterdir()), list(tmp_path.iterdir())


def test_the_table_covers_every_command():
    assert {c for c, _, _ in BAD} == set(COMMANDS)
