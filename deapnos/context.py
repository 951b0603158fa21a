"""The run's context: the plugin manager and everything built from it, passed explicitly.

:func:`build_context` is the one place that loads the plugins: it registers deapnos's own hook
modules (map backends, search algorithms, zoo: :data:`BUILTIN_PLUGINS`, as pytest registers its
default plugins) beside the installed and named plugins, and builds the search space, the tasks,
the integrity checks and the run's registries (map backends, search algorithms, zoo, plugin config
sections) from them.  The built-in registries are never changed: plugin additions go into the
context's copies.  Every command that reads genomes or runs evaluations gets its plugins here, and
so does every worker process (:mod:`deapnos.worker_entry`, one Context per plugin list).
"""
from __future__ import annotations

import argparse
from dataclasses import dataclass, field
from functools import cached_property
from typing import TYPE_CHECKING, Any
from collections.abc import Mapping, Sequence

from . import backends as _backends
from . import zoo as _zoo
from . import plugins as _plugins
from .registry import Registry
from .search import algorithms as _algorithms

if TYPE_CHECKING:
    from .plugins import DeapnosPluginManager
    from .search.config import Config
    from .space.psets import SearchSpace

#: deapnos's own modules that implement hooks (their built-ins), registered in every context
BUILTIN_PLUGINS = (_backends, _algorithms, _zoo)

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

    def check_config(self, cfg: Config, launching: bool = False) -> None:
        """Config fields that name plugin things, against this context: backend, algorithm, tasks,
        checks, protocol fields, baselines, ``[plugin.NAME]`` sections.  Raises ConfigError.
        Reads ``$DEAPNOS_DATA`` for the data check; changes nothing.  ([protocol] is checked when the
        config is read: :meth:`~deapnos.evaluate.protocol.ProtocolConfig.from_dict`.)  ``launching``:
        the check of a launcher that starts SCOOP itself, before any worker exists."""
        from .evaluate.worker import under_scoop
        from .errors import ConfigError
        from .plugins import TASK_KINDS
        checks, tasks = self.checks, self.tasks
        for path, name, registry in (("run.backend", cfg.run.backend, self.backends),
                                     ("run.algorithm", cfg.run.algorithm, self.algorithms)):
            if name not in registry:
                raise ConfigError(f"config field {path} = {name!r}: {registry.unknown(name)}")
        known = ", ".join(sorted(tasks)) or "none (no task plugin loaded)"
        named = [("search.init_task", n) for n in cfg.search.init_tasks]
        named += [("search.task", n) for n in cfg.search.tasks]
        named += [("validation.tasks", n) for n in cfg.validation.tasks]
        named += [(f"elimination.rungs[{i}].task", rung.task) for i, rung in enumerate(cfg.elimination.rungs)]
        for path, name in named:
            if name not in tasks:
                raise _unknown_task(path, name, tasks)
            if getattr(tasks[name], "kind", None) not in TASK_KINDS.values():
                raise ConfigError(f"config field {path} = {name!r}: task kind {getattr(tasks[name], 'kind', None)!r} "
                                  f"is neither of {', '.join(TASK_KINDS.values())} (a task comes from "
                                  f"deapnos_surrogates or deapnos_fitness_tasks)")
        if not cfg.fitness.relative:
            # raw scores rank failures (-1) below every trained candidate only when scores stay above -1
            raw = [n for n in cfg.search.tasks if tasks[n].metric == "log_loss"]
            if raw:
                raise ConfigError(f"config field fitness.relative = false: task {raw[0]!r} scores -ln(loss), which "
                                  "can fall below a failure's -1; use fitness.relative = true")
        from .search.fitness import reference_problem       # the run's zoo: built-ins and plugin entries
        problem = reference_problem(cfg.fitness.reference, self.zoo)
        if problem:
            raise ConfigError(problem)
        for name in cfg.tasks:
            if name not in tasks:
                raise ConfigError(f"config section [tasks.{name}]: no such task; allowed values: {known}")
        for name in cfg.search.integrity_checks:
            if name not in checks:
                raise ConfigError(f"config field search.integrity_checks: {name!r} is not installed; allowed values: "
                                  f"{', '.join(sorted(checks)) or 'none'}")
        from .search.elimination import baseline_problem
        for name in cfg.elimination.baselines:
            problem = baseline_problem(name, cfg.run.compat, self.zoo)
            if problem:
                raise ConfigError(f"config field elimination.baselines: {problem}")
        from .search.fitness import validation_tasks
        used = cfg.search.init_tasks + cfg.search.tasks + [r.task for r in cfg.elimination.rungs]
        used += validation_tasks(cfg, tasks) if cfg.validation.enabled else []
        for name in dict.fromkeys(used):
            task = tasks[name].replace(**cfg.tasks[name]) if name in cfg.tasks else tasks[name]
            try:
                task.check_available()
            except Exception as exc:   # noqa: BLE001 - TaskDataError or a plugin's own: names the path and how to get it
                raise ConfigError(f"{exc} (config: run.data_dir or [tasks.\"{name}\"] data_path)") from None
        if cfg.run.backend == "scoop" and not under_scoop() and not launching:
            raise ConfigError("run.backend = 'scoop' needs SCOOP: use `deapnos run` (it launches SCOOP) or "
                              "`python -m scoop -n N deapnos.run ...`")


def _unknown_task(path: str, name: str, tasks) -> Exception:
    """A one-line error for a task name that no loaded plugin provides: close matches first."""
    import difflib
    close = difflib.get_close_matches(str(name), list(tasks), n=3)
    guess = f" (did you mean {', '.join(close)}?)" if close else ""
    known = ", ".join(sorted(tasks)) or "none (no task plugin loaded)"
    from .errors import ConfigError
    return ConfigError(f"config field {path} = {name!r}: no such task{guess}; allowed values: {known}")


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
