"""One registry pattern for named things; plugins extend a run's copies through pluggy hooks."""
from __future__ import annotations

import argparse
from dataclasses import dataclass
from types import SimpleNamespace

import pytest

from deapnos import zoo
from deapnos.context import Context, build_context
from deapnos.distributed import BACKENDS, SerialBackend, make_backend
from deapnos.hookspecs import hookimpl
from deapnos.commands.plugins import plugin_info
from deapnos.plugins import PluginError, add_options, all_tasks, get_plugin_manager, notify
from deapnos.registry import Registry, RegistryClash, UnknownNameError
from deapnos.search.config import ConfigError, config_from_dict


# -- the Registry itself -------------------------------------------------------------------------

def test_register_get_names_owner_and_copy():
    reg: Registry[int] = Registry("widget")
    reg.register("one", 1)

    @reg.register("two", plugin="p")
    def two():
        return 2
    assert reg.names() == ["one", "two"] and reg.names("t*") == ["two"]
    assert reg.get("two") is two and reg.owner("two") == "p" and reg.owner("one") == "deapnos"
    with pytest.raises(RegistryClash) as info:
        reg.register("one", 11, plugin="q")
    assert info.value.owners == ("deapnos", "q") and "'deapnos' and 'q'" in str(info.value)
    copy = reg.copy()
    copy.register("three", 3, plugin="q")
    assert "three" in copy and "three" not in reg and len(reg) == 2


def test_unknown_name_is_a_keyerror_and_valueerror_listing_the_known_names():
    reg: Registry[int] = Registry("widget")
    for i, name in enumerate(("alpha", "beta")):
        reg.register(name, i)
    with pytest.raises(UnknownNameError) as info:
        reg.get("alpah")
    assert isinstance(info.value, KeyError) and isinstance(info.value, ValueError)
    assert str(info.value) == "unknown widget 'alpah' (did you mean alpha?); known: alpha, beta"


def test_zoo_and_backends_are_registries():
    assert isinstance(zoo.OPTIMIZERS, Registry) and isinstance(zoo.SCHEDULES, Registry)
    assert zoo.names() == zoo.OPTIMIZERS.names() and zoo.schedule_names() == zoo.SCHEDULES.names()
    assert zoo.UnknownNameError is UnknownNameError
    assert BACKENDS.names() == ["serial", "pool", "scoop"]
    assert isinstance(make_backend("serial"), SerialBackend)
    with pytest.raises(UnknownNameError, match="unknown map backend 'mpi'; known: serial, pool, scoop"):
        make_backend("mpi")


# -- plugins fill a run's copies ------------------------------------------------------------------

class _Backend(SerialBackend):
    name = "echo"


def _echo(**kw):
    return _Backend()


class _Strategy:
    pass


@dataclass
class _Section:
    level: int = 1


class _Everything:
    """A plugin with a backend, an algorithm, a zoo optimizer, a config section and an option."""

    @hookimpl
    def deapnos_map_backends(self):
        return {"echo": _echo}

    @hookimpl
    def deapnos_search_algorithms(self):
        return {"hill": _Strategy}

    @hookimpl
    def deapnos_zoo_optimizers(self):
        return [zoo.ZooEntry("plugin_signsgd", "baseline", "none ~ sign_g", "U = sign(g)", "signSGD")]

    @hookimpl
    def deapnos_config_sections(self):
        return {"every": _Section}

    @hookimpl
    def deapnos_addoption(self, parser):
        parser.add_argument("--every-level", type=int, default=None)


class _Copycat:
    @hookimpl
    def deapnos_map_backends(self):
        return {"echo": _echo}


class _BuiltinClash:
    @hookimpl
    def deapnos_map_backends(self):
        return {"pool": _echo}


def _ctx(**named) -> Context:
    pm = get_plugin_manager(["digits"], autoload=False)
    for name, obj in named.items():
        pm.register_plugin(obj, name)
    return Context.from_manager(pm)


