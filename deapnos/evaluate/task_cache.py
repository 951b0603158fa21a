"""What every evaluation of a task with a seed starts from, kept for the next one in this process.

The data (``Task.build_data(device, seed)``) and the untrained model's loss are the same for every
candidate a worker evaluates on a (task, seed): rebuilding them cost 5-10% of a suite evaluation.
:func:`cached` keeps them for the :data:`KEEP` most recent (task, device, seed, data folder) keys.
Safe because every run re-seeds the data's generator before it draws (common random numbers), and a
task object that is gone is never mistaken for a new one at the same address (a weak reference).
"""
from __future__ import annotations

import os
import weakref
from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import Any

KEEP = 2        # (task, seed) pairs: the quickstart alternates its two tasks on seed 0

_entries: OrderedDict[tuple, tuple[weakref.ref, dict]] = OrderedDict()


def cached(task: Any, device: Any, seed: int, what: Hashable, make: Callable[[], Any]) -> Any:
    """``make()`` once per ``what`` for this task object, device, seed and ``DEAPNOS_DATA`` folder."""
    key = (id(task), str(device), int(seed), os.environ.get("DEAPNOS_DATA", ""))
    entry = _entries.get(key)
    if entry is None or entry[0]() is not task:
        entry = _entries[key] = (weakref.ref(task), {})
        while len(_entries) > KEEP:
            _entries.popitem(last=False)
    _entries.move_to_end(key)
    store = entry[1]
    if what not in store:
        store[what] = make()
    return store[what]


def clear() -> None:
    """Forget everything kept (tests; a task plugin whose data changed on disk)."""
    _entries.clear()
