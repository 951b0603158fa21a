"""What a winner is: its nearest known optimizer, and the smallest genome that behaves the same.

A genome's *behaviour* here is its per-step parameter change (the update rule with its decays, its
momentum kind and flip; the LR constant at 1, the schedule tree left out) on a fixed, seeded set of
probe gradient sequences (:data:`PROBES`).  Two genomes behave the same *up to scale* when one's
changes are a positive multiple of the other's on every probe, with one multiple for all probes:
the learning rate is tuned anyway, and it is one number for the whole run.

* :func:`similarity` turns two behaviours into a number in [0, 1]: 1 - the relative residual of the
  best positive least-squares fit (:class:`Match` carries the multiple).
* :func:`nearest_known` compares a genome with every zoo optimizer; a similarity of at least
  :data:`KNOWN_THRESHOLD` means "this is that optimizer".
* :func:`simplify` removes every subtree whose removal keeps the similarity to the original at least
  ``1 - SIMPLIFY_TOL``, and returns the smallest such genome.

Details and the numbers chosen: docs/search.md, "What a winner is".
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from deap import gp

from . import zoo
from .optim.compiler import PlanRunner, compile_genome
from .optim.flat import momentum_increment, momentum_table
from .registry import Registry
from .space.genome import Genome

__all__ = ["Match", "Identity", "PROBES", "PROBE_STEPS", "KNOWN_THRESHOLD", "SIMPLIFY_TOL", "behaviour",
           "similarity", "nearest_known", "simplify", "identify"]

#: steps per probe: long enough that the EMAs of beta 0.9 and 0.99 are past their warm-up
PROBE_STEPS = 120
#: elements per probe (one parameter tensor each, so per-tensor ops act per probe)
PROBE_SIZE = 48
PROBE_SEED = 20240406
#: similarity from which a genome *is* the zoo optimizer it matches (relative residual <= 1%)
KNOWN_THRESHOLD = 0.99
#: relative residual a simplification may leave against the original (0.2% of the update's norm)
SIMPLIFY_TOL = 2e-3

#: the probes: (name, gradient size, how the gradients move).  Gradients have the sizes per element
#: that networks see (1e-5 .. 1e-2, a few times that with the noise); weights are log-uniform in
#: 0.01 .. 1 with random signs and held fixed while a probe runs, so weight-reading operands see
#: realistic values.
PROBES = (
    ("constant", 1e-3, "the same gradient every step"),
    ("noisy", 1e-3, "a fixed drift plus Gaussian noise of three times its size"),
    ("sign-flipping", 1e-3, "a gradient whose sign alternates every step, plus a little noise"),
    ("scaled-up", 1e-2, "the noisy sequence at 10x the size"),
    ("scaled-down", 1e-5, "the noisy sequence at 1/100 of the size"),
    ("sparse", 1e-3, "noisy, with 80% of the entries zero at each step"),
    ("ramp", 1e-3, "a drift growing from 0.1x to 10x over the sequence, with noise"),
    ("heavy-tailed", 1e-3, "Student-t noise (2 degrees of freedom) around a drift"),
)


@dataclass(frozen=True)
class Match:
    """The zoo optimizer closest to a genome: ``name`` (None when nothing matches at all),
    ``similarity`` in [0, 1] and ``scale``, the positive factor with genome ~= scale x ``name``."""
    name: str | None
    similarity: float
    scale: float

    @property
    def is_known(self) -> bool:
        return self.name is not None and self.similarity >= KNOWN_THRESHOLD


@dataclass(frozen=True)
class Identity:
    """A genome's nearest known optimizer and its simplified form."""
    nearest: Match
    simplified: Genome

    def label(self) -> str:
        """``= NAME (known)`` for a match, else ``nearest: NAME (similarity)``."""
        m = self.nearest
        if m.is_known:
            return f"= {m.name} (known)"
        if m.name is None:
            return "nearest known: none"
        return f"nearest known: {m.name} ({m.similarity:.3f})"

    def to_dict(self) -> dict:
        """The fields a winner's JSON and the report carry."""
        m = self.nearest
        return {"nearest_known": {"name": m.name, "similarity": round(m.similarity, 6), "known": m.is_known},
                "simplified": self.simplified.to_text()}


