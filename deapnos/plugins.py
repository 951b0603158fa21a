"""The plugin manager (pluggy): loading the plugins, and the options every command shares.

Provides :func:`get_plugin_manager` (entry points of the ``deapnos`` group, then ``-p NAME`` / the
config's ``plugins``; ``-p no:NAME`` blocks one; ``DEAPNOS_DISABLE_PLUGIN_AUTOLOAD=1`` skips entry
points), the space plugins extend (:func:`build_space`) and ``-p`` (:func:`add_plugin_options`).
Calling hooks and the per-hook collectors (:func:`integrity_checks`, :func:`all_tasks`, ...) live in
:mod:`deapnos.hookcalls` and are re-exported here, with :class:`PluginError`, which names the
plugin.  The ``deapnos plugins`` command is :mod:`deapnos.commands.plugins`.  Details:
docs/plugins.md, "Registering a plugin", "Errors".
"""
from __future__ import annotations

import argparse
import importlib
import importlib.metadata
import logging
import os
import sys
import traceback
from dataclasses import dataclass
from typing import Any
from collections.abc import Sequence

import pluggy

from . import hookspecs
from .hookcalls import (BUILTIN_PREFIX, TASK_KINDS, PluginError, _first_line, _impls, _per_plugin,  # noqa: F401
                        _PluginSpace, all_tasks, call_each, config_sections, fitness_tasks, integrity_checks,
                        is_builtin, map_backends, notify, register_builtins, search_algorithms, surrogates,
                        zoo_optimizers, zoo_schedules)
from .hookspecs import PROJECT, hookimpl  # noqa: F401  (re-exported for plugin authors)
from .registry import Registry

log = logging.getLogger(__name__)

ENTRY_POINT_GROUP = "deapnos"
DISABLE_AUTOLOAD_ENV = "DEAPNOS_DISABLE_PLUGIN_AUTOLOAD"
_FALSE_VALUES = ("", "0", "false", "no", "off")


@dataclass
class PluginSource:
    """How a plugin was loaded: ``origin`` is ``entry point``, ``-p (entry point)``, ``-p`` (a module)
    or ``register`` (an object passed to :func:`get_plugin_manager`)."""
    name: str
    module: str
    origin: str
    dist: str | None = None
    version: str | None = None


class DeapnosPluginManager(pluggy.PluginManager):
    """A pluggy manager with the deapnos hook specs and a record of where each plugin came from.

    ``sources``: plugin name -> :class:`PluginSource`, for every plugin loaded or tried.  ``failed``:
    plugin name -> error message of
    the plugins that could not be loaded (only filled with ``strict=False``).  ``autoload``:
    whether the entry-point group was loaded.
    """

    def __init__(self) -> None:
        super().__init__(PROJECT)
        self.add_hookspecs(hookspecs)
        self.sources: dict[str, PluginSource] = {}
        self.failed: dict[str, str] = {}
        self.autoload = False

    def register_plugin(self, plugin: Any, name: str, origin: str = "register", module: str | None = None,
                        dist: str | None = None, version: str | None = None) -> str | None:
        """Register ``plugin`` under ``name``; a malformed hook implementation is a PluginError."""
        if self.is_blocked(name):
            return None
        try:
            registered = self.register(plugin, name=name)
        except pluggy.PluginValidationError as exc:
            raise PluginError(name, f"invalid hook implementation: {exc}") from exc
        except ValueError as exc:   # name or object already registered
            raise PluginError(name, str(exc)) from exc
        if registered is None:
            return None
        if module is None:
            module = getattr(plugin, "__name__", None) or type(plugin).__module__
        self.sources[name] = PluginSource(name, module, origin, dist, version)
        return registered


def _autoload_enabled(autoload: bool | None) -> bool:
    if autoload is not None:
        return bool(autoload)
    return os.environ.get(DISABLE_AUTOLOAD_ENV, "").strip().lower() in _FALSE_VALUES


def _entry_points() -> list[importlib.metadata.EntryPoint]:
    return list(importlib.metadata.entry_points(group=ENTRY_POINT_GROUP))


def _dist_of(ep) -> tuple[str | None, str | None]:
    dist = getattr(ep, "dist", None)
    if dist is None:
        return None, None
    return dist.metadata["Name"] or getattr(dist, "name", None), dist.version


