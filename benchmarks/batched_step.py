"""What a batched screening step costs: K stacked copies of a task's model in one vmapped pass, side by side
with one copy, for choosing ``protocol.batch_lrs`` (docs/evaluation.md, "Throughput").

For each task's model (default: the quickstart's, ``digits-hard``'s batch-norm ConvNet and
``ill-conditioned``'s MLP) it times one forward and backward pass on one batch of the task, unbatched,
and with K = 1, 2, 4, 7 copies stacked as ``deapnos.evaluate.batched`` stacks them (parameters and
buffers, ``torch.func.functional_call`` under ``vmap``), interleaved in rounds.  It prints the time of
a K-copy pass in unbatched passes and the speed-up over K separate passes (above 1: batching pays).

    python benchmarks/batched_step.py [--tasks digits-hard ill-conditioned] [--device cpu] [--steps 30]
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def main(argv=None) -> int:
    import torch
    import torch.nn.functional as F

    from deapnos.context import build_context
    from deapnos.evaluate.batched import _stacked_forward
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tasks", nargs="+", default=["digits-hard", "ill-conditioned"])
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--ks", nargs="+", type=int, default=[1, 2, 4, 7])
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--rounds", type=int, default=5)
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    device = torch.device(args.device)
    tasks = build_context().tasks

    def sync():
        if device.type == "cuda":
            torch.cuda.synchronize()

    for name in args.tasks:
        task = tasks[name]
        data = task.build_data(device, 0)
        x, y = next(iter(data.train))
        x, y = x.to(device), y.to(device)
        model = task.build_model(data.num_classes).to(device).train()

        def single(model=model, task=task, x=x, y=y):
            model.zero_grad(set_to_none=True)
            task.loss(model(x), y).backward()
        steps = {"1 copy": single}
        for k in args.ks:
            params, _, forward = _stacked_forward(model, k)

            def stacked(params=params, forward=forward, k=k, x=x, y=y):
                out = forward(params, x)
                losses = F.cross_entropy(out.reshape(k * len(y), -1), y.repeat(k), reduction="none")
                torch.autograd.grad(losses.view(k, -1).mean(1).sum(), list(params.values()))
            steps[f"K={k}"] = stacked
        times: dict[str, list[float]] = {s: [] for s in steps}
        for fn in steps.values():     # warm-up
            for _ in range(3):
                fn()
        for _ in range(args.rounds):
            for label, fn in steps.items():
                sync()
                t0 = time.perf_counter()
                for _ in range(args.steps):
                    fn()
                sync()
                times[label].append((time.perf_counter() - t0) / args.steps)
        one = statistics.median(times["1 copy"])
        print(f"{name} on {device} ({one * 1e3:.2f} ms per unbatched pass)")
        print(f"  {'':8s}{'passes of 1 copy':>18s}{'speed-up over K passes':>24s}")
        for k in args.ks:
            cost = statistics.median(times[f"K={k}"]) / one
            print(f"  K={k:<6d}{cost:18.2f}{k / cost:24.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
