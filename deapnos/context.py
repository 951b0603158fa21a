"""The run's context: the plugin manager and everything built from it, passed explicitly.

:func:`build_context` loads the plugins once and builds the search space, the tasks, the integrity
checks and the run's registries (map backends, search algorithms, zoo, plugin config sections).
The built-in registries are never changed: plugin additions go into the context's copies.
"""
from __future__ import annotations

import argparse
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from collections.abc import Mapping, Sequence

from . import plugins as _plugins
from .registry import Registry

if TYPE_CHECKING:
    from .plugins import DeapnosPluginManager
    from .space.psets import SearchSpace


@dataclass
class Context:
    """What a run needs from its plugins.  ``sections``: the validated ``[plugin.NAME]`` tables
    (dataclass instances, see :meth:`configure`); ``options``: the parsed ``deapnos run`` command
    line, where plugin options (``deapnos_addoption``) land."""
    pm: DeapnosPluginManager
    space: SearchSpace
    checks: Mapping[str, Any]       # a Registry from the plugins (a plain dict in tests)
    tasks: Mapping[str, Any]
    backends: Registry
    algorithms: Registry
    zoo: Registry
    schedules: Registry
    section_types: Registry
    compat: bool = False
    sections: dict[str, Any] = field(default_factory=dict)
    options: argparse.Namespace | None = None

    @classmethod
    def from_manager(cls, pm: DeapnosPluginManager, compat: bool = False, space: SearchSpace | None = None,
                     checks: Mapping | None = None, tasks: Mapping | None = None) -> Context:
        """Ask every plugin once; parts already built (``space``, ``checks``, ``tasks``) are reused."""
        return cls(pm=pm,
                   space=space if space is not None else _plugins.build_space(pm, compat=compat),
                   checks=checks if checks is not None else _plugins.integrity_checks(pm),
                   tasks=tasks if tasks is not None else _plugins.all_tasks(pm),
                   backends=_plugins.map_backends(pm), algorithms=_plugins.search_algorithms(pm),
                   zoo=_plugins.zoo_optimizers(pm), schedules=_plugins.zoo_schedules(pm),
                   section_types=_plugins.config_sections(pm), compat=compat)

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


def build_context(plugins: Sequence[Any] = (), compat: bool = False, autoload: bool | None = None) -> Context:
    """Load the plugins (``-p`` names, see :func:`deapnos.plugins.get_plugin_manager`) and build
    the run's :class:`Context`."""
    return Context.from_manager(_plugins.get_plugin_manager(plugins, autoload=autoload), compat=compat)
