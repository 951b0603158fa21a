"""One registry pattern for every named thing (after timm's ``register_model`` / ``list_models``).

A :class:`Registry` maps names to objects of one kind (zoo optimizers, schedules, map backends,
search algorithms, tasks, integrity checks) and records which plugin registered each.  Built-in
registries are filled once at import and never change afterwards; a run's own registries are copies
(:meth:`Registry.copy`) that its plugins extend, so that nothing global changes as a side effect.
"""
from __future__ import annotations

import difflib
import fnmatch
from typing import Any, TypeVar, overload
from collections.abc import Callable, Iterator, Mapping

T = TypeVar("T")
D = TypeVar("D")

BUILTIN = "deapnos"


class UnknownNameError(KeyError, ValueError):
    """A name that is not registered; the message lists the known ones (KeyError and ValueError
    both catch it)."""

    def __str__(self) -> str:           # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


class RegistryClash(ValueError):
    """Two plugins registered the same name; ``owners`` names both (first, second)."""

    def __init__(self, kind: str, name: str, owners: tuple[str, str]):
        self.kind, self.name, self.owners = kind, name, owners
        super().__init__(f"{kind} {name!r} is provided by both {owners[0]!r} and {owners[1]!r}")


_MISSING: Any = object()


class Registry(Mapping[str, T]):
    """Named objects of one ``kind`` (used in messages: ``"map backend"``), in registration order.
    A read-only mapping; :meth:`get` without a default raises :class:`UnknownNameError`."""

    def __init__(self, kind: str):
        self.kind = kind
        self._items: dict[str, T] = {}
        self._owners: dict[str, str] = {}

    @overload
    def register(self, name: str, obj: T, *, plugin: str = BUILTIN) -> T: ...

    @overload
    def register(self, name: str, obj: None = None, *, plugin: str = BUILTIN) -> Callable[[T], T]: ...

    def register(self, name, obj=None, *, plugin=BUILTIN):
        """Register ``obj`` under ``name``; without ``obj``, a decorator that registers what it
        decorates.  The same name from another plugin raises :class:`RegistryClash`."""
        if obj is None:
            def decorate(target: T) -> T:
                self.register(name, target, plugin=plugin)
                return target
            return decorate
        if not isinstance(name, str) or not name:
            raise ValueError(f"a {self.kind} needs a non-empty string name, got {name!r}")
        if name in self._items and self._items[name] is not obj:
            raise RegistryClash(self.kind, name, (self._owners[name], plugin))
        self._items[name] = obj
        self._owners[name] = plugin
        return obj

    @overload
    def get(self, name: str) -> T: ...

    @overload
    def get(self, name: str, default: D) -> T | D: ...

    def get(self, name: str, default: Any = _MISSING) -> Any:
        """The object registered as ``name``; an unknown name returns ``default`` when one is
        given, else raises :class:`UnknownNameError` listing the known names."""
        try:
            return self._items[name]
        except KeyError:
            if default is not _MISSING:
                return default
            raise self.unknown(name) from None

    def __getitem__(self, name: str) -> T:
        return self.get(name)

    def unknown(self, name: str, hint: str = "") -> UnknownNameError:
        """The error for an unknown ``name``: close matches first, then every known name."""
        close = difflib.get_close_matches(str(name), list(self._items), n=3)
        guess = f" (did you mean {', '.join(close)}?)" if close else ""
        known = ", ".join(self.names()) or "(none)"
        return UnknownNameError(f"unknown {self.kind} {name!r}{guess}; known: {known}{hint}")

    def names(self, pattern: str | None = None) -> list[str]:
        """Registered names in registration order, filtered by a shell ``pattern`` (``"adam*"``)."""
        return [n for n in self._items if pattern is None or fnmatch.fnmatchcase(n, pattern)]

    def owner(self, name: str) -> str:
        """The plugin that registered ``name`` (``"deapnos"`` for a built-in)."""
        self.get(name)
        return self._owners[name]

    def copy(self) -> Registry[T]:
        other: Registry[T] = Registry(self.kind)
        other._items = dict(self._items)
        other._owners = dict(self._owners)
        return other

    def __contains__(self, name: object) -> bool:
        return name in self._items

    def __iter__(self) -> Iterator[str]:
        return iter(list(self._items))

    def __len__(self) -> int:
        return len(self._items)

    def __repr__(self) -> str:
        return f"Registry({self.kind!r}, {self.names()})"
