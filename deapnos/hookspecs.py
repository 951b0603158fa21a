"""pluggy hook specifications of deapnos (the model: pytest's hookspec module).

A plugin is a module or object with functions marked ``@deapnos.hookimpl`` whose names are these.
Register one through the ``deapnos`` entry-point group, ``-p MODULE`` or the config's ``plugins``.
"""
from __future__ import annotations

import pluggy

PROJECT = "deapnos"
hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)


@hookspec
def deapnos_add_primitives(space):
    """Extend the search space before it is built.

    Call ``space.add_operand``, ``space.add_unary``, ``space.add_binary`` or ``space.add_decay``
    (:class:`deapnos.space.SearchSpace`).  A clash with an existing name is an error naming both.
    """


@hookspec
def deapnos_integrity_checks():
    """Return a list of integrity checks (:class:`deapnos.evaluate.integrity.IntegrityCheck`).

    A genome must pass every enabled check before it is trained.  Check names are global: the same
    name from two plugins is an error naming both.  A check that decides the direction of descent
    returns ``CheckResult(flip=...)``; :func:`~deapnos.evaluate.integrity.run_integrity_checks` sets
    ``genome.flip`` from it.
    """


@hookspec
def deapnos_surrogates():
    """Return a list of cheap tasks (:class:`deapnos.evaluate.tasks.Task`) for the search loop."""


@hookspec
def deapnos_fitness_tasks():
    """Return a list of tasks (:class:`deapnos.evaluate.tasks.Task`) for elimination and
    ``deapnos evaluate``."""


@hookspec
def deapnos_evaluation_finished(result):
    """Observer: an evaluation finished; ``result`` is a :class:`deapnos.evaluate.result.EvalResult`."""


@hookspec
def deapnos_timestep_finished(run_dir, timestep, particles):
    """Observer: a search timestep finished (``particles``: list of dicts with genome text, fitness, age)."""


@hookspec
def deapnos_run_finished(run_dir, hall_of_fame):
    """Observer: a search finished (``hall_of_fame``: list of dicts, best first)."""