def test_plugin_additions_go_into_the_runs_registries_only():
    ctx = _ctx(every=_Everything())
    assert ctx.backends.names() == ["serial", "pool", "scoop", "echo"] and ctx.backends.owner("echo") == "every"
    assert "hill" in ctx.algorithms and ctx.algorithms.owner("hill") == "every"
    assert zoo.get("plugin_signsgd", registry=ctx.zoo).to_text() == "none ~ sign_g"
    assert isinstance(make_backend("echo", backends=ctx.backends, context=ctx), _Backend)
    # the built-in registries did not change
    assert "echo" not in BACKENDS and "plugin_signsgd" not in zoo.names() and "hill" not in build_context(
        autoload=False).algorithms
    with pytest.raises(UnknownNameError, match="plugin_signsgd"):
        zoo.get("plugin_signsgd")


def test_clashes_name_both_plugins():
    with pytest.raises(PluginError, match="map backend 'echo' is provided by both plugin 'every' and plugin "
                                          "'copycat'") as info:
        _ctx(every=_Everything(), copycat=_Copycat())
    assert info.value.plugin == "copycat"
    with pytest.raises(PluginError, match=r"map backend 'pool' is provided by both deapnos \(built in\) and "
                                          "plugin 'clash'"):
        _ctx(clash=_BuiltinClash())


def test_plugins_lists_backends_algorithms_and_sections():
    pm = get_plugin_manager(autoload=False)
    pm.register_plugin(_Everything(), "every")
    row = {r["name"]: r for r in plugin_info(pm)}["every"]
    assert (row["backends"], row["algorithms"], row["zoo_optimizers"], row["sections"]) == (
        ["echo"], ["hill"], ["plugin_signsgd"], ["every"])
    from deapnos.commands.plugins import describe
    assert "map backends: echo" in describe(row) and "search algorithms: hill" in describe(row)
    assert "run options" in describe(row)


def test_the_builtins_are_plugins_of_the_context_but_not_listed_as_plugins():
    # registered early or late, the built-ins come first and are owned by deapnos
    pm = get_plugin_manager(autoload=False)
    pm.register_plugin(_Everything(), "every")
    ctx = Context.from_manager(pm)
    assert {"deapnos:backends", "deapnos:search.algorithms", "deapnos:zoo"} <= {n for n, _ in pm.list_name_plugin()}
    assert ctx.backends.names() == ["serial", "pool", "scoop", "echo"] and ctx.backends.owner("serial") == "deapnos"
    assert ctx.zoo.names()[:len(zoo.names())] == zoo.names() and ctx.schedules.names() == zoo.schedule_names()
    assert [r["name"] for r in plugin_info(pm)] == ["every"]
    Context.from_manager(pm)                 # registering them again changes nothing
    assert len(pm.list_name_plugin()) == 4


def test_config_sections_and_options_reach_the_plugin_through_the_context():
    ctx = _ctx(every=_Everything())
    parser = argparse.ArgumentParser()
    add_options(ctx.pm, parser)
    args = parser.parse_args(["--every-level", "3"])
    cfg = config_from_dict({}, ["plugin.every.level=2"])
    assert cfg.plugin == {"every": {"level": 2}}
    ctx.configure(cfg.plugin, args)
    assert ctx.sections["every"] == _Section(2) and ctx.options.every_level == 3
    ctx.configure({})
    assert ctx.sections["every"] == _Section(1)          # absent: the defaults
    with pytest.raises(ConfigError, match=r"plugin\.every\.levle"):
        ctx.configure({"every": {"levle": 2}})
    with pytest.raises(ConfigError, match=r"\[plugin\.nosuch\].*\[plugin\.every\]"):
        ctx.configure({"nosuch": {}})
    # an empty [plugin] table does not change a config's snapshot (nor its fingerprint)
    assert "plugin" not in config_from_dict({}).to_dict()


