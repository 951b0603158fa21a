"""The plugin manager (pluggy), and the ``deapnos plugins`` command.

Provides :func:`get_plugin_manager` (entry points of the ``deapnos`` group, then ``-p NAME`` / the
config's ``plugins``; ``-p no:NAME`` blocks one; ``DEAPNOS_DISABLE_PLUGIN_AUTOLOAD=1`` skips entry
points), the per-hook collectors (:func:`integrity_checks`, :func:`all_tasks`, :func:`build_space`, ...)
and :class:`PluginError`, which names the plugin.  Details: docs/plugins.md, "Registering a plugin", "Errors".
"""
from __future__ import annotations

import argparse
import importlib
import importlib.metadata
import json
import logging
import os
import sys
import traceback
from dataclasses import dataclass
from typing import Any, cast
from collections.abc import Callable, Iterator, Sequence
from types import ModuleType

import pluggy
from pluggy import HookImpl

from . import hookspecs
from .hookspecs import PROJECT, hookimpl  # noqa: F401  (re-exported for plugin authors)
from .registry import BUILTIN, Registry, RegistryClash

log = logging.getLogger(__name__)

ENTRY_POINT_GROUP = "deapnos"
DISABLE_AUTOLOAD_ENV = "DEAPNOS_DISABLE_PLUGIN_AUTOLOAD"
_FALSE_VALUES = ("", "0", "false", "no", "off")

#: the hooks that contribute named objects, and how their objects are called in messages
_COLLECT_HOOKS = {
    "deapnos_integrity_checks": "integrity check",
    "deapnos_surrogates": "surrogate",
    "deapnos_fitness_tasks": "fitness task",
}
#: the task kind that each task hook gives what it returns (``Task.kind``)
TASK_KINDS = {"deapnos_surrogates": "surrogate", "deapnos_fitness_tasks": "fitness"}


class PluginError(RuntimeError):
    """An error in, or between, plugins.  ``plugin`` names the plugin at fault (for a clash: the
    one registered later; the message names both)."""

    def __init__(self, plugin: str, message: str):
        self.plugin = plugin
        self.message = message
        super().__init__(f"plugin {plugin!r}: {message}")


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


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text.splitlines()[0]}" if text else type(exc).__name__


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


# -- calling hooks: through pluggy, one plugin at a time --------------------------------------

def _impls(pm: pluggy.PluginManager, hook_name: str) -> list[HookImpl]:
    """The non-wrapper implementations of a hook, in registration order."""
    caller = getattr(pm.hook, hook_name)
    return [impl for impl in caller.get_hookimpls() if not (impl.hookwrapper or impl.wrapper)]


def _per_plugin(pm: pluggy.PluginManager, hook_name: str) -> Iterator[tuple[HookImpl, Callable[..., list]]]:
    """``(implementation, caller)`` per plugin: ``caller(**kwargs)`` runs the hook through pluggy with
    only that plugin's implementation (and every wrapper), so each result and each error has its
    plugin (pluggy's ``subset_hook_caller``)."""
    impls = _impls(pm, hook_name)
    for impl in impls:
        others = [o.plugin for o in impls if o is not impl]
        yield impl, pm.subset_hook_caller(hook_name, remove_plugins=others)


def call_each(pm: pluggy.PluginManager, hook_name: str, **kwargs: Any) -> list[tuple[str, Any]]:
    """Call ``hook_name`` plugin by plugin; returns ``[(plugin name, result)]`` in registration order.
    An exception in plugin code is a :class:`PluginError` naming the plugin."""
    out = []
    for impl, caller in _per_plugin(pm, hook_name):
        try:
            results = caller(**kwargs)
        except Exception as exc:  # noqa: BLE001 - plugin code
            raise PluginError(impl.plugin_name, f"hook {hook_name} raised {_first_line(exc)}") from exc
        out.append((impl.plugin_name, results[0] if results else None))
    return out