def _ep_module(ep) -> str:
    """The module an entry point loads (``module`` of ``module:attr``)."""
    return ep.value.split(":")[0].strip()


def _load_entry_point(pm: DeapnosPluginManager, ep, strict: bool, origin: str = "entry point") -> None:
    name = ep.name
    if pm.is_blocked(name) or pm.has_plugin(name):
        return
    dist, version = _dist_of(ep)
    module = _ep_module(ep)
    pm.sources[name] = PluginSource(name, module, origin, dist, version)
    try:   # pluggy imports and registers it, and records its distribution
        pm.load_setuptools_entrypoints(ENTRY_POINT_GROUP, name=name)
    except pluggy.PluginValidationError as exc:
        _fail(pm, PluginError(name, f"invalid hook implementation: {exc}"), strict, exc)
    except ValueError as exc:   # its module is already registered under another name
        _fail(pm, PluginError(name, str(exc)), strict, exc)
    except Exception as exc:  # noqa: BLE001 - plugin code
        _fail(pm, PluginError(name, f"cannot load entry point {ep.value!r} of distribution "
                                    f"{dist or '?'} {version or ''}".rstrip() + f": {_first_line(exc)}"),
              strict, exc)
        return
    plugin = pm.get_plugin(name)
    for loaded, facade in pm.list_plugin_distributions():
        if loaded is plugin:
            pm.sources[name] = PluginSource(name, module, origin, facade.metadata["Name"] or dist, facade.version)


def _fail(pm: DeapnosPluginManager, err: PluginError, strict: bool, cause: BaseException) -> None:
    if strict:
        raise err from cause
    pm.failed[err.plugin] = err.message
    log.debug("plugin %s failed:\n%s", err.plugin, "".join(traceback.format_exception(cause)))


def _module_dist(module: str) -> tuple[str | None, str | None]:
    top = module.split(".")[0]
    try:
        dists = importlib.metadata.packages_distributions().get(top) or []
        if dists:
            return dists[0], importlib.metadata.version(dists[0])
    except Exception:  # noqa: BLE001 - metadata of unrelated distributions may be broken
        pass
    return None, None


def _load_named(pm: DeapnosPluginManager, spec: str, eps: dict[str, list], strict: bool) -> None:
    """``-p NAME``: an entry-point name of the group, else a module to import."""
    if spec not in eps:
        # a module that an entry point loads is that plugin (same name, distribution and version)
        by_module = [group for group in eps.values() if _ep_module(group[0]) == spec]
        if len(by_module) == 1:
            spec = by_module[0][0].name
    if spec in eps:
        if len(eps[spec]) > 1:
            _clashing_entry_points(pm, spec, eps[spec], strict)
        _load_entry_point(pm, eps[spec][0], strict, origin="-p (entry point)")
        return
    if pm.is_blocked(spec) or pm.has_plugin(spec):
        return
    try:
        module = importlib.import_module(spec)
    except ModuleNotFoundError as exc:
        missing = exc.name or spec
        detail = (f"no module named {missing!r}" if spec == missing or spec.startswith(missing + ".")
                  else f"importing it failed: {_first_line(exc)}")
        _fail(pm, PluginError(spec, f"cannot import plugin module {spec!r} (from -p or the config's "
                                    f"'plugins'): {detail}; it is not an entry-point name of group "
                                    f"{ENTRY_POINT_GROUP!r} either"), strict, exc)
        return
    except Exception as exc:  # noqa: BLE001 - plugin code
        _fail(pm, PluginError(spec, f"importing plugin module {spec!r} raised {_first_line(exc)}"), strict, exc)
        return
    if pm.is_registered(module):
        return
    dist, version = _module_dist(spec)
    try:
        pm.register_plugin(module, spec, "-p", module=spec, dist=dist, version=version)
    except PluginError as exc:
        _fail(pm, exc, strict, exc)


def _clashing_entry_points(pm, name, eps, strict):
    owners = [" ".join(filter(None, _dist_of(ep))) or ep.value for ep in eps]
    _fail(pm, PluginError(name, f"entry point {name!r} of group {ENTRY_POINT_GROUP!r} is provided by "
                                f"several distributions: {', '.join(owners)}; the first is used"),
          strict, RuntimeError(name))


