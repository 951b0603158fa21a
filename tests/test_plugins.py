"""The plugin manager: entry points, -p, the disable switch, clashes, errors, the example plugin, the CLI."""
from __future__ import annotations

import argparse
import importlib.metadata
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from deapnos import plugins
from deapnos.commands import plugins as plugins_command
from deapnos.commands.plugins import plugin_info
from deapnos.hookspecs import hookimpl
from deapnos.plugins import (DISABLE_AUTOLOAD_ENV, PluginError, all_tasks, build_space, fitness_tasks,
                             get_plugin_manager, integrity_checks, surrogates)
from deapnos.space import Genome, builtin_space

torch.set_num_threads(1)

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "primitive_plugin"
DEAPNOS_VERSION = importlib.metadata.version("deapnos")


@pytest.fixture(autouse=True)
def _clean(monkeypatch):
    monkeypatch.delenv(DISABLE_AUTOLOAD_ENV, raising=False)
    yield
    for name in [m for m in sys.modules if m.startswith(("deapnos_slow_ema", "dnp_test_"))]:
        del sys.modules[name]


def _module(tmp_path, monkeypatch, name, source):
    (tmp_path / f"{name}.py").write_text(textwrap.dedent(source))
    monkeypatch.syspath_prepend(str(tmp_path))
    return name


# -- discovery -------------------------------------------------------------------------------

def test_builtin_sphere_comes_through_the_entry_point_group():
    eps = {ep.name: ep for ep in importlib.metadata.entry_points(group="deapnos")}
    assert eps["sphere"].value == "deapnos_plugins.sphere"
    pm = get_plugin_manager(strict=False)
    src = pm.sources["sphere"]
    assert (src.origin, src.dist, src.version, src.module) == ("entry point", "deapnos", DEAPNOS_VERSION,
                                                              "deapnos_plugins.sphere")
    checks = integrity_checks(pm)
    assert checks["sphere"].plugin == "sphere"
    assert type(checks["sphere"]).__name__ == "ShiftedSphereCheck"


def test_framework_never_imports_the_builtin_plugins():
    for path in (ROOT / "deapnos").rglob("*.py"):
        text = path.read_text()
        assert "import deapnos_plugins" not in text and "from deapnos_plugins" not in text, path


@pytest.mark.parametrize("value", ["1", "true", "yes"])
def test_disable_autoload_env(monkeypatch, value):
    monkeypatch.setenv(DISABLE_AUTOLOAD_ENV, value)
    pm = get_plugin_manager()
    assert not pm.autoload and pm.list_name_plugin() == [] and integrity_checks(pm) == {}
    # built-ins come back when named: by entry-point name or by module
    for spec in ("sphere", "deapnos_plugins.sphere"):
        pm = get_plugin_manager([spec])
        assert pm.has_plugin("sphere") and pm.sources["sphere"].dist == "deapnos"
        assert list(integrity_checks(pm)) == ["sphere"]


@pytest.mark.parametrize("value", ["0", "", "false"])
def test_autoload_on_for_false_values(monkeypatch, value):
    monkeypatch.setenv(DISABLE_AUTOLOAD_ENV, value)
    assert get_plugin_manager(strict=False).has_plugin("sphere")


def test_autoload_argument_overrides_env(monkeypatch):
    monkeypatch.setenv(DISABLE_AUTOLOAD_ENV, "1")
    assert get_plugin_manager(autoload=True, strict=False).has_plugin("sphere")
    monkeypatch.delenv(DISABLE_AUTOLOAD_ENV)
    assert not get_plugin_manager(autoload=False).has_plugin("sphere")


def test_p_module_registers_a_module(tmp_path, monkeypatch):
    name = _module(tmp_path, monkeypatch, "dnp_test_local", """
        from deapnos.hookspecs import hookimpl
        from deapnos.evaluate.integrity import CheckResult, IntegrityCheck

        class Always(IntegrityCheck):
            name = "always"
            def check(self, genome):
                return CheckResult(True, reason="always")

        @hookimpl
        def deapnos_integrity_checks():
            return [Always()]
    """)
    pm = get_plugin_manager([name], autoload=False)
    assert pm.has_plugin(name) and pm.sources[name].origin == "-p"
    assert integrity_checks(pm)["always"].plugin == name
    # the same module twice is one plugin
    assert len(get_plugin_manager([name, name], autoload=False).list_name_plugin()) == 1


