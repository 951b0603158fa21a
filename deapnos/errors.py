"""Errors that several rooms raise or catch, at the bottom so that each imports them downward.

:class:`ConfigError` (a config that cannot be used; raised by the config readers, caught by the
commands) and :class:`SearchError` (a search that cannot go on; raised by the run and its
algorithms).  Both stay importable from their old homes (``deapnos.search.config``,
``deapnos.search.runner``).
"""
from __future__ import annotations


class ConfigError(ValueError):
    """A configuration that cannot be used; the message names the field."""


class SearchError(RuntimeError):
    """A search that cannot go on (a seed genome or a reference that fails, no valid genome)."""