def notify(pm: pluggy.PluginManager, hook_name: str, **kwargs: Any) -> list[PluginError]:
    """Call an observer hook on every plugin; an observer that raises is logged by name and the
    others still run.  Returns the errors (empty when all went well)."""
    errors = []
    for impl, caller in _per_plugin(pm, hook_name):
        try:
            caller(**kwargs)
        except Exception as exc:  # noqa: BLE001 - plugin code must not stop a search
            err = PluginError(impl.plugin_name, f"observer {hook_name} raised {_first_line(exc)}")
            log.warning("%s", err, exc_info=log.isEnabledFor(logging.DEBUG))
            errors.append(err)
    return errors


def _items(plugin: str, hook_name: str, result: Any) -> list:
    if result is None:
        return []
    if isinstance(result, dict):
        result = list(result.values())
    elif not isinstance(result, (list, tuple)):
        result = [result]
    kind = _COLLECT_HOOKS[hook_name]
    for item in result:
        name = getattr(item, "name", None)
        if not isinstance(name, str) or not name:
            raise PluginError(plugin, f"hook {hook_name} returned a {kind} without a name: {item!r}")
    return list(result)


def _tag(item: Any, plugin: str, kind: str | None = None) -> None:
    """Set ``item.plugin`` (and a task's ``kind``) when the object allows it (for messages)."""
    try:
        if not getattr(item, "plugin", ""):
            item.plugin = plugin
        if kind is not None:
            item.kind = kind
    except (AttributeError, TypeError):   # frozen dataclass, slots, read-only property: leave it
        pass


def _collect(pm: pluggy.PluginManager, hook_name: str, owner: dict | None = None) -> Registry:
    """A :class:`Registry` of the objects of every plugin's ``hook_name``; ``owner`` (name ->
    (plugin, kind)) may be shared between calls to make several hooks one namespace."""
    kind = _COLLECT_HOOKS[hook_name]
    out: Registry = Registry(kind)
    owner = {} if owner is None else owner
    for plugin, result in call_each(pm, hook_name):
        for item in _items(plugin, hook_name, result):
            prev = owner.get(item.name)
            if prev is not None:
                prev_plugin, prev_kind = prev
                if prev_plugin != plugin:
                    what = kind if prev_kind == kind else f"task (a {prev_kind} there, a {kind} here)"
                    raise PluginError(plugin, f"{what} {item.name!r} is provided by both plugin "
                                              f"{prev_plugin!r} and plugin {plugin!r}")
                if item.name in out:
                    raise PluginError(plugin, f"{kind} {item.name!r} is returned twice by hook {hook_name}")
            owner[item.name] = (plugin, kind)
            _tag(item, plugin, TASK_KINDS.get(hook_name))
            out.register(item.name, item, plugin=plugin)
    return out


def integrity_checks(pm: pluggy.PluginManager) -> Registry:
    """The installed integrity checks by name (each check's ``plugin`` is set)."""
    return _collect(pm, "deapnos_integrity_checks")


def surrogates(pm: pluggy.PluginManager) -> Registry:
    """The surrogate tasks by name (cheap tasks used inside the search loop; ``kind``
    ``"surrogate"``)."""
    return _collect(pm, "deapnos_surrogates")


def fitness_tasks(pm: pluggy.PluginManager) -> Registry:
    """The fitness tasks by name (elimination ladder, ``deapnos evaluate``; ``kind``
    ``"fitness"``)."""
    return _collect(pm, "deapnos_fitness_tasks")


def all_tasks(pm: pluggy.PluginManager) -> Registry:
    """Surrogates and fitness tasks in one registry: one namespace.  The same name from two
    plugins is an error; one plugin may offer a task both ways (the surrogate entry is kept, with
    ``kind`` ``"surrogate"``)."""
    owner: dict[str, tuple[str, str]] = {}
    surrogate = _collect(pm, "deapnos_surrogates", owner)
    fitness = _collect(pm, "deapnos_fitness_tasks", owner)
    out: Registry = Registry("task")
    for reg in (surrogate, fitness):
        for name, task in reg.items():
            if name not in out:
                out.register(name, task, plugin=reg.owner(name))
    for name, (_, kind) in owner.items():   # the same object may have come back from both hooks
        if kind == "surrogate":
            _tag(out[name], out[name].plugin, "surrogate")
    return out


