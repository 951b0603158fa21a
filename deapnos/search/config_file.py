"""Config files as TOML documents, below the schema: reading one as hostile input (a regular file
under a size limit, UTF-8 text, TOML nested only to a bounded depth; each failure a one-line
ConfigError naming the file and the fix), ``section.field=value`` overrides, and writing TOML
(tomli-w)."""
from __future__ import annotations

import copy
import os
import stat
import tomllib
from pathlib import Path
from typing import Any

from ..errors import ConfigError

MAX_CONFIG_BYTES = 1 << 20      # 1 MiB: far above any real config, far below what could exhaust memory
MAX_DEPTH = 32                  # tables and arrays inside each other; real configs use 3


def read_config_file(path: str | Path) -> dict:
    """The TOML document of the config file ``path`` (module docstring)."""
    path = Path(path)
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))    # a FIFO must not block the open
    except OSError as exc:
        raise ConfigError(f"cannot read config file {path}: {exc.strerror or exc}") from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise ConfigError(f"config file {path} is not a regular file (a folder, device or pipe); give a "
                              f".toml file")
        if st.st_size > MAX_CONFIG_BYTES:
            raise ConfigError(f"config file {path} is {st.st_size} bytes, more than {MAX_CONFIG_BYTES}: not a "
                              f"deapnos config")
        with os.fdopen(fd, "rb", closefd=False) as fh:
            data = fh.read(MAX_CONFIG_BYTES + 1)
    except OSError as exc:
        raise ConfigError(f"cannot read config file {path}: {exc.strerror or exc}") from None
    finally:
        os.close(fd)
    if len(data) > MAX_CONFIG_BYTES:
        raise ConfigError(f"config file {path} is larger than {MAX_CONFIG_BYTES} bytes: not a deapnos config")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML (not UTF-8 text at byte {exc.start}); save the file as "
                          f"UTF-8") from None
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from None
    except RecursionError:
        raise ConfigError(f"{path}: not valid TOML (nested more than {MAX_DEPTH} deep)") from None
    if _depth(doc) > MAX_DEPTH:
        raise ConfigError(f"{path}: tables and arrays nested more than {MAX_DEPTH} deep; not a deapnos config")
    return doc


def _depth(value, level: int = 0) -> int:
    if level > MAX_DEPTH:
        return level
    if isinstance(value, dict):
        return max((_depth(v, level + 1) for v in value.values()), default=level + 1)
    if isinstance(value, list):
        return max((_depth(v, level + 1) for v in value), default=level + 1)
    return level


def merge(base: dict, over: dict) -> dict:
    """Recursive merge of TOML tables (``over`` wins; lists are replaced, not appended)."""
    out = copy.deepcopy(base)
    for key, value in over.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def parse_override(text: str) -> tuple[list[str], Any]:
    """``section.field=value``: the value is read as TOML (``4``, ``0.5``, ``true``, ``["adam"]``,
    ``"text"``) and falls back to a plain string (``search.task=digits``)."""
    if "=" not in text:
        raise ConfigError(f"override {text!r} must look like section.field=value (e.g. search.particles=4)")
    key, raw = text.split("=", 1)
    parts = [p.strip() for p in key.strip().split(".")]
    if len(parts) < 2 or not all(parts):
        raise ConfigError(f"override {text!r}: the key must be section.field (e.g. search.particles=4)")
    raw = raw.strip()
    try:
        value = tomllib.loads(f"v = {raw}")["v"]
    except tomllib.TOMLDecodeError:
        value = raw
    return parts, value


def apply_overrides(data: dict, overrides) -> dict:
    data = copy.deepcopy(data)
    for text in overrides or ():
        parts, value = parse_override(text)
        node = data
        for p in parts[:-1]:
            nxt = node.setdefault(p, {})
            if not isinstance(nxt, dict):
                raise ConfigError(f"override {text!r}: {p} is not a section")
            node = nxt
        node[parts[-1]] = value
    return data


def dump_toml(data: dict) -> str:
    """A config document as TOML text (tomli-w; :mod:`tomllib` only reads)."""
    import tomli_w
    return tomli_w.dumps(data)


def toml_value(value) -> str:
    """One value as inline TOML (``4``, ``"text"``, ``[1, 2]``, ``{a = 1}``), as an override is
    written on the command line; TypeError for a value TOML cannot hold (None, objects)."""
    import tomli_w
    if isinstance(value, dict):
        return "{" + ", ".join(f"{tomli_w.dumps({k: 0}).rsplit(' = ', 1)[0]} = {toml_value(v)}"
                               for k, v in value.items()) + "}"
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    return tomli_w.dumps({"v": value})[len("v = "):-1]


_toml_value = toml_value        # the name deapnos.api imported
