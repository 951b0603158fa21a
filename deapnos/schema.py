"""Declarative schemas of the files deapnos reads: one small validator for all of them.

A file format is declared once, as a dataclass (the config sections, :class:`ProtocolConfig`,
:class:`~deapnos.search.state.Particle`) or a :class:`~typing.TypedDict` (the plain-JSON parts of
``checkpoint.json`` and ``status.json``), with its true types (``int | None``, ``str | list[str]``,
``Literal[...]``, ``list[X]``, ``dict[str, X]``, ``tuple[X, ...]``, nested dataclasses and TypedDicts)
and, in the field metadata (:func:`setting`), what a type cannot say: documentation, bounds (``minimum``,
``maximum``, ``above``, ``below``), choices of list items, non-empty and distinct lists, and "a name or a
list of names".  :func:`parse` checks a document against it and builds the value; :func:`check_fields`
checks an instance built in code (``__post_init__``).  Every failure is one :class:`SchemaError` naming
the field by its dotted path (``search.particles``, ``particles[3].index``) and the value.

Why our own rather than pydantic: deapnos's schemas are plain dataclasses that the rest of the code
(and plugins: ``[plugin.NAME]`` tables) already builds and reads; pydantic would be a second, heavy
dependency with its own model classes, its own coercions (``"3"`` -> 3) and its own multi-line error
texts, and the checks needed here fit in this one module.  It imports nothing from deapnos, so every
layer may use it.
"""
from __future__ import annotations

import dataclasses
import functools
import math
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal, Union, get_args, get_origin

_NO_VALUE: Any = object()


class SchemaError(ValueError):
    """One value that does not fit its schema.  ``kind``: ``type`` (wrong type or value), ``unknown``
    (a field the schema does not have), ``missing`` (a required field is absent)."""

    def __init__(self, path: str, problem: str, value: Any = _NO_VALUE, kind: str = "type",
                 allowed: tuple[str, ...] = ()):
        self.path, self.problem, self.value, self.kind, self.allowed = path, problem, value, kind, allowed
        super().__init__(self.describe())

    def describe(self, noun: str = "field") -> str:
        """The one-line message: ``{noun} PATH = VALUE: PROBLEM`` (``unknown {noun} PATH (allowed: ...)``,
        ``missing {noun} PATH``)."""
        path = self.path or "<top>"
        if self.kind == "unknown":
            return f"unknown {noun} {path} ({self.problem})"
        if self.kind == "missing":
            return f"missing {noun} {path} ({self.problem})"
        shown = "" if self.value is _NO_VALUE else f" = {_short(self.value)}"
        return f"{noun} {path}{shown}: {self.problem}"


def _short(value: Any, limit: int = 120) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[:limit - 3] + "..."


def setting(default: Any = dataclasses.MISSING, doc: str = "", *, minimum: float | None = None,
            maximum: float | None = None, above: float | None = None, below: float | None = None,
            item_choices: tuple | None = None, names: str | None = None, nonempty: bool = False,
            unique: bool = False) -> Any:
    """A dataclass field with its documentation and constraints in the metadata.  Bounds apply to a
    number, or to every item of a list of numbers; ``minimum``/``maximum`` are inclusive,
    ``above``/``below`` exclusive.  ``names``: the field is a name or a non-empty list of distinct
    names, ``names`` says of what (``"a task name"``).  A list or dict default is copied per instance."""
    meta = {"doc": doc, "min": minimum, "max": maximum, "above": above, "below": below,
            "item_choices": item_choices, "names": names, "nonempty": nonempty, "unique": unique}
    if isinstance(default, (list, dict)):
        return dataclasses.field(default_factory=functools.partial(_copy, default), metadata=meta)
    return dataclasses.field(default=default, metadata=meta)


def _copy(value):
    import copy
    return copy.deepcopy(value)


@dataclass(frozen=True)
class Rules:
    """How :func:`parse` treats numbers.  ``keep_ints``: an integer in a float field stays an integer
    (as written: what a fingerprint or a checkpoint hashes and writes back); ``finite``: inf and NaN
    are refused (a config), or accepted (data deapnos wrote itself, e.g. a checkpoint's -inf)."""
    keep_ints: bool = False
    finite: bool = True
    table: str = "a table"          # what a dict is called in the messages ("an object" for JSON)


CONFIG_RULES = Rules()
JSON_RULES = Rules(keep_ints=True, finite=False, table="an object")


# ----------------------------------------------------------------------------------------------
# types
# ----------------------------------------------------------------------------------------------

