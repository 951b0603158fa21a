"""Step time of evolved optimizers against torch.optim.Adam(foreach=True), side by side.

A model of about 5M parameters in about 60 tensors; each optimizer takes the same number of steps
on the same gradients, interleaved in rounds so that machine noise hits all of them alike.
Prints the median step time of each and its ratio over torch's Adam.  The "(compiled)" contenders
run with ``compile=True`` (torch.compile; their first step, in the warm-up, compiles); a genome the
optimizer declines to compile, or whose compilation fails, runs eagerly and the reason is printed
below the table.  ``--no-compile`` leaves them out.

    python benchmarks/step_time.py [--steps 30] [--rounds 5] [--threads 1] [--no-compile]
"""
from __future__ import annotations

import argparse
import statistics
import time
import warnings

import torch

import deapnos


def make_params(seed: int = 0) -> list[torch.Tensor]:
    """60 tensors, ~5M elements: 30 (weight, bias) pairs of widths like a small CNN/MLP stack."""
    gen = torch.Generator().manual_seed(seed)
    shapes = []
    for i in range(30):
        fan = 80 + 16 * (i % 8)
        shapes += [(fan * 9, fan), (fan * 9,)]
    params = [torch.randn(s, generator=gen).mul_(0.02).requires_grad_() for s in shapes]
    for p in params:
        p.grad = torch.randn(p.shape, generator=gen)
    return params


def time_steps(opt, steps: int) -> float:
    t0 = time.perf_counter()
    for _ in range(steps):
        opt.step()
    return (time.perf_counter() - t0) / steps


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--no-compile", action="store_true", help="leave out the compiled contenders")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    n_steps_total = args.steps * args.rounds + 10
    contenders = {
        "torch Adam(foreach)": lambda ps: torch.optim.Adam(ps, lr=1e-3, betas=(0.9, 0.99), eps=1e-7, foreach=True),
        "adam genome": lambda ps: deapnos.optimizer("adam", ps, lr=1e-3, total_steps=n_steps_total),
        "opt10 genome": lambda ps: deapnos.optimizer("opt10", ps, lr=1e-3, total_steps=n_steps_total),
        "a1 genome": lambda ps: deapnos.optimizer("a1", ps, lr=1e-3, total_steps=n_steps_total),
    }
    if not args.no_compile:
        for genome in ("adam", "opt10", "a1"):
            contenders[f"{genome} genome (compiled)"] = (
                lambda ps, genome=genome: deapnos.optimizer(genome, ps, lr=1e-3, total_steps=n_steps_total,
                                                            compile=True))
    opts = {}
    notes = []
    for name, make in contenders.items():
        params = make_params()
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            opts[name] = make(params)
            time_steps(opts[name], 3)   # warm-up: allocate state and buffers (and compile)
        notes += [f"{name}: {w.message}" for w in caught if "compile" in str(w.message)]
    n = sum(p.numel() for p in make_params())
    print(f"{n / 1e6:.2f}M parameters in {len(make_params())} tensors, {torch.get_num_threads()} thread(s), "
          f"{args.rounds} rounds x {args.steps} steps")
    times = {name: [] for name in opts}
    for _ in range(args.rounds):
        for name, opt in opts.items():
            times[name].append(time_steps(opt, args.steps))
    ref = statistics.median(times["torch Adam(foreach)"])
    print(f"{'optimizer':<28}{'ms/step':>10}{'ratio vs Adam':>16}")
    for name, ts in times.items():
        med = statistics.median(ts)
        print(f"{name:<28}{med * 1e3:>10.2f}{med / ref:>16.2f}")
    for note in notes:
        print(note)


if __name__ == "__main__":
    main()
