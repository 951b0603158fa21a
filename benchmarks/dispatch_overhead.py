"""SCOOP's dispatch overhead per evaluation: how small an evaluation can be before distributing it
stops paying off.

Evaluations of a fixed duration (0, 1, 5, 20 and 100 ms; they sleep, so that the machine's cores do
not limit the measure, and return a result-sized dict) are mapped with deapnos's SCOOP backend
(``ScoopBackend.map``: the search's own path, submit, ``as_completed``, results in order) over 1, 2
and 4 workers, on this machine and across namespace hosts (one worker per host, reached over ssh:
tests/multihost/netns_hosts.py; needs root and network namespaces, skipped with the reason
otherwise).  Prints a table with, for each set-up:

* ``0 ms: ms/eval``: wall time per evaluation of empty evaluations: the dispatch cost, which bounds
  the throughput whatever the number of workers (in brackets, as below: the share of evaluations
  that left the origin);
* ``D ms``: the workers' efficiency, evaluation time over workers x wall time (1.0: no overhead);
* ``overhead``: worker time lost per evaluation, (workers x wall - evaluations x D) / evaluations, at
  D = 5 ms;
* ``90% at``: the evaluation time at which the workers are busy 90% of the time: 9 x overhead.

Usage: ``python benchmarks/dispatch_overhead.py [--ms 0 1 5 20 100] [--budget 1.5] [--workers 1 2 4]
[--no-hosts]``.  SCOOP runs this same file as its program (``--inner``).
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


class Evaluation:
    """An evaluation of ``seconds``; answers like a worker does (a result-sized dict, its id).  One
    instance per map: SCOOP keeps timing statistics per callable, and decides from them which
    futures to keep on the origin (a fresh callable is sent out, as a search's are)."""

    def __init__(self, seconds: float):
        self.seconds = seconds

    def __call__(self, i: int) -> dict:
        if self.seconds:
            time.sleep(self.seconds)
        from deapnos.distributed import worker_id
        return {"status": "ok", "fitness": 0.5, "curve": [0.1 * k for k in range(20)], "worker": worker_id(), "i": i}


def count(ms: float, budget: float) -> int:
    """Evaluations per map: about ``budget`` seconds of evaluation time, 40 at least, 2000 at most."""
    return int(min(2000, max(40, budget * 1000 / ms))) if ms else 2000


def inner(ms_list, budget: float) -> dict:
    """Under SCOOP: time one map per evaluation time through the search's backend."""
    from deapnos.distributed import ScoopBackend, worker_id
    backend = ScoopBackend(threads=1, device="cpu")
    origin = worker_id()
    deadline = time.monotonic() + 60
    seen = set()
    while len(seen) < backend.workers and time.monotonic() < deadline:      # every worker connected
        seen |= {r["worker"] for r in backend.map(Evaluation(0.05), range(4 * backend.workers))}
    out = {"workers": backend.workers, "hosts": sorted({w.rsplit(":", 1)[0] for w in seen}), "maps": {}}
    for ms in ms_list:
        n = count(ms, budget)
        t0 = time.perf_counter()
        res = backend.map(Evaluation(ms / 1000.0), range(n), on_result=lambda i, r: None)
        wall = time.perf_counter() - t0
        assert [r["i"] for r in res] == list(range(n))
        out["maps"][str(ms)] = {"n": n, "wall": wall, "remote": sum(r["worker"] != origin for r in res) / n}
    return out


def scoop_run(workers: int, args, hostfile=None, command_prefix=(), env=None) -> dict:
    cmd = [*command_prefix, sys.executable, "-m", "scoop", "-n", str(workers)]
    if hostfile:
        cmd += ["--hostfile", str(hostfile)]
    cmd += [str(Path(__file__).resolve()), "--inner", "--budget", str(args.budget), "--ms", *map(str, args.ms)]
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=900, env=env)
    for line in proc.stdout.splitlines():
        if line.startswith("RESULT "):
            return json.loads(line[7:])
    raise SystemExit(f"SCOOP run failed ({' '.join(cmd)}):\n{proc.stdout[-2000:]}\n{proc.stderr[-3000:]}")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ms", type=float, nargs="+", default=[0, 1, 5, 20, 100],
                        help="evaluation times to measure (ms)")
    parser.add_argument("--budget", type=float, default=1.5, help="seconds of evaluation time per map")
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2, 4])
    parser.add_argument("--no-hosts", action="store_true", help="only on this machine")
    parser.add_argument("--inner", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    args.ms = [int(m) if float(m).is_integer() else m for m in args.ms]
    if args.inner:
        print("RESULT " + json.dumps(inner(args.ms, args.budget)), flush=True)
        return 0

    rows = []
    for w in args.workers:
        rows.append(("this machine", w, scoop_run(w, args)))
    if not args.no_hosts:
        sys.path.insert(0, str(ROOT / "tests" / "multihost"))
        from netns_hosts import NamespaceHosts, Unavailable, unavailable_reason
        reason = unavailable_reason()
        if reason:
            print(f"namespace hosts skipped: {reason}", file=sys.stderr)
        else:
            try:
                with NamespaceHosts(max(args.workers)) as h:
                    for w in args.workers:
                        hostfile = h.hostfile(1, hosts=h.names[:w])
                        res = scoop_run(w, args, hostfile, h.command(h.origin, []), env=h.environ())
                        rows.append((f"{w} host{'s' if w > 1 else ''}, ssh", w, res))
            except Unavailable as exc:
                print(f"namespace hosts skipped: {exc}", file=sys.stderr)

    print(f"SCOOP dispatch overhead per evaluation (deapnos ScoopBackend.map; evaluations sleep D ms; "
          f"{os.cpu_count()} CPU cores)")
    timed = [m for m in args.ms if m]
    head = ["where", "workers", "hosts"] + (["0 ms: ms/eval"] if 0 in args.ms else []) + \
        [f"{m} ms: efficiency (remote)" for m in timed] + ["overhead/eval", "90% at"]
    print("| " + " | ".join(head) + " |")
    print("|" + "|".join("---" for _ in head) + "|")
    ref = 5 if 5 in timed else (timed[0] if timed else None)
    for where, w, r in rows:
        cells = [where, str(w), str(len(r["hosts"]))]
        maps = r["maps"]
        if 0 in args.ms:
            cells.append(f"{maps['0']['wall'] / maps['0']['n'] * 1e3:.3f} ({maps['0']['remote']:.0%})")
        for m in timed:
            x = maps[str(m)]
            cells.append(f"{x['n'] * m / 1000 / (w * x['wall']):.2f} ({x['remote']:.0%})")
        if ref is not None:
            x = maps[str(ref)]
            o = (w * x["wall"] - x["n"] * ref / 1000) / x["n"]
            cells += [f"{o * 1e3:.2f} ms", f"{max(0.0, 9 * o) * 1e3:.0f} ms"]
        else:
            cells += ["-", "-"]
        print("| " + " | ".join(cells) + " |")
    print()
    print("Distribution pays when an evaluation takes much longer than the overhead per evaluation: at "
          "9 x overhead the workers are 90% busy.")
    return 0


if __name__ == "__main__":
    from deapnos.distributed import under_scoop
    if under_scoop():
        main()                  # SCOOP reports a SystemExit of its program as an error
    else:
        sys.exit(main())
