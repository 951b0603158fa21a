"""The run's context: the plugin manager and everything built from it, passed explicitly.

:func:`build_context` is the one place that loads the plugins: it registers deapnos's own hook
modules (map backends, search algorithms, zoo: :data:`BUILTIN_PLUGINS`, as pytest registers its
default plugins) beside the installed and named plugins, and builds the search space, the tasks,
the integrity checks and the run's registries (map backends, search algorithms, zoo, plugin config
sections) from them.  The built-in registries are never changed: plugin additions go into the
context's copies.  Every command that reads genomes or runs evaluations gets its plugins here.
"""
from __future__ import annotations

import argparse
from dataclasses import dataclass, field
from functools import cached_property
from typing import TYPE_CHECKING, Any
from collections.abc import Mapping, Sequence

from . import distributed as _distributed
from . import zoo as _zoo
from . import plugins as _plugins
from .registry import Registry
from .search import algorithms as _algorithms

if TYPE_CHECKING:
    from .plugins import DeapnosPluginManager
    from .space.psets import SearchSpace

#: deapnos's own modules that implement hooks (their built-ins), registered in every context
BUILTIN_PLUGINS = (_distributed, _algorithms, _zoo)

#: the parts :meth:`Context.build` makes, each from one hook (or more)
PARTS = ("space", "checks", "tasks", "backends", "algorithms", "zoo", "schedules", "section_types")


@dataclass
class Context:
    """What a run needs from its plugins.  The parts (``space``, ``checks``, ``tasks``,
    ``backends``, ``algorithms``, ``zoo``, ``schedules``, ``section_types``) are built from the
    plugins on first use, or all at once by :meth:`build` (what :func:`build_context` does unless
    ``eager=False``), so that a command that needs only some of them asks only those hooks.
    ``sections``: the validated ``[plugin.NAME]`` tables (dataclass instances, see
    :meth:`configure`); ``options``: the parsed ``deapnos run`` command line, where plugin options
    (``deapnos_addoption``) land."""
    pm: DeapnosPluginManager
    compat: bool = False
    sections: dict[str, Any] = field(default_factory=dict)
    options: argparse.Namespace | None = None

    def __post_init__(self) -> None:
        _plugins.register_builtins(self.pm, BUILTIN_PLUGINS)

    @cached_property
    def space(self) -> SearchSpace:
        """The paper's space extended by every plugin, built."""
        return _plugins.build_space(self.pm, compat=self.compat)

    @cached_property
    def checks(self) -> Mapping[str, Any]:
        """The integrity checks by name (a Registry from the plugins; a plain dict in tests)."""
        return _plugins.integrity_checks(self.pm)

    @cached_property
    def tasks(self) -> Mapping[str, Any]:
        """Surrogates and fitness tasks by name."""
        return _plugins.all_tasks(self.pm)

    @cached_property
    def backends(self) -> Registry:
        return _plugins.map_backends(self.pm)

    @cached_property
    def algorithms(self) -> Registry:
        return _plugins.search_algorithms(self.pm)

    @cached_property
    def zoo(self) -> Registry:
        return _plugins.zoo_optimizers(self.pm)

    @cached_property
    def schedules(self) -> Registry:
        return _plugins.zoo_schedules(self.pm)

    @cached_property
    def section_types(self) -> Registry:
        return _plugins.config_sections(self.pm)

    def build(self) -> Context:
        """Build every part now (a broken plugin fails here, before anything runs); returns self."""
        for part in PARTS:
            getattr(self, part)
        return self

    @classmethod
    def from_manager(cls, pm: DeapnosPluginManager, compat: bool = False, space: SearchSpace | None = None,
                     checks: Mapping | None = None, tasks: Mapping | None = None, *,
                     algorithms: Registry | None = None, zoo: Registry | None = None, eager: bool = True) -> Context:
        """Ask every plugin once; parts already built (``space``, ``checks``, ``tasks``, ``algorithms``,
        ``zoo``) are used as they are.  ``eager=False``: build each other part on first use."""
        ctx = cls(pm=pm, compat=compat)
        for name, part in (("space", space), ("checks", checks), ("tasks", tasks), ("algorithms", algorithms),
                           ("zoo", zoo)):
            if part is not None:
                ctx.__dict__[name] = part        # what cached_property reads first
        return ctx.build() if eager else ctx

    def configure(self, tables: dict[str, dict], options: argparse.Namespace | None = None) -> None:
        """Validate the config's ``[plugin.NAME]`` tables against the plugins' dataclasses (absent:
        the defaults) and keep them, and the command line, for the plugins.  Raises ConfigError."""
        from .search.config import ConfigError, build_section
        unknown = sorted(set(tables) - set(self.section_types))
        if unknown:
            known = ", ".join(f"[plugin.{n}]" for n in self.section_types.names()) or "none"
            raise ConfigError(f"unknown config section [plugin.{unknown[0]}]: no loaded plugin reads it "
                              f"(plugin sections: {known})")
        self.sections = {name: build_section(cls, tables.get(name, {}), f"plugin.{name}")
                         for name, cls in self.section_types.items()}
        self.options = options


def build_context(plugins: Sequence[Any] = (), compat: bool = False, autoload: bool | None = None,
                  strict: bool = True, eager: bool = True) -> Context:
    """Load the plugins and build the run's :class:`Context`.

    ``plugins``: what ``-p`` and the config's ``plugins`` name, or plugin objects (see
    :func:`deapnos.plugins.get_plugin_manager`); the installed ones load too unless ``autoload`` is
    False (default: unless ``DEAPNOS_DISABLE_PLUGIN_AUTOLOAD`` is set).  ``strict=False``: a plugin
    that fails to load is recorded in ``ctx.pm.failed`` and skipped instead of raising.
    ``eager=False``: each part is built on first use (a command that needs only the space asks
    no other hook, and can catch a part's error on its own)."""
    pm = _plugins.get_plugin_manager(plugins, autoload=autoload, strict=strict)
    return Context.from_manager(pm, compat=compat, eager=eager)
