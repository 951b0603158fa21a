"""The plots of a search's report (matplotlib, Agg; none where matplotlib is missing): fitness per
particle over the timesteps, the winners' learning-rate schedules, the training curves of the
leaderboard.  Each returns whether it wrote its file."""
from __future__ import annotations

import logging
import math
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .search.config import Config

log = logging.getLogger("deapnos.report")


def _plt():
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt


def _save(plt, fig, ax, path: Path) -> bool:
    """Legend, grid, write the PNG, free the figure."""
    ax.legend(fontsize=7)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


def plot_particles(particles: list[dict], path: Path) -> bool:
    if not particles:
        return False
    plt = _plt()
    by: dict[int, list] = {}
    restarts: dict[int, list] = {}
    for row in particles:
        f = row.get("fitness")
        y = f if (f is not None and f > -1) else math.nan      # -1: a failure (relative scores may be < 0)
        by.setdefault(row["particle"], []).append((row["timestep"], y))
        if row.get("restarted"):
            restarts.setdefault(row["particle"], []).append((row["timestep"], y))
    fig, ax = plt.subplots(figsize=(7, 4.2))
    restarted_at = {(pi, t) for pi, pts in restarts.items() for t, _ in pts}
    for pi, pts in sorted(by.items()):
        pts.sort()
        segments, cur = [], []
        for t, y in pts:                       # a restart starts a new life: a new line segment
            cur.append((t, y))
            if (pi, t) in restarted_at:
                segments.append(cur)
                cur = []
        segments.append(cur)
        color = None
        for k, seg in enumerate(s for s in segments if s):
            line, = ax.plot([p[0] for p in seg], [p[1] for p in seg], marker="o", ms=3, lw=1, color=color,
                            label=f"particle {pi}" if k == 0 else None)
            color = line.get_color()
    for pts in restarts.values():
        ax.scatter([p[0] for p in pts], [p[1] for p in pts], marker="x", color="k", zorder=3)
    best = running_best(particles)
    if best:
        ax.plot([t for t, _ in best], [y for _, y in best], color="k", lw=2.2, alpha=0.75, label="best so far")
    ax.set_xlabel("timestep (0 = initial particle)")
    ax.set_ylabel("fitness (search tasks; relative: 0 = the reference)")
    ax.set_title("particles: fitness per timestep (x: aged out, restarted)")
    if len(by) <= 12:
        ax.legend(fontsize=7, ncol=2)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


def running_best(particles: list[dict]) -> list[tuple[int, float]]:
    """(timestep, best particle fitness seen up to it) for every timestep of the particle log."""
    out, best = [], -math.inf
    for t in sorted({row["timestep"] for row in particles}):
        for row in particles:
            f = row.get("fitness")
            if row["timestep"] == t and f is not None and f > -1:
                best = max(best, f)
        if best > -math.inf:
            out.append((t, best))
    return out


def _budget(cfg: Config, task_name: str, tasks) -> tuple[int, int] | None:
    """(T, W) of a task of the run's ``tasks`` under the run's protocol, or None when its plugin is
    not available."""
    try:
        from .evaluate.protocol import Budget
        task = tasks[task_name]
        over = cfg.tasks.get(task_name)
        if over:
            task = task.replace(**over)
        protocol = cfg.protocol.for_task(task)
        b = Budget.of(task, protocol)
        return b.total_steps, b.warmup_steps
    except Exception:   # noqa: BLE001 - a plot without the exact horizon is still useful
        return None


def plot_schedules(winners: list[dict], reference: dict | None, T: int, W: int, path: Path, space=None) -> bool:
    from .optim.schedules import base_lr_table, tree_table
    from .space.genome import Genome
    plt = _plt()
    fig, ax = plt.subplots(figsize=(7, 4.2))
    base = base_lr_table(T, W)
    drawn = 0
    for row in winners + ([reference] if reference else []):
        try:
            g = Genome.parse(row["genome"], space=space)
            mult = tree_table(g.schedule, g.space, T).tolist()
        except Exception:   # noqa: BLE001
            continue
        lr = row.get("lr") or 1.0
        ax.plot(range(T), [lr * b * m for b, m in zip(base, mult)],
                ls="--" if row.get("baseline") else "-", label=f"{row['label']} (peak lr {lr:g})")
        drawn += 1
    if not drawn:
        plt.close(fig)
        return False
    ax.set_yscale("log")
    ax.set_xlabel(f"step (T = {T}, warm-up W = {W})")
    ax.set_ylabel("learning rate")
    ax.set_title("learning-rate schedules: peak lr x warm-up/cosine x schedule tree")
    return _save(plt, fig, ax, path)


def plot_curves(rows: list[dict], seed: str, path: Path) -> bool:
    plt = _plt()
    fig, ax = plt.subplots(figsize=(7, 4.2))
    drawn = 0
    for row in rows:
        res = (row.get("results") or {}).get(seed) or {}
        curve = res.get("curve") or []
        pts = [(c.get("step", i), c.get("val_score", c.get("val_acc"))) for i, c in enumerate(curve)]
        pts = [(x, y) for x, y in pts if y is not None]
        if not pts:
            continue
        ax.plot([p[0] for p in pts], [p[1] for p in pts], ls="--" if row.get("baseline") else "-",
                marker="." if len(pts) < 50 else None, label=row["label"])
        drawn += 1
    if not drawn:
        plt.close(fig)
        return False
    ax.set_xlabel("optimizer step")
    ax.set_ylabel("validation score")
    ax.set_title(f"learning curves (seed {seed}) against the baselines")
    return _save(plt, fig, ax, path)


# ----------------------------------------------------------------------------------------------
# the report
# ----------------------------------------------------------------------------------------------
