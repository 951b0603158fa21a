"""The checks that need a GPU, as one prepared script: run it once on a machine with CUDA.

Machines with a GPU are scarce and their time is short, so everything to look at there is in one
command, each part with its own time limit, and each part's outcome in the report even when another
part fails:

1. the device (name, memory, torch and CUDA versions);
2. the tests that run only on CUDA (skipped on a CPU): a batched LR screen, the optimizer on CUDA;
3. ``benchmarks/batched_step.py`` on the GPU with K up to 32: how a batched pass grows with K there
   (docs/evaluation.md, "Choosing K");
4. one evaluation on the GPU of ``digits-hard`` with one run per LR and with ``batch_lrs = 7``:
   seconds, chosen LR and fitness of each, beside the same on the CPU (the verdicts should agree);
5. a timm task (EfficientNetV2-S from scratch, on a fake CIFAR-100 folder in the real file format):
   seconds per training step of torch Adam and of evolved optimizers (``adam``, ``a1``, ``opt10``);
6. a small search with GPU workers (``deapnos run``, the quickstart shortened, ``run.device = cuda``):
   its exit status, wall time and leaderboard.

It writes ``report.json`` and a log per part to ``--out`` (default ``$OUT`` or ``gpu_check/``) and
prints a summary.  ``--device cpu`` runs the same parts on the CPU (to try the script itself; the
CUDA tests are then skipped, as they are in the suite).

    HF_HUB_OFFLINE=1 python benchmarks/gpu_check.py [--out DIR] [--device cuda] [--parts 1 2 3 4 5 6]
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))     # fake_data: the real file formats, written small


def _shell(cmd: list[str], log: Path, timeout: int, env: dict | None = None) -> dict:
    """Run ``cmd`` from the repository root with its output in ``log``; exit status, seconds, tail."""
    t0 = time.perf_counter()
    try:
        done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=timeout,
                              env={**os.environ, **(env or {})})
        text, rc = done.stdout + done.stderr, done.returncode
    except subprocess.TimeoutExpired as exc:
        out = exc.stdout.decode() if isinstance(exc.stdout, bytes) else (exc.stdout or "")
        text, rc = out + f"\n(timed out after {timeout} s)", 124
    log.write_text(text)
    return {"rc": rc, "seconds": round(time.perf_counter() - t0, 1), "tail": text.strip().splitlines()[-12:]}


def device_info(device: str) -> dict:
    import torch
    info = {"torch": torch.__version__, "cuda": torch.version.cuda, "cuda_available": torch.cuda.is_available()}
    if device == "cuda" and torch.cuda.is_available():
        props = torch.cuda.get_device_properties(0)
        info.update(name=props.name, memory_gib=round(props.total_memory / 2**30, 1),
                    devices=torch.cuda.device_count())
    return info


def cuda_tests(out: Path) -> dict:
    return _shell([sys.executable, "-m", "pytest", "-q", "-rs", "-n", "0", "-p", "no:cacheprovider",
                   "tests/test_batched.py::test_batched_screen_on_cuda", "tests/test_optimizer.py", "-k", "cuda"],
                  out / "cuda_tests.log", timeout=300)


def batched_step(out: Path, device: str) -> dict:
    return _shell([sys.executable, "benchmarks/batched_step.py", "--device", device, "--ks", "1", "2", "4", "7",
                   "16", "32", "--steps", "20", "--rounds", "3"], out / "batched_step.log", timeout=300)


def evaluation(device: str) -> dict:
    """digits-hard: adam on ``device`` with one run per LR and with batch_lrs = 7, and on the CPU."""
    import torch

    from deapnos.context import build_context
    from deapnos.evaluate.protocol import ProtocolConfig, evaluate_genome
    task = build_context().tasks["digits-hard"]
    rows = {}
    for where, k in ((device, 0), (device, 7), *((("cpu", 0),) if device != "cpu" else ())):
        if where == device and device == "cuda":
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        r = evaluate_genome("adam", task, seed=0, config=ProtocolConfig(batch_lrs=k, nan_check_every=8),
                            device=where)
        rows[f"{where} batch_lrs={k}"] = {"status": r.status, "lr": r.lr, "fitness": r.fitness,
                                          "seconds": round(time.perf_counter() - t0, 2), "message": r.message}
    return rows


def timm_steps(device: str) -> dict:
    """Seconds per training step of EfficientNetV2-S (from scratch, 32x32, batch 64) on ``device``."""
    import torch

    import fake_data
    from deapnos.context import build_context
    from deapnos.optim.optimizer import EvolvedOptimizer
    from deapnos.zoo import get
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    steps = 10 if device == "cuda" else 2
    with tempfile.TemporaryDirectory() as tmp:
        fake_data.write_cifar100(Path(tmp), n_train=128, n_test=32)
        task = build_context().tasks["cifar100-effnetv2s"].replace(data_path=tmp, batch_size=64)
        data = task.build_data(device, 0)
        x, y = next(iter(data.train))
        x, y = x.to(device), y.to(device)
    rows = {}
    for name in ("torch:Adam", "adam", "a1", "opt10"):
        torch.manual_seed(0)
        model = task.build_model(data.num_classes).to(device).train()
        opt = (torch.optim.Adam(model.parameters(), lr=1e-3, foreach=True) if name.startswith("torch:")
               else EvolvedOptimizer(model.parameters(), get(name), lr=1e-3, total_steps=steps + 2))

        def step(model=model, opt=opt):
            opt.zero_grad(set_to_none=True)
            task.loss(model(x), y).backward()
            opt.step()
        step()      # first-call costs (cuDNN's choice of kernels) untimed
        if device == "cuda":
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        for _ in range(steps):
            step()
        if device == "cuda":
            torch.cuda.synchronize()
        rows[name] = round((time.perf_counter() - t0) / steps * 1000, 2)
    return {"ms_per_step": rows, "parameters": sum(p.numel() for p in model.parameters())}


def search(out: Path, device: str) -> dict:
    run_dir = out / "search_run"
    cli = "import sys; from deapnos.cli import main; sys.exit(main())"     # the `deapnos` command
    result = _shell([sys.executable, "-c", cli, "run", "--run-dir", str(run_dir.resolve()), "--quiet",
                   f"run.device={device}", "search.particles=2", "search.timesteps=2", "search.init_factor=3"],
                  out / "search.log", timeout=420, env={"HF_HUB_OFFLINE": "1"})
    report = run_dir / "report.md"         # the leaderboard and held-out table the run ends with
    result["report"] = report.read_text().splitlines()[:60] if report.exists() else "no report.md"
    devices: dict[str, int] = {}        # where the workers evaluated: the GPU, not the CPU
    log = run_dir / "evaluations.jsonl"
    for line in log.read_text().splitlines() if log.exists() else []:
        try:
            where = str(json.loads(line).get("device"))
        except (ValueError, AttributeError):
            continue
        devices[where] = devices.get(where, 0) + 1
    result["evaluations_by_device"] = devices
    return result


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=os.environ.get("OUT") or "gpu_check")
    ap.add_argument("--device", default="cuda", choices=["cuda", "cpu"])
    ap.add_argument("--parts", nargs="+", type=int, default=[1, 2, 3, 4, 5, 6])
    args = ap.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    parts = {1: ("device", lambda: device_info(args.device)), 2: ("cuda_tests", lambda: cuda_tests(out)),
             3: ("batched_step", lambda: batched_step(out, args.device)),
             4: ("evaluation", lambda: evaluation(args.device)), 5: ("timm_steps", lambda: timm_steps(args.device)),
             6: ("search", lambda: search(out, args.device))}
    report: dict = {}
    for number in args.parts:
        name, part = parts[number]
        t0 = time.perf_counter()
        try:
            report[name] = part()
        except Exception as exc:  # noqa: BLE001 - one part failing must not hide the others
            report[name] = {"error": f"{type(exc).__name__}: {exc}", "traceback": traceback.format_exc()[-2000:]}
        print(f"== {number}. {name} ({time.perf_counter() - t0:.0f} s)")
        print(json.dumps({k: v for k, v in report[name].items() if k != "traceback"}, indent=1, default=str)[:3000])
        sys.stdout.flush()
        (out / "report.json").write_text(json.dumps(report, indent=1, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
