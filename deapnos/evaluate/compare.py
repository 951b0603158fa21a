"""``deapnos evaluate``: compare optimizers on tasks under the protocol.

    deapnos evaluate --optimizer adam --optimizer opt10 --optimizer torch:SGD(momentum=0.9) \\
                     --task digits --seeds 3 --out results/ [--device cpu] [-p MODULE]

Optimizers are zoo names, genome files, genome text or ``torch:NAME`` (see
:func:`deapnos.evaluate.protocol.resolve_optimizer`); all go through the same protocol, seeds and
budget.  Prints a table (mean +- std fitness over the seeds that finished, the LRs chosen, seconds
per evaluation); with ``--out`` writes ``results.json`` (every :class:`EvalResult` and the summary)
and ``curves.png`` (validation score per epoch).
"""
from __future__ import annotations

import argparse
import json
import logging
import math
import statistics
import sys
import time
from collections import Counter
from pathlib import Path

from .protocol import ProtocolConfig, default_device, evaluate_genome, resolve_optimizer
from .result import EvalResult

log = logging.getLogger(__name__)


def configure_parser(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-o", "--optimizer", action="append", required=True, metavar="SPEC",
                        help="zoo name, genome file, genome text or torch:NAME[(k=v,...)]; repeat to compare")
    parser.add_argument("-t", "--task", action="append", metavar="NAME",
                        help="task name (surrogate or fitness task); repeatable; default: digits")
    parser.add_argument("--seeds", type=int, default=1, help="number of seeds per optimizer and task (default 1)")
    parser.add_argument("--seed", type=int, default=0, help="first seed (default 0)")
    parser.add_argument("--out", metavar="DIR", help="write results.json and curves.png here")
    parser.add_argument("--device", help="cpu, cuda, cuda:1, ... (default: cuda when available)")
    parser.add_argument("-p", dest="plugins", action="append", default=[], metavar="MODULE",
                        help="load a plugin module or entry-point name; 'no:NAME' blocks one")
    parser.add_argument("--lr", type=float, help="fixed peak LR: skip the LR screen")
    parser.add_argument("--epochs", type=int, help="full-run epochs (default: the task's, 40)")
    parser.add_argument("--step-scale", type=float, default=1.0,
                        help="multiply steps per epoch, T and W (e.g. 0.1 for a quick look)")
    parser.add_argument("--data-path", help="the task's data folder (overrides its environment variable)")
    parser.add_argument("--threads", type=int, help="torch threads during evaluation")
    parser.add_argument("--timeout", type=float, help="wall-clock seconds per evaluation")
    parser.add_argument("--no-shuffle", action="store_true", help="the paper's fixed batch order")
    parser.add_argument("--integrity", action="store_true", help="run the installed integrity checks first")
    parser.add_argument("--test", action="store_true", help="also score the final model on the test split")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def _find_tasks(names: list[str], pm) -> dict:
    from .. import plugins
    tasks = plugins.all_tasks(pm)
    unknown = [n for n in names if n not in tasks]
    if unknown:
        raise SystemExit(f"deapnos evaluate: unknown task(s) {', '.join(map(repr, unknown))}; installed: "
                         f"{', '.join(sorted(tasks)) or 'none'}")
    return {n: tasks[n] for n in names}


def summarize(results: list[EvalResult], names: dict[str, str] | None = None) -> list[dict]:
    """One row per (task, optimizer) in first-seen order: mean/std fitness of the ok seeds, statuses."""
    groups: dict[tuple[str, str], list[EvalResult]] = {}
    for r in results:
        groups.setdefault((r.task, r.optimizer or r.genome), []).append(r)
    rows = []
    for (task, opt), rs in groups.items():
        fits = [r.fitness for r in rs if r.ok and r.fitness is not None]
        finals = [r.final_accuracy for r in rs if r.ok and r.final_accuracy is not None]
        rows.append({
            "task": task, "optimizer": opt, "n": len(rs), "n_ok": len(fits),
            "fitness_mean": statistics.fmean(fits) if fits else None,
            "fitness_std": statistics.stdev(fits) if len(fits) > 1 else (0.0 if fits else None),
            "final_mean": statistics.fmean(finals) if finals else None,
            "lrs": sorted({r.lr for r in rs if r.lr is not None}),
            "statuses": dict(Counter(r.status for r in rs)),
            "seconds_mean": statistics.fmean(r.seconds for r in rs),
            "messages": sorted({r.message for r in rs if r.message}),
        })
    return rows


