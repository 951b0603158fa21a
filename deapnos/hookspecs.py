"""pluggy hook specifications of deapnos (the model: pytest's hookspec module).

A plugin is a module or object with functions marked ``@deapnos.hookimpl`` whose names are these.
Register one through the ``deapnos`` entry-point group, ``-p MODULE`` or the config's ``plugins``.
Every hook is called through pluggy's hook callers, one plugin at a time
(``pm.subset_hook_caller``), so ``hookwrapper``/``wrapper``, ``tryfirst`` and ``trylast`` work and
every result and error has its plugin; see docs/plugins.md.
"""
from __future__ import annotations

import argparse
from typing import TYPE_CHECKING, Any
from collections.abc import Callable, Mapping, Sequence

import pluggy

if TYPE_CHECKING:
    from deapnos.evaluate.integrity import IntegrityCheck
    from deapnos.evaluate.result import EvalResult
    from deapnos.evaluate.tasks import Task
    from deapnos.space.psets import SearchSpace
    from deapnos.zoo import ScheduleEntry, ZooEntry

PROJECT = "deapnos"
hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)


# -- the search space ------------------------------------------------------------------------------

@hookspec
def deapnos_add_primitives(space: SearchSpace) -> None:
    """Extend the search space before it is built.

    Call ``space.add_operand``, ``space.add_unary``, ``space.add_binary`` or ``space.add_decay``
    (:class:`deapnos.space.SearchSpace`); what a plugin adds is recorded as coming from it
    (``SearchSpace.provenance``).  A clash with an existing name is an error naming both.
    """


# -- named things: each hook fills one of the run's registries --------------------------------------

@hookspec
def deapnos_integrity_checks() -> Sequence[IntegrityCheck]:
    """Return a list of integrity checks (:class:`deapnos.evaluate.integrity.IntegrityCheck`).

    A genome must pass every enabled check before it is trained.  Check names are global: the same
    name from two plugins is an error naming both.  A check that decides the direction of descent
    returns ``CheckResult(flip=...)``; :func:`~deapnos.evaluate.integrity.run_integrity_checks` sets
    ``genome.flip`` from it.
    """


@hookspec
def deapnos_surrogates() -> Sequence[Task]:
    """Return a list of cheap tasks (:class:`deapnos.evaluate.tasks.Task`) for the search loop.

    Their ``kind`` is set to ``"surrogate"``."""


@hookspec
def deapnos_fitness_tasks() -> Sequence[Task]:
    """Return a list of tasks (:class:`deapnos.evaluate.tasks.Task`) for elimination and
    ``deapnos evaluate``.  Their ``kind`` is set to ``"fitness"`` (a task that one plugin also
    returns as a surrogate stays a surrogate)."""


@hookspec
def deapnos_map_backends() -> Mapping[str, Callable[..., Any]]:
    """Return ``{name: factory}`` of map backends, selectable with ``run.backend`` / ``--backend``.

    A factory is called with keywords ``workers``, ``threads``, ``device``, ``stall_timeout`` and
    ``context`` (the run's :class:`deapnos.context.Context`) and returns an object with
    ``map(fn, items, on_result=None)`` (results in input order; ``on_result(i, result)`` as each one
    arrives), ``workers`` and ``close(force=False)``; see ``deapnos.distributed.SerialBackend``.
    """


@hookspec
def deapnos_search_algorithms() -> Mapping[str, type]:
    """Return ``{name: strategy class}`` of search algorithms, selectable with ``run.algorithm``
    (the built-ins: ``deapnos.search.algorithms.ALGORITHMS``)."""


@hookspec
def deapnos_zoo_optimizers() -> Sequence[ZooEntry]:
    """Return named optimizers (:class:`deapnos.zoo.ZooEntry`) for the run's zoo registry."""


@hookspec
def deapnos_zoo_schedules() -> Sequence[ScheduleEntry]:
    """Return named LR schedules (:class:`deapnos.zoo.ScheduleEntry`) for the run's zoo registry."""


# -- configuration: the model is pytest_addoption ---------------------------------------------------

@hookspec
def deapnos_addoption(parser: argparse._ArgumentGroup) -> None:
    """Add options to ``deapnos run`` (``parser.add_argument``, argparse's API).  Their values reach
    the plugin as ``context.options`` (the parsed :class:`argparse.Namespace`)."""


@hookspec
def deapnos_config_sections() -> Mapping[str, type]:
    """Return ``{name: dataclass}``: config tables ``[plugin.NAME]`` that this plugin reads.  Each is
    validated against its dataclass when the run starts (an unknown field is an error naming it) and
    reaches the plugin as ``context.sections[NAME]`` (the dataclass instance; defaults when absent)."""


# -- observers ------------------------------------------------------------------------------------

@hookspec
def deapnos_evaluation_finished(result: EvalResult) -> None:
    """Observer: an evaluation finished; ``result`` is a :class:`deapnos.evaluate.result.EvalResult`."""


@hookspec
def deapnos_timestep_finished(run_dir: str, timestep: int, particles: list[dict]) -> None:
    """Observer: a search timestep finished (``particles``: list of dicts with genome text, fitness, age)."""


@hookspec
def deapnos_run_finished(run_dir: str, hall_of_fame: list[dict]) -> None:
    """Observer: a search finished (``hall_of_fame``: list of dicts, best first)."""
