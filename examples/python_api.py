"""deapnos from Python: a tiny search with a task defined right here (as in a notebook), then a fair
comparison of its winner with Adam.  A minute or two on one CPU core.

    python examples/python_api.py

`deapnos.run_search` writes the same run folder as `deapnos run` (report.md, plots, winners/*.py);
`deapnos.compare` tunes every optimizer alike, as `deapnos evaluate` does.
"""
from __future__ import annotations

import torch
from torch import nn

import deapnos
from deapnos.evaluate.data import TensorBatches
from deapnos.evaluate.tasks import Task, TaskData


class MyTasks:
    """A task plugin defined in this file: the serial backend (this process) can use it as it is;
    the pool and SCOOP backends need plugins they can import by module name."""

    @deapnos.hookimpl
    def deapnos_fitness_tasks(self):
        def data(task, device, seed):
            fixed = torch.Generator().manual_seed(0)          # the same points for every run
            y = torch.randint(0, 3, (384,), generator=fixed)
            x = torch.randn(3, 8, generator=fixed)[y] + torch.randn(384, 8, generator=fixed)
            order = torch.Generator().manual_seed(seed)       # the seed orders the batches
            return TaskData(train=TensorBatches(x[:256], y[:256], 32, shuffle=True, generator=order),
                            val=TensorBatches(x[256:], y[256:], 128, shuffle=False), num_classes=3,
                            generator=order)

        def model(task, num_classes):
            return nn.Sequential(nn.Linear(8, 16), nn.Tanh(), nn.Linear(16, num_classes))

        return [Task(name="my-blobs", description="3 Gaussian blobs in 8-D, MLP 8-16-3",
                     data_factory=data, model_factory=model, steps_per_epoch=4, epochs=5, batch_size=32,
                     warmup_steps=4, num_classes=3, kind="fitness")]


# A tiny search: the evolution on `digits`, the winner validated on the task above.  Every key is a
# config field, exactly as `section.field=value` on the command line.
TINY = {
    "run.name": "python-api", "run.backend": "serial", "run.seed": 5,
    "search.particles": 2, "search.timesteps": 2, "search.mutants": 2, "search.init_factor": 2,
    "search.init_task": "digits", "search.task": "digits", "search.reeval_top": 0,
    "protocol.epochs": 4, "protocol.step_scale": 0.3, "protocol.screen_lrs_a": [0.1, 0.01],
    "protocol.screen_lrs_b": [0.001], "protocol.stage_a_threshold": 0.0, "protocol.threshold": 0.15,
    "elimination.candidates": 2, "elimination.baselines": ["adam"],
    "elimination.rungs": [{"task": "digits", "seeds": [0, 1], "keep": 0.5}],
    "validation.tasks": ["my-blobs"], "validation.seeds": [0, 1, 2], "validation.candidates": 1,
    "validation.horizon_factor": 0,
}


def main() -> None:
    result = deapnos.run_search(overrides=TINY, plugins=[MyTasks()])
    print(f"run folder: {result.run_dir} ({result.backend}, {result.workers} worker(s)); report: {result.report}")
    print("leaderboard:")
    for row in result.leaderboard:
        mean = "failed" if row["mean"] is None else f"{row['mean']:.4f}"
        print(f"  {row['rank']}. {row['label']:6s} {mean}  {row.get('verdict') or ''}  {row['genome']}")
    print(f"held-out validation on {result.validation.get('tasks')} (score minus tuned adam's):")
    for row in result.validation.get("rows", []):
        diff = row["overall"]["difference"]
        print(f"  {row['label']:6s} {diff['mean']:+.4f} ± {diff['ci95']:.4f}  {row['overall']['verdict']}")
    print(f"best: {result.best_genome}")

    # the winner against Adam and SGD on the task above, everyone tuned on the same LR grid
    cmp = deapnos.compare([result.best, "sgd"], task="my-blobs", seeds=3, reference="adam",
                          lrs=[0.1, 0.01, 0.001], plugins=[MyTasks()])
    print(cmp.table)


if __name__ == "__main__":
    main()
