"""``deapnos init DIR``: a workspace folder from which every way of running a search works.

It writes three files: ``deapnos.run`` (the file ``python -m scoop`` needs: SCOOP takes a file path,
not a module name, and an installed package has no such file in your folder), ``deapnos.toml`` (a
commented copy of the quickstart config, which ``deapnos run`` and ``python -m scoop -n N deapnos.run``
read by default in that folder) and ``my_tasks.py`` (a task-plugin template).  Existing files are
kept unless ``--force``.  Steps: README.md, "SCOOP from any folder"; docs/search.md.
"""
from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

ENTRY_NAME = "deapnos.run"
CONFIG_NAME = "deapnos.toml"        # deapnos.run.WORKSPACE_CONFIG
TASKS_NAME = "my_tasks.py"

ENTRY_TEXT = '''"""SCOOP's entry file, written by `deapnos init`: python -m scoop -n 2 deapnos.run [overrides]

SCOOP takes the path of a file to run; this file is that path.  It only calls into the installed
deapnos package: SCOOP imports it on every worker (which prepares the worker) and runs it as
__main__ on the origin, which runs the search (./deapnos.toml by default) and makes SCOOP exit
non-zero when the search fails.  `deapnos run` in this folder does the same and launches SCOOP itself.
"""
from deapnos.scoop_entry import run_entry

if __name__ == "__main__":
    run_entry()
'''

CONFIG_HEADER = """\
# deapnos workspace config, written by `deapnos init` (a copy of the built-in quickstart).
# In this folder both commands read it when no --config is given:
#
#   deapnos run                          # launches SCOOP itself; exit code 0 only when the search finished
#   python -m scoop -n 2 deapnos.run     # SCOOP by hand; exits non-zero when the search failed
#   deapnos run --workers 4 search.particles=8      # flags and section.field=value overrides
#
# Each run writes a folder under run.output_dir; `deapnos status RUN_DIR` shows its state (finished,
# failed, interrupted). Your own tasks: edit my_tasks.py, then add "my_tasks" to run.plugins below and name its
# task in search.task (or validation.tasks). Every field and its default: docs/search.md, "Configs".
"""

TASKS_TEXT = '''"""A task-plugin template, written by `deapnos init`: one small task, `my-task`.

Use it: add "my_tasks" to run.plugins in deapnos.toml (or pass -p my_tasks) and name the task, e.g.
search.task = "my-task" or validation.tasks = ["my-task"].  `deapnos plugins -p my_tasks` lists it.
A task is mostly data: a data factory, a model factory, a budget and a metric; deapnos trains and
scores it.  Only deapnos' public plugin API is used (docs/plugins.md, "Writing a task").  This file
must be importable on every worker: run from this folder (SCOOP and `deapnos run` put it on the path).
"""
from __future__ import annotations

import torch
from torch import nn

from deapnos import hookimpl
from deapnos.evaluate.data import TensorBatches
from deapnos.evaluate.tasks import Task, TaskData

DIM, CLASSES, N_TRAIN, N_VAL = 16, 4, 512, 256


def my_data(task: Task, device: torch.device, seed: int) -> TaskData:
    """Called once per evaluation.  The points are fixed (seed 0); ``seed`` orders the batches."""
    fixed = torch.Generator().manual_seed(0)
    centres = torch.randn(CLASSES, DIM, generator=fixed)
    y = torch.randint(0, CLASSES, (N_TRAIN + N_VAL,), generator=fixed)
    x = centres[y] + 1.5 * torch.randn(N_TRAIN + N_VAL, DIM, generator=fixed)
    x, y = x.to(device), y.to(device)
    order = torch.Generator().manual_seed(seed)
    train = TensorBatches(x[:N_TRAIN], y[:N_TRAIN], task.batch_size, shuffle=task.shuffle, generator=order)
    val = TensorBatches(x[N_TRAIN:], y[N_TRAIN:], N_VAL, shuffle=False)
    return TaskData(train=train, val=val, num_classes=CLASSES, generator=order)


def my_model(task: Task, num_classes: int) -> nn.Module:
    """A fresh model per training run (deapnos seeds torch first)."""
    hidden = task.options.get("hidden", 32)
    return nn.Sequential(nn.Linear(DIM, hidden), nn.Tanh(), nn.Linear(hidden, num_classes))


def my_task() -> Task:
    return Task(name="my-task", description="4 noisy Gaussian blobs in 16-D, MLP 16-32-4 (template)",
                data_factory=my_data, model_factory=my_model, steps_per_epoch=5, epochs=20, batch_size=32,
                warmup_steps=10, num_classes=CLASSES, options={"hidden": 32}, kind="fitness")


@hookimpl
def deapnos_fitness_tasks():
    return [my_task()]
'''


def config_text() -> str:
    """The workspace config: the quickstart's own text under a header that says how to use it."""
    from .search.config import config_path
    text = config_path("quickstart").read_text(encoding="utf-8")
    body = text[text.index("[run]"):] if "[run]" in text else text
    body = re.sub(r'(?m)^name = "quickstart"', 'name = "workspace"', body, count=1)
    body = re.sub(r"(?m)^(plugins = \[\][^\n]*)$",
                  r'\1\n# plugins = ["my_tasks"]  # the template task of my_tasks.py', body, count=1)
    return CONFIG_HEADER + "\n" + body


def files() -> dict[str, str]:
    return {ENTRY_NAME: ENTRY_TEXT, CONFIG_NAME: config_text(), TASKS_NAME: TASKS_TEXT}


def init_workspace(folder: str | Path, force: bool = False) -> list[Path]:
    """Write the workspace files into ``folder`` (created); returns the paths written.  An existing
    file is an error (FileExistsError naming it) unless ``force``."""
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise NotADirectoryError(f"{folder}: not a folder; give a folder (created if missing)")
    todo = files()
    if not force:
        there = [folder / name for name in todo if (folder / name).exists()]
        if there:
            raise FileExistsError(f"{there[0]} exists; keep it, or add --force to overwrite "
                                  f"{', '.join(todo)}")
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for name, text in todo.items():
        path = folder / name
        path.write_text(text, encoding="utf-8")
        written.append(path)
    return written


def configure_parser(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("folder", nargs="?", default=".", help="the workspace folder (default: this one)")
    parser.add_argument("--force", action="store_true", help=f"overwrite {', '.join(files_names())}")


def files_names() -> list[str]:
    return [ENTRY_NAME, CONFIG_NAME, TASKS_NAME]


def run_command(args) -> int:
    try:
        written = init_workspace(args.folder, force=args.force)
    except (OSError, ValueError) as exc:
        print(f"deapnos init: {exc}", file=sys.stderr)
        return 2
    where = Path(args.folder)
    for path in written:
        print(f"wrote {path}")
    cd = "" if where.resolve() == Path.cwd().resolve() else f"cd {where} && "
    print(f"next: {cd}deapnos run   (or: {cd}python -m scoop -n 2 {ENTRY_NAME}); edit {CONFIG_NAME} first")
    return 0
