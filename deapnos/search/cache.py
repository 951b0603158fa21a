"""Global dedup cache: canonical keys, behavioural fingerprints, and cached results.

:class:`DedupCache` maps every genome sent out to a representative key and stores results by
(representative, task, seed), so that equivalent genomes are trained once; compat mode restores the
original's per-particle exact-text dedup (docs/search.md, "The dedup cache").
"""
from __future__ import annotations

import hashlib
from collections import Counter
from dataclasses import dataclass

import torch

from ..space.canonical import canonical_key, canonical_text, canonical_tree_text  # noqa: F401 (re-exported)

# ----------------------------------------------------------------------------------------------
# behavioural fingerprint
# ----------------------------------------------------------------------------------------------

PROBE_DIM = 12
PROBE_LR = 0.01


def _probe_start() -> torch.Tensor:
    # magnitudes from 1e-3 to 3, both signs, so that sign, abs, clip and pow ops see variety
    k = torch.arange(PROBE_DIM, dtype=torch.float32)
    mags = 10.0 ** (-3.0 + 3.5 * k / (PROBE_DIM - 1))
    signs = torch.tensor([1.0, -1.0, -1.0, 1.0] * (PROBE_DIM // 4), dtype=torch.float32)
    return mags * signs


def _probe_grad(w: torch.Tensor) -> torch.Tensor:
    """Gradient of a shifted, badly scaled quadratic plus a ripple,
    sum(scale * (w - 0.3)^2) + 0.1 sum(sin(3 w)): gradients of mixed sign and size."""
    k = torch.arange(PROBE_DIM, dtype=torch.float32)
    scale = 10.0 ** (-1.0 + 2.0 * k / (PROBE_DIM - 1))
    return 2.0 * scale * (w - 0.3) + 0.3 * torch.cos(3.0 * w)


def fingerprint(genome, steps: int = 24, digits: int = 6) -> str | None:
    """Hash of the first ``steps`` parameter vectors on the probe problem, rounded to ``digits``
    significant digits; None when the trajectory is not finite or the optimizer fails."""
    from ..optim.optimizer import EvolvedOptimizer
    try:
        w = torch.nn.Parameter(_probe_start())
        opt = EvolvedOptimizer([w], genome, lr=PROBE_LR, total_steps=steps, warmup_steps=0, seed=0)
        rows = []
        for _ in range(steps):
            w.grad = _probe_grad(w.detach())
            opt.step()
            rows.append(w.detach().clone())
        traj = torch.stack(rows).to(torch.float64)
    except Exception:   # noqa: BLE001 - a genome that cannot run has no fingerprint
        return None
    if not bool(torch.isfinite(traj).all()):
        return None
    h = hashlib.sha256()
    for v in traj.flatten().tolist():
        h.update(_round_sig(v, digits).encode())
        h.update(b",")
    return h.hexdigest()[:20]


def exact_key(genome) -> str:
    """The original's identity of a genome (compat mode): a hash of its exact text without ``flip``
    (the log string of docs/paper.md §1.7 leaves the flip out); no canonicalisation."""
    g = genome.copy()
    g.flip = False
    return "x" + hashlib.sha256(g.to_text().encode()).hexdigest()[:19]


def _round_sig(v: float, digits: int) -> str:
    if v == 0.0:
        return "0"
    return f"{v:.{digits - 1}e}"


# ----------------------------------------------------------------------------------------------
# the cache
# ----------------------------------------------------------------------------------------------

@dataclass
class Lookup:
    key: str                  # canonical key of the genome
    rep: str                  # representative key (first equivalent genome seen)
    fingerprint: str | None
    duplicate: bool           # an equivalent genome was seen before
    by: str = ""              # "key" or "fingerprint"
    scope: object = None      # compat mode: the particle that proposed it


class DedupCache:
    """Global record of the genomes a search has seen and of their results.

    ``check(genome)`` says whether an equivalent genome was seen (counting the lookup and hit);
    ``add(genome)`` records it; ``get``/``put`` hold results by (representative key, task, seed).
    Picklable: it is part of the run's checkpoint.
    """

    def __init__(self, use_fingerprint: bool = True, probe_steps: int = 24, digits: int = 6,
                 compat: bool = False):
        self.use_fingerprint = use_fingerprint
        self.probe_steps = probe_steps
        self.digits = digits
        self.rep_of_key: dict[str, str] = {}
        self.rep_of_fp: dict[str, str] = {}
        self.results: dict[tuple, dict] = {}
        self.stats: Counter = Counter()
        self.compat = compat

    # -- identity -----------------------------------------------------------------------------

    def lookup(self, genome, count: bool = True) -> Lookup:
        if getattr(self, "compat", False):
            key = exact_key(genome)
            return Lookup(key, key, None, False, scope=None)
        key = canonical_key(genome)
        if count:
            self.stats["lookups"] += 1
        if key in self.rep_of_key:
            if count:
                self.stats["key_hits"] += 1
            return Lookup(key, self.rep_of_key[key], None, True, "key")
        fp = fingerprint(genome, self.probe_steps, self.digits) if self.use_fingerprint else None
        if fp is not None and fp in self.rep_of_fp:
            if count:
                self.stats["fingerprint_hits"] += 1
            return Lookup(key, self.rep_of_fp[fp], fp, True, "fingerprint")
        return Lookup(key, key, fp, False)

    def check(self, genome, scope=None) -> Lookup:
        """Look a genome up (counted): ``.duplicate`` says whether an equivalent one was seen.
        ``scope`` (the particle) matters in compat mode only: a duplicate is one the same particle
        proposed before; without a scope nothing is a duplicate."""
        if not getattr(self, "compat", False):
            return self.lookup(genome)
        key = exact_key(genome)
        self.stats["lookups"] += 1
        dup = scope is not None and f"{scope}|{key}" in self.rep_of_key
        if dup:
            self.stats["key_hits"] += 1
        return Lookup(key, self.rep_of_key.get(f"{scope}|{key}", key), None, dup, "key" if dup else "", scope)

    def enter(self, genome, scope) -> None:
        """Compat mode: count ``genome`` as proposed by ``scope`` (a particle's starting genome, the
        first entry of the original's per-particle list).  No-op otherwise."""
        if getattr(self, "compat", False) and scope is not None:
            self.rep_of_key.setdefault(f"{scope}|{exact_key(genome)}", exact_key(genome))

    def add(self, genome, lookup: Lookup | None = None) -> Lookup:
        """Record a genome as seen; returns its lookup (representative key included).  In compat
        mode the lookup gets a representative of its own (``key#n``)."""
        lookup = lookup or self.lookup(genome, count=False)
        if getattr(self, "compat", False):
            n = self.stats["compat_serial"]
            self.stats["compat_serial"] += 1
            lookup.rep = f"{lookup.key}#{n}"
            if lookup.scope is not None:
                self.rep_of_key.setdefault(f"{lookup.scope}|{lookup.key}", lookup.rep)
            return lookup
        self.rep_of_key.setdefault(lookup.key, lookup.rep)
        if lookup.fingerprint is not None:
            self.rep_of_fp.setdefault(lookup.fingerprint, lookup.rep)
        return lookup

    def seen(self, genome) -> bool:
        return self.lookup(genome, count=False).duplicate

    def representative(self, genome) -> str:
        return self.lookup(genome, count=False).rep

    # -- results ------------------------------------------------------------------------------

    def get(self, rep: str, task: str, seed: int) -> dict | None:
        if getattr(self, "compat", False):
            return None                      # the original re-trained every proposal
        return self.results.get((rep, task, int(seed)))

    def put(self, rep: str, task: str, seed: int, result: dict) -> None:
        if getattr(self, "compat", False):
            return
        self.results[(rep, task, int(seed))] = result

    def count_result_hit(self):
        self.stats["result_hits"] += 1

    # -- report -------------------------------------------------------------------------------

    def summary(self) -> dict:
        s = self.stats
        lookups = s.get("lookups", 0)
        hits = s.get("key_hits", 0) + s.get("fingerprint_hits", 0)
        return {"lookups": lookups, "key_hits": s.get("key_hits", 0),
                "fingerprint_hits": s.get("fingerprint_hits", 0), "result_hits": s.get("result_hits", 0),
                "hit_rate": (hits / lookups) if lookups else 0.0, "distinct_genomes": len(self.rep_of_key)}
