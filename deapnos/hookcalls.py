"""Calling the plugins' hooks, one plugin at a time, and the registries built from what they return.

Each hook runs through pluggy with only one plugin's implementation (:func:`call_each`,
:func:`notify`), so every result and every error has its plugin: an error in plugin code is a
:class:`PluginError` naming it.  The collectors (:func:`integrity_checks`, :func:`all_tasks`,
:func:`zoo_optimizers`, ...) turn the results into registries, deapnos's own built-ins
(:func:`register_builtins`) first.  Loading the plugins is :mod:`deapnos.plugins`' job, which
re-exports every name here.
"""
from __future__ import annotations

import logging
from typing import Any
from collections.abc import Callable, Iterator, Sequence
from types import ModuleType

import pluggy
from pluggy import HookImpl

from .registry import BUILTIN, Registry, RegistryClash

log = logging.getLogger("deapnos.plugins")     # the plugin room's logger, as before the split

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


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text.splitlines()[0]}" if text else type(exc).__name__


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