# -- deapnos's own plugins (pytest's "default plugins") -------------------------------------------

#: the prefix of the names under which deapnos's own hook modules are registered
BUILTIN_PREFIX = "deapnos:"


def is_builtin(plugin_name: str | None) -> bool:
    """Whether ``plugin_name`` is one of deapnos's own modules (see :func:`register_builtins`)."""
    return bool(plugin_name) and str(plugin_name).startswith(BUILTIN_PREFIX)


def register_builtins(pm: pluggy.PluginManager, modules: Sequence[ModuleType]) -> None:
    """Register deapnos's own modules that implement hooks (the map backends, search algorithms
    and zoo) as plugins named ``deapnos:MODULE``, as pytest registers its default plugins.  What
    they return is owned by ``deapnos`` (built in) and comes first in every registry.  The caller
    (the top layer, :mod:`deapnos.context`) passes the modules, so this one imports none of them.
    Idempotent; a module that ``-p`` already loaded under its own name is registered as built in."""
    for module in modules:
        name = BUILTIN_PREFIX + module.__name__.removeprefix("deapnos.")
        if pm.has_plugin(name):
            continue
        if pm.is_registered(module):
            other = pm.get_name(module)
            pm.unregister(module)
            getattr(pm, "sources", {}).pop(other, None)
        pm.register(module, name=name)


def _named(pm: pluggy.PluginManager, hook_name: str, kind: str) -> Registry:
    """A registry of what every plugin's ``hook_name`` returns (``{name: obj}`` or a list of
    objects with a ``name``): deapnos's own (:func:`register_builtins`) first, as ``deapnos``;
    a clash is a :class:`PluginError` naming both plugins."""
    reg: Registry = Registry(kind)
    results = sorted(call_each(pm, hook_name), key=lambda pr: not is_builtin(pr[0]))   # stable
    for plugin, result in results:
        if result is None:
            continue
        owner = BUILTIN if is_builtin(plugin) else plugin
        pairs = result.items() if isinstance(result, dict) else [(getattr(x, "name", None), x) for x in result]
        for name, obj in pairs:
            if not isinstance(name, str) or not name:
                raise PluginError(plugin, f"hook {hook_name} returned a {kind} without a name: {obj!r}")
            try:
                if name in reg and reg.owner(name) != owner:   # even the same object: two providers
                    raise RegistryClash(kind, name, (reg.owner(name), owner))
                reg.register(name, obj, plugin=owner)
            except RegistryClash as exc:
                owners = " and ".join(f"plugin {o!r}" if o != BUILTIN else "deapnos (built in)" for o in exc.owners)
                raise PluginError(plugin, f"{kind} {name!r} is provided by both {owners}") from None
    return reg


def map_backends(pm: pluggy.PluginManager) -> Registry:
    """The map backends of ``deapnos_map_backends``: the built-in ones (``deapnos.distributed``,
    when registered with :func:`register_builtins`) and the plugins' (a new registry)."""
    return _named(pm, "deapnos_map_backends", "map backend")


def search_algorithms(pm: pluggy.PluginManager) -> Registry:
    """The search algorithms of ``deapnos_search_algorithms``: the built-in ones
    (``deapnos.search.algorithms``) and the plugins' (a new registry)."""
    return _named(pm, "deapnos_search_algorithms", "search algorithm")


def zoo_optimizers(pm: pluggy.PluginManager) -> Registry:
    """The zoo optimizers of ``deapnos_zoo_optimizers``: the built-in zoo (``deapnos.zoo``) and the
    plugins' entries (a new registry)."""
    return _named(pm, "deapnos_zoo_optimizers", "zoo optimizer")


def zoo_schedules(pm: pluggy.PluginManager) -> Registry:
    """The LR schedules of ``deapnos_zoo_schedules``: the built-in ones (``deapnos.zoo``) and the
    plugins' (a new registry)."""
    return _named(pm, "deapnos_zoo_schedules", "zoo schedule")