# ---------------------------------------------------------------------------------------------
# Probes and behaviour
# ---------------------------------------------------------------------------------------------

def _probe_inputs() -> tuple[torch.Tensor, torch.Tensor]:
    """(gradients (T, P*d), weights (P*d,)) of every probe side by side, float64, seeded."""
    gen = torch.Generator().manual_seed(PROBE_SEED)
    T, d = PROBE_STEPS, PROBE_SIZE

    def randn(*shape):
        return torch.randn(*shape, generator=gen, dtype=torch.float64)

    grads, weights = [], []
    t = torch.arange(T, dtype=torch.float64).unsqueeze(1)
    noisy = randn(d) + 3.0 * randn(T, d)
    for name, size, _ in PROBES:
        drift = randn(d)
        if name == "constant":
            g = drift.expand(T, d)
        elif name == "noisy":
            g = noisy
        elif name == "sign-flipping":
            g = drift * (1.0 - 2.0 * (t % 2)) + 0.1 * randn(T, d)
        elif name in ("scaled-up", "scaled-down"):
            g = noisy
        elif name == "sparse":
            g = (drift + 3.0 * randn(T, d)) * (torch.rand(T, d, generator=gen, dtype=torch.float64) < 0.2)
        elif name == "ramp":
            g = drift * 10.0 ** (2.0 * t / (T - 1) - 1.0) + randn(T, d)
        else:   # heavy-tailed: Student-t with 2 degrees of freedom
            chi2 = randn(T, d, 2).pow(2).sum(-1)
            g = drift + randn(T, d) / torch.sqrt(chi2 / 2.0)
        grads.append(size * g)
        mag = 10.0 ** (-2.0 * torch.rand(d, generator=gen, dtype=torch.float64))
        weights.append(mag * torch.sign(randn(d)))
    return torch.cat(grads, dim=1), torch.cat(weights)


