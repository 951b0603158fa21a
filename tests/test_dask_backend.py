"""The example dask backend plugin (examples/dask_backend): a map backend shipped as a plugin.

Installed as ``pip install examples/dask_backend`` would install it (a dist-info whose entry_points.txt
registers ``dask`` in group ``deapnos``), ``deapnos run --backend dask`` on a local cluster of 2 worker
processes writes the same evaluation log as the serial run.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("distributed")

from test_search_run import ROOT, env, log_rows, reference, run_in_process, tiny_config  # noqa: E402,F401

EXAMPLE = ROOT / "examples" / "dask_backend"


def _dist_info(site: Path) -> Path:
    info = site / "deapnos_dask-0.1.0.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: deapnos-dask\nVersion: 0.1.0\n")
    (info / "entry_points.txt").write_text("[deapnos]\ndask = deapnos_dask\n")
    return site


@pytest.fixture
def installed_dask(tmp_path, monkeypatch):
    """The plugin's module and its dist-info on sys.path (and on PYTHONPATH for subprocesses)."""
    site = _dist_info(tmp_path / "site")
    monkeypatch.syspath_prepend(str(EXAMPLE))
    monkeypatch.syspath_prepend(str(site))
    yield os.pathsep.join([str(site), str(EXAMPLE)])
    sys.modules.pop("deapnos_dask", None)


def test_example_declares_the_entry_point_and_deapnos_does_not_know_dask():
    text = (EXAMPLE / "pyproject.toml").read_text()
    assert "[project.entry-points.deapnos]" in text and 'dask = "deapnos_dask"' in text
    assert (EXAMPLE / "README.md").exists()
    for path in (ROOT / "deapnos").rglob("*.py"):
        assert "dask" not in path.read_text().lower(), path


def test_the_plugin_provides_the_backend(installed_dask, monkeypatch):
    from deapnos.context import build_context
    from deapnos.distributed import BACKENDS
    from deapnos.commands.plugins import plugin_info
    from deapnos.plugins import get_plugin_manager
    ctx = build_context(["dask"], autoload=False)       # the installed entry point, named as with -p
    assert ctx.backends.names()[:4] == ["serial", "pool", "scoop", "dask"] and ctx.backends.owner("dask") == "dask"
    assert "dask" not in BACKENDS                       # the built-in registry is never changed
    assert ctx.pm.sources["dask"].dist == "deapnos-dask" and ctx.pm.sources["dask"].version == "0.1.0"
    row = {r["name"]: r for r in plugin_info(get_plugin_manager(["dask"], autoload=False))}["dask"]
    assert row["backends"] == ["dask"] and row["sections"] == ["dask"] and row["error"] is None
    # its config section and its command-line option reach the factory through the context
    import argparse
    ctx.configure({"dask": {"scheduler": "tcp://example:1"}}, argparse.Namespace(dask_scheduler=None))
    assert ctx.sections["dask"].scheduler == "tcp://example:1"
    from deapnos.search.config import ConfigError
    with pytest.raises(ConfigError, match=r"plugin\.dask\.schedular.*scheduler"):
        ctx.configure({"dask": {"schedular": "x"}})


@pytest.mark.slow   # a LocalCluster start-up and a whole search: about 50 s
def test_dask_run_writes_the_serial_log(reference, installed_dask, tmp_path):  # noqa: F811 (fixture)
    """On a LocalCluster of 2 worker processes: the same evaluation log as the serial run."""
    run_dir = tmp_path / "dask"
    e = env()
    e["PYTHONPATH"] = installed_dask + os.pathsep + e["PYTHONPATH"]
    e.pop("DEAPNOS_DASK_SCHEDULER", None)
    proc = subprocess.run([sys.executable, "-m", "deapnos.cli", "run", "--config",
                           str(tiny_config(tmp_path, extra_plugins=["dask"])), "--run-dir", str(run_dir),
                           "--backend", "dask", "--workers", "2", "--no-report", "--quiet"],
                          cwd=ROOT, env=e, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    # the dask run's config lists one more plugin, so its records carry another config id
    rows = [{k: v for k, v in r.items() if k != "config_id"} for r in log_rows(run_dir)]
    assert rows == [{k: v for k, v in r.items() if k != "config_id"} for r in log_rows(reference)]
    assert len(rows) > 10
    logged = [json.loads(line) for line in (run_dir / "evaluations.jsonl").read_text().splitlines() if line]
    assert len({r["worker"] for r in logged if r.get("worker")}) >= 2     # both dask worker processes evaluated


def test_unknown_backend_lists_the_known_ones(installed_dask, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("DEAPNOS_DISABLE_PLUGIN_AUTOLOAD", "1")
    rc = run_in_process(tmp_path / "run", tiny_config(tmp_path, extra_plugins=["dask"]), "--backend", "nosuch")
    err = capsys.readouterr().err
    assert rc == 2                                   # a bad config: refused before any run folder or worker
    assert not (tmp_path / "run").exists()
    assert "run.backend = 'nosuch'" in err and "known: serial, pool, scoop, dask" in err, err
