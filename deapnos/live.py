"""The live view of a search: where it is, how fast it goes, what it found, what the workers do.

:class:`SearchProgress` follows one search (fed by the run object, or replayed from a run folder's log
by ``deapnos status``); :func:`format_view` turns its plain-data snapshot into lines; :class:`LiveView`
shows them while the search runs (a tqdm bar on a terminal, a log line every ``interval`` seconds
otherwise) and publishes the snapshot to ``status.json``.  Details: docs/search.md, "Watching a search".
"""
from __future__ import annotations

import logging
import math
import sys
import threading
import time
from collections import Counter, deque
from collections.abc import Callable

log = logging.getLogger("deapnos.live")

SEARCH_KINDS = ("particle", "mutant", "random", "reeval", "restart")
RATE_WINDOW = 600.0             # seconds of arrivals the rate is measured over


def phase_key(meta: dict) -> str | None:
    """The phase a request or log record belongs to: ``init``, ``timestep:T``, ``rung:R`` or
    ``validation``; None for the reference optimizer's evaluations (part of the phase they serve)."""
    kind = meta.get("kind")
    if kind == "init":
        return "init"
    if kind in SEARCH_KINDS:
        return f"timestep:{int(meta.get('timestep') or 0)}"
    if kind == "rung":
        return f"rung:{int(meta.get('rung') or 0)}"
    if kind == "validation":
        return "validation"
    return None


def plan(cfg, validation_tasks=None) -> dict:
    """Evaluations each phase is expected to take, from the config: ``{phase: count}`` in order
    (a count is None where it cannot be known yet: held-out validation on installed tasks when
    ``validation_tasks`` is not given).  Retries of failed mutants and reference evaluations come on
    top; the tracker raises a phase's count when a batch announces more."""
    from .search.algorithms import ALGORITHMS, SearchAlgorithm
    s = cfg.search
    # the search phases: the strategy's own count (a plugin's strategy, not built in: unknown)
    algorithm = ALGORITHMS.get(cfg.run.algorithm) if cfg.run.algorithm in ALGORITHMS else SearchAlgorithm
    out: dict = dict(algorithm.plan(cfg))
    e = cfg.elimination
    if e.enabled:
        rungs = [(list(r.seeds), float(r.keep)) for r in e.rungs]
        if not rungs:
            seeds = [s.eval_seed] + (list(s.reeval_seeds) if s.reeval_top else [])
            rungs = [(seeds, 1.0) for _ in s.tasks]
        n = e.candidates
        for i, (seeds, keep) in enumerate(rungs):
            out[f"rung:{i}"] = (n + len(e.baselines)) * len(seeds)
            n = max(e.min_keep, math.ceil(keep * n))
    v = cfg.validation
    if v.enabled:
        tasks = list(v.tasks) or (None if validation_tasks is None else list(validation_tasks))
        out["validation"] = None if tasks is None else (v.candidates + 1) * len(tasks) * len(v.seeds) if tasks else 0
    return out


def phase_label(key: str | None, timesteps: int = 0, rungs: int = 0) -> str:
    if key is None:
        return "starting"
    kind, _, i = key.partition(":")
    if kind == "init":
        return "initial population"
    if kind == "timestep":
        return f"timestep {i}/{timesteps}"
    if kind == "rung":
        return f"elimination rung {int(i) + 1}/{rungs}"
    if kind == "validation":
        return "held-out validation"
    if kind == "done":
        return "finished"
    return key


def hof_best(hof) -> dict | None:
    """The best of a :class:`deapnos.search.state.HallOfFame` as the view shows it."""
    ranked = hof.ranked()
    if not ranked:
        return None
    e = ranked[0]
    return {"fitness": hof.mean(e), "genome": e["genome"], "seeds": len(e["scores"])}


class _Batch:
    """What the evaluator holds for one batch (the interface of its tqdm bar: update, close)."""

    def __init__(self, progress: SearchProgress, to_run: int):
        self.progress, self.left = progress, to_run

    def update(self, n: int = 1) -> None:
        self.left -= n
        self.progress._arrived(n)

    def close(self) -> None:
        self.progress._batch_done(self.left)
        self.left = 0


