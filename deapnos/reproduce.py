"""``deapnos reproduce``: the paper's final comparison, on its tasks where their data is found.

The published optimizers (A1-A5, Opt1-Opt10) and the nine evolved LR schedules (lr1-lr9, each on
torch's Adam) against the baselines, every one tuned by ``deapnos evaluate``'s grid
(:mod:`deapnos.evaluate.compare`): the LR is chosen on the validation split, and the score reported is
the final model's on a held-out test split.  The paper's tasks are CIFAR-100 and TinyImageNet from
scratch and three fine-tunings of EfficientNetV2-S; for each one whose data is missing the command
says so first, with where to get it, and what runs instead (a stand-in named in the table's title
and in results.json).  Provides :func:`configure_parser` and :func:`run_command`.
Details (options, budget, ``--compat``): docs/paper.md §9.
"""
from __future__ import annotations

import argparse
import functools
import logging
import math
import statistics
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass, field

from .evaluate.held_out import HeldOutSplit, _size, split_in_two, split_sizes  # noqa: F401

log = logging.getLogger(__name__)

#: the paper's final tasks (its abstract): transfer from scratch, then fine-tuning EfficientNetV2-S
PAPER_TASKS = {
    "cifar100-effnetv2s": "CIFAR-100",
    "tinyimagenet-effnetv2s": "TinyImageNet",
    "flowers102-finetune": "Flowers102 (and an EfficientNetV2-S checkpoint)",
    "cars196-finetune": "Cars196 (and an EfficientNetV2-S checkpoint)",
    "caltech101-finetune": "Caltech101 (and an EfficientNetV2-S checkpoint)",
}
SURROGATE_TASK = "cifar10-convnet48"       # the search's own surrogate: the first stand-in
CIFAR10_TASK = SURROGATE_TASK             # the older name
SUITE_TASKS = ("digits-hard", "ill-conditioned", "tabular", "stdlib-lm")
REFERENCE = "torch:Adam"
#: the optimizer the evolved LR schedules drive (the released schedules are written for a standard optimizer)
SCHEDULE_BASE = "torch:Adam"
# the baselines in standard form; the reference comes first
PAPER_BASELINES = (REFERENCE, "torch:RMSprop", "torch:SGD", "torch:SGD(momentum=0.9, nesterov=True)",
                   "powersign", "addsign", "qhm")


def published() -> list[str]:
    """The zoo names of the published optimizers: a1..a5 (AdamClip) and opt1..opt10."""
    from . import zoo
    return zoo.names(kind="adamclip") + zoo.names(kind="evolved")


def published_schedules() -> list[str]:
    """The zoo names of the evolved LR schedules: lr1..lr9."""
    from . import zoo
    return zoo.schedule_names()


# -- an LR schedule on a torch optimizer -----------------------------------------------------

@functools.cache
def _scheduled_spec():
    """The class :data:`ScheduledSpec`, made on first use (``--help`` imports no torch)."""
    import torch

    from .evaluate.protocol import OptimizerSpec

    @dataclass
    class ScheduledSpec(OptimizerSpec):
        """A ``torch.optim`` class driven by a zoo LR schedule (base warm-up + cosine times the
        schedule's multiplier) instead of the base schedule alone."""
        schedule: str = ""

        @property
        def text(self) -> str:
            return f"{super().text} with schedule {self.schedule}"

        def build(self, params, lr: float, total_steps: int, warmup_steps: int, seed: int = 0,
                  check_finite: bool = False):
            from . import zoo
            assert self.torch_class is not None
            opt = getattr(torch.optim, self.torch_class)(params, lr=lr, **self.kwargs)
            return opt, zoo.schedule(self.schedule, opt, total_steps, warmup_steps)

    ScheduledSpec.__module__, ScheduledSpec.__qualname__ = __name__, "ScheduledSpec"
    return ScheduledSpec


def __getattr__(name: str):
    if name == "ScheduledSpec":
        return _scheduled_spec()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