def get_plugin_manager(extra_plugins: Sequence[Any] = (), autoload: bool | None = None,
                       strict: bool = True) -> DeapnosPluginManager:
    """A plugin manager with the deapnos hooks and the plugins of this environment.

    ``extra_plugins``: what ``-p`` and the config's ``plugins`` name (strings, see the module
    docstring); a module or plugin object (not a string) is registered as it is, under its
    ``__name__`` or its class name.  ``autoload``: load the ``deapnos`` entry-point group (default:
    yes unless ``DEAPNOS_DISABLE_PLUGIN_AUTOLOAD`` is set).  ``strict``: a plugin that fails to
    load raises :class:`PluginError`; with ``strict=False`` it is recorded in ``pm.failed`` and
    skipped (what ``deapnos plugins`` does, to list it as broken).
    """
    pm = DeapnosPluginManager()
    specs = [p.strip() if isinstance(p, str) else p for p in extra_plugins]
    pm.autoload = _autoload_enabled(autoload)
    eps: dict[str, list] = {}
    for ep in _entry_points():
        eps.setdefault(ep.name, []).append(ep)
    for spec in specs:
        if isinstance(spec, str) and spec.startswith("no:"):
            blocked = spec[3:].strip()
            pm.set_blocked(blocked)
            for name, group in eps.items():   # blocking a module blocks the entry point that loads it
                if _ep_module(group[0]) == blocked:
                    pm.set_blocked(name)
    if pm.autoload:
        for name, group in eps.items():
            if len(group) > 1:
                _clashing_entry_points(pm, name, group, strict)
            _load_entry_point(pm, group[0], strict)
    for spec in specs:
        if isinstance(spec, str):
            if not spec.startswith("no:"):
                _load_named(pm, spec, eps, strict)
        elif not pm.is_registered(spec):
            name = getattr(spec, "__name__", None) or type(spec).__name__
            try:
                pm.register_plugin(spec, name, "register")
            except PluginError as exc:
                _fail(pm, exc, strict, exc)
    while True:
        try:
            pm.check_pending()
            break
        except pluggy.PluginValidationError as exc:
            name = pm.get_name(exc.plugin) or "?"
            err = PluginError(name, f"implements a hook deapnos does not define: {exc}")
            if strict:
                raise err from exc
            pm.failed[name] = err.message
            pm.unregister(exc.plugin)
    return pm


# -- what plugins add: run options and primitives ------------------------------------------------

def add_options(pm: pluggy.PluginManager, parser: argparse.ArgumentParser) -> None:
    """Let every plugin add ``deapnos run`` options (``deapnos_addoption``), in one argument group."""
    if not _impls(pm, "deapnos_addoption"):
        return
    group = parser.add_argument_group("plugin options")
    for impl, caller in _per_plugin(pm, "deapnos_addoption"):
        try:
            caller(parser=group)
        except Exception as exc:  # noqa: BLE001 - plugin code (argparse.ArgumentError: a clash)
            raise PluginError(impl.plugin_name, f"deapnos_addoption failed: {_first_line(exc)}") from exc


def extend_space(pm: pluggy.PluginManager, space: Any) -> None:
    """Run every plugin's ``deapnos_add_primitives`` on ``space`` (not yet built), each through
    pluggy and recorded as the ``source`` of what it adds, so a clash names both plugins; any error
    is a :class:`PluginError` naming the plugin."""
    for impl, caller in _per_plugin(pm, "deapnos_add_primitives"):
        try:
            caller(space=_PluginSpace(space, impl.plugin_name))
        except Exception as exc:  # noqa: BLE001 - plugin code
            raise PluginError(impl.plugin_name, f"deapnos_add_primitives failed: {_first_line(exc)}") from exc


def build_space(pm: pluggy.PluginManager, compat: bool = False):
    """The paper's space extended by every plugin, built.  Nothing else sees it: pass it on
    (``Genome.parse(text, space=...)``); without a ``space=`` the plain paper space is used."""
    from .space import psets
    return psets.build_space(lambda sp: extend_space(pm, sp), compat=compat)


# -- what every command shares: reading genomes with the same plugins, and -p ---------------------