@functools.cache
def hints(cls: Any) -> dict[str, Any]:
    """The resolved type hints of a dataclass or TypedDict (string annotations evaluated).  A plugin's
    dataclass whose annotations cannot be resolved here (a name imported only for type checkers) is
    read by the type of each field's default, as before the schemas."""
    try:
        return typing.get_type_hints(cls)
    except (NameError, TypeError):
        if not dataclasses.is_dataclass(cls):
            raise
        out: dict[str, Any] = {}
        for f in dataclasses.fields(cls):
            default = f.default if f.default is not dataclasses.MISSING else (
                f.default_factory() if callable(f.default_factory) else None)
            out[f.name] = Any if default is None else type(default)
        return out


def describe_type(tp: Any, rules: Rules = CONFIG_RULES) -> str:
    """What a value of type ``tp`` is, in words (``an integer``, ``a list``, ``one of a, b``)."""
    if tp is Any or tp is object:
        return "anything"
    if tp is type(None):
        return "nothing (null)"
    origin = get_origin(tp)
    if origin is Literal:
        return "one of " + ", ".join(map(str, get_args(tp)))
    if origin in (Union, types.UnionType):
        return " or ".join(describe_type(a, rules) for a in get_args(tp))
    base = origin or tp
    if dataclasses.is_dataclass(base) or typing.is_typeddict(base) or base in (dict, Mapping):
        return rules.table
    return {int: "an integer", float: "a number", bool: "true or false", str: "a string",
            list: "a list", tuple: "a list"}.get(base, getattr(base, "__name__", str(base)))


def parse(tp: Any, value: Any, path: str = "", rules: Rules = CONFIG_RULES, meta: Mapping | None = None) -> Any:
    """``value`` checked against type ``tp`` (and field metadata ``meta``), converted where the type
    says so (a table to its dataclass, a list to a tuple, an integer to a float); raises
    :class:`SchemaError` naming ``path``."""
    meta = meta or {}
    if meta.get("names"):
        return _names(path, value, meta["names"])
    out = _parse_type(tp, value, path, rules)
    try:
        _check_meta(path, out, meta)
    except SchemaError as exc:
        if exc.path == path and exc.kind == "type":     # show the value as written (3, not 3.0)
            raise SchemaError(path, exc.problem, value) from None
        raise
    return out


def _fail(path: str, value: Any, tp: Any, rules: Rules) -> SchemaError:
    return SchemaError(path, f"expected {describe_type(tp, rules)}", value)


