"""The config fingerprint a checkpoint (and every log record, by its id) keeps: every field that
changes the search, and which fields a resumed run may change."""
from __future__ import annotations

import hashlib
import json
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .config import Config

# fields a resumed run may change (``deapnos run --resume RUN_DIR --workers 4 run.backend=pool``):
# where and how the same search runs, not what it computes
RESUME_OVERRIDABLE = ("run.backend", "run.workers", "run.device", "run.torch_threads", "run.stall_timeout",
                      "run.report", "run.data_dir")
# besides those, fields the fingerprint ignores: they never change the search's records
FINGERPRINT_IGNORES = RESUME_OVERRIDABLE + ("run.name", "run.output_dir", "report.top", "report.plots")


def _flatten(data, prefix: str, out: dict) -> dict:
    for key, value in data.items():
        path = f"{prefix}{key}"
        if isinstance(value, dict):
            _flatten(value, path + ".", out)     # an empty table adds nothing
        else:
            out[path] = value
    return out


def config_fingerprint(cfg: Config) -> dict:
    """What a checkpoint keeps of the config it was written under: every field that changes the
    search (``section.field`` -> value; not :data:`FINGERPRINT_IGNORES`) and their SHA-256."""
    fields_ = {k: v for k, v in sorted(_flatten(cfg.to_dict(), "", {}).items()) if k not in FINGERPRINT_IGNORES}
    text = json.dumps(fields_, sort_keys=True, separators=(",", ":"), default=str)
    return {"sha256": hashlib.sha256(text.encode()).hexdigest(), "fields": json.loads(text)}


def fingerprint_differences(saved: dict, cfg: Config) -> list[str]:
    """The fields in which ``cfg`` differs from a saved :func:`config_fingerprint`, as
    ``"field: saved -> now"`` texts ([] when the same)."""
    now = config_fingerprint(cfg)
    if isinstance(saved, dict) and saved.get("sha256") == now["sha256"]:
        return []
    old = saved.get("fields") if isinstance(saved, dict) else None
    if not isinstance(old, dict):
        return ["the checkpoint's config fingerprint is unreadable"]
    out = []
    for key in sorted(set(old) | set(now["fields"])):
        if key in FINGERPRINT_IGNORES:
            continue
        a, b = old.get(key, "<absent>"), now["fields"].get(key, "<absent>")
        if a != b:
            out.append(f"{key}: {json.dumps(a)} -> {json.dumps(b)}")
    return out or ["the checkpoint's config fingerprint does not match"]