PLUGIN_HINT = ("if it is a plugin primitive, install its plugin (installed plugins load by default) or "
               "load its module with -p MODULE")


def genome_space(extra_plugins: Sequence[Any] = (), compat: bool = False) -> tuple[Any, Registry]:
    """``(space, zoo registry)`` that commands read genomes with: the installed (entry-point)
    plugins plus ``extra_plugins`` (``-p``, a run's ``run.plugins``), as ``deapnos evaluate`` does.

    Deprecated: ``deapnos.context.build_context(extra_plugins, compat=compat, eager=False)`` gives
    both (``ctx.space``, ``ctx.zoo``)."""
    import warnings

    from . import zoo   # below this module (zoo knows optim and space only)
    warnings.warn("deapnos.plugins.genome_space is deprecated: use deapnos.context.build_context(plugins, "
                  "eager=False) and its .space and .zoo", DeprecationWarning, stacklevel=2)
    pm = get_plugin_manager(extra_plugins)
    register_builtins(pm, [zoo])
    return build_space(pm, compat=compat), zoo_optimizers(pm)


def installed_only(specs: Sequence[Any]) -> list[str]:
    """The names among ``specs`` (a run folder's ``run.plugins``) that are installed plugins: an
    entry-point name of the group, or the module one loads.  Loading those runs only code the user
    installed; any other module a folder names is imported only when asked (``--load-plugins``)."""
    eps = _entry_points()
    known = {ep.name for ep in eps} | {_ep_module(ep) for ep in eps}
    return [s.strip() for s in specs if isinstance(s, str) and s.strip() in known]


def with_plugin_hint(message: str) -> str:
    """``message`` plus how to load a plugin, when it names an unknown primitive."""
    import re
    return f"{message}; {PLUGIN_HINT}" if re.search(r"unknown \w+ name '", message) else message


def add_plugin_options(parser: argparse.ArgumentParser) -> None:
    """``-p NAME`` (repeatable), for every command that builds a plugin manager."""
    from .listargs import ListAppend
    parser.add_argument("-p", dest="plugins", action=ListAppend, default=[], metavar="NAME",
                        help="also load this plugin: an entry-point name of group 'deapnos' or an importable "
                             "module; 'no:NAME' blocks one (repeatable or comma-separated).  Autoloading of "
                             "installed plugins "
                             f"is off when {DISABLE_AUTOLOAD_ENV}=1")


# -- moved: the `deapnos plugins` command is deapnos.commands.plugins ---------------------------
# Its old names here still work, with a DeprecationWarning, and import nothing above this layer: the
# rows and the table (plugin_info, describe, format_table) are deapnos.plugin_table's, as the
# command's are; configure_parser, run_command and main are stand-ins for the command's, which
# loads the plugins through build_context (above): these load them here and list the same rows
# (build_context only adds deapnos's own modules, which are never listed).

#: its names that were importable from here: old imports still work, with a DeprecationWarning
_MOVED_TO_COMMAND = ("plugin_info", "describe", "format_table", "configure_parser", "run_command", "main")


def _configure_parser(parser: argparse.ArgumentParser) -> None:
    add_plugin_options(parser)
    parser.add_argument("--json", action="store_true", help="print the list as JSON")


def _run_command(args: argparse.Namespace) -> int:
    from .plugin_table import print_plugins
    pm = get_plugin_manager(getattr(args, "plugins", None) or (), strict=False)
    return print_plugins(pm, getattr(args, "json", False), DISABLE_AUTOLOAD_ENV)


def _main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m deapnos.commands.plugins",
                                     description="list installed plugins and what they provide")
    _configure_parser(parser)
    return _run_command(parser.parse_args(argv))


_STAND_INS = {"configure_parser": _configure_parser, "run_command": _run_command, "main": _main}


def __getattr__(name: str) -> Any:
    if name in _MOVED_TO_COMMAND:
        import warnings

        from . import plugin_table
        warnings.warn(f"deapnos.plugins.{name} is deprecated: use deapnos.commands.plugins.{name}",
                      DeprecationWarning, stacklevel=2)
        return _STAND_INS[name] if name in _STAND_INS else getattr(plugin_table, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


if __name__ == "__main__":      # `python -m deapnos.plugins`: now `deapnos plugins`
    sys.exit(_main())