@pytest.mark.parametrize("spec", ["no:sphere", "no:deapnos_plugins.sphere"])
def test_p_no_blocks_a_plugin(spec):
    pm = get_plugin_manager([spec], strict=False)
    assert not pm.has_plugin("sphere") and "sphere" not in integrity_checks(pm)
    assert not get_plugin_manager([spec, "sphere"], autoload=False).has_plugin("sphere")


def test_missing_module_is_a_clear_error():
    with pytest.raises(PluginError, match="dnp_test_missing") as info:
        get_plugin_manager(["dnp_test_missing.sub"], autoload=False)
    assert info.value.plugin == "dnp_test_missing.sub"
    assert "no module named 'dnp_test_missing'" in str(info.value)
    pm = get_plugin_manager(["dnp_test_missing"], autoload=False, strict=False)
    assert "dnp_test_missing" in pm.failed
    row = {r["name"]: r for r in plugin_info(pm)}["dnp_test_missing"]
    assert "not loaded" in row["error"]


def test_plugin_raising_at_import_is_named(tmp_path, monkeypatch):
    name = _module(tmp_path, monkeypatch, "dnp_test_badimport", "raise RuntimeError('broken at import')\n")
    with pytest.raises(PluginError, match="broken at import") as info:
        get_plugin_manager([name], autoload=False)
    assert info.value.plugin == name


def test_plugin_with_unknown_hook_is_an_error(tmp_path, monkeypatch):
    name = _module(tmp_path, monkeypatch, "dnp_test_typo", """
        from deapnos.hookspecs import hookimpl
        @hookimpl
        def deapnos_integrity_check():
            return []
    """)
    with pytest.raises(PluginError, match="does not define") as info:
        get_plugin_manager([name], autoload=False)
    assert info.value.plugin == name
    pm = get_plugin_manager([name, "sphere"], autoload=False, strict=False)
    assert name in pm.failed and not pm.has_plugin(name) and pm.has_plugin("sphere")


