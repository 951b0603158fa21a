"""The first hour with the command line (issue 14): plugins in every command, one list syntax, a
fast ``--help``, the run count and estimate of ``deapnos evaluate``, the schedule's horizon, docs that
match the quickstart preset."""
from __future__ import annotations

import argparse
import importlib.util
import re
import subprocess
import sys
import tomllib
import warnings
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "primitive_plugin"
PLUGIN_GENOME = "none ~ add(g, cube(slow_v_hat))"      # the example plugin's op and stateful operand


@pytest.fixture(autouse=True)
def _forget_example():
    yield
    for name in [m for m in sys.modules if m.startswith(("deapnos_slow_ema", "exported_"))]:
        del sys.modules[name]


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    """The example plugin installed the way pip lays it out: the module beside a dist-info folder
    whose entry_points.txt registers it in the ``deapnos`` group (no pip run: fast)."""
    site = tmp_path_factory.mktemp("site")
    (site / "deapnos_slow_ema.py").write_text((EXAMPLE / "deapnos_slow_ema.py").read_text())
    info = site / "deapnos_slow_ema-0.1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: deapnos-slow-ema\nVersion: 0.1.0\n")
    (info / "entry_points.txt").write_text("[deapnos]\nslow_ema = deapnos_slow_ema\n")
    return site


@pytest.fixture
def cli(monkeypatch, capsys):
    """``deapnos ARGS`` in this process (the example plugin is found through ``sys.path``, as after
    ``pip install``): ``(exit code, stdout, stderr)``."""
    from deapnos.cli import main
    monkeypatch.delenv("DEAPNOS_DISABLE_PLUGIN_AUTOLOAD", raising=False)

    def run(*args, autoload=True):
        if not autoload:
            monkeypatch.setenv("DEAPNOS_DISABLE_PLUGIN_AUTOLOAD", "1")
        try:
            rc = main([str(a) for a in args])
        finally:
            monkeypatch.delenv("DEAPNOS_DISABLE_PLUGIN_AUTOLOAD", raising=False)
        out = capsys.readouterr()
        return rc, out.out, out.err
    return run


@pytest.fixture
def installed(site, monkeypatch):
    monkeypatch.syspath_prepend(str(site))
    return site


# -- plugins in every command ---------------------------------------------------------------------

def _load(path: Path):
    spec = importlib.util.spec_from_file_location(f"exported_{path.stem}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _trained(make_opt, steps: int = 6) -> list[torch.Tensor]:
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(5, 7), torch.nn.Tanh(), torch.nn.Linear(7, 3))
    opt = make_opt(model.parameters())
    x, y = torch.randn(16, 5), torch.randint(0, 3, (16,))
    for _ in range(steps):
        opt.zero_grad()
        torch.nn.functional.cross_entropy(model(x), y).backward()
        opt.step()
    return [p.detach().clone() for p in model.parameters()]


def test_export_and_show_read_an_installed_plugin_primitive(installed, cli, tmp_path):
    out = tmp_path / "slow_cube.py"
    rc, _, err = cli("export", PLUGIN_GENOME, "-o", out)
    assert rc == 0, err
    rc, text, err = cli("show", PLUGIN_GENOME)
    assert rc == 0, err
    assert "text     : none ~ add(g, cube(slow_v_hat))" in text and "state    : slow_v" in text
    rc, text, err = cli("show", PLUGIN_GENOME, "--json")
    genome_file = tmp_path / "winner.json"
    genome_file.write_text(text)
    rc, text, err = cli("show", genome_file)
    assert rc == 0 and "text     : none ~ add(g, cube(slow_v_hat))" in text, err

    # the exported module reproduces EvolvedOptimizer bit for bit
    from deapnos import EvolvedOptimizer, Genome
    from deapnos.context import build_context
    from deapnos.plugins import genome_space
    space = build_context(eager=False).space
    with pytest.warns(DeprecationWarning, match="genome_space is deprecated"):   # the old name still works
        old_space, old_zoo = genome_space()
    assert Genome.load(genome_file, space=old_space).to_text() == Genome.load(genome_file, space=space).to_text()
    assert old_zoo.names() == build_context(eager=False).zoo.names()
    genome = Genome.load(genome_file, space=space)
    exported = _load(out)
    ours = _trained(lambda ps: EvolvedOptimizer(ps, genome, lr=0.05, total_steps=10, warmup_steps=2))
    theirs = _trained(lambda ps: exported.Optimizer(ps, lr=0.05, total_steps=10, warmup_steps=2))
    untrained = _trained(lambda ps: torch.optim.SGD(ps, lr=0.0))
    assert all(torch.equal(a, b) for a, b in zip(ours, theirs))
    assert not all(torch.equal(a, b) for a, b in zip(ours, untrained))     # it did train


