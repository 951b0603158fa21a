"""The report of a search run: ``deapnos report RUN_DIR`` (also written at the end of a run).

Provides :func:`write_report`, which writes ``RUN_DIR/report.md`` (run statistics, leaderboard,
held-out validation, winners with their exported modules under ``winners/``, plots under ``plots/``,
hall of fame) from the run folder's JSON/TOML files alone.  Contents: docs/search.md, "The report".
"""
from __future__ import annotations

import argparse
import json
import logging
import math
import sys
from collections import Counter
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .evaluate.stats import difference_text
from .report_identity import annotate_identities, identity_lines, identity_suffix  # noqa: F401
from .report_identity import md_escape as _md_escape
from .report_plots import _budget, plot_curves, plot_particles, plot_schedules, running_best  # noqa: F401
from .search.store import (CONFIG, ELIMINATION, HALL_OF_FAME, RunStore, StoreError, atomic_write_text,
                           is_plain_name)

if TYPE_CHECKING:       # the config pulls in torch: `deapnos report --help` must not
    from .search.config import Config

log = logging.getLogger(__name__)

FAILED = ("screened_out", "diverged", "error", "timeout")


def configure_parser(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("run_dir", metavar="RUN_DIR", help="a run folder (deapnos run)")
    parser.add_argument("--no-plots", action="store_true", help="skip the plots")
    parser.add_argument("--load-plugins", action="store_true",
                        help="also import the modules the run folder's config names (run.plugins) that are not "
                             "installed plugins. Off by default: a run folder may come from anyone, and "
                             "importing a module it names runs that module's code")
    from .plugins import add_plugin_options
    add_plugin_options(parser)      # installed plugins load by default, as in every command


def run_command(args) -> int:
    from .search.config import ConfigError
    try:
        path = write_report(args.run_dir, plots=not args.no_plots, load_plugins=args.load_plugins,
                            plugins=args.plugins)
    except (FileNotFoundError, StoreError, ConfigError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except (KeyError, TypeError, ValueError, AttributeError, IndexError) as exc:
        log.debug("report failed", exc_info=True)
        print(f"error: {args.run_dir}: a JSON file of the run folder holds content deapnos did not write "
              f"({type(exc).__name__}: {exc}); restore the folder's JSON files from a copy (-v shows where)",
              file=sys.stderr)
        return 2
    print(path)
    return 0


# ----------------------------------------------------------------------------------------------
# numbers from the log
# ----------------------------------------------------------------------------------------------

def log_stats(records: list[dict], particles: list[dict] | None = None) -> dict:
    """Counts and seconds from an evaluation log (the benchmark uses them too)."""
    evals = [r for r in records if r.get("event") == "evaluation"]
    trained = [r for r in evals if not r.get("cached")]
    status = Counter(r.get("status") for r in trained)
    seconds = sum(float(r.get("seconds") or 0.0) for r in trained)
    failed_s = sum(float(r.get("seconds") or 0.0) for r in trained if r.get("status") in FAILED)
    chosen = set()
    for row in particles or []:
        if row.get("timestep", 0) > 0 and row.get("moved"):
            chosen.add((row["timestep"], row["particle"], row.get("genome")))
    search_evals = [r for r in trained if r.get("kind") in ("mutant", "random")]
    not_chosen_s = sum(float(r.get("seconds") or 0.0) for r in search_evals
                       if (r.get("timestep"), r.get("particle"), r.get("genome")) not in chosen)
    search_s = sum(float(r.get("seconds") or 0.0) for r in search_evals)
    integrity = [r for r in records if r.get("event") == "rejected"]
    dups = [r for r in records if r.get("event") == "duplicate"]
    workers = Counter(r.get("worker") for r in trained)
    return {
        "attempts": len(evals), "trained": len(trained), "cached": len(evals) - len(trained),
        "status": dict(status), "seconds": seconds, "failed_seconds": failed_s,
        "failed_share": failed_s / seconds if seconds else 0.0,
        "search_seconds": search_s, "not_chosen_share": not_chosen_s / search_s if search_s else 0.0,
        "integrity_rejections": len(integrity),
        "integrity_seconds": sum(float(r.get("seconds") or 0.0) for r in integrity),
        "duplicates_rejected": len(dups), "workers": dict(workers),
    }


# ----------------------------------------------------------------------------------------------
# plots
# ----------------------------------------------------------------------------------------------

def _fmt(x, digits=4) -> str:
    if x is None:
        return "-"
    if isinstance(x, float):
        if math.isnan(x):
            return "nan"
        return f"{x:.{digits}f}"
    return str(x)


def _output_folder(folder: Path) -> Path:
    """A folder of the run the report writes into (``winners/``, ``plots/``): a real folder, never a
    link; links planted inside it are removed, so that no write lands outside the run folder."""
    if folder.is_symlink() or (folder.exists() and not folder.is_dir()):
        raise StoreError(f"{folder} must be a folder of the run, not a link or a file: remove it (the report "
                         f"writes it anew)")
    folder.mkdir(exist_ok=True)
    for p in folder.iterdir():
        if p.is_symlink():
            p.unlink()
    return folder


def export_winner(row: dict, folder: Path, space=None) -> tuple[str | None, str]:
    """Write ``winners/<label>.json`` and, when possible, ``winners/<label>.py``; returns
    (python file name or None, note).  The label must be a plain name (it becomes a file name)."""
    from .space.genome import Genome
    label = row["label"]
    if not is_plain_name(label):
        raise StoreError(f"label {label!r} is not a plain name (letters, digits and '_'); a label names files "
                         f"under winners/, so the report refuses it")
    _output_folder(folder)
    g = Genome.parse(row["genome"], space=space)
    atomic_write_text(folder / f"{label}.json", json.dumps({**g.to_dict(name=label), **row.get("identity", {})},
                                                           indent=2) + "\n")
    try:
        from .optim.export import export_source
    except ImportError:
        return None, "deapnos.optim.export is not available: no standalone module written"
    try:
        src = export_source(g, name=f"Evolved{label.capitalize()}")
    except Exception as exc:   # noqa: BLE001 - e.g. a plugin op without source
        return None, f"export failed: {type(exc).__name__}: {exc}"
    atomic_write_text(folder / f"{label}.py", src)
    return f"{label}.py", ""


def _check_inputs(run_dir: Path, hof, elim: dict, summary: dict) -> None:
    """The run files' shapes the report relies on, and every label a plain name; a file that fails
    raises :class:`StoreError` naming it, the entry and the field (config.toml: its loader's job)."""
    def bad(name, what):
        raise StoreError(f"{run_dir / name}: {what}; deapnos did not write this: restore the file from a copy "
                         f"of the run folder")

    def num(v):
        return isinstance(v, (int, float)) and not isinstance(v, bool)

    if not isinstance(hof, list):
        bad(HALL_OF_FAME, "not a JSON array")
    for i, row in enumerate(hof):
        if not (isinstance(row, dict) and isinstance(row.get("genome"), str) and num(row.get("mean"))
                and num(row.get("std")) and "rank" in row and "n" in row):
            bad(HALL_OF_FAME, f"entry {i} is not a hall-of-fame row (rank, mean, std, n, genome)")
    board, rungs = elim.get("leaderboard") or [], elim.get("rungs") or []
    if not isinstance(board, list) or not isinstance(rungs, list):
        bad(ELIMINATION, "fields 'leaderboard' and 'rungs' must be arrays")
    for i, row in enumerate(board):
        if not isinstance(row, dict):
            bad(ELIMINATION, f"leaderboard[{i}] is not an object")
        if not is_plain_name(row.get("label")):
            bad(ELIMINATION, f"leaderboard[{i}].label = {row.get('label')!r} is not a plain name (letters, digits "
                             f"and '_'), and labels name files under winners/")
        if not (isinstance(row.get("genome"), str) and num(row.get("mean")) and num(row.get("std"))
                and "rank" in row and "n" in row):
            bad(ELIMINATION, f"leaderboard[{i}] is not a leaderboard row (rank, label, mean, std, n, genome)")
    for i, rung in enumerate(rungs):
        if not (isinstance(rung, dict) and isinstance(rung.get("seeds"), list) and rung["seeds"]
                and isinstance(rung.get("entries"), list) and isinstance(rung.get("survivors", []), list)):
            bad(ELIMINATION, f"rungs[{i}] is not a rung (task, seeds, entries, survivors)")
        for j, entry in enumerate(rung["entries"]):
            if not isinstance(entry, dict) or not is_plain_name(entry.get("label")):
                bad(ELIMINATION, f"rungs[{i}].entries[{j}].label is not a plain name (letters, digits and '_')")
            if not isinstance(entry.get("results", {}), dict):
                bad(ELIMINATION, f"rungs[{i}].entries[{j}].results is not an object")
    if not isinstance(summary.get("cache", {}), dict):
        bad("summary.json", "field 'cache' is not an object")


def write_report(run_dir, plots: bool = True, load_plugins: bool = False, plugins=()) -> Path:
    """Write ``report.md`` (and plots, winners) for a run folder; returns its path.

    Everything it writes stays inside the run folder: labels must be plain names, links in the
    folder are refused or replaced, never written through.  Genomes are read with the installed
    plugins, ``plugins`` (``-p``) and the run's ``run.plugins`` that are installed; the other
    modules ``run.plugins`` names are imported only with ``load_plugins`` (the run's own
    ``deapnos run`` passes it: those plugins are already loaded).  A damaged or malformed file
    raises :class:`StoreError` naming it."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise FileNotFoundError(f"{run_dir} is not a folder; give a run folder (deapnos run)")
    if not (run_dir / CONFIG).exists():
        raise FileNotFoundError(f"{run_dir} is not a deapnos run folder (no config.toml)")
    store = RunStore(run_dir)
    from .search.store import load_run_config
    cfg = load_run_config(store)        # the loader deapnos status uses: every field checked, the defaults filled
    space, tasks = _run_plugins(cfg.to_dict(), load_plugins, plugins)     # space None: the paper's space
    particles = store.read_particles()
    hof = store.read_json(HALL_OF_FAME, [], kind=list) or []
    elim = store.read_json(ELIMINATION, {}, kind=dict) or {}
    summary = store.read_json("summary.json", {}, kind=dict) or {}
    _check_inputs(run_dir, hof, elim, summary)
    stats = log_stats(store.read_log(), particles)
    board, rungs = elim.get("leaderboard") or [], elim.get("rungs") or []
    winners = [row for row in board if not row.get("baseline")][:cfg.report.top]
    annotate_identities([row for row in board if not row.get("baseline")], space)
    last = rungs[-1] if rungs else None
    out = header_section(run_dir, cfg, store.read_status() or {}, summary, stats)
    out += evaluations_section(stats, summary)
    out += leaderboard_section(board, rungs)
    out += validation_section(store.read_json("validation.json", {}) or {})
    out += winners_section(winners, last, run_dir, space)
    if plots:
        out += plots_section(run_dir, cfg, particles, board, winners, last, space, tasks)
    out += hall_of_fame_section(hof, relative=cfg.fitness.relative)
    path = run_dir / "report.md"
    atomic_write_text(path, "\n".join(out))
    return path


def header_section(run_dir: Path, cfg: Config, status: dict, summary: dict, stats: dict) -> list[str]:
    """The title and what was run: algorithm, budget, status, time."""
    run, search = cfg.run, cfg.search
    return [f"# deapnos search report: {run.name}", "",
            f"- run folder: `{run_dir}`",
            f"- algorithm: {run.algorithm} (seed {run.seed}, compat {run.compat}), "
            # what ran (status.json, written by the run), not what the config asked for
            f"backend {status.get('backend', run.backend)} with "
            f"{status.get('workers', run.workers)} worker(s)",
            f"- search: n = {search.particles} particles, k = {search.timesteps} timesteps, "
            f"m = {search.mutants} mutants per timestep, initial population "
            f"{search.init_factor * search.particles} on `{search.init_task}`, "
            f"evolution on `{search.task}`",
            f"- status: {status.get('status', 'unknown')}"
            + (f" ({status.get('error')})" if status.get("error") else ""),
            f"- wall time: {_fmt(summary.get('wall_seconds'), 1)} s; evaluation time (sum over workers): "
            f"{stats['seconds']:.1f} s", ""]


def evaluations_section(stats: dict, summary: dict) -> list[str]:
    """Where the evaluation budget went: trained, cached, rejected, failed, per worker."""
    cache = summary.get("cache", {})
    return ["## Evaluations", "",
            f"- evaluation attempts: {stats['attempts']} ({stats['trained']} trained, {stats['cached']} answered by "
            "the cache)",
            "- status of the trained: " + (", ".join(f"{k} {v}" for k, v in sorted(stats["status"].items())) or "-"),
            f"- integrity rejections: {stats['integrity_rejections']} ({stats['integrity_seconds']:.2f} s); "
            f"duplicates rejected before training: {stats['duplicates_rejected']}",
            f"- dedup cache: {cache.get('lookups', 0)} lookups, {cache.get('key_hits', 0)} canonical-key hits, "
            f"{cache.get('fingerprint_hits', 0)} fingerprint hits (hit rate {_fmt(cache.get('hit_rate'), 3)}), "
            f"{cache.get('result_hits', 0)} results reused",
            f"- share of evaluation time on candidates that failed (screened out, diverged, error, timeout): "
            f"{stats['failed_share']:.1%}; on search candidates never chosen: {stats['not_chosen_share']:.1%}",
            "- workers: " + ", ".join(f"`{w}` {n}" for w, n in sorted(stats["workers"].items())), ""]


def leaderboard_section(board: list[dict], rungs: list[dict]) -> list[str]:
    """The last elimination rung's leaderboard against the reference, and the ladder."""
    if not board:
        return ["## Leaderboard", "", "No elimination results (elimination disabled or not finished).", ""]
    last = rungs[-1]
    out = [f"## Leaderboard: `{last['task']}`, seeds {last['seeds']}", "",
           "Absolute mean: the task's validation score at the end of the schedule (the model you get), "
           "averaged over the seeds that trained; absolute peak: the best epoch's score, for comparison. "
           f"Relative mean Δ: the paired difference to `{board[0].get('reference')}` seed by seed (with "
           "several references, the best of them on each seed), ± its 95% interval. \"better\" only when "
           "the interval excludes zero.", "",
           "| rank | optimizer | absolute mean (final) | absolute mean (peak) | std | n trained | "
           "relative mean Δ ± 95% CI | verdict | genome |",
           "|---|---|---|---|---|---|---|---|---|"]
    for row in board:
        label = row["label"] if row["baseline"] else f"**{row['label']}**" + identity_suffix(row)
        n = f"{row['n']}" + (f" ({row['failed']} failed)" if row.get("failed") else "")
        out.append(f"| {row['rank']} | {label} | {_fmt(row['mean'])} | {_fmt(row.get('peak'))} | "
                   f"{_fmt(row['std'])} | {n} | {_difference(row)} | {row.get('verdict') or ''} | "
                   f"`{_md_escape(row['genome'])}` |")
    out.append("")
    if len(rungs) > 1:
        out += ["Elimination ladder:", ""]
        for i, rung in enumerate(rungs):
            out.append(f"- rung {i + 1}: `{rung['task']}` seeds {rung['seeds']}, {len(rung['entries'])} entries, "
                       f"climbing: {', '.join(rung['survivors']) or '-'}")
        out.append("")
    return out


def winners_section(winners: list[dict], last: dict | None, run_dir: Path, space) -> list[str]:
    """Each winner: equation, genome, LaTeX, exported files, chosen LRs."""
    if not winners:
        return []
    from .space import GenomeParseError
    from .space.genome import Genome
    out = ["## Winners", ""]
    rows_by_label = {r["label"]: r for r in (last["entries"] if last else [])}
    for row in winners:
        try:
            g = Genome.parse(row["genome"], space=space)
        except GenomeParseError as exc:      # a plugin primitive whose plugin is not loaded
            out += [f"### {row['label']}: absolute mean {_fmt(row['mean'])}", "",
                    f"- genome: `{_md_escape(row['genome'])}`",
                    f"- not rendered or exported ({exc}); install the run's plugin, or rerun `deapnos report` "
                    f"with `-p MODULE` or `--load-plugins` (imports the modules the config's run.plugins names)",
                    ""]
            continue
        py, note = export_winner(row, run_dir / "winners", space)
        out += [f"### {row['label']}: absolute mean {_fmt(row['mean'])}", "",
                f"- equation: `{_md_escape(str(g))}`",
                f"- genome: `{_md_escape(g.to_text())}`",
                *identity_lines(row),
                f"- files: [winners/{row['label']}.json](winners/{row['label']}.json)"
                + (f", [winners/{py}](winners/{py}) (standalone, needs only torch)" if py else f" ({note})"),
                "", "$$", g.to_latex(), "$$", ""]
        lrs = [r.get("lr") for r in (rows_by_label.get(row["label"], {}).get("results") or {}).values()]
        if any(lrs):
            out += [f"- peak LRs chosen by the screen: {', '.join(_fmt(x, 6) for x in lrs)}", ""]
    return out


def plots_section(run_dir: Path, cfg: Config, particles: list[dict], board: list[dict], winners: list[dict],
                  last: dict | None, space, tasks) -> list[str]:
    """Draw the particle, schedule and learning-curve plots into plots/ and link them."""
    pdir = _output_folder(run_dir / "plots")
    figs = []
    if plot_particles(particles, pdir / "particles.png"):
        figs.append(("Fitness per timestep for every particle", "plots/particles.png"))
    if last and winners:
        rows_by_label = {r["label"]: r for r in last["entries"]}
        first_seed = str(last["seeds"][0])
        sched_rows = []
        for row in winners + [r for r in board if r.get("baseline")]:
            res = (rows_by_label.get(row["label"], {}).get("results") or {}).get(first_seed) or {}
            sched_rows.append({**row, "lr": res.get("lr")})
        tw = (_budget(cfg, last["task"], tasks) if tasks else None) or (1000, 100)
        ref = next((r for r in sched_rows if r.get("baseline")), None)
        if plot_schedules([r for r in sched_rows if not r.get("baseline")], ref, tw[0], tw[1],
                          pdir / "schedules.png", space):
            figs.append(("Learning-rate schedules of the winners (dashed: reference)", "plots/schedules.png"))
        curve_rows = [rows_by_label[r["label"]] for r in winners + [b for b in board if b.get("baseline")]
                      if r["label"] in rows_by_label]
        if plot_curves(curve_rows, first_seed, pdir / "curves.png"):
            figs.append(("Learning curves against the baselines", "plots/curves.png"))
    if not figs:
        return []
    out = ["## Plots", ""]
    for title, rel in figs:
        out += [f"### {title}", "", f"![{title}]({rel})", ""]
    return out


def hall_of_fame_section(hof: list[dict], relative: bool = True) -> list[str]:
    """The search's hall of fame on the search task; its mean is relative (to the best reference)
    or absolute (raw scores), as the search's fitness."""
    if not hof:
        return []
    what = "relative mean (vs the best reference)" if relative else "absolute mean"
    out = ["## Hall of fame (search task)", "", f"| rank | {what} | std | n | equation |", "|---|---|---|---|---|"]
    for row in hof:
        out.append(f"| {row['rank']} | {_fmt(row['mean'])} | {_fmt(row['std'])} | {row['n']} | "
                   f"`{_md_escape(row.get('equation') or row['genome'])}` |")
    out.append("")
    return out


def _difference(row: dict) -> str:
    """``Δ ± half-width`` of a leaderboard row against the reference ('' for the reference)."""
    ci = row.get("vs_reference_ci")
    if row.get("baseline") and not ci:
        return ""
    if not ci:
        vs = row.get("vs_reference")
        return "" if vs is None else f"{vs:+.4f} (1 seed)"
    return difference_text(ci)


def validation_section(val: dict) -> list[str]:
    """The held-out validation table (``validation.json``): each winner against the reference."""
    if not val.get("rows"):
        note = val.get("note") or "not run (the search has not finished)"
        return ["## Held-out validation", "", f"No held-out validation: {note}.", ""]
    tasks, ref = val["tasks"], val["reference"]
    out = ["## Held-out validation", "",
           f"Tasks never used for selection: {', '.join(f'`{t}`' for t in tasks)}; seeds {val['seeds']}. Each cell "
           f"is a relative mean: the winner's score minus the best tuned reference's ({_refs(val, ref)}) on the "
           "same seed (for `log_loss` tasks: the log of the ratio of their validation losses; positive is "
           "better), mean ± 95% interval over the seeds, and the verdict: **better** only when the whole "
           "interval lies above zero.", "",
           "| winner | " + " | ".join(f"`{t}`" for t in tasks) + " | overall |",
           "|---|" + "---|" * (len(tasks) + 1)]
    for row in val["rows"]:
        cells = []
        for t in tasks:
            cell = row["tasks"][t]
            failed = f", failed on seed(s) {', '.join(cell['failed_seeds'])}" if cell.get("failed_seeds") else ""
            cells.append(f"{difference_text(cell.get('difference'))} ({_verdict(cell['verdict'])}{failed})")
        cells.append(f"{difference_text(row['overall'].get('difference'))} ({_verdict(row['overall']['verdict'])})")
        out.append(f"| {row['label']} | " + " | ".join(cells) + " |")
    out.append("")
    return out + horizon_section(val.get("horizon") or {})


def _refs(val: dict, ref: str) -> str:
    names = val.get("references") or [ref]
    return ", ".join(f"`{n}`" for n in names)


def horizon_section(h: dict) -> list[str]:
    """The horizon check: the held-out table again at ``factor`` x the steps, and whether the
    ranking holds there."""
    if not h.get("rows"):
        return []
    holds = {True: "**holds**", False: "**does not hold**", None: "cannot be judged (a difference is missing)"}
    tasks = h["tasks"]
    out = [f"### Horizon check: {h['factor']}x the steps", "",
           f"The same held-out tasks trained {h['factor']} times longer (schedule, warm-up and decays stretched "
           f"with them), seeds {h['seeds']}; relative means against the best reference as above. Short searches "
           f"favour greedy updates: the ranking {holds[h.get('ranking_holds')]} at this horizon (same order of "
           "the winners, same side of zero).", "",
           "| winner | " + " | ".join(f"`{t}`" for t in tasks) + " | overall |",
           "|---|" + "---|" * (len(tasks) + 1)]
    for row in h["rows"]:
        cells = [f"{difference_text(row['tasks'][t].get('difference'))} ({_verdict(row['tasks'][t]['verdict'])})"
                 for t in row["tasks"]]
        cells.append(f"{difference_text(row['overall'].get('difference'))} ({_verdict(row['overall']['verdict'])})")
        out.append(f"| {row['label']} | " + " | ".join(cells) + " |")
    out.append("")
    return out


def _verdict(v: str) -> str:
    return f"**{v}**" if v == "better" else v


def _run_plugins(cfg: dict, load_plugins: bool = True, extra=()):
    """(space, tasks) of the run's plugins, loaded once: the space reads genome text of plugin
    primitives, the tasks give the schedules' horizon.  (None, {}) when they cannot be loaded.
    Without ``load_plugins`` only installed plugins and ``extra`` (``-p``) load (no module a run
    folder names is imported unless it is an installed plugin)."""
    from .context import build_context
    from .plugins import installed_only
    space = None
    tasks: Mapping[str, Any] = {}
    named = cfg.get("run", {}).get("plugins", [])
    named = list(named) if isinstance(named, list) else []
    try:
        ctx = build_context([*(named if load_plugins else installed_only(named)), *extra], strict=False,
                            eager=False, compat=cfg.get("run", {}).get("compat", False))
        for name, message in ctx.pm.failed.items():
            log.warning("plugin %s not loaded: %s", name, message)
    except Exception as exc:   # noqa: BLE001 - the paper's space still reads most genomes
        log.warning("could not load the run's plugins (%s); using the paper's space", exc)
        return space, tasks
    try:
        space = ctx.space
    except Exception as exc:   # noqa: BLE001 - the paper's space still reads most genomes
        log.warning("could not build the run's plugin space (%s); using the paper's", exc)
    try:
        tasks = ctx.tasks
    except Exception:   # noqa: BLE001 - the plots fall back to a nominal horizon
        pass
    return space, tasks


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="deapnos report", description="write the report of a search run")
    configure_parser(parser)
    return run_command(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