class SearchProgress:
    """Counts of one search (module docstring).  Thread-safe: the view's thread reads
    :meth:`snapshot` while the search updates."""

    def __init__(self, cfg=None, workers: int = 1, validation_tasks=None, clock=time.time):
        self.clock = clock
        self.plan = plan(cfg, validation_tasks) if cfg is not None else {}
        self.timesteps = cfg.search.timesteps if cfg is not None else 0
        self.rungs = sum(1 for k in self.plan if k.startswith("rung:"))
        self.workers = max(1, int(workers or 1))
        self.phase: str | None = None
        self.finished = False
        self.done: Counter = Counter()          # phase -> evaluation records (trained, cached, resumed)
        self.announced: Counter = Counter()     # phase -> requests announced by batches
        self.in_flight = 0
        self.evaluated = self.cached = self.failed = 0
        self.rejections: Counter = Counter()    # integrity, duplicate
        self.hosts: Counter = Counter()         # evaluations trained, by worker host
        self.arrivals: deque = deque(maxlen=2000)
        self.started = clock()
        self.best_source: Callable[[], dict | None] | None = None   # -> {"fitness", "genome", "seeds"}
        self.rate_override: float | None = None
        self._last_best: dict | None = None
        self.on_change: Callable[[], None] | None = None   # called (in the search's thread) after each change
        self._lock = threading.Lock()

    # -- fed by the search ------------------------------------------------------------------------

    def batch(self, requests, to_run: int) -> _Batch:
        """A batch of ``requests`` starts; ``to_run`` of them go to the workers (the rest are
        answered from the cache or a resumed log at once)."""
        with self._lock:
            key = phase_key(requests[0].meta if requests else {}) or self.phase or "init"
            self.phase = key
            self.announced[key] += len(requests)
            self.done[key] += len(requests) - to_run
            self.in_flight = to_run
        self._changed()
        return _Batch(self, to_run)

    def _arrived(self, n: int) -> None:
        with self._lock:
            self.in_flight = max(0, self.in_flight - n)
            self.done[self.phase or "init"] += n
        self._changed()

    def _batch_done(self, left: int) -> None:
        with self._lock:
            self.in_flight = 0

    def evaluation(self, record: dict) -> None:
        """An evaluation finished on a worker (not a cache hit)."""
        with self._lock:
            self.evaluated += 1
            self.arrivals.append(self.clock())
            host = str(record.get("worker") or "?").rsplit(":", 1)[0]
            self.hosts[host] += 1
            if record.get("status") != "ok":
                self.failed += 1

    def rejected(self, event: str) -> None:
        """A candidate was turned down: ``rejected`` (integrity check) or ``duplicate`` (cache)."""
        with self._lock:
            self.rejections["duplicate" if event == "duplicate" else "integrity"] += 1
        self._changed()

    def replay(self, record: dict) -> None:
        """One record of a run folder's ``evaluations.jsonl`` (``deapnos status``)."""
        event = record.get("event")
        if event in ("rejected", "duplicate"):
            self.rejected(event)
            key = phase_key(record)
            if key is not None:
                self.phase = key
            return
        if event != "evaluation":
            return
        key = phase_key(record) or self.phase or "init"
        self.phase = key
        self.done[key] += 1
        if record.get("cached"):
            self.cached += 1
        else:
            self.evaluation(record)

    def finish(self) -> None:
        with self._lock:
            self.finished = True
            self.in_flight = 0

    def _changed(self) -> None:
        if self.on_change is not None:
            self.on_change()

    # -- reading ---------------------------------------------------------------------------------

    def rate(self, now: float | None = None) -> float | None:
        """Evaluations trained per minute over the last ten minutes of this session."""
        if self.rate_override is not None:
            return self.rate_override
        now = self.clock() if now is None else now
        span = min(RATE_WINDOW, now - self.started)
        n = sum(1 for t in self.arrivals if t >= now - RATE_WINDOW)
        if not n or span <= 0:
            return None
        return n / max(span, 1.0) * 60.0

    def _planned(self, key: str) -> int | None:
        p = self.plan.get(key)
        if p is None and key in self.plan and not self.done[key] and not self.announced[key]:
            return None
        return max(p or 0, self.announced[key], self.done[key])

    def snapshot(self, now: float | None = None) -> dict:
        """Plain data for :func:`format_view`, ``status.json`` and ``deapnos status --json``."""
        now = self.clock() if now is None else now
        with self._lock:
            key = "done" if self.finished else self.phase
            keys = list(self.plan) + [k for k in self.done if k not in self.plan]
            run_done = sum(self.done.values())
            planned_each = {k: self._planned(k) for k in keys}
            unknown = [k for k, v in planned_each.items() if v is None]
            run_planned = sum(v for v in planned_each.values() if v is not None)
            phase_planned = planned_each.get(key) if key not in (None, "done") else None
            phase_done = self.done[key] if key not in (None, "done") else 0
            rate = self.rate(now)
            best = self._last_best
            if self.best_source is not None:
                try:
                    best = self._last_best = self.best_source()
                except Exception:   # noqa: BLE001 - read while the search changes it: the last one
                    pass
            snap = {
                "phase": {"key": key, "label": phase_label(key, self.timesteps, self.rungs), "done": phase_done,
                          "planned": phase_planned},
                "run": {"done": run_done, "planned": max(run_planned, run_done), "approximate": True,
                        "unknown_phases": unknown},
                "rate_per_min": rate,
                "eta_phase_s": None, "eta_run_s": None,
                "elapsed_s": now - self.started,
                "evaluations": {"trained": self.evaluated, "cached": self.cached, "failed": self.failed},
                "rejected": {"integrity": self.rejections["integrity"], "duplicate": self.rejections["duplicate"]},
                "best": best,
                "workers": {"busy": min(self.in_flight, self.workers), "available": self.workers},
                "hosts": dict(sorted(self.hosts.items())),
                "plan": dict(self.plan),
                "updated": time.time(),
            }
        if self.finished:
            snap["run"]["approximate"] = False
            snap["run"]["planned"] = run_done
        if rate:
            if phase_planned is not None:
                snap["eta_phase_s"] = max(0, phase_planned - phase_done) / rate * 60.0
            if not self.finished:
                snap["eta_run_s"] = max(0, snap["run"]["planned"] - run_done) / rate * 60.0
        return snap


