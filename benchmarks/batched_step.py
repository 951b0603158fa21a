"""What a batched screening step costs: K stacked copies of a task's model in one vmapped pass, side by side
with one copy, for choosing ``protocol.batch_lrs`` (docs/evaluation.md, "Throughput").

For each task's model (default: the quickstart's, ``digits-hard``'s batch-norm ConvNet and
``ill-conditioned``'s MLP) it times one forward and backward pass on one batch of the task, unbatched,
and with K = 1, 2, 4, 7 copies stacked as ``deapnos.evaluate.batched`` stacks them (parameters and
buffers, ``torch.func.functional_call`` under ``vmap``), interleaved in rounds.  It prints the time of
a K-copy pass in unbatched passes and the speed-up over K separate passes (above 1: batching pays).
Then, per task, what the protocol's first rung costs (``--genome``, adam by default): the 7 LRs of
the grid in one batched one-epoch run against 7 one-epoch runs, each with its model and optimizer,
interleaved in rounds (the members the batched rung turns into runs, halving's survivors, are not
counted: about 5 ms each on ``digits-hard``).

    python benchmarks/batched_step.py [--tasks digits-hard ill-conditioned] [--device cpu] [--steps 30]
                                      [--genome adam]
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
    ap.add_argument("--genome", default="adam", help="the optimizer of the first-rung comparison")
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
        first_rung(task, data, device, args.genome, args.rounds, sync)
    return 0


def first_rung(task, data, device, genome: str, rounds: int, sync) -> None:
    """The first rung of halving: the grid's 7 LRs, one epoch each, batched and one run per LR."""
    from deapnos.evaluate.batched import train_batched
    from deapnos.evaluate.protocol import Budget, ProtocolConfig, _start_run, resolve_optimizer
    from deapnos.evaluate.run_parts import _seeded_model
    config = ProtocolConfig()
    budget = Budget.of(task, config)
    spec = resolve_optimizer(genome)
    lrs = list(config.screen_lrs_a + config.screen_lrs_b)

    def batched():
        train_batched(_seeded_model(task, data, 0, device), spec.genome, lrs, data.train, epochs=1,
                      steps_per_epoch=budget.screen_steps_per_epoch, total_steps=budget.total_steps,
                      warmup_steps=budget.warmup_steps, loss_fn=task.loss, accuracy_fn=task.accuracy,
                      device=device, seed=0)

    def one_per_lr():
        for lr in lrs:
            _start_run(spec, task, data, 0, lr, config, budget, device, None,
                       steps_per_epoch=budget.screen_steps_per_epoch, snapshots=True).go_on(1, pause=True)
    times: dict[str, list[float]] = {"batched": [], "one run per LR": []}
    for fn in (batched, one_per_lr):      # warm-up
        fn()
    for _ in range(rounds):
        for label, fn in (("batched", batched), ("one run per LR", one_per_lr)):
            sync()
            t0 = time.perf_counter()
            fn()
            sync()
            times[label].append(time.perf_counter() - t0)
    b, s = (statistics.median(times[k]) for k in ("batched", "one run per LR"))
    print(f"  first rung ({genome}, {len(lrs)} LRs x 1 epoch of {budget.screen_steps_per_epoch} steps): batched "
          f"{b * 1e3:.1f} ms, one run per LR {s * 1e3:.1f} ms, ratio {s / b:.2f}")


if __name__ == "__main__":
    sys.exit(main())
