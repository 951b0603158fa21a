"""When a run of the protocol stops before its end, and which screening runs halving drops.

Provides :class:`AccuracyStop` (the ``paper`` screen's), :class:`BlowUpStop` (the relative screen's:
the loss blew up), :class:`BehindStop` (a full run that cannot catch up with the reference,
``protocol.cut_factor``), :func:`best_reach` (the projection both the cut and halving's
:func:`pruner` use) and :func:`cuts` (whether the cut applies).  Details: docs/evaluation.md,
"Throughput".
"""
from __future__ import annotations

import math

from .protocol_config import ProtocolConfig


class AccuracyStop:
    """The paper's early stop: at the end of an epoch of index >= ``epoch``, train accuracy < ``acc``."""

    def __init__(self, epoch: int, acc: float):
        self.epoch, self.acc = epoch, acc

    def __call__(self, epoch: int, record: dict) -> bool:
        return epoch >= self.epoch and record["train_acc"] < self.acc


class BlowUpStop:
    """The relative early stop: an epoch's train loss above ``factor`` x the untrained model's loss."""

    def __init__(self, factor: float):
        self.factor = factor
        self.fired = False

    def __call__(self, epoch: int, record: dict) -> bool:
        initial = record.get("initial_loss")
        if initial is None or not math.isfinite(initial) or initial <= 0:
            return False
        self.fired = record["train_loss"] > self.factor * initial
        return self.fired


class BehindStop:
    """Stops a full run that cannot catch up with the reference (``protocol.cut_factor``): at an epoch's
    end from the screen's last on, the run's score plus ``factor`` times its best gain per epoch of the
    last two epochs, kept up to the last epoch, still ends below ``reference`` (the reference's score
    on the same task and seed).  Also stops on ``blow_up``."""

    def __init__(self, blow_up, reference: float, factor: float, epochs: int, first_epoch: int, score: str):
        self.blow_up, self.reference, self.factor = blow_up, float(reference), float(factor)
        self.epochs, self.first_epoch, self.score = epochs, first_epoch, score
        self.scores: list[float] = []
        self.fired = False
        self.why = ""

    def seen(self, record: dict) -> None:
        value = record.get("val_score")
        self.scores.append(float(value) if value is not None else -math.inf)

    def hopeless(self, epoch: int) -> bool:
        if epoch < self.first_epoch or not self.scores or epoch >= self.epochs - 1:
            return False
        now, reach = best_reach(self.scores, epoch, self.epochs, self.factor, self.score)
        if reach < self.reference:
            self.fired = True
            self.why = (f"cut at epoch {epoch}: score {now:.4g}, at best {reach:.4g} by the last epoch, below the "
                        f"reference's {self.reference:.4g}")
        return self.fired

    def __call__(self, epoch: int, record: dict) -> bool:
        if self.blow_up(epoch, record):
            return True
        self.seen(record)
        return self.hopeless(epoch)


def best_reach(scores: list[float], epoch: int, epochs: int, factor: float, score: str) -> tuple[float, float]:
    """(score now, the most it can reach by the last of ``epochs``): the run's score (its last, or its
    best with ``score = "best"``) plus ``factor`` times its best gain per epoch of the last two epochs
    for every epoch left after ``epoch``."""
    now = max(scores) if score == "best" else scores[-1]
    recent = scores[-3:]
    gains = [b - a for a, b in zip(recent, recent[1:]) if math.isfinite(a) and math.isfinite(b)]
    return now, now + factor * max([0.0, *gains]) * (epochs - 1 - epoch)


def cuts(config: ProtocolConfig, reference: float | None) -> bool:
    """Whether runs that cannot catch up with ``reference`` stop (``protocol.cut_factor``)."""
    return (reference is not None and math.isfinite(reference) and bool(config.cut_factor)
            and config.screen == "relative")


def pruner(runs: dict, config: ProtocolConfig, epochs: int, reference: float | None):
    """``prune(entries, epoch)`` for successive halving, given the survivors' screen entries after
    ``epoch``: all their LRs while one of them can still catch up with the reference by the full
    run's end (:func:`best_reach` over its run's validation scores, in ``runs``); when none can, only
    the best entry's by the protocol's rule, for the screen must still choose an LR or screen the
    candidate out.  That entry is marked ``"hopeless"`` when it already made ``min_progress`` (the
    candidate will not be screened out): halving ends the screen with it, and the full run is cut
    there."""
    from .halving import rank_key
    assert reference is not None and config.cut_factor is not None
    factor = config.cut_factor

    def hopeless(lr: float, epoch: int) -> bool:
        run = runs[lr][0]
        scores = [r.get("val_score") for r in run.outcome.curve]
        if run.finished or len(scores) < 2 or any(v is None for v in scores):
            return False        # out anyway (diverged), or no gain to judge by yet (one epoch)
        return best_reach(scores, epoch, epochs, factor, config.score)[1] < reference

    def prune(entries: list[dict], epoch: int) -> list[float]:
        lrs = [e["lr"] for e in entries]
        if any(not hopeless(lr, epoch) for lr in lrs):
            return lrs      # a candidate that may still win keeps the grid's choice among its survivors
        best = max(entries, key=lambda e: rank_key(e, config.min_progress))
        if best["score"] >= config.min_progress:
            # its verdict is known: the LR it would go on with, and a full run cut right there (the
            # cut's own rule, on the same scores); screening it to the end would only delay the cut
            best["hopeless"] = True
        return [best["lr"]]
    return prune