def behaviour(genome: Genome, inputs: tuple[torch.Tensor, torch.Tensor] | None = None) -> torch.Tensor | None:
    """The genome's parameter change at each step of each probe, shape (P, T x d), float64: its
    compiled update with decays, momentum kind (the search's 0.95 -> 0.85 -> 0.95 coefficient) and
    flip, at a constant LR of 1; the schedule tree is left out.  None when the genome cannot run or
    gives a non-finite change."""
    grads, w = inputs if inputs is not None else _probe_inputs()
    T, n = grads.shape
    P = len(PROBES)
    try:
        plan = compile_genome(genome, T)
        gen = torch.Generator().manual_seed(0) if plan.needs_generator else None
        runner = PlanRunner(plan, n, [n // P] * P, torch.device("cpu"), torch.float64, gen)
        moms = momentum_table(T)
        sign = 1.0 if genome.flip else -1.0
        M = torch.zeros(n, dtype=torch.float64) if genome.momentum != "none" else None
        step_buf = torch.empty(n, dtype=torch.float64)
        out = torch.empty(T, n, dtype=torch.float64)
        for t in range(T):
            u, scale = runner.direction_scaled(grads[t].clone(), t, lambda: w)
            delta, alpha = momentum_increment(genome.momentum, u, sign * scale, M, moms[t], lambda: step_buf)
            torch.mul(delta, alpha, out=out[t])
    except (ArithmeticError, RuntimeError, ValueError, TypeError):   # e.g. a plugin op that refuses the probe
        return None
    if not bool(torch.isfinite(out).all()):
        return None
    # (T, P*d) -> (P, T*d): one row per probe
    return out.view(T, P, n // P).transpose(0, 1).reshape(P, -1)


def similarity(x: torch.Tensor | None, y: torch.Tensor | None) -> tuple[float, float]:
    """(similarity in [0, 1], scale) of behaviour ``x`` to behaviour ``y`` up to one positive factor.

    Each probe's rows are weighted by 1/sqrt(|x_p| |y_p|), so that every probe counts alike whatever
    its gradient size while a factor that differs between probes still counts against the match.  With
    k_p the cosine of probe p and r_p = |x_p|/|y_p|, the cosine of the weighted concatenations is
    sum k_p / sqrt(sum r_p x sum 1/r_p) (1 exactly when x = a y with one a > 0), the best factor is
    a = sum k_p / sum 1/r_p, and the similarity is 1 - sqrt(1 - cos^2), one minus the relative
    residual of that fit.  0 when either cannot run, when a probe moves one and not the other, or when
    the best factor is not positive.
    """
    if x is None or y is None:
        return 0.0, 0.0
    nx, ny = x.norm(dim=1), y.norm(dim=1)
    both = (nx > 0) & (ny > 0)
    if bool(((nx > 0) ^ (ny > 0)).any()) or not bool(both.any()):
        return 0.0, 0.0
    nx, ny = nx[both], ny[both]
    k = (x[both] * y[both]).sum(dim=1) / (nx * ny)
    r = nx / ny
    cos = float(k.sum() / torch.sqrt(r.sum() * (1.0 / r).sum()))
    if not math.isfinite(cos) or cos <= 0:
        return 0.0, 0.0
    cos = min(cos, 1.0)
    return 1.0 - math.sqrt(max(0.0, 1.0 - cos * cos)), float(k.sum() / (1.0 / r).sum())


# ---------------------------------------------------------------------------------------------
# Nearest known optimizer
# ---------------------------------------------------------------------------------------------

def nearest_known(genome: Genome, zoo_registry: Registry | None = None) -> Match:
    """The zoo optimizer (``zoo_registry``: a run's copy with plugin entries; default the zoo) whose
    behaviour is closest to the genome's up to a positive factor.  Ties go to the first in registry
    order.  An entry the genome's space cannot read is skipped."""
    inputs = _probe_inputs()
    mine = behaviour(genome, inputs)
    best = Match(None, 0.0, 0.0)
    for name in zoo.names(registry=zoo_registry):
        try:
            ref = zoo.get(name, space=genome.space, registry=zoo_registry)
        except (ValueError, KeyError):
            continue
        sim, scale = similarity(mine, behaviour(ref, inputs))
        if sim > best.similarity:
            best = Match(name, sim, scale)
    return best


# ---------------------------------------------------------------------------------------------
# Simplification
# ---------------------------------------------------------------------------------------------

def _reductions(tree: gp.PrimitiveTree) -> list[gp.PrimitiveTree]:
    """Every tree made by replacing one node with one of its children of the same type."""
    out = []
    for i, node in enumerate(tree):
        if node.arity == 0:
            continue
        end = tree.searchSubtree(i).stop
        j = i + 1
        for _ in range(node.arity):
            child = tree.searchSubtree(j)
            if tree[j].ret is node.ret:
                out.append(gp.PrimitiveTree(tree[:i] + tree[child] + tree[end:]))
            j = child.stop
    return out


def simplify(genome: Genome, tol: float = SIMPLIFY_TOL) -> Genome:
    """The smallest genome found by removing subtrees (a node replaced by one of its children of the
    same type: ``mul(sign_g, softplus(w_1e3))`` -> ``sign_g``, ``decay(a2, g)`` -> ``g``) while the
    behaviour stays within ``1 - tol`` similarity of the original's.  Greedy: the smallest passing
    reduction first, until none passes.  A genome that cannot run on the probes is returned as is
    (a copy)."""
    inputs = _probe_inputs()
    target = behaviour(genome, inputs)
    current = genome.copy()
    if target is None:
        return current
    while True:
        for tree in sorted(_reductions(current.update), key=len):
            cand = Genome(tree, current.schedule, current.momentum, current.flip, current.space)
            if similarity(behaviour(cand, inputs), target)[0] >= 1.0 - tol:
                current = cand
                break
        else:
            return current


def identify(genome: Genome, zoo_registry: Registry | None = None) -> Identity:
    """Nearest known optimizer and simplified form of ``genome`` (what ``deapnos show`` and the
    report print)."""
    return Identity(nearest_known(genome, zoo_registry), simplify(genome))