# -- which tasks run -------------------------------------------------------------------------

@dataclass
class TaskPlan:
    """The tasks that run, the paper's tasks that cannot, and whether the comparison is a stand-in."""
    tasks: list[str]
    missing: dict[str, str] = field(default_factory=dict)     # paper task -> why (and where to get it)
    stand_in: bool = False
    chosen: bool = False                                      # picked with --tasks

    @property
    def title(self) -> str:
        on = ", ".join(self.tasks)
        if not self.stand_in:
            return f"The paper's final comparison on {on}"
        if self.chosen:
            return f"Comparison on {on} (chosen with --tasks; not the paper's final tasks)"
        return (f"STAND-IN for the paper's final comparison, on {on}: the paper's tasks "
                f"{', '.join(self.missing)} are missing")

    def to_dict(self) -> dict:
        return {"tasks": self.tasks, "paper_tasks": list(PAPER_TASKS), "paper_tasks_missing": self.missing,
                "stand_in": self.stand_in, "chosen_with_tasks": self.chosen, "title": self.title}


def _with_path(task, data_path: str | None):
    """``task`` reading ``--data-path``, when it reads data at all (the embedded suite does not)."""
    reads_data = task.data_path or task.data_env or task.data_subdir
    return task.replace(data_path=data_path) if data_path and reads_data else task


def plan_tasks(installed: Mapping, data_path: str | None = None, requested: list[str] | None = None) -> TaskPlan:
    """The paper's tasks whose data is found; when none is, the search's surrogate (CIFAR-10) if found,
    else the embedded suite, as a stand-in.  ``requested`` (``--tasks``) runs those, as asked."""
    if requested:
        return TaskPlan(list(requested), stand_in=any(n not in PAPER_TASKS for n in requested), chosen=True)
    missing, present = {}, []
    for name, dataset in PAPER_TASKS.items():
        task = installed.get(name)
        if task is None:
            missing[name] = f"{dataset}: task not installed (it comes with the built-in plugin vision_tasks)"
            continue
        try:
            _with_path(task, data_path).check_available()
            present.append(name)
        except Exception as exc:  # noqa: BLE001 - TaskDataError names the path and how to get the data
            missing[name] = str(exc)
    if present:
        return TaskPlan(present, missing)
    surrogate = installed.get(SURROGATE_TASK)
    if surrogate is not None:
        try:
            _with_path(surrogate, data_path).check_available()
            return TaskPlan([SURROGATE_TASK], missing, stand_in=True)
        except Exception:   # noqa: BLE001 - no CIFAR-10 either: the embedded suite
            pass
    return TaskPlan([n for n in SUITE_TASKS if n in installed], missing, stand_in=True)


def default_tasks(tasks: Mapping, data_path: str | None = None) -> list[str]:
    """The tasks :func:`plan_tasks` runs by default."""
    return plan_tasks(tasks, data_path).tasks


# -- statistics --------------------------------------------------------------------------------

def unpaired_difference(a: list[float], b: list[float]):
    """Welch's 95% interval of mean(a) - mean(b) (independent samples); None without values."""
    from .evaluate.stats import Interval, t95
    if not a or not b:
        return None
    ma, mb = statistics.fmean(a), statistics.fmean(b)
    if len(a) < 2 or len(b) < 2:
        return Interval(ma - mb, math.inf, min(len(a), len(b)), 0.0)
    va, vb = statistics.variance(a) / len(a), statistics.variance(b) / len(b)
    se = math.sqrt(va + vb)
    if se == 0:
        return Interval(ma - mb, 0.0, min(len(a), len(b)), 0.0)
    df = (va + vb) ** 2 / (va ** 2 / (len(a) - 1) + vb ** 2 / (len(b) - 1))
    return Interval(ma - mb, t95(max(1, math.floor(df + 1e-9))) * se, min(len(a), len(b)), se)


