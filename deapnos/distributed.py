"""The names ``deapnos.distributed`` has always offered, each from its room.

The map backends are :mod:`deapnos.backends` (below the context, which registers them as a built-in
plugin); the worker side (device, payloads, environment checks) is :mod:`deapnos.evaluate.worker`;
what the backends run on a worker, with the Context that :func:`deapnos.context.build_context`
builds there, is :mod:`deapnos.worker_entry`.  This module only re-exports them, so it sits above
all three.
"""
from __future__ import annotations

# deliberately not the hook implementation deapnos_map_backends: `-p deapnos.distributed` would
# then provide the built-in backends a second time
from deapnos.backends import (BACKENDS, BackendFactory, PoolBackend, ScoopBackend,  # noqa: F401
                              SerialBackend, exit_with_parent, make_backend, scoop_exit_with_launcher,
                              toolbox_with_map)
from deapnos.evaluate.worker import (_ENV_MARK, _WORKER, WorkerEnvironmentError,  # noqa: F401
                                     call_reporting_environment, claim_device, environment_differences,
                                     environment_message, make_payload, under_scoop, worker_id, worker_setup)
from deapnos.worker_entry import check_workers, environment_fingerprint, evaluate_payload  # noqa: F401