def test_broken_entry_point_is_named_with_its_distribution(tmp_path, monkeypatch):
    _dist_info(tmp_path, "dnp-test-broken", "9.9", "[deapnos]\nbroken = dnp_test_nowhere\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(PluginError, match="dnp-test-broken 9.9") as info:
        get_plugin_manager(["broken"], autoload=False)
    assert info.value.plugin == "broken"
    pm = get_plugin_manager(strict=False)
    assert "broken" in pm.failed and pm.has_plugin("sphere")


# -- errors in hooks and clashes --------------------------------------------------------------

class _Checks:
    def __init__(self, *names, raise_=None):
        self.names, self.raise_ = names, raise_

    @hookimpl
    def deapnos_integrity_checks(self):
        if self.raise_:
            raise self.raise_
        from deapnos.evaluate.integrity import IntegrityCheck
        out = []
        for n in self.names:
            chk = IntegrityCheck()
            chk.name = n
            out.append(chk)
        return out


class _Tasks:
    def __init__(self, surrogates=(), tasks=()):
        self.s, self.t = surrogates, tasks

    @hookimpl
    def deapnos_surrogates(self):
        return [SimpleNamespace(name=n) for n in self.s]

    @hookimpl
    def deapnos_fitness_tasks(self):
        return [SimpleNamespace(name=n) for n in self.t]


def _pm(**named):
    pm = get_plugin_manager(autoload=False)
    for name, obj in named.items():
        pm.register_plugin(obj, name)
    return pm


def test_hook_exception_names_the_plugin():
    pm = _pm(good=_Checks("a"), bad=_Checks(raise_=KeyError("oops")))
    with pytest.raises(PluginError, match="deapnos_integrity_checks raised KeyError") as info:
        integrity_checks(pm)
    assert info.value.plugin == "bad"
    rows = {r["name"]: r for r in plugin_info(pm)}
    assert rows["good"]["checks"] == ["a"] and rows["good"]["error"] is None
    assert "KeyError" in rows["bad"]["error"]


def test_check_name_clash_names_both_plugins():
    pm = _pm(first=_Checks("dup", "x"), second=_Checks("dup"))
    with pytest.raises(PluginError) as info:
        integrity_checks(pm)
    msg = str(info.value)
    assert "'dup'" in msg and "'first'" in msg and "'second'" in msg
    assert info.value.plugin == "second"


def test_task_clashes():
    pm = _pm(one=_Tasks(surrogates=["tiny"], tasks=["big"]), two=_Tasks(surrogates=["tiny2"], tasks=["big"]))
    assert set(surrogates(pm)) == {"tiny", "tiny2"}
    with pytest.raises(PluginError, match="fitness task 'big' is provided by both plugin 'one' and plugin 'two'"):
        fitness_tasks(pm)
    pm = _pm(one=_Tasks(surrogates=["same"]), two=_Tasks(tasks=["same"]))
    assert set(fitness_tasks(pm)) == {"same"} and set(surrogates(pm)) == {"same"}
    with pytest.raises(PluginError, match="'one' and plugin 'two'"):
        all_tasks(pm)
    # one plugin may offer a task both ways
    pm = _pm(one=_Tasks(surrogates=["digits"], tasks=["digits", "cifar"]))
    assert set(all_tasks(pm)) == {"digits", "cifar"}
    assert all_tasks(pm)["digits"].plugin == "one"


def test_nameless_item_is_an_error():
    class Bad:
        @hookimpl
        def deapnos_surrogates(self):
            return [object()]
    with pytest.raises(PluginError, match="without a name") as info:
        surrogates(_pm(bad=Bad()))
    assert info.value.plugin == "bad"


class _Prims:
    def __init__(self, op="cube", operand=None, raise_=None):
        self.op, self.operand, self.raise_ = op, operand, raise_

    @hookimpl
    def deapnos_add_primitives(self, space):
        if self.raise_:
            raise self.raise_
        if self.op:
            space.add_unary(self.op, lambda x, out=None: torch.mul(x, 2.0, out=out))
        if self.operand:
            space.add_operand(self.operand, lambda ctx, out: ctx.g)


def test_primitive_clash_names_both_plugins():
    pm = _pm(alpha=_Prims("twice"), beta=_Prims("twice"))
    with pytest.raises(PluginError) as info:
        build_space(pm)
    msg = str(info.value)
    assert "plugin 'beta'" in msg and "already defined (by alpha)" in msg and "'twice'" in msg
    # a clash with the paper's own names names deapnos
    with pytest.raises(PluginError, match=r"'sqrt' is already defined \(by deapnos\)"):
        build_space(_pm(gamma=_Prims("sqrt")))
    with pytest.raises(PluginError, match="'delta'.*ValueError: no") as info:
        build_space(_pm(delta=_Prims(raise_=ValueError("no"))))
    assert info.value.plugin == "delta"


def test_build_space_records_provenance_and_sets_no_default():
    pm = _pm(alpha=_Prims("twice", operand="g_copy"))
    space = build_space(pm)
    assert space.provenance["unary:twice"] == "alpha" and space.provenance["operand:g_copy"] == "alpha"
    genome = Genome.parse("none ~ twice(g_copy)", space=space)
    assert genome.space is space
    # no per-plugin wrapper is left on the space, and the plain paper space did not change
    assert "add_unary" not in vars(space)
    assert "twice" not in builtin_space().unary


def test_notify_runs_every_observer_and_names_the_failing_one(caplog):
    seen = []

    class Good:
        @hookimpl
        def deapnos_run_finished(self, run_dir, hall_of_fame):
            seen.append(run_dir)

    class Bad:
        @hookimpl
        def deapnos_run_finished(self, run_dir):
            raise OSError("disk full")
    pm = _pm(good=Good(), bad=Bad())
    errors = plugins.notify(pm, "deapnos_run_finished", run_dir="r", hall_of_fame=[])
    assert seen == ["r"] and [e.plugin for e in errors] == ["bad"]
    assert "bad" in caplog.text and "disk full" in caplog.text


# -- the example primitive plugin, installed --------------------------------------------------

def _dist_info(site: Path, dist: str, version: str, entry_points: str) -> None:
    info = site / f"{dist.replace('-', '_')}-{version}.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: {version}\n")
    (info / "entry_points.txt").write_text(entry_points)


@pytest.fixture(scope="module")
def example_site(tmp_path_factory):
    """The example plugin installed with pip into a private target directory (the venv is shared and
    stays untouched).  Without a working pip/setuptools, the same layout by hand: a dist-info
    directory with ``entry_points.txt`` beside the module."""
    root = tmp_path_factory.mktemp("example")
    src, site = root / "src", root / "site"
    shutil.copytree(EXAMPLE, src, ignore=shutil.ignore_patterns("build", "*.egg-info", "__pycache__"))
    proc = subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "--no-build-isolation",
                           "--no-index", "--disable-pip-version-check", "-q", "--target", str(site), str(src)],
                          capture_output=True, text=True, timeout=300)
    if proc.returncode != 0:
        site.mkdir(exist_ok=True)
        shutil.copy(src / "deapnos_slow_ema.py", site)
        _dist_info(site, "deapnos-slow-ema", "0.1.0", "[deapnos]\nslow_ema = deapnos_slow_ema\n")
    return site