def summarize(results, reference: str, chosen: Mapping[str, float], paired: bool = True) -> list[dict]:
    """One row per (task, optimizer) of the chosen-LR runs: the test score (mean ± 95% CI over seeds),
    its difference to the reference (paired per seed, or Welch's unpaired interval), the LR chosen on
    validation and the validation score (best epoch) kept apart."""
    from .evaluate.stats import interval, versus
    groups: dict[tuple[str, str], list] = {}
    for r in results:
        groups.setdefault((r.task, r.optimizer or r.genome), []).append(r)
    rows = []
    for (task, opt), rs in groups.items():
        ok = [r for r in rs if r.ok and r.test_accuracy is not None]
        test = interval([r.test_accuracy for r in ok]) if ok else None
        val = interval([r.fitness for r in ok if r.fitness is not None]) if ok else None
        row = {"task": task, "optimizer": opt, "n": len(rs), "n_ok": len(ok),
               "test_mean": test.mean if test else None,
               "test_ci95": test.half_width if test and math.isfinite(test.half_width) else None,
               "validation_mean": val.mean if val else None,
               "validation_ci95": val.half_width if val and math.isfinite(val.half_width) else None,
               "lr_chosen_on_validation": chosen.get(f"{task} | {opt}"),
               "statuses": {s: sum(r.status == s for r in rs) for s in sorted({r.status for r in rs})},
               "vs_reference": None, "verdict": "reference" if opt == reference else None,
               "difference": "paired per seed" if paired else "unpaired (Welch)"}
        refs = groups.get((task, reference))
        if opt != reference and refs:
            if paired:
                diff, verdict, _ = versus({r.seed: r.test_accuracy if r.ok else None for r in rs},
                                          {r.seed: r.test_accuracy if r.ok else None for r in refs})
            else:
                diff = unpaired_difference([r.test_accuracy for r in ok],
                                           [r.test_accuracy for r in refs if r.ok and r.test_accuracy is not None])
                verdict = diff.verdict() if diff else None
                if len(ok) < len(rs) and any(r.ok for r in refs):
                    verdict = "worse"
            row["vs_reference"], row["verdict"] = (diff.to_dict() if diff else None), verdict
        rows.append(row)
    return rows


def _pm(mean, ci, fmt="{:.4f}") -> str:
    if mean is None:
        return "-"
    return fmt.format(mean) + (f" ± {ci:.4f}" if ci is not None else " (1 seed)")


def format_tables(rows: list[dict], title: str, reference: str, n_seeds: int, paired: bool) -> str:
    """Three grids laid out like the paper's tables (one row per optimizer, one column per task): the
    test score, the difference to the reference with its verdict, and the LR chosen on validation with
    the validation score."""
    from .evaluate.stats import difference_text
    tasks = list(dict.fromkeys(r["task"] for r in rows))
    opts = list(dict.fromkeys(r["optimizer"] for r in rows))
    cell = {(r["task"], r["optimizer"]): r for r in rows}

    def grid(heading: str, fn) -> list[str]:
        body = [[o + (" (reference)" if o == reference else "")] + [fn(cell[(t, o)]) if (t, o) in cell else "-"
                                                                    for t in tasks] for o in opts]
        head = ["optimizer"] + tasks
        widths = [max(len(x) for x in col) for col in zip(head, *body)]
        line = "  ".join(f"{{:<{w}}}" for w in widths)
        return ["", heading, line.format(*head), line.format(*("-" * w for w in widths))] + \
            [line.format(*b) for b in body]

    diff_kind = "paired per seed" if paired else "NOT paired (compat: every run draws its own seed), Welch's interval"
    out = [title, "=" * len(title)]
    out += grid(f"Test score, final model (the task's metric; mean ± 95% CI over {n_seeds} seed(s)):",
                lambda r: _pm(r["test_mean"], r["test_ci95"])
                + ("" if r["n_ok"] == r["n"] else f" [{r['n_ok']}/{r['n']} ok]"))
    out += grid(f"Δ test score vs {reference} ({diff_kind}; 'better' only when the interval excludes zero):",
                lambda r: "reference" if r["verdict"] == "reference"
                else f"{difference_text(r['vs_reference'])} {r['verdict'] or '-'}")
    out += grid("LR chosen on validation; validation score (best epoch, mean ± 95% CI):",
                lambda r: (f"{r['lr_chosen_on_validation']:g}; " if r["lr_chosen_on_validation"] is not None else "")
                + _pm(r["validation_mean"], r["validation_ci95"]))
    return "\n".join(out)


