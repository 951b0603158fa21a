"""Successive halving over the LR grid of the relative screen (``protocol.screen_schedule = "halving"``).

Every LR of the grid gets a short screening run (``RUNG0_EPOCHS`` epochs); the best third
(``KEEP_SHARE``, at least two) get the full screening run, and the protocol chooses among those by its
usual rule.  Runs are ranked exactly as the protocol chooses: validation score among the LRs that
made at least ``min_progress`` progress, then progress.  With a reference to measure against, survivors
that cannot catch up with it stop early (``prune``).  Details: docs/evaluation.md, "Throughput".
"""
from __future__ import annotations

import math
from collections.abc import Callable, Sequence

RUNG0_EPOCHS = 1      # epochs of the first rung's runs
KEEP_SHARE = 1 / 3    # share of the grid that goes on to the full screening run
MIN_KEEP = 2


def rank_key(entry: dict, min_progress: float) -> tuple[float, float]:
    """How the protocol ranks a screening run: its validation score if it has a finite one and made
    ``min_progress`` progress, then its screen score (progress)."""
    val = entry.get("val_score")
    if val is None or not math.isfinite(val) or entry["score"] < min_progress:
        return (-math.inf, float(entry["score"]))
    return (float(val), float(entry["score"]))


def survivors(entries: Sequence[dict], min_progress: float, keep: int) -> list[float]:
    """The LRs of the ``keep`` best entries, in grid order (ties go to the earlier LR)."""
    order = sorted(range(len(entries)), key=lambda i: (rank_key(entries[i], min_progress), -i), reverse=True)
    chosen = sorted(order[:keep])
    return [entries[i]["lr"] for i in chosen]


def n_keep(n: int) -> int:
    return min(n, max(MIN_KEEP, math.ceil(n * KEEP_SHARE)))


def successive_halving(screen_lrs: Callable[..., None], lrs: Sequence[float], screen: list, epochs: int,
                       min_progress: float, prune: Callable[[list[dict], int], list[float]] | None = None,
                       validate_late: Callable[[list[dict]], None] | None = None) -> list[dict]:
    """Screen ``lrs`` in two rungs through ``screen_lrs(lrs, epochs=...)`` (which appends one entry per
    LR to ``screen``).  ``screen`` ends with the full-length runs only, the ones the protocol chooses
    among; the first rung's entries are returned (each marked ``"rung": 0``).

    ``prune(entries, epoch)``: with runs that go on (``protocol.reuse_screen``), the survivors are
    trained an epoch at a time and, after each (from their second epoch on: a gain needs two scores),
    only the LRs ``prune`` keeps of that epoch's entries go on (the protocol drops those that cannot
    catch up with the reference; it always keeps one).  An entry ``prune`` marks ``"hopeless"``
    ends the screen there, with that entry alone (its verdict is known: the full run is cut at
    once).  When every survivor's screening run diverges, the other LRs of the grid get theirs too.

    ``validate_late(entries)``: with runs that pause, the first rung validates only the runs that
    made ``min_progress`` (the others rank by progress alone, whatever their validation score), and
    this validates the survivors left out when ``prune`` needs their scores: same survivors, same
    results, fewer validation passes."""
    lrs = list(lrs)
    if epochs <= RUNG0_EPOCHS or len(lrs) <= MIN_KEEP:
        screen_lrs(lrs, epochs=epochs)
        return []
    start = len(screen)
    if validate_late is not None:
        screen_lrs(lrs, epochs=RUNG0_EPOCHS, lazy=True)
    else:
        screen_lrs(lrs, epochs=RUNG0_EPOCHS)
    rung0 = screen[start:]
    del screen[start:]
    for entry in rung0:
        entry["rung"] = 0
    alive = survivors(rung0, min_progress, n_keep(len(lrs)))
    if validate_late is not None and prune is not None:    # the survivors' gains need their first scores
        validate_late([e for e in rung0 if e["lr"] in alive])
    if prune is not None:
        for done in range(RUNG0_EPOCHS + 1, epochs):
            screen_lrs(alive, epochs=done)
            latest = screen[start:]
            del screen[start:]
            alive = prune(latest, done - 1)
            if any(e.get("hopeless") for e in latest):
                # the one survivor left cannot catch up with the reference: the screen ends with it
                screen.extend(e for e in latest if e["lr"] in alive)
                return rung0
    done = len(screen)
    screen_lrs(alive, epochs=epochs)
    if all(e["diverged"] for e in screen[done:]):
        # the LRs that looked best after one epoch all blew up later (a large LR during the warm-up):
        # the rest of the grid gets its full screening run, as the grid would have given it
        screen_lrs([lr for lr in lrs if lr not in alive], epochs=epochs)
    return rung0
