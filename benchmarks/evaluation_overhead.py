"""Overhead of the evaluation machinery, measured side by side in one run.

1. The protocol's full run of the zoo ``adam`` genome on ``digits`` (``evaluate_genome`` with a fixed
   LR: data, model, 40 x 10 steps, validation after every epoch; EvolvedOptimizer, shared training
   loop, result record) against a bare hand-written loop doing the same work with
   ``torch.optim.Adam`` + ``LambdaLR`` (same data, model, steps, validations).  Target: ratio <= 1.15.
2. Integrity checks per second on random genomes: the sphere plugin's batched check (12 trials in one
   run) against its sequential mode (up to 12 separate 35-step runs, stopping at the first pass as
   the original does).

    python benchmarks/evaluation_overhead.py [--repeats 5] [--genomes 100] [--threads 1]
"""
from __future__ import annotations

import argparse
import statistics
import time
import warnings

import torch


def bare_adam_run(lr: float, seed: int = 0) -> float:
    """The digits full run written by hand with torch.optim.Adam; returns the best val accuracy."""
    from deapnos.optim.schedules import base_lr_table
    from deapnos_plugins.convnet import ConvNet
    from deapnos_plugins.digits import N_TRAIN, digits_arrays
    torch.manual_seed(seed)
    x, y = digits_arrays()
    x, y = torch.from_numpy(x), torch.from_numpy(y)
    xt, yt, xv, yv = x[:N_TRAIN], y[:N_TRAIN], x[N_TRAIN:], y[N_TRAIN:]
    model = ConvNet(base=16, num_classes=10, in_channels=1)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    table = base_lr_table(400, 40)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda t: table[min(t, 399)])
    gen = torch.Generator().manual_seed(seed)
    perm, pos, best = torch.randperm(N_TRAIN, generator=gen), 0, 0.0
    for _epoch in range(40):
        model.train()
        for _ in range(10):
            if pos >= N_TRAIN:
                perm, pos = torch.randperm(N_TRAIN, generator=gen), 0
            idx = perm[pos:pos + 64]
            pos += 64
            opt.zero_grad(set_to_none=True)
            out = model(xt[idx])
            loss = torch.nn.functional.cross_entropy(out, yt[idx])
            if not torch.isfinite(loss):
                return best
            loss.backward()
            opt.step()
            sched.step()
        model.eval()
        with torch.no_grad():
            best = max(best, float((model(xv).argmax(1) == yv).float().mean()))
    return best


def protocol_run(lr: float, seed: int = 0) -> float:
    from deapnos.evaluate.protocol import ProtocolConfig, evaluate_genome
    from deapnos_plugins.digits import digits_task
    r = evaluate_genome("adam", digits_task(), seed=seed, config=ProtocolConfig(lr=lr), device="cpu")
    if not r.ok:
        raise SystemExit(f"protocol run failed: {r.status} {r.message}")
    return r.fitness


def overhead(repeats: int, lr: float = 0.01) -> None:
    protocol_run(lr)          # warm-up: imports, first-call costs
    bare_adam_run(lr)
    tp, tb, fp, fb = [], [], [], []
    for _ in range(repeats):  # interleaved so machine noise hits both alike
        t0 = time.perf_counter()
        fp.append(protocol_run(lr))
        t1 = time.perf_counter()
        fb.append(bare_adam_run(lr))
        t2 = time.perf_counter()
        tp.append(t1 - t0)
        tb.append(t2 - t1)
    mp, mb = statistics.median(tp), statistics.median(tb)
    print("1. full run of adam on digits (400 steps, 40 validations), median of", repeats)
    print(f"   protocol (EvolvedOptimizer 'adam', evaluate_genome): {mp:6.3f} s   best val acc {fp[-1]:.4f}")
    print(f"   bare loop (torch.optim.Adam + LambdaLR):             {mb:6.3f} s   best val acc {fb[-1]:.4f}")
    print(f"   ratio protocol / bare: {mp / mb:.3f}   (target <= 1.15: {'OK' if mp / mb <= 1.15 else 'OVER'})")


def integrity(n: int, seed: int = 0) -> None:
    """The second half is benchmarks/integrity_check.py, run in this process."""
    import integrity_check     # benchmarks/ is on sys.path when this file runs as a script
    print("2. integrity checks, batched over the sequential 12-trial loop")
    integrity_check.main(["--genomes", str(n), "--seed", str(seed), "--threads", str(torch.get_num_threads())])


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--genomes", type=int, default=100)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    warnings.simplefilter("ignore")
    overhead(args.repeats)
    integrity(args.genomes)


if __name__ == "__main__":
    main()
