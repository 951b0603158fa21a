"""The candidates a quickstart search judges first: its initial population, drawn as the search draws it.

:func:`initial_population` gives the genome texts of the quickstart config's first ``n`` random
genomes that pass its integrity checks (the search's seed, mutation and init settings, the same
``random.Random`` stream), without training anything.  The throughput benchmarks evaluate them.

    python benchmarks/quickstart_candidates.py [--n 30]      # prints them, one a line
"""
from __future__ import annotations

import argparse
import random
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def initial_population(n: int | None = None, config: str = "quickstart") -> list[str]:
    from deapnos.context import build_context
    from deapnos.evaluate.integrity import run_integrity_checks
    from deapnos.search.config import load_config
    from deapnos.search.genomes import random_valid_genome
    from deapnos.search.mutation_context import MutationContext
    cfg = load_config(config)
    ctx = build_context(cfg.run.plugins, compat=cfg.run.compat)
    n = n or cfg.search.particles * cfg.search.init_factor
    rng = random.Random(cfg.run.seed)
    mctx = MutationContext(ctx.space, rng, cfg.mutation, cfg.init, tuple(cfg.search.momentum_kinds), cfg.run.compat)

    def accept(g):
        res = run_integrity_checks(g, ctx.checks, cfg.integrity.enabled if hasattr(cfg, "integrity") else None)
        return res.passed, res.reason

    out: list[str] = []
    seen: set[str] = set()
    while len(out) < n:
        g, _ = random_valid_genome(mctx, accept, cfg.search.max_tries)
        if g is not None and g.to_text() not in seen:
            seen.add(g.to_text())
            out.append(g.to_text())
    return out


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=None)
    for text in initial_population(ap.parse_args().n):
        print(text)