def test_missing_plugin_is_a_one_line_error_and_p_loads_it(installed, cli, tmp_path):
    for command in (("show",), ("export", "-o", tmp_path / "x.py")):
        rc, _, err = cli(*command, PLUGIN_GENOME, autoload=False)
        assert rc == 2 and "Traceback" not in err
        lines = err.strip().splitlines()
        assert len(lines) == 1 and "unknown Tensor name 'cube'" in lines[0] and "-p MODULE" in lines[0]
        assert not (tmp_path / "x.py").exists()
    rc, text, err = cli("show", "-p", "slow_ema", PLUGIN_GENOME, autoload=False)
    assert rc == 0 and "cube" in text, err
    rc, text, err = cli("show", "-p", "deapnos_slow_ema,no:sphere", PLUGIN_GENOME, autoload=False)
    assert rc == 0, err


def test_report_and_status_load_installed_run_plugins_only(installed, monkeypatch, tmp_path):
    from deapnos import Genome
    from deapnos.plugins import installed_only
    from deapnos.report import _run_plugins
    monkeypatch.setenv("DEAPNOS_DISABLE_PLUGIN_AUTOLOAD", "1")
    marker = tmp_path / "IMPORTED"
    (tmp_path / "dnp_folder_named.py").write_text(f"open({str(marker)!r}, 'w').write('x')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    assert installed_only(["slow_ema", "deapnos_slow_ema", "dnp_folder_named", 3]) == ["slow_ema",
                                                                                        "deapnos_slow_ema"]
    cfg = {"run": {"plugins": ["slow_ema", "dnp_folder_named"]}}
    space, _ = _run_plugins(cfg, load_plugins=False)
    assert Genome.parse(PLUGIN_GENOME, space=space).to_text() == PLUGIN_GENOME
    assert not marker.exists()                      # a module the folder names: only when asked
    space, _ = _run_plugins({"run": {"plugins": []}}, load_plugins=False, extra=["slow_ema"])   # -p
    assert Genome.parse(PLUGIN_GENOME, space=space).to_text() == PLUGIN_GENOME
    _run_plugins(cfg, load_plugins=True)
    assert marker.exists()


def test_every_genome_command_takes_p():
    from deapnos.cli import COMMANDS, build_parser
    for name in ("show", "export", "report", "status", "evaluate", "plugins"):
        assert name in COMMANDS
        parser = build_parser(name)
        sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction)).choices[name]
        assert any(a.option_strings == ["-p"] for a in sub._actions), name


# -- one list syntax --------------------------------------------------------------------------------

def test_split_top_level_keeps_commas_inside_brackets():
    from deapnos.listargs import split_top_level
    assert split_top_level("adam, torch:SGD(momentum=0.9, nesterov=True),none ~ add(g, one)") == \
        ["adam", "torch:SGD(momentum=0.9, nesterov=True)", "none ~ add(g, one)"]
    assert split_top_level("a;b;c(x;y)", ";") == ["a", "b", "c(x;y)"]
    assert split_top_level(" , ") == []


def _parse(command: str, argv: list[str]):
    from deapnos.cli import build_parser
    return build_parser(command).parse_args([command, *argv])


def test_repeated_and_comma_separated_lists_are_the_same():
    a = _parse("evaluate", ["-O", "adam", "-O", "torch:SGD(momentum=0.9, nesterov=True)", "-t", "digits",
                            "-t", "ill-conditioned", "-p", "x", "-p", "y"])
    b = _parse("evaluate", ["-O", "adam,torch:SGD(momentum=0.9, nesterov=True)", "-t", "digits,ill-conditioned",
                            "-p", "x,y"])
    assert (a.optimizer, a.task, a.plugins) == (b.optimizer, b.task, b.plugins) == \
        (["adam", "torch:SGD(momentum=0.9, nesterov=True)"], ["digits", "ill-conditioned"], ["x", "y"])
    new = _parse("reproduce", ["-O", "opt4", "-O", "opt10", "--baseline", "torch:Adam,qhm", "-t", "digits"])
    old_opts = _parse("reproduce", ["--optimizers", "opt4,opt10"])
    assert new.optimizers == old_opts.optimizers == ["opt4", "opt10"] and new.task == ["digits"]
    with pytest.warns(DeprecationWarning, match="--baselines is deprecated; use --baseline"):
        old = _parse("reproduce", ["--baselines", "torch:Adam;qhm"])
    assert old.baselines == new.baselines == ["torch:Adam", "qhm"]