def test_backend_and_algorithm_are_checked_against_the_run_registries(monkeypatch):
    from deapnos.run import check_against_plugins
    ctx = _ctx(every=_Everything())
    base = {"search": {"task": "digits", "init_task": "digits", "integrity_checks": []},
            "validation": {"enabled": False}, "elimination": {"enabled": False}}
    monkeypatch.setattr("deapnos.evaluate.tasks.Task.check_available", lambda self: None)
    check_against_plugins(config_from_dict(base, ["run.backend=echo", "run.algorithm=hill"]), ctx)
    with pytest.raises(ConfigError, match="run.backend = 'mpi': unknown map backend 'mpi'; known: serial, pool, "
                                          "scoop, echo"):
        check_against_plugins(config_from_dict(base, ["run.backend=mpi"]), ctx)
    with pytest.raises(ConfigError, match="run.algorithm = 'hil'.*did you mean hill.*particles"):
        check_against_plugins(config_from_dict(base, ["run.algorithm=hil"]), ctx)
    # a plugin's zoo entry can be the reference and a baseline of the run; the built-in zoo lacks it
    check_against_plugins(config_from_dict(base, ['fitness.reference="plugin_signsgd"',
                                                  'elimination.baselines=["plugin_signsgd"]']), ctx)
    with pytest.raises(ConfigError, match="fitness.reference: 'plugin_signsgd' is not a zoo optimizer"):
        check_against_plugins(config_from_dict(base, ['fitness.reference="plugin_signsgd"']), _ctx())


# -- pluggy calls the hooks ----------------------------------------------------------------------

def test_task_kind_comes_from_the_hook():
    class Both:
        @hookimpl
        def deapnos_surrogates(self):
            return [SimpleNamespace(name="s", plugin="", kind="fitness")]

        @hookimpl
        def deapnos_fitness_tasks(self):
            return [SimpleNamespace(name="f", plugin="", kind="surrogate")]
    pm = get_plugin_manager(autoload=False)
    pm.register_plugin(Both(), "both")
    tasks = all_tasks(pm)
    assert (tasks["s"].kind, tasks["f"].kind) == ("surrogate", "fitness")
    # tasks and integrity checks are registries like every other named thing
    assert isinstance(tasks, Registry) and tasks.owner("s") == "both" and tasks.names() == ["s", "f"]
    with pytest.raises(UnknownNameError, match="unknown task 'x'.*known: s, f"):
        tasks["x"]
    assert tasks.get("x", None) is None


def test_hook_wrappers_and_call_order_are_honoured():
    calls = []

    class Checks:
        def __init__(self, name):
            self.name = name

        @hookimpl
        def deapnos_integrity_checks(self):
            calls.append(self.name)
            return [SimpleNamespace(name=self.name)]

    class Filter:
        @hookimpl(wrapper=True)
        def deapnos_integrity_checks(self):
            result = yield
            return [[c for c in checks if c.name != "hidden"] for checks in result]

    pm = get_plugin_manager(autoload=False)
    pm.register_plugin(Checks("a"), "a")
    pm.register_plugin(Checks("hidden"), "hidden")
    pm.register_plugin(Filter(), "filter")
    from deapnos.plugins import integrity_checks
    assert list(integrity_checks(pm)) == ["a"]            # the wrapper took 'hidden' out
    assert calls == ["a", "hidden"]


def test_observers_go_through_pluggy_and_errors_are_attributed(caplog):
    seen = []

    class Watch:
        @hookimpl(hookwrapper=True)
        def deapnos_run_finished(self, run_dir):
            seen.append(("before", run_dir))
            yield
            seen.append(("after", run_dir))

    class Bad:
        @hookimpl
        def deapnos_run_finished(self):
            raise RuntimeError("boom")

    class Good:
        @hookimpl
        def deapnos_run_finished(self, hall_of_fame):
            seen.append(("good", len(hall_of_fame)))

    pm = get_plugin_manager(autoload=False)
    for name, obj in (("watch", Watch()), ("bad", Bad()), ("good", Good())):
        pm.register_plugin(obj, name)
    errors = notify(pm, "deapnos_run_finished", run_dir="r", hall_of_fame=[1])
    assert [e.plugin for e in errors] == ["bad"] and "boom" in caplog.text
    assert ("good", 1) in seen and seen.count(("before", "r")) == 2 and seen.count(("after", "r")) == 2


def test_primitives_are_attributed_without_patching_the_space():
    import torch

    class Prims:
        @hookimpl
        def deapnos_add_primitives(self, space):
            space.add_unary("twice", lambda x, out=None: torch.mul(x, 2.0, out=out))

    pm = get_plugin_manager(autoload=False)
    pm.register_plugin(Prims(), "prims")
    ctx = Context.from_manager(pm)
    assert ctx.space.provenance["unary:twice"] == "prims" and "add_unary" not in vars(ctx.space)