# -- the runtime estimate ----------------------------------------------------------------------

def estimate(tasks: Mapping, n_optimizers: int, grid, n_seeds: int, config,
             device: str) -> tuple[float, list[str]]:
    """(seconds, one line per task): runs x steps x the measured time of a training step
    (:func:`deapnos.evaluate.compare.estimate_seconds`; validation and the test pass add a little)."""
    from .evaluate.compare import estimate_seconds
    total, lines = 0.0, []
    for name, task in tasks.items():
        s = estimate_seconds({name: task}, n_optimizers, grid, n_seeds, config, device)
        total += s
        lines.append(f"  {name}: {n_optimizers * len(grid) * n_seeds} runs, about {_duration(s)} "
                     "(from the measured time of a training step)")
    return total, lines


def _duration(s: float) -> str:
    return f"{s / 3600:.1f} h" if s >= 3600 else f"{s / 60:.1f} min" if s >= 60 else f"{s:.0f} s"


# -- the command -------------------------------------------------------------------------------

def configure_parser(parser: argparse.ArgumentParser) -> None:
    from .argtypes import non_negative_int, positive_float, positive_int
    from .plugins import add_plugin_options
    from .listargs import ListAppend, deprecated_list
    parser.add_argument("-t", "--tasks", "--task", dest="task", action=ListAppend, metavar="NAME[,NAME...]",
                        help="run these tasks only (repeatable or comma-separated); default: the paper's "
                             f"final tasks whose data is found ({', '.join(PAPER_TASKS)}), else the stand-in "
                             f"{SURROGATE_TASK} when CIFAR-10 is found, else {', '.join(SUITE_TASKS)}")
    parser.add_argument("-O", "--optimizer", "--optimizers", dest="optimizers", action=ListAppend,
                        metavar="NAME[,NAME...]",
                        help="published optimizers and LR schedules to run (repeatable or comma-separated; "
                             f"default: a1..a5, opt1..opt10 and lr1..lr9, the schedules on {SCHEDULE_BASE})")
    parser.add_argument("-B", "--baseline", dest="baselines", action=ListAppend, metavar="SPEC[,SPEC...]",
                        help="baselines (repeatable or comma-separated; default: " + "; ".join(PAPER_BASELINES)
                             + ")")
    parser.add_argument("--baselines", dest="baselines", action=deprecated_list("--baselines", "--baseline", ";"),
                        metavar="SPEC;SPEC;...", help="deprecated: use --baseline")
    parser.add_argument("--seeds", type=positive_int, default=3, help="seeds per optimizer, task and LR (default 3)")
    parser.add_argument("--seed", type=non_negative_int, default=0, help="first seed (default 0)")
    parser.add_argument("--lrs", metavar="LR,LR,...", help="the LR grid (default: 10,1,0.1,0.01,1e-3,1e-4,1e-5)")
    parser.add_argument("--tuning", choices=("grid", "screen"), default="grid",
                        help="grid: full-length runs over the LR grid, LR chosen on validation (default); "
                             "screen: the search's LR screen (chosen on training accuracy)")
    parser.add_argument("--epochs", type=positive_int, help="full-run epochs (default: the task's)")
    parser.add_argument("--step-scale", type=positive_float, default=1.0,
                        help="multiply steps per epoch, T and W (e.g. 0.2 for a quick look)")
    parser.add_argument("--budget", action="store_true",
                        help="only estimate the runtime (a few timed training steps per task) and exit")
    parser.add_argument("--no-decay", action="store_true",
                        help="finalOptimizers' default use_decay=False: the evolved decays and LR multipliers off")
    parser.add_argument("--compat", action="store_true",
                        help="the authors' released forms and noise model (Opt3 is refused; runs are not paired)")
    parser.add_argument("--data-path", help="the folder holding the data sets (e.g. the folder of "
                                            "cifar-100-python, tiny-imagenet-200, cifar-10-batches-py)")
    parser.add_argument("--device", help="cpu, cuda, cuda:1, ... (default: cuda when available)")
    parser.add_argument("--threads", type=positive_int, help="torch threads during evaluation")
    parser.add_argument("--timeout", type=positive_float, help="wall-clock seconds per evaluation")
    add_plugin_options(parser)
    parser.add_argument("--out", metavar="DIR", help="write results.json and curves.png here")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def build_specs(names, baselines, space, use_decay: bool = True, compat: bool = False):
    """(specs in table order: the reference, the other baselines, the published optimizers, the LR
    schedules on :data:`SCHEDULE_BASE`; ``{name: reason}`` of the refused ones)."""
    from . import zoo
    from .evaluate.protocol import OptimizerSpec, resolve_optimizer
    specs: list[OptimizerSpec] = []
    refused: dict[str, str] = {}
    schedules = set(zoo.schedule_names())
    for name in list(baselines) + list(names):
        if name.lstrip().startswith("torch:"):
            specs.append(resolve_optimizer(name))
            continue
        if name in schedules:
            base = resolve_optimizer(SCHEDULE_BASE)
            specs.append(_scheduled_spec()(name=f"{name} ({SCHEDULE_BASE})", torch_class=base.torch_class,
                                       kwargs=dict(base.kwargs), schedule=name))
            continue
        try:
            genome = zoo.get(name, use_decay=use_decay, space=space, compat=compat)
        except zoo.CompatError as exc:
            refused[name] = str(exc)
            continue
        label = name if use_decay or zoo.info(name).no_decay_text is None else f"{name} (no decay)"
        specs.append(OptimizerSpec(name=label, genome=genome))
    return specs, refused