# -- a fast --help ----------------------------------------------------------------------------------

def test_help_imports_no_torch():
    code = ("import sys\nfrom deapnos.cli import build_parser, main\n"
            "for cmd in (None, 'show', 'export', 'report', 'status', 'evaluate', 'plugins'):\n"
            "    build_parser(cmd)\n"
            "    heavy = [m for m in ('torch', 'deap', 'numpy') if m in sys.modules]\n"
            "    assert not heavy, (cmd, heavy)\n"
            "try:\n    main(['--help'])\nexcept SystemExit:\n    pass\n"
            "print('torch' in sys.modules)\n")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert r.returncode == 0, r.stderr
    assert "COMMAND" in r.stdout and r.stdout.strip().splitlines()[-1] == "False"


# -- deapnos evaluate says what it will do ----------------------------------------------------------

def test_evaluate_estimate_is_runs_times_steps_times_step_time():
    from deapnos.evaluate.compare import DEFAULT_GRID, estimate_seconds, run_count
    from deapnos.evaluate.protocol import Budget, ProtocolConfig
    from deapnos.plugins import all_tasks, get_plugin_manager
    task = all_tasks(get_plugin_manager(["digits"]))["digits"]
    config = ProtocolConfig()
    b = Budget.of(task, config.for_task(task))
    assert run_count(1, 1, len(DEFAULT_GRID), 3) == 21
    seconds = estimate_seconds({"digits": task}, ["adam"], DEFAULT_GRID, 3, config, "cpu",
                               timer=lambda t, s, c, d: (2.0, 0.5))
    assert seconds == pytest.approx(21 * (2.0 + b.epochs * 0.5))


def test_evaluate_prints_runs_and_estimate_first(cli):
    rc, _, err = cli("evaluate", "-O", "adam,sgd", "--task", "digits", "--seeds", "1", "--lr", "0.01", "--epochs",
                     "1", "--step-scale", "0.1", "--device", "cpu", "--no-progress", "--threads", "1")
    assert rc == 0, err
    line = next(ln for ln in err.splitlines() if ln.startswith("deapnos evaluate:"))
    assert re.search(r"2 runs \(2 optimizer\(s\) x 1 LR\(s\) x 1 seed\(s\) x 1 task\(s\)\) on cpu, about \d+ s", line)


# -- the schedule's horizon -------------------------------------------------------------------------

@pytest.mark.parametrize("extra, warns", [(0, False), (1, True)])
def test_zoo_schedule_warns_only_past_total_steps(extra, warns):
    from deapnos import zoo
    w = torch.nn.Parameter(torch.ones(3))
    opt = torch.optim.SGD([w], lr=0.1)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        sched = zoo.schedule("lr1", opt, total_steps=100)
        for _ in range(100 + extra):
            w.grad = torch.ones(3)
            opt.step()
            sched.step()
    past = [c for c in caught if "stepped past total_steps" in str(c.message)]
    assert len(past) == (1 if warns else 0), [str(c.message) for c in caught]


# -- the docs match the quickstart preset -----------------------------------------------------------

def test_documented_quickstart_shape_matches_the_preset():
    cfg = tomllib.loads((ROOT / "deapnos" / "configs" / "quickstart.toml").read_text())
    s = cfg["search"]
    shape = (s["particles"], s["timesteps"], s["mutants"])
    tasks = set(s["task"])
    pattern = r"(\d+) particles × (\d+) timesteps × (\d+) mutants"
    for doc in ("docs/search.md", "README.md"):
        text = " ".join((ROOT / doc).read_text().split())
        found = re.findall(pattern, text)
        assert found, f"{doc} does not state the quickstart's shape"
        assert {tuple(map(int, f)) for f in found} == {shape}, (doc, found, shape)
    text = " ".join((ROOT / "docs" / "search.md").read_text().split())
    sentence = re.search(r"The quickstart \(the default config\) runs (.*?) with", text).group(1)
    assert set(re.findall(r"`([\w-]+)`", sentence)) == tasks, sentence
    row = re.search(r"\| particles × timesteps × mutants \| (\d+) × (\d+) × (\d+) \|", text)
    assert tuple(map(int, row.groups())) == shape
    row = re.search(r"\| tasks \| ([^|]*) \|", text)
    assert set(re.findall(r"`([\w-]+)`", row.group(1))) == tasks
    readme = " ".join((ROOT / "README.md").read_text().split())
    assert all(f"`{t}`" in readme for t in tasks)
    assert "DESIGN.md" not in (ROOT / "docs" / "space.md").read_text()
