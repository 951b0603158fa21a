"""One list syntax for every command: a repeatable option that also takes comma-separated values.

``-O a -O b`` == ``-O a,b``.  Values are split only at top-level commas, so genome text and torch
specs keep theirs: ``-O "torch:SGD(momentum=0.9, nesterov=True)",adam`` is two optimizers.
"""
from __future__ import annotations

import argparse
import warnings


def split_top_level(text: str, sep: str = ",") -> list[str]:
    """``text`` split at the ``sep`` characters outside (), [], {} and quotes; parts stripped,
    empty parts dropped."""
    parts, depth, quote, start = [], 0, "", 0
    for i, ch in enumerate(text):
        if quote:
            quote = "" if ch == quote else quote
        elif ch in "'\"":
            quote = ch
        elif ch in "([{":
            depth += 1
        elif ch in ")]}":
            depth = max(0, depth - 1)
        elif ch == sep and depth == 0:
            parts.append(text[start:i])
            start = i + 1
    parts.append(text[start:])
    return [p.strip() for p in parts if p.strip()]


class ListAppend(argparse.Action):
    """``action=ListAppend``: every use adds its top-level comma-separated values to one list."""

    def __call__(self, parser, namespace, values, option_string=None):
        items = list(getattr(namespace, self.dest, None) or [])
        items += split_top_level(str(values))
        setattr(namespace, self.dest, items)


def deprecated_list(old: str, new: str, sep: str = ","):
    """An action for an old list spelling ``old`` (values separated by ``sep``): adds to the same
    list as ``new`` and warns (DeprecationWarning, also shown by the CLI) once per use."""
    class _Deprecated(argparse.Action):
        def __call__(self, parser, namespace, values, option_string=None):
            warnings.warn(f"deapnos: {option_string or old} is deprecated; use {new} (repeat it or separate "
                          "values with commas)", DeprecationWarning, stacklevel=2)
            items = list(getattr(namespace, self.dest, None) or [])
            items += split_top_level(str(values), sep)
            setattr(namespace, self.dest, items)
    return _Deprecated