# ----------------------------------------------------------------------------------------------
# text
# ----------------------------------------------------------------------------------------------

def duration(seconds: float | None) -> str:
    if seconds is None or not math.isfinite(seconds):
        return "?"
    s = int(round(seconds))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    return f"{s // 3600}h{(s % 3600) // 60:02d}m"


def text_bar(done: int, planned: int | None, width: int = 20) -> str:
    if not planned:
        return "[" + "." * width + "]"
    k = min(width, int(width * done / planned))
    return "[" + "#" * k + "." * (width - k) + "]"


def phase_line(snap: dict, bar: bool = True) -> str:
    ph = snap["phase"]
    planned = "?" if ph["planned"] is None else ph["planned"]
    rate = snap.get("rate_per_min")
    head = f"{ph['label']} {text_bar(ph['done'], ph['planned'])} " if bar else f"{ph['label']}: "
    if ph["key"] == "done":
        return f"finished: {snap['run']['done']} evaluations" + (f", {rate:.1f}/min" if rate else "")
    return (head + f"{ph['done']}/{planned} evaluations, "
            + (f"{rate:.1f}/min" if rate else "-/min") + f", ETA {duration(snap.get('eta_phase_s'))}")


def detail_lines(snap: dict) -> list[str]:
    run = snap["run"]
    approx = "~" if run.get("approximate") else ""
    lines = [f"run: {run['done']}/{approx}{run['planned']} evaluations, elapsed {duration(snap.get('elapsed_s'))}"
             + ("" if snap["phase"]["key"] == "done" else f", ETA {approx}{duration(snap.get('eta_run_s'))}")]
    b = snap.get("best")
    if b:
        seeds = b.get("seeds") or 1
        lines.append(f"best: {b['fitness']:+.4f} (mean over {seeds} seed{'s' if seeds != 1 else ''}) {b['genome']}")
    else:
        lines.append("best: none yet")
    r, ev = snap["rejected"], snap["evaluations"]
    lines.append(f"rejected: {r['integrity']} by the integrity check, {r['duplicate']} by the cache (duplicates); "
                 f"{ev['cached']} results reused from the cache; {ev['failed']} of {ev['trained']} trained failed")
    w = snap["workers"]
    busy = "?" if w.get("busy") is None else w["busy"]
    hosts = ", ".join(f"{h} {n}" for h, n in (snap.get("hosts") or {}).items())
    lines.append(f"workers: {busy}/{w['available']} busy" + (f"; evaluations by host: {hosts}" if hosts else ""))
    return lines