def _parse_type(tp: Any, value: Any, path: str, rules: Rules) -> Any:     # noqa: C901 - one case per type
    if tp is Any or tp is object:
        return value
    if tp is type(None):
        if value is None:
            return None
        raise _fail(path, value, tp, rules)
    origin, args = get_origin(tp), get_args(tp)
    if origin is Literal:
        if any(value == a and type(value) is type(a) for a in args):
            return value
        raise SchemaError(path, f"allowed values: {', '.join(map(str, args))}", value)
    if origin in (Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        options = [a for a in args if a is not type(None)]
        errors = []
        for option in options:
            try:
                return _parse_type(option, value, path, rules)
            except SchemaError as exc:
                errors.append(exc)
        # one option of the right kind but a bad value: its error says more than "expected X or Y"
        deep = [e for e in errors if e.path != path or e.problem.startswith("allowed")]
        if len(options) == 1 or len(deep) == 1:
            raise (deep or errors)[0]
        raise _fail(path, value, tp, rules)
    if dataclasses.is_dataclass(tp) and isinstance(tp, type):
        if isinstance(value, tp):
            return value
        return _parse_fields(tp, value, path, rules, build=True)
    if typing.is_typeddict(tp):
        return _parse_fields(tp, value, path, rules, build=False)
    base = origin or tp
    if base is bool:
        if isinstance(value, bool):
            return value
        raise _fail(path, value, tp, rules)
    if base is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        raise _fail(path, value, tp, rules)
    if base is float:
        if isinstance(value, int) and not isinstance(value, bool):
            return value if rules.keep_ints else float(value)
        if not isinstance(value, float):
            raise _fail(path, value, tp, rules)
        if rules.finite and not math.isfinite(value):
            raise SchemaError(path, "expected a finite number", value)
        return value
    if base is str:
        if isinstance(value, str):
            return value
        raise _fail(path, value, tp, rules)
    if base in (list, tuple):
        if not isinstance(value, (list, tuple)):
            raise _fail(path, value, tp, rules)
        if base is tuple and args and not (len(args) == 2 and args[1] is Ellipsis):
            if len(value) != len(args):
                raise SchemaError(path, f"expected a list of {len(args)} items", value)
            return tuple(_parse_type(a, v, f"{path}[{i}]", rules) for i, (a, v) in enumerate(zip(args, value)))
        item = args[0] if args else Any
        items = [_parse_type(item, v, f"{path}[{i}]", rules) for i, v in enumerate(value)]
        return tuple(items) if base is tuple else items
    if base in (dict, Mapping):
        if not isinstance(value, dict):
            raise _fail(path, value, tp, rules)
        key_t, val_t = args if args else (str, Any)
        out = {}
        for k, v in value.items():
            if key_t is str and not isinstance(k, str):
                raise SchemaError(path, f"key {k!r} is not a string", value)
            out[k] = _parse_type(val_t, v, f"{path}.{k}" if path else str(k), rules)
        return out
    if isinstance(base, type):
        if isinstance(value, base):
            return value
        raise _fail(path, value, tp, rules)
    raise TypeError(f"schema: type {tp!r} of {path} is not supported")


def _field_meta(cls: type) -> dict[str, Mapping]:
    if dataclasses.is_dataclass(cls):
        return {f.name: f.metadata for f in dataclasses.fields(cls) if f.init}
    return {}


def _required(cls: type) -> set[str]:
    if dataclasses.is_dataclass(cls):
        return {f.name for f in dataclasses.fields(cls) if f.init and f.default is dataclasses.MISSING
                and f.default_factory is dataclasses.MISSING}
    return set(getattr(cls, "__required_keys__", ()))


def fields_of(cls: type) -> list[str]:
    """The field names of a dataclass (those its constructor takes) or a TypedDict, in order."""
    if dataclasses.is_dataclass(cls):
        return [f.name for f in dataclasses.fields(cls) if f.init]
    return list(hints(cls))


def _parse_fields(cls: type, value: Any, path: str, rules: Rules, build: bool) -> Any:
    if not isinstance(value, dict):
        raise SchemaError(path, f"expected {rules.table}", value)
    known = fields_of(cls)
    unknown = sorted(set(value) - set(known), key=str)
    if unknown:
        where = f"allowed in [{path}]" if path else "allowed"
        raise SchemaError(_join(path, unknown[0]), f"{where}: {', '.join(known)}", kind="unknown",
                          allowed=tuple(known))
    missing = [name for name in known if name in _required(cls) and name not in value]
    if missing:
        raise SchemaError(_join(path, missing[0]), "required", kind="missing")
    types_, metas = hints(cls), _field_meta(cls)
    out = {name: parse(types_[name], v, _join(path, name), rules, metas.get(name)) for name, v in value.items()}
    if not build:
        return out
    try:
        return cls(**out)
    except SchemaError:
        raise
    except (TypeError, ValueError) as exc:        # a check across fields (__post_init__)
        raise SchemaError(path, str(exc), kind="value") from None


def _join(path: str, name: str) -> str:
    return f"{path}.{name}" if path else str(name)


def check_fields(obj: Any, path: str = "", rules: Rules = CONFIG_RULES) -> None:
    """Check (and convert in place) every field of the dataclass instance ``obj`` against its
    declaration: the same checks as :func:`parse`, for an instance built in code."""
    cls: Any = type(obj)
    types_ = hints(cls)
    for f in dataclasses.fields(obj):
        value = parse(types_[f.name], getattr(obj, f.name), _join(path, f.name), rules, f.metadata)
        object.__setattr__(obj, f.name, value)


def _names(path: str, value: Any, what: str) -> Any:
    """A name or a non-empty list of distinct names."""
    if isinstance(value, str) and value:
        return value
    if (isinstance(value, list) and value and all(isinstance(v, str) and v for v in value)
            and len(set(value)) == len(value)):
        return list(value)
    raise SchemaError(path, f"expected {what} or a non-empty list of distinct names", value)


def _check_meta(path: str, value: Any, meta: Mapping) -> None:
    if value is None:
        return
    if isinstance(value, (list, tuple)):
        if meta.get("nonempty") and not value:
            raise SchemaError(path, "expected a non-empty list", value)
        if meta.get("unique") and len(set(value)) != len(value):
            raise SchemaError(path, "expected distinct items", value)
        choices = meta.get("item_choices")
        for i, item in enumerate(value):
            if choices and item not in choices:
                raise SchemaError(f"{path}[{i}]", f"allowed values: {', '.join(choices)}", item)
            _check_bounds(f"{path}[{i}]", item, meta)
        return
    _check_bounds(path, value, meta)


def _check_bounds(path: str, value: Any, meta: Mapping) -> None:
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        return
    for key, ok, text in (("min", lambda b: value >= b, ">="), ("max", lambda b: value <= b, "<="),
                          ("above", lambda b: value > b, ">"), ("below", lambda b: value < b, "<")):
        bound = meta.get(key)
        if bound is not None and not ok(bound):
            raise SchemaError(path, f"must be {text} {bound}", value)


def field_doc(f: dataclasses.Field) -> str:
    return f.metadata.get("doc", "")
