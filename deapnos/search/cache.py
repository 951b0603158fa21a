"""Global dedup cache: canonical keys, behavioural fingerprints, and cached results.

The original deduplicated by the exact log string, per particle only, without ``flip``
(paper-spec §5.7); 16 groups of identical strings were trained more than once.  Here a genome is
known by

* its **canonical key**: a hash of a canonical text of (momentum kind, flip, update tree, schedule
  tree), where the canonical text is the tree after cheap rewrites that never change the optimizer:

  - identities are removed (``id(x) -> x``, tensor and decay ``id`` alike);
  - arguments of commutative ops are sorted (``add(g, v_hat) == add(v_hat, g)``);
  - decays stacked on one edge are sorted (``decay(d1, decay(d2, x))``: the factors commute);
  - ``neg(neg(x)) -> x``; idempotent ops collapse (``abs(abs(x))``, ``relu(relu(x))``,
    ``negrelu(negrelu(x))``, ``norm(norm(x))``), ``abs(neg(x)) -> abs(x)``, and ``abs``/``relu`` of
    an operand or op that is never negative disappear;
  - ``max(x, x)``, ``min(x, x)``, ``clip(x, x)``, ``mix95(x, x)`` -> ``x`` when ``x`` is
    deterministic (no dropout, no state);
  - ``mul(one, x) -> x`` (tensor and schedule trees); a schedule ``one`` is no schedule;

* its **behavioural fingerprint** (optional): the first ``probe_steps`` parameter values of the
  optimizer on a fixed probe problem, rounded to ``digits`` significant digits.  Genomes equal up
  to rounding on the probe are treated as the same optimizer.  A non-finite trajectory has no
  fingerprint (it would make every diverging genome "equal").

:class:`DedupCache` keeps the keys (and fingerprints) of every genome the search has sent out, maps
each to a *representative* key, and stores results by ``(representative, task, seed)`` so that
equivalent genomes are trained once.  Lookups and hits are counted for the report.
"""
from __future__ import annotations

import hashlib
from collections import Counter
from dataclasses import dataclass, field

import torch

from ..space import ops as _ops
from ..space.psets import DECAY_ON_BRANCH, Schedule, Tensor

IDEMPOTENT = {"abs": _ops.k_abs, "relu": _ops.k_relu, "negrelu": _ops.k_negrelu, "norm": _ops.k_norm}
SAME_ARGS_COLLAPSE = {"max": _ops.k_max, "min": _ops.k_min, "clip": _ops.k_clip, "mix95": _ops.k_mix95}


@dataclass
class _N:
    """A node of the canonical form: name, return type, arguments."""
    name: str
    ret: type
    args: list = field(default_factory=list)
    text: str = ""
    det: bool = True        # deterministic: no dropout, no state below
    nonneg: bool = False

    def render(self):
        self.text = self.name if not self.args else f"{self.name}({', '.join(a.text for a in self.args)})"
        return self


def _to_nodes(tree) -> _N:
    stack = []
    for node in tree:
        stack.append([node, []])
        while len(stack[-1][1]) == stack[-1][0].arity:
            prim, args = stack.pop()
            n = _N(prim.name, prim.ret, args)
            if not stack:
                return n
            stack[-1][1].append(n)
    raise ValueError("empty tree")


def _builtin(spec, fn) -> bool:
    return spec is not None and getattr(spec, "fn", None) is fn