def _split_names(values) -> list[str]:
    return [n.strip() for v in values or [] for n in v.split(",") if n.strip()]


def run_command(args: argparse.Namespace) -> int:
    from . import zoo
    from .context import build_context
    from .evaluate.compare import parse_lrs, run_jobs, write_outputs
    from .evaluate.protocol import default_device, protocol_config

    def fail(msg: str) -> int:
        print(f"deapnos reproduce: {msg}", file=sys.stderr)
        return 2

    from .argtypes import writable_folder_problem
    if args.seeds < 1:
        return fail("--seeds must be >= 1")
    if args.out and (problem := writable_folder_problem(args.out)):    # before hours of training, not after
        return fail(f"--out {args.out}: {problem}")
    try:
        lrs = parse_lrs(args.lrs)
        ctx = build_context(args.plugins, compat=args.compat, eager=False)
        space, installed = ctx.space, ctx.tasks
    except Exception as exc:  # noqa: BLE001 - a bad grid or a broken plugin: say which
        return fail(str(exc))
    names = _split_names(args.optimizers) if args.optimizers else published() + published_schedules()
    baselines = list(args.baselines) if args.baselines else list(PAPER_BASELINES)
    known = zoo.names() + zoo.schedule_names()
    unknown = [n for n in names if n not in known]
    if unknown:
        return fail(f"--optimizers: unknown name(s) {', '.join(map(repr, unknown))}; zoo: {', '.join(known)}")
    from .search.elimination import baseline_problem
    bad = [p for p in map(baseline_problem, baselines) if p]
    if bad:
        return fail(bad[0])
    requested = _split_names(args.task)
    unknown = [n for n in requested if n not in installed]
    if unknown:
        return fail(f"--tasks: unknown task(s) {', '.join(map(repr, unknown))}; "
                    f"installed: {', '.join(sorted(installed))}")
    plan = plan_tasks(installed, args.data_path, requested)
    if not plan.tasks:
        return fail(f"no task to run; installed: {', '.join(sorted(installed))}")
    if plan.missing:       # said first: which of the paper's tasks are missing, where to get them, what runs instead
        print(f"the paper's final tasks are missing ({len(plan.missing)} of {len(PAPER_TASKS)}): "
              f"{', '.join(plan.missing)}")
        for name, why in plan.missing.items():
            print(f"  missing {name}: {why}")
        print(f"instead: {', '.join(plan.tasks)}" + (" (a stand-in, not the paper's comparison)" if plan.stand_in
                                                     else " (the paper's tasks that were found)"), flush=True)
    tasks = {n: _with_path(installed[n], args.data_path) for n in plan.tasks}
    for task in tasks.values():
        try:
            task.check_available()
        except Exception as exc:  # noqa: BLE001 - TaskDataError names the path and how to get the data
            return fail(str(exc))
    tasks = {n: t.replace(data_factory=HeldOutSplit(t.data_factory)) for n, t in tasks.items()}
    specs, refused = build_specs(names, baselines, space, use_decay=not args.no_decay, compat=args.compat)
    reference = specs[0].name
    try:
        config = protocol_config({"epochs": args.epochs, "step_scale": args.step_scale, "num_threads": args.threads,
                                  "timeout_s": args.timeout, "evaluate_test": True}, args.compat)
    except ValueError as exc:
        return fail(str(exc))
    device = args.device or default_device()
    seeds = list(range(args.seed, args.seed + args.seeds))
    grid = lrs if args.tuning == "grid" else (None,)
    n_runs = len(tasks) * len(specs) * len(grid) * len(seeds)
    if args.budget:
        seconds, lines = estimate(tasks, len(specs), grid, len(seeds), config, device)
        print(f"estimate: {n_runs} training runs on {device}, about {_duration(seconds)}:")
        print("\n".join(lines))
        return 0
    print(f"{plan.title}: {len(specs)} optimizers, {n_runs} training runs", file=sys.stderr)
    splits = {n: split_sizes(t, device) for n, t in tasks.items()}
    t0 = time.perf_counter()
    runs, results, chosen = run_jobs(tasks, specs, seeds, config, grid, device, desc="reproduce",
                                     no_progress=args.no_progress)
    paired = not config.fresh_seed
    rows = summarize(results, reference, chosen, paired=paired)
    print(format_tables(rows, plan.title, reference, len(seeds), paired))
    print()
    print(f"tuning: {args.tuning}" + (f" over LRs {', '.join(f'{v:g}' for v in grid)}, chosen on validation"
                                      if args.tuning == "grid" else " (the LR chosen on training accuracy)")
          + "; score: the final model on the test split ("
          + "; ".join(f"{n}: {s['test']} examples, {s['test_split']}; validation {s['validation']}"
                      for n, s in splits.items()) + ")"
          + ("" if paired else "; compat: every run draws its own seed, so runs are NOT paired: the "
             "differences are unpaired (Welch) intervals; the authors' released forms"))
    for name, why in refused.items():
        print(f"refused: {name}: {why}")
    for r in results:
        if r.status == "error":
            print(f"error: {r.optimizer} on {r.task} (seed {r.seed}): {r.message}", file=sys.stderr)
    if args.out:
        doc = {"format": "deapnos.reproduce", "version": 2, **plan.to_dict(), "splits": splits,
               "device": device, "seeds": seeds, "tuning": args.tuning,
               "lrs": list(grid) if args.tuning == "grid" else None, "chosen_lr": chosen, "reference": reference,
               "schedule_base": SCHEDULE_BASE, "compat": bool(args.compat), "paired": paired, "refused": refused,
               "seconds": time.perf_counter() - t0, "config": config.to_dict(), "summary": rows,
               "results": [r.to_dict() for r in results], "runs": [r.to_dict() for r in runs]}
        write_outputs(args.out, doc, results)
    return 1 if any(r.status == "error" for r in results) else 0
