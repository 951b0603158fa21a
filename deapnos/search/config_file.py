"""Reading a config file as hostile input: a regular file under a size limit, UTF-8 text, TOML
nested only to a bounded depth.  Each failure is a one-line ConfigError naming the file and the fix."""
from __future__ import annotations

import os
import stat
import tomllib
from pathlib import Path

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