def format_table(rows: list[dict]) -> str:
    header = ("task", "optimizer", "fitness (mean ± std)", "final", "ok", "lr chosen", "s/eval", "status")
    lines = []
    for r in rows:
        fit = (f"{r['fitness_mean']:.4f} ± {r['fitness_std']:.4f}" if r["fitness_mean"] is not None else "-")
        final = f"{r['final_mean']:.4f}" if r["final_mean"] is not None else "-"
        lrs = ",".join(f"{v:g}" for v in r["lrs"]) or "-"
        status = " ".join(f"{k}:{v}" for k, v in r["statuses"].items())
        opt = r["optimizer"] if len(r["optimizer"]) <= 40 else r["optimizer"][:37] + "..."
        lines.append((r["task"], opt, fit, final, f"{r['n_ok']}/{r['n']}", lrs, f"{r['seconds_mean']:.1f}", status))
    widths = [max(len(str(x)) for x in col) for col in zip(header, *lines)]
    fmt = "  ".join(f"{{:<{w}}}" for w in widths)
    out = [fmt.format(*header), fmt.format(*("-" * w for w in widths))]
    out += [fmt.format(*line) for line in lines]
    return "\n".join(out)


def plot_curves(results: list[EvalResult], path: Path) -> None:
    """Validation score per epoch, one panel per task, one colour per optimizer (every seed drawn)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    tasks = list(dict.fromkeys(r.task for r in results))
    opts = list(dict.fromkeys(r.optimizer or r.genome for r in results))
    colours = {o: f"C{i % 10}" for i, o in enumerate(opts)}
    fig, axes = plt.subplots(1, len(tasks), figsize=(6 * len(tasks), 4.2), squeeze=False)
    for ax, task in zip(axes[0], tasks):
        labelled = set()
        for r in results:
            if r.task != task or not r.curve:
                continue
            opt = r.optimizer or r.genome
            steps = [c["step"] for c in r.curve]
            scores = [c.get("val_score", c.get("val_acc")) for c in r.curve]
            label = opt if opt not in labelled and len(opt) <= 40 else (opt[:37] + "..." if opt not in labelled else None)
            labelled.add(opt)
            ax.plot(steps, scores, color=colours[opt], alpha=0.85, lw=1.4, label=label,
                    ls="-" if r.ok else ":")
        ax.set_title(task)
        ax.set_xlabel("step")
        ax.set_ylabel("validation score")
        ax.grid(alpha=0.3)
        if labelled:
            ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def run_command(args: argparse.Namespace) -> int:
    from .. import plugins
    if args.seeds < 1:
        print("deapnos evaluate: --seeds must be >= 1", file=sys.stderr)
        return 2
    try:
        specs = [resolve_optimizer(s) for s in args.optimizer]
    except (ValueError, TypeError, OSError) as exc:
        print(f"deapnos evaluate: {exc}", file=sys.stderr)
        return 2
    try:
        pm = plugins.get_plugin_manager(extra_plugins=args.plugins)
        tasks = _find_tasks(args.task or ["digits"], pm)
        checks = plugins.integrity_checks(pm) if args.integrity else None
    except SystemExit as exc:
        print(exc, file=sys.stderr)
        return 2
    except Exception as exc:  # noqa: BLE001 - a broken plugin: say which
        print(f"deapnos evaluate: {exc}", file=sys.stderr)
        return 2
    if args.data_path:
        tasks = {n: t.replace(data_path=args.data_path) for n, t in tasks.items()}
    config = ProtocolConfig(lr=args.lr, epochs=args.epochs, step_scale=args.step_scale, num_threads=args.threads,
                            timeout_s=args.timeout, shuffle=not args.no_shuffle, evaluate_test=args.test)
    device = args.device or default_device()
    seeds = list(range(args.seed, args.seed + args.seeds))
    jobs = [(t, s, seed) for t in tasks.values() for s in specs for seed in seeds]
    from tqdm import tqdm
    results: list[EvalResult] = []
    t0 = time.perf_counter()
    with tqdm(total=len(jobs), desc="evaluate", unit="eval", disable=args.no_progress, file=sys.stderr) as bar:
        for task, spec, seed in jobs:
            bar.set_postfix_str(f"{task.name} {spec.name[:30]} seed {seed}")
            r = evaluate_genome(spec, task, seed=seed, config=config, device=device, integrity_checks=checks)
            results.append(r)
            plugins.notify(pm, "deapnos_evaluation_finished", result=r)
            bar.update(1)
    rows = summarize(results)
    print(format_table(rows))
    for r in results:
        if r.status == "error":
            print(f"error: {r.optimizer} on {r.task} (seed {r.seed}): {r.message}", file=sys.stderr)
    if args.out:
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        doc = {"format": "deapnos.evaluate", "version": 1, "device": device, "seeds": seeds,
               "seconds": time.perf_counter() - t0, "config": config.to_dict(),
               "tasks": {n: t.summary() for n, t in tasks.items()},
               "summary": rows, "results": [r.to_dict() for r in results]}
        (out / "results.json").write_text(json.dumps(doc, indent=1, default=_json_default))
        try:
            plot_curves(results, out / "curves.png")
        except Exception as exc:  # noqa: BLE001 - a plot must not lose the results
            log.warning("could not draw the curves: %s", exc)
        print(f"wrote {out / 'results.json'} and {out / 'curves.png'}")
    return 1 if any(r.status == "error" for r in results) else 0


def _json_default(obj):
    if isinstance(obj, float) and not math.isfinite(obj):
        return str(obj)
    if isinstance(obj, (set, tuple)):
        return list(obj)
    return str(obj)
