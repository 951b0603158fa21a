"""deapnos: Neural Optimizer Search with DEAP and PyTorch.

Public API::

    import deapnos
    genome = deapnos.Genome.parse("none ~ div(v_hat, sqrt(s_hat))")
    opt = deapnos.optimizer("opt10", model.parameters(), lr=1e-3, total_steps=10_000)
    deapnos.zoo.names(); deapnos.zoo.get("adam")
"""
from __future__ import annotations

from typing import TYPE_CHECKING

from .hookspecs import hookimpl

if TYPE_CHECKING:   # imported on first use (__getattr__): `deapnos --help` must not load torch
    from .space import Genome, GenomeParseError, SearchSpace, SpaceError

def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version
    try:
        return version("deapnos")
    except PackageNotFoundError:        # a source tree that was never installed
        return "0+unknown"


__version__ = _version()


def optimizer(name_or_genome, params, lr: float = 1e-3, total_steps: int | None = None, warmup_steps: int = 0,
              base_schedule: str = "warmup_cosine", **kwargs):
    """An :class:`~deapnos.optim.EvolvedOptimizer` for a zoo name, a genome, genome text or a genome file."""
    from .optim.optimizer import EvolvedOptimizer
    genome = resolve_genome(name_or_genome)
    return EvolvedOptimizer(params, genome, lr=lr, total_steps=total_steps, warmup_steps=warmup_steps,
                            base_schedule=base_schedule, **kwargs)


def resolve_genome(name_or_genome, space: SearchSpace | None = None, zoo_registry=None) -> Genome:
    """A genome from a Genome, a zoo name, a path to a genome file, or genome text; ``space`` (a
    plugin-extended space) reads plugin primitives, ``zoo_registry`` (a run's zoo) plugin entries."""
    import os

    from .space import Genome
    if isinstance(name_or_genome, Genome):
        return name_or_genome
    if not isinstance(name_or_genome, (str, os.PathLike)):
        raise TypeError(f"expected a Genome, zoo name, genome file or genome text, got "
                        f"{type(name_or_genome).__name__}")
    text = os.fspath(name_or_genome)
    from . import zoo
    if text in zoo.names(registry=zoo_registry):
        return zoo.get(text, space=space, registry=zoo_registry)
    if os.path.exists(text):
        return Genome.load(text, space=space)
    if "~" in text:
        return Genome.parse(text, space=space)
    raise ValueError(f"{text!r} is not a zoo optimizer, a genome file or genome text; zoo names: "
                     f"{', '.join(zoo.names(registry=zoo_registry))}")


_LAZY = {"Genome": ("deapnos.space", "Genome"), "GenomeParseError": ("deapnos.space", "GenomeParseError"),
         "SearchSpace": ("deapnos.space", "SearchSpace"), "SpaceError": ("deapnos.space", "SpaceError"),
         "Task": ("deapnos.evaluate.tasks", "Task"), "EvalResult": ("deapnos.evaluate.result", "EvalResult"),
         "IntegrityCheck": ("deapnos.evaluate.integrity", "IntegrityCheck"),
         "CheckResult": ("deapnos.evaluate.integrity", "CheckResult"),
         "EvolvedOptimizer": ("deapnos.optim.optimizer", "EvolvedOptimizer"),
         "run_trials": ("deapnos.optim.trials", "run_trials"),
         "TaskData": ("deapnos.evaluate.tasks", "TaskData"),
         "TaskDataError": ("deapnos.evaluate.tasks", "TaskDataError"),
         # the Python API (deapnos.search and deapnos.evaluate are the subpackages)
         "run_search": ("deapnos.api", "run_search"), "compare": ("deapnos.api", "compare"),
         "SearchResult": ("deapnos.api", "SearchResult"), "CompareResult": ("deapnos.api", "CompareResult")}


def __getattr__(name):
    # lazy submodules and classes keep `import deapnos` light on SCOOP workers
    import importlib
    if name in ("zoo", "optim", "space", "evaluate", "search"):
        return importlib.import_module(f".{name}", __name__)
    if name in _LAZY:
        module, attr = _LAZY[name]
        return getattr(importlib.import_module(module), attr)
    raise AttributeError(f"module 'deapnos' has no attribute {name!r}")


__all__ = ["Genome", "GenomeParseError", "SearchSpace", "SpaceError", "optimizer", "resolve_genome", "zoo",
           "hookimpl", "Task", "EvalResult", "IntegrityCheck", "CheckResult", "EvolvedOptimizer", "run_trials",
           "TaskData", "TaskDataError", "run_search", "compare", "SearchResult", "CompareResult"]
