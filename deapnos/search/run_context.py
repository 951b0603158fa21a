"""What a search takes from the run's Context (:class:`RunContext`, a Protocol: the context sits above
the search, which does not import it), and the deprecated form of ``SearchRun(...)`` before it."""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

if TYPE_CHECKING:
    from ..registry import Registry
    from ..space.psets import SearchSpace


@runtime_checkable
class RunContext(Protocol):
    """What a search takes from the run's :class:`deapnos.context.Context` (typed here: the context
    sits above the search, which does not import it)."""

    @property
    def pm(self) -> Any: ...

    @property
    def space(self) -> SearchSpace: ...

    @property
    def checks(self) -> Mapping[str, Any]: ...

    @property
    def tasks(self) -> Mapping[str, Any]: ...

    @property
    def algorithms(self) -> Registry: ...

    @property
    def zoo(self) -> Registry: ...


@dataclass
class _Parts:
    """The pieces of the deprecated form ``SearchRun(cfg, store, backend, pm, space, checks, ...)``."""
    pm: Any = None
    space: Any = None
    checks: Mapping[str, Any] | None = None
    tasks: Mapping[str, Any] | None = None
    algorithms: Registry | None = None
    zoo: Registry | None = None


#: the old signature after ``backend`` (positional order), and the parts among it
_OLD_ARGS = ("pm", "space", "checks", "map_fn", "tasks", "live", "algorithms", "zoo")
_OLD_PARTS = ("pm", "space", "checks", "tasks", "algorithms", "zoo")


def _old_form(ctx: Any, args: tuple, kwargs: dict, live: Any, map_fn: Any) -> tuple[_Parts, Any, Any]:
    """``(parts, live, map_fn)`` of a call in the deprecated form, with a DeprecationWarning."""
    import warnings
    if len(args) > len(_OLD_ARGS) - 1:
        raise TypeError(f"SearchRun() takes at most {len(_OLD_ARGS) + 3} positional arguments")
    given = dict(zip(_OLD_ARGS, (ctx, *args)))
    for key, value in kwargs.items():
        if key not in _OLD_PARTS or key in given:
            raise TypeError(f"SearchRun() got an unexpected or repeated keyword argument {key!r}")
        given[key] = value
    warnings.warn("SearchRun(cfg, store, backend, pm, space, checks, map_fn, tasks, live, algorithms, zoo) is "
                  "deprecated: pass the run's Context, SearchRun(cfg, store, backend, ctx, live=None, map_fn=None) "
                  "(deapnos.context.build_context, or Context.from_manager(pm, space=..., checks=..., tasks=...))",
                  DeprecationWarning, stacklevel=3)
    return (_Parts(**{k: given.get(k) for k in _OLD_PARTS}),
            given.get("live", live), given.get("map_fn", map_fn))