@pytest.fixture
def example(example_site, monkeypatch):
    monkeypatch.syspath_prepend(str(example_site))
    return example_site


def test_example_plugin_is_discovered_through_entry_points(example):
    eps = {ep.name: ep for ep in importlib.metadata.entry_points(group="deapnos")}
    assert eps["slow_ema"].dist.metadata["Name"] == "deapnos-slow-ema"
    pm = get_plugin_manager(strict=False)
    src = pm.sources["slow_ema"]
    assert (src.origin, src.dist, src.version) == ("entry point", "deapnos-slow-ema", "0.1.0")
    row = {r["name"]: r for r in plugin_info(pm)}["slow_ema"]
    assert row["primitives"] == ["state slow_v", "operand slow_v_hat", "op cube"]
    assert row["error"] is None
    # off with the switch, back with -p
    assert not get_plugin_manager(autoload=False).has_plugin("slow_ema")
    assert get_plugin_manager(["slow_ema"], autoload=False).has_plugin("slow_ema")


def test_example_genome_parses_compiles_and_steps(example):
    from deapnos.optim import EvolvedOptimizer, compile_genome
    space = build_space(get_plugin_manager(["slow_ema"], autoload=False))
    assert space.provenance["operand:slow_v_hat"] == "slow_ema"
    genome = Genome.parse("none ~ div(cube(slow_v_hat), add(g2, one))", space=space)
    assert genome.to_text() == "none ~ div(cube(slow_v_hat), add(g2, one))"
    assert genome.state_needed() == ["slow_v"]
    assert compile_genome(genome, 10).states == ("slow_v",)
    w = torch.nn.Parameter(torch.tensor([1.0, -2.0, 3.0]))
    opt = EvolvedOptimizer([w], genome, lr=0.1, total_steps=10)
    g1, g2 = torch.tensor([1.0, 2.0, -1.0]), torch.tensor([0.5, -1.0, 2.0])
    before = w.detach().clone()
    for grad in (g1, g2):
        w.grad = grad.clone()
        opt.step()
    slow_v = 0.999 * (0.001 * g1) + 0.001 * g2
    torch.testing.assert_close(opt.state[w]["slow_v"], slow_v)
    assert set(opt.state[w]) == {"slow_v"}
    # no warm-up: step 0 runs at the peak LR, so the weights moved
    assert not torch.equal(w.detach(), before)
    sd = opt.state_dict()
    assert "slow_v" in sd["state"][0]


def test_example_genome_through_the_sphere_check(example):
    from deapnos_plugins.sphere import ShiftedSphereCheck
    space = build_space(get_plugin_manager(["slow_ema"], autoload=False))
    for text in ("none ~ div(slow_v_hat, sqrt(s_hat))", "nest ~ cube(slow_v_hat)", "none ~ cube(g)"):
        genome = Genome.parse(text, space=space)
        rb = ShiftedSphereCheck().check(genome)
        rs = ShiftedSphereCheck(sequential=True).check(genome)
        assert (rb.passed, rb.flip, rb.lr) == (rs.passed, rs.flip, rs.lr), text


def test_deapnos_evaluate_reads_a_genome_of_plugin_primitives(example, tmp_path, monkeypatch, capsys):
    """The optimizer specs of `deapnos evaluate` are read in the space of the plugins it loads."""
    import json
    from deapnos.cli import main
    monkeypatch.setenv("DEAPNOS_DISABLE_PLUGIN_AUTOLOAD", "1")
    rc = main(["evaluate", "-p", "slow_ema", "-p", "digits", "-O", "adam", "-O", "none ~ div(slow_v_hat, sqrt(s_hat))",
               "--task", "digits", "--seeds", "1", "--lr", "0.01", "--epochs", "1", "--step-scale", "0.1",
               "--device", "cpu", "--no-progress", "--out", str(tmp_path)])
    assert rc == 0, capsys.readouterr().err
    results = json.loads((tmp_path / "results.json").read_text())
    names = json.dumps(results)
    assert "slow_v_hat" in names
    # without the plugin the same text is an error naming the unknown primitive
    rc = main(["evaluate", "-p", "digits", "-O", "none ~ div(slow_v_hat, sqrt(s_hat))", "--task", "digits",
               "--seeds", "1", "--lr", "0.01", "--epochs", "1", "--no-progress"])
    assert rc == 2 and "slow_v_hat" in capsys.readouterr().err


