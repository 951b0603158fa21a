"""A deapnos map backend on dask.distributed, shipped as a plugin (no file of deapnos knows dask).

``deapnos run --backend dask`` evaluates candidates on the scheduler at ``--dask-scheduler``,
``[plugin.dask] scheduler`` or ``$DEAPNOS_DASK_SCHEDULER`` (in that order), else on a LocalCluster of
``run.workers`` single-threaded worker processes started for the run and closed with it.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any
from collections.abc import Callable

from deapnos.hookspecs import hookimpl

SCHEDULER_ENV = "DEAPNOS_DASK_SCHEDULER"


@dataclass
class DaskSection:
    """``[plugin.dask]`` of a run's config."""
    scheduler: str = ""       # address of a running scheduler, e.g. "tcp://10.0.0.5:8786"; "" = a local cluster


class DaskBackend:
    """deapnos's backend interface on a ``dask.distributed.Client``: ``map`` returns results in input
    order and calls ``on_result(i, result)`` as each one arrives."""
    name = "dask"

    def __init__(self, workers: int = 1, address: str = ""):
        from dask.distributed import Client, LocalCluster
        self._cluster = None
        if address:
            self.client = Client(address)
        else:   # processes, one thread each: torch evaluations are CPU-bound and not thread-safe together
            self._cluster = LocalCluster(n_workers=workers, threads_per_worker=1, processes=True,
                                         dashboard_address=None)
            self.client = Client(self._cluster)
        self.workers = len(self.client.scheduler_info().get("workers", {})) or workers

    def map(self, fn: Callable, items, on_result: Callable | None = None) -> list:
        from dask.distributed import as_completed
        items = list(items)
        futures = self.client.map(fn, items, pure=False)    # pure=False: equal payloads still run apart
        index = {fut.key: i for i, fut in enumerate(futures)}
        out: list[Any] = [None] * len(items)
        for fut in as_completed(futures):
            i = index[fut.key]
            out[i] = fut.result()
            if on_result is not None:
                on_result(i, out[i])
        return out

    def close(self, force: bool = False) -> None:
        """Close the client and the local cluster (``force``: cancel what is still running first)."""
        if force:
            self.client.cancel(list(self.client.futures.values()), force=True)
        self.client.close()
        if self._cluster is not None:
            self._cluster.close()


def make_dask_backend(workers: int = 1, threads: int = 1, device: str = "auto", stall_timeout: float = 0.0,
                      context=None) -> DaskBackend:
    """The factory deapnos calls for ``run.backend = "dask"``."""
    options = getattr(context, "options", None)
    section = (getattr(context, "sections", None) or {}).get("dask")
    address = (getattr(options, "dask_scheduler", None) or getattr(section, "scheduler", "")
               or os.environ.get(SCHEDULER_ENV, ""))
    return DaskBackend(workers, address)


@hookimpl
def deapnos_map_backends():
    return {"dask": make_dask_backend}


@hookimpl
def deapnos_config_sections():
    return {"dask": DaskSection}


@hookimpl
def deapnos_addoption(parser):
    parser.add_argument("--dask-scheduler", metavar="ADDRESS",
                        help=f"dask backend: scheduler address (default: [plugin.dask] scheduler, ${SCHEDULER_ENV}, "
                             "else a local cluster of run.workers processes)")
