"""The shifted-sphere integrity check: one batched run of the 12 trials against 12 sequential runs.

The same random genomes (DEAP ``genGrow``, height 1-4, random momentum kind) go through both modes of
:class:`deapnos_plugins.sphere.ShiftedSphereCheck`, interleaved genome by genome so that machine
noise hits both alike.  The sequential mode stops at the first passing trial, as the original does.
Prints the time per genome of each mode, their ratio, and whether they agreed on every verdict.

    python benchmarks/integrity_check.py [--genomes 200] [--seed 0] [--threads 1]
"""
from __future__ import annotations

import argparse
import random
import time
import warnings

import torch
from deap import gp

from deapnos.space import MOMENTUM_KINDS, Genome, Tensor, builtin_space, parse_tree
from deapnos_plugins.sphere import ShiftedSphereCheck


def random_genomes(n: int, seed: int):
    space = builtin_space()
    rng = random.Random(seed)
    one = parse_tree("one", "schedule", space)
    out = []
    for _ in range(n):
        random.seed(rng.randrange(2**32))   # genGrow draws from the module-level generator
        tree = gp.PrimitiveTree(gp.genGrow(space.update_pset, 1, 4, type_=Tensor))
        out.append(Genome(tree, gp.PrimitiveTree(list(one)), rng.choice(MOMENTUM_KINDS), False, space))
    return out


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--genomes", type=int, default=200)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    warnings.simplefilter("ignore")
    genomes = random_genomes(args.genomes, args.seed)
    batched, sequential = ShiftedSphereCheck(), ShiftedSphereCheck(sequential=True)
    for chk in (batched, sequential):    # warm-up
        chk.check(Genome.parse("none ~ div(v_hat, sqrt(s_hat))"))
    tb = ts = 0.0
    agree = passed = 0
    for genome in genomes:
        t0 = time.perf_counter()
        rb = batched.check(genome)
        t1 = time.perf_counter()
        rs = sequential.check(genome)
        t2 = time.perf_counter()
        tb += t1 - t0
        ts += t2 - t1
        agree += (rb.passed, rb.flip, rb.lr) == (rs.passed, rs.flip, rs.lr)
        passed += rb.passed
    n = len(genomes)
    print(f"{n} random genomes ({passed} pass), {torch.get_num_threads()} thread(s)")
    print(f"{'mode':<34}{'ms/genome':>10}")
    print(f"{'sequential (12 optimizer runs)':<34}{ts / n * 1e3:>10.2f}")
    print(f"{'batched (one 60-element run)':<34}{tb / n * 1e3:>10.2f}")
    print(f"speed-up: {ts / tb:.1f}x; verdicts agree on {agree}/{n}")


if __name__ == "__main__":
    main()