def _canon(n: _N, space) -> _N:
    n.args = [_canon(a, space) for a in n.args]
    if not n.args:
        if n.ret is Tensor:
            spec = space.operands.get(n.name)
            n.nonneg = bool(spec and spec.nonneg)
        return n.render()
    if n.ret is Tensor and n.name == DECAY_ON_BRANCH:
        return _canon_decay_chain(n)
    spec = space.op_spec(n.ret, n.name)
    n.det = all(a.det for a in n.args) and (spec is None or not spec.needs)
    n.nonneg = bool(spec and spec.nonneg)
    if spec is not None and n.name == "id" and spec.fn is _ops.k_identity:
        return n.args[0]
    if n.ret is Tensor and n.name == "neg" and _builtin(spec, _ops.k_neg) and n.args[0].name == "neg" \
            and _builtin(space.op_spec(Tensor, "neg"), _ops.k_neg):
        return n.args[0].args[0]
    if n.ret is Tensor and len(n.args) == 1 and n.name in IDEMPOTENT and _builtin(spec, IDEMPOTENT[n.name]):
        a = n.args[0]
        if a.name == n.name:
            return a
        if n.name == "abs" and a.name == "neg" and _builtin(space.op_spec(Tensor, "neg"), _ops.k_neg):
            n.args = [a.args[0]]
            return n.render()
        if n.name in ("abs", "relu") and a.nonneg:
            return a
    if spec is not None and spec.commutative:
        n.args.sort(key=lambda a: a.text)
    if len(n.args) == 2 and n.args[0].text == n.args[1].text and n.args[0].det \
            and n.name in SAME_ARGS_COLLAPSE and _builtin(spec, SAME_ARGS_COLLAPSE[n.name]):
        return n.args[0]
    if n.name == "mul" and _builtin(spec, _ops.k_mul) and n.ret in (Tensor, Schedule):
        ones = [a for a in n.args if not a.args and a.name == "one"]
        if ones:
            return n.args[1] if n.args[0] is ones[0] else n.args[0]
    return n.render()


def _canon_decay_chain(n: _N) -> _N:
    decays, x = [], n
    while x.ret is Tensor and x.name == DECAY_ON_BRANCH and len(x.args) == 2:
        decays.append(x.args[0])
        x = x.args[1]
    decays.sort(key=lambda d: d.text)
    out = x
    for d in reversed(decays):
        out = _N(DECAY_ON_BRANCH, Tensor, [d, out], det=out.det).render()
    return out


def canonical_tree_text(tree, space) -> str:
    return _canon(_to_nodes(tree), space).text


def canonical_text(genome) -> str:
    """The canonical text of a genome: ``kind ~ update | lr = schedule | flip``."""
    space = genome.space
    update = canonical_tree_text(genome.update, space)
    sched = canonical_tree_text(genome.schedule, space)
    text = f"{genome.momentum} ~ {update}"
    if sched != "one":
        text += f" | lr = {sched}"
    if genome.flip:
        text += " | flip"
    return text


def canonical_key(genome) -> str:
    """A short hash of :func:`canonical_text` (20 hex digits)."""
    return hashlib.sha256(canonical_text(genome).encode()).hexdigest()[:20]


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


class DedupCache:
    """Global record of the genomes a search has seen and of their results.

    ``check(genome)`` says whether an equivalent genome was seen (counting the lookup and hit);
    ``add(genome)`` records it; ``get``/``put`` hold results by (representative key, task, seed).
    Picklable: it is part of the run's checkpoint.
    """

    def __init__(self, use_fingerprint: bool = True, probe_steps: int = 24, digits: int = 6):
        self.use_fingerprint = use_fingerprint
        self.probe_steps = probe_steps
        self.digits = digits
        self.rep_of_key: dict[str, str] = {}
        self.rep_of_fp: dict[str, str] = {}
        self.results: dict[tuple, dict] = {}
        self.stats: Counter = Counter()

    # -- identity -----------------------------------------------------------------------------

    def lookup(self, genome, count: bool = True) -> Lookup:
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

    def check(self, genome) -> Lookup:
        """Look a genome up (counted): ``.duplicate`` says whether an equivalent one was seen."""
        return self.lookup(genome)

    def add(self, genome, lookup: Lookup | None = None) -> Lookup:
        """Record a genome as seen; returns its lookup (representative key included)."""
        lookup = lookup or self.lookup(genome, count=False)
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
        return self.results.get((rep, task, int(seed)))

    def put(self, rep: str, task: str, seed: int, result: dict) -> None:
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