def format_view(snap: dict) -> list[str]:
    """The view's lines (``deapnos status`` and the live view print the same)."""
    return [phase_line(snap)] + detail_lines(snap)


# ----------------------------------------------------------------------------------------------
# the live view
# ----------------------------------------------------------------------------------------------

class LiveView:
    """Shows a :class:`SearchProgress` while the search runs (module docstring).

    ``mode``: ``auto`` (``bar`` when ``stream`` is a terminal, else ``lines``), ``bar``, ``lines``
    or ``off``.  ``publish(snapshot)`` is called from the search's thread at most every
    ``publish_every`` seconds and at each new phase."""

    def __init__(self, progress: SearchProgress, mode: str = "auto", stream=None, interval: float = 30.0,
                 refresh: float = 0.5, publish=None, publish_every: float = 5.0):
        self.progress = progress
        self.stream = stream if stream is not None else sys.stderr
        if mode == "auto":
            try:
                mode = "bar" if self.stream.isatty() else "lines"
            except (AttributeError, ValueError):
                mode = "lines"
        self.mode = mode
        self.interval = max(0.05, float(interval))
        self.refresh = refresh
        self.publish = publish
        self.publish_every = publish_every
        self._last_publish = 0.0
        self._published_phase: str | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._bars: list = []
        self._draw_lock = threading.Lock()
        progress.on_change = self._changed

    def __enter__(self):
        self.start()
        return self

    def __exit__(self, *exc):
        self.stop()

    def start(self) -> LiveView:
        if self.mode == "bar":
            from tqdm import tqdm
            self._bars = [tqdm(total=1, position=0, leave=False, file=self.stream, bar_format="{desc} {bar}{postfix}",
                               dynamic_ncols=True)]
            self._bars += [tqdm(total=1, position=i, leave=False, file=self.stream, bar_format="{desc}",
                                dynamic_ncols=True) for i in range(1, 5)]
        if self.mode in ("bar", "lines"):
            self._thread = threading.Thread(target=self._loop, name="deapnos-live-view", daemon=True)
            self._thread.start()
        return self

    def _loop(self) -> None:
        wait = self.refresh if self.mode == "bar" else self.interval
        while not self._stop.wait(wait):
            try:
                self.show()
            except Exception:   # noqa: BLE001 - a view never stops the search
                log.debug("live view failed", exc_info=True)

    def show(self) -> None:
        snap = self.progress.snapshot()
        if self.mode == "lines":
            log.info("progress: %s", " | ".join(format_view(snap)))
        elif self.mode == "bar":
            ph = snap["phase"]
            with self._draw_lock:
                if not self._bars:
                    return
                bar = self._bars[0]
                bar.total = max(1, ph["planned"] or ph["done"] or 1)
                bar.n = min(ph["done"], bar.total)
                rate = snap.get("rate_per_min")
                planned = "?" if ph["planned"] is None else ph["planned"]
                bar.set_description_str(f"{ph['label']}: {ph['done']}/{planned}", refresh=False)
                bar.set_postfix_str((f"{rate:.1f} eval/min" if rate else "-- eval/min")
                                    + f", ETA {duration(snap.get('eta_phase_s'))}", refresh=False)
                bar.refresh()
                for line_bar, text in zip(self._bars[1:], detail_lines(snap)):
                    line_bar.set_description_str(text, refresh=True)

    def _changed(self) -> None:
        if self.publish is None:
            return
        now = time.monotonic()
        phase = self.progress.phase
        if now - self._last_publish < self.publish_every and phase == self._published_phase:
            return
        self._last_publish, self._published_phase = now, phase
        try:
            self.publish(self.progress.snapshot())
        except Exception:   # noqa: BLE001 - a view never stops the search
            log.debug("publishing the progress failed", exc_info=True)

    def stop(self) -> None:
        """Stop the thread and clear the bars (idempotent)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None
        with self._draw_lock:
            for bar in reversed(self._bars):
                try:
                    bar.close()
                except Exception:   # noqa: BLE001
                    pass
            self._bars = []
        self.progress.on_change = None

    def redirect_logging(self):
        """A context in which log lines print above the bars (tqdm's logging redirect)."""
        import contextlib
        if self.mode != "bar":
            return contextlib.nullcontext()
        from tqdm.contrib.logging import logging_redirect_tqdm
        return logging_redirect_tqdm()