def config_sections(pm: pluggy.PluginManager) -> Registry:
    """``[plugin.NAME]`` config tables: ``{NAME: dataclass}`` of ``deapnos_config_sections``."""
    return _named(pm, "deapnos_config_sections", "config section")


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


class _PluginSpace:
    """The search space as one plugin's ``deapnos_add_primitives`` sees it: ``add_*`` record that
    plugin as the ``source`` of what it adds (unless given); everything else is the space's."""

    def __init__(self, space: Any, plugin: str):
        self._space, self._plugin = space, plugin

    def __getattr__(self, attr: str) -> Any:
        value = getattr(self._space, attr)
        if attr in _ADD_METHODS:
            plugin = self._plugin

            def add(*args: Any, **kwargs: Any) -> Any:
                kwargs.setdefault("source", plugin)
                return value(*args, **kwargs)
            add.__doc__ = value.__doc__
            return add
        return value


_ADD_METHODS = ("add_operand", "add_unary", "add_binary", "add_decay")


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


# -- what each plugin provides ---------------------------------------------------------------

_PROV_KINDS = {"operand": "operand", "unary": "op", "binary": "op", "decay": "decay", "state": "state"}

#: plugin_info keys of the hooks that return named things, and their words in `deapnos plugins`
_PROVIDES = (("deapnos_integrity_checks", "checks", "integrity checks"),
             ("deapnos_surrogates", "surrogates", "surrogates"),
             ("deapnos_fitness_tasks", "tasks", "fitness tasks"),
             ("deapnos_map_backends", "backends", "map backends"),
             ("deapnos_search_algorithms", "algorithms", "search algorithms"),
             ("deapnos_zoo_optimizers", "zoo_optimizers", "zoo optimizers"),
             ("deapnos_zoo_schedules", "zoo_schedules", "zoo schedules"),
             ("deapnos_config_sections", "sections", "config sections"))
_OBSERVERS = ("deapnos_evaluation_finished", "deapnos_timestep_finished", "deapnos_run_finished")


def _row(name: str, src: PluginSource, hooks: list[str]) -> dict:
    row: dict[str, Any] = {"name": name, "module": src.module, "origin": src.origin, "dist": src.dist,
                           "version": src.version, "hooks": hooks}
    row.update({key: [] for _, key, _ in _PROVIDES})
    row.update({"primitives": [], "error": None})
    return row


def _names_of(result: Any) -> list[str]:
    if result is None:
        return []
    items = result.items() if isinstance(result, dict) else [(getattr(x, "name", None), x) for x in result]
    names = [name for name, _ in items]
    if not all(isinstance(n, str) and n for n in names):
        raise ValueError(f"returned something without a name: {result!r}")
    return cast(list[str], names)   # every name is a non-empty str: checked just above


def plugin_info(pm: DeapnosPluginManager) -> list[dict]:
    """One dict per plugin: ``name``, ``module``, ``origin``, ``dist``, ``version``, ``hooks``,
    ``checks``, ``surrogates``, ``tasks``, ``backends``, ``algorithms``, ``zoo_optimizers``,
    ``zoo_schedules``, ``sections``, ``primitives`` (e.g. ``operand slow_v_hat``) and ``error``
    (why it failed to load or to answer a hook; None when fine).  Plugins that failed to load
    (``pm.failed``) are listed too."""
    from .space import psets
    rows: dict[str, dict] = {}
    for name, plugin in pm.list_name_plugin():
        if plugin is None or is_builtin(name):     # deapnos's own modules are not listed as plugins
            continue
        src = getattr(pm, "sources", {}).get(name) or PluginSource(name, getattr(plugin, "__name__", "?"),
                                                                 "register")
        rows[name] = _row(name, src, sorted(c.name for c in (pm.get_hookcallers(plugin) or [])))
    errors: dict[str, list[str]] = {}
    for hook_name, key, _ in _PROVIDES:
        for impl, caller in _per_plugin(pm, hook_name):
            try:
                names = _names_of((caller() or [None])[0])
            except Exception as exc:  # noqa: BLE001 - plugin code
                errors.setdefault(impl.plugin_name, []).append(f"{hook_name}: {_first_line(exc)}")
                continue
            if impl.plugin_name in rows:
                rows[impl.plugin_name][key] = names
    space = psets.default_space()
    for impl, caller in _per_plugin(pm, "deapnos_add_primitives"):
        try:
            caller(space=_PluginSpace(space, impl.plugin_name))
        except Exception as exc:  # noqa: BLE001 - plugin code
            errors.setdefault(impl.plugin_name, []).append(f"deapnos_add_primitives failed: {_first_line(exc)}")
    for key, source in space.provenance.items():
        kind, prim = key.split(":", 1)
        if source in rows:
            rows[source]["primitives"].append(f"{_PROV_KINDS.get(kind, kind)} {prim}")
    for name, msgs in errors.items():
        if name in rows:
            rows[name]["error"] = "; ".join(msgs)
    for name, message in getattr(pm, "failed", {}).items():
        src = getattr(pm, "sources", {}).get(name) or PluginSource(name, name, "-p")
        rows.setdefault(name, _row(name, src, []))["error"] = f"not loaded: {message}"
    return list(rows.values())