def test_example_clash_names_both_plugins(example):
    pm = get_plugin_manager(["slow_ema"], autoload=False)
    pm.register_plugin(_Prims("cube"), "copycat")
    with pytest.raises(PluginError) as info:
        build_space(pm)
    assert info.value.plugin == "copycat"
    assert "unary op 'cube' is already defined (by slow_ema)" in str(info.value)
    pm = get_plugin_manager(["slow_ema"], autoload=False)
    pm.register_plugin(_Prims(op=None, operand="slow_v_hat"), "copycat")
    with pytest.raises(PluginError, match=r"plugin 'copycat'.*'slow_v_hat' is already defined \(by slow_ema\)"):
        build_space(pm)


# -- the command ------------------------------------------------------------------------------

def _run(argv, capsys):
    parser = argparse.ArgumentParser()
    plugins_command.configure_parser(parser)
    rc = plugins_command.run_command(parser.parse_args(argv))
    return rc, capsys.readouterr().out


def _row(out, name):
    for line in out.splitlines():
        if line.split() and line.split()[0] == name:
            return line.split()
    raise AssertionError(f"no row {name!r} in:\n{out}")


def test_plugins_command_lists_sphere(capsys):
    rc, out = _run([], capsys)
    assert out.splitlines()[0].split()[:3] == ["PLUGIN", "DISTRIBUTION", "VERSION"]
    assert _row(out, "sphere")[:5] == ["sphere", "deapnos", DEAPNOS_VERSION, "entry", "point"]
    assert "integrity checks: sphere" in out


def test_plugins_command_p_and_disable(capsys, monkeypatch, example):
    monkeypatch.setenv(DISABLE_AUTOLOAD_ENV, "1")
    rc, out = _run(["-p", "sphere", "-p", "slow_ema"], capsys)
    assert rc == 0 and "is set" in out
    assert _row(out, "slow_ema")[1:3] == ["deapnos-slow-ema", "0.1.0"]
    assert "primitives: state slow_v, operand slow_v_hat, op cube" in out
    rc, out = _run(["-p", "dnp_test_missing"], capsys)
    assert rc == 1 and "ERROR:" in _row(out, "dnp_test_missing")
    rc, out = _run(["--json"], capsys)
    import json
    assert json.loads(out) == {"autoload": False, "plugins": []}


def test_deapnos_cli_plugins(capsys):
    from deapnos import cli
    rc = cli.main(["plugins"])
    out = capsys.readouterr().out
    assert rc == 0, out
    assert _row(out, "sphere")[1:3] == ["deapnos", DEAPNOS_VERSION]


def test_the_command_s_old_names_in_deapnos_plugins_still_work_and_warn(capsys):
    # the rows and the table: the command's own functions (deapnos.plugin_table, below both)
    for name in ("plugin_info", "describe", "format_table"):
        with pytest.warns(DeprecationWarning, match=f"deapnos.plugins.{name} is deprecated: use deapnos.commands"):
            assert getattr(plugins, name) is getattr(plugins_command, name)
    with pytest.warns(DeprecationWarning):
        from deapnos.plugins import plugin_info as old
    assert old is plugin_info
    # the command itself sits above deapnos.plugins: its old names there are stand-ins that list the same
    for name in ("configure_parser", "run_command", "main"):
        with pytest.warns(DeprecationWarning, match=f"deapnos.plugins.{name} is deprecated: use deapnos.commands"):
            assert callable(getattr(plugins, name))
    with pytest.warns(DeprecationWarning):
        old_main = plugins.main
    assert (old_main(["--json"]), capsys.readouterr().out) == \
        (plugins_command.main(["--json"]), capsys.readouterr().out)
    with pytest.raises(AttributeError, match="no attribute 'nothing_here'"):
        plugins.nothing_here  # noqa: B018


def test_python_m_deapnos_plugins_in_a_fresh_process(example):
    env = {"PYTHONPATH": str(example), "PATH": "/usr/bin:/bin", DISABLE_AUTOLOAD_ENV: "0"}
    proc = subprocess.run([sys.executable, "-m", "deapnos.plugins"], capture_output=True, text=True, env=env,
                          timeout=120)
    assert _row(proc.stdout, "sphere")[1:3] == ["deapnos", DEAPNOS_VERSION], proc.stderr
    assert _row(proc.stdout, "slow_ema")[1:3] == ["deapnos-slow-ema", "0.1.0"]