def describe(row: dict) -> str:
    """What a plugin provides, in words (one line)."""
    parts = []
    for key, label in [(key, label) for _, key, label in _PROVIDES] + [("primitives", "primitives")]:
        if row.get(key):
            parts.append(f"{label}: {', '.join(row[key])}")
    if "deapnos_addoption" in row["hooks"]:
        parts.append("run options")
    observers = [h for h in row["hooks"] if h in _OBSERVERS]
    if observers:
        parts.append(f"observers: {', '.join(h[len('deapnos_'):] for h in observers)}")
    if row.get("error"):
        parts.append(f"ERROR: {row['error']}")
    return "; ".join(parts) or "nothing"


def format_table(rows: list[dict]) -> str:
    """The plugin table of ``deapnos plugins``."""
    header = ("PLUGIN", "DISTRIBUTION", "VERSION", "LOADED BY", "PROVIDES")
    body = [(r["name"], r["dist"] or "-", r["version"] or "-", r["origin"], describe(r)) for r in rows]
    widths = [max(len(str(line[i])) for line in [header] + body) for i in range(4)]
    lines = []
    for line in [header] + body:
        lines.append("  ".join(str(c).ljust(w) for c, w in zip(line[:4], widths)) + "  " + line[4])
    return "\n".join(lines)


# -- reading genomes: the same plugins in every command ----------------------------------------

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


# -- the `deapnos plugins` command -----------------------------------------------------------

def add_plugin_options(parser: argparse.ArgumentParser) -> None:
    """``-p NAME`` (repeatable), for every command that builds a plugin manager."""
    from .listargs import ListAppend
    parser.add_argument("-p", dest="plugins", action=ListAppend, default=[], metavar="NAME",
                        help="also load this plugin: an entry-point name of group 'deapnos' or an importable "
                             "module; 'no:NAME' blocks one (repeatable or comma-separated).  Autoloading of "
                             "installed plugins "
                             f"is off when {DISABLE_AUTOLOAD_ENV}=1")


def configure_parser(parser: argparse.ArgumentParser) -> None:
    add_plugin_options(parser)
    parser.add_argument("--json", action="store_true", help="print the list as JSON")


def run_command(args: argparse.Namespace) -> int:
    """List every plugin with its distribution, version and what it provides.  Returns 1 when a
    plugin failed to load or to answer, else 0."""
    pm = get_plugin_manager(getattr(args, "plugins", None) or (), strict=False)
    rows = plugin_info(pm)
    if getattr(args, "json", False):
        print(json.dumps({"autoload": pm.autoload, "plugins": rows}, indent=2))
    else:
        if not pm.autoload:
            print(f"{DISABLE_AUTOLOAD_ENV} is set: installed plugins are not loaded unless named with -p")
        print(format_table(rows) if rows else "no plugins loaded")
    return 1 if any(r["error"] for r in rows) else 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m deapnos.plugins",
                                     description="list installed plugins and what they provide")
    configure_parser(parser)
    return run_command(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
