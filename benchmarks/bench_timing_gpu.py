"""GPU timing benchmarks (issue 3): precision, A/A bias, throughput, timing cost. Run on a CUDA machine:

    python benchmarks/bench_timing_gpu.py precision --processes 8
    python benchmarks/bench_timing_gpu.py throughput --copies 6 --jobs 8

precision: for a ~4 us, a ~50 us and a ~1 ms problem, (1) the speedup of the built-in Triton solution over the
PyTorch reference through the full verifier, in N fresh worker processes (each `verify` starts one), and (2) A/A:
the solution timed against itself with the same protocol (`timing.measure_pair`), each in a fresh process, so the
bias of the protocol is measured directly (ideal: 1.000). Reports mean, CV and worst |1 - x| over processes.
throughput: a mixed batch (built-in solutions reaching timing, known-bad fixtures failing early) through
`verify_many` on one GPU: candidates per minute and where the time goes (median of each stage).
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from tritonrl.tasks.loader import builtin_task, load_task  # noqa: E402
from tritonrl.verify.config import VerifyConfig  # noqa: E402
from tritonrl.verify.funnel import verify  # noqa: E402

SOL = ROOT / "src/tritonrl/tasks/builtin/solutions"
# (label, task id, size overrides): sizes chosen for ~4 us, ~50 us and ~1 ms on an H100.
PROBLEMS = [
    ("add 4096 fp32 (~4 us)", "vector_add", {"n_elements": 4096}),
    ("softmax 4096x4096 (~50 us)", "softmax", {"batch_size": 4096, "dim": 4096}),
    ("matmul 1024x4096x2048 ieee (~1 ms)", "matmul", {}),
]

AA_CHILD = r"""
import importlib.util, json, statistics, sys, torch
sys.path.insert(0, sys.argv[1] + "/src")
from tritonrl.tasks.loader import builtin_task
from tritonrl.tasks.reference import ReferenceProgram
from tritonrl.verify.timing import TimingParams, measure_pair
task = builtin_task(sys.argv[2]); sizes = json.loads(sys.argv[3])
spec = importlib.util.spec_from_file_location("sol", task.solution_path); mod = importlib.util.module_from_spec(spec)
spec.loader.exec_module(mod)
prog = ReferenceProgram(task, sizes); model = mod.ModelNew(*prog.get_init_inputs()).cuda()
sets = []
for s in range(3):
    torch.manual_seed(s); sets.append([x.cuda() for x in prog.get_inputs()])
with torch.no_grad():
    raw = measure_pair(torch, (lambda j: model(*sets[j]), lambda j: model(*sets[j])), 3, TimingParams())
print(json.dumps({"ratio": statistics.median(raw["ref_us"]) / statistics.median(raw["cand_us"]),
                  "us": statistics.median(raw["cand_us"]), "mode": raw["mode"], "reps": len(raw["ref_us"])}))
"""


def sized_task(task_id: str, sizes: dict):
    """The built-in task with its size constants overridden in the source (the verifier times default sizes)."""
    task = builtin_task(task_id)
    src = task.source
    for name, value in sizes.items():
        lines = [f"{name} = {value}" if ln.startswith(f"{name} = ") else ln for ln in src.splitlines()]
        src = "\n".join(lines) + "\n"
    return load_task(src, task_id=task_id, level=task.level), (SOL / f"{task_id}.py").read_text()


def summarise(xs: list[float]) -> dict:
    mean = statistics.fmean(xs)
    return {"n": len(xs), "mean": round(mean, 4), "cv_pct": round(100 * statistics.pstdev(xs) / mean, 3),
            "max_dev_pct": round(100 * max(abs(x / mean - 1) for x in xs), 3)}  # fmt: skip


def precision(args: argparse.Namespace) -> dict:
    out = {}
    cfg = VerifyConfig(device="cuda", compile_baseline=False)
    for label, task_id, sizes in PROBLEMS:
        task, sol = sized_task(task_id, sizes)
        speedups, cand_us, timing_ms, modes = [], [], [], set()
        for _ in range(args.processes):
            v = verify(task, sol, cfg)
            assert v.passed, v.message
            speedups.append(v.speedup)
            cand_us.append(v.extra["timing"]["cand_us"])
            timing_ms.append(v.stage_times_ms.get("timing", 0.0))
            modes.add(v.extra["timing"]["mode"])
        aa = []
        for _ in range(args.processes):
            res = subprocess.run([sys.executable, "-c", AA_CHILD, str(ROOT), task_id, json.dumps(sizes)],
                                 capture_output=True, text=True, check=True)  # fmt: skip
            aa.append(json.loads(res.stdout.strip().splitlines()[-1])["ratio"])
        out[label] = {
            "speedup": summarise(speedups),
            "cand_us_median": round(statistics.median(cand_us), 2),
            "mode": sorted(modes),
            "timing_stage_ms_median": round(statistics.median(timing_ms), 1),
            "aa_ratio": summarise(aa),
            "aa_bias_pct": round(100 * (statistics.fmean(aa) - 1), 3),
        }
        print(label, json.dumps(out[label]), flush=True)
    return out


def throughput(args: argparse.Namespace) -> dict:
    from tritonrl.verify.pool import verify_many

    fixtures = sorted((ROOT / "tests/fixtures/candidates").glob("*/*.py"))
    bad = [(builtin_task(p.parent.name), p.read_text()) for p in fixtures if "expect: pass" not in p.read_text()]
    good = [(builtin_task(p.stem), p.read_text()) for p in sorted(SOL.glob("*.py"))]
    items = (good * args.copies)[: args.n // 2] + bad[: args.n - args.n // 2]
    cfg = VerifyConfig(device="cuda", compile_baseline=False)
    verify(*good[0], cfg)  # ceilings calibrated once (cached on disk), outside the measured batch
    t0 = time.perf_counter()
    done = []
    verdicts = verify_many(items, cfg, jobs=args.jobs, on_verdict=lambda i, v: done.append(time.perf_counter() - t0))
    wall = time.perf_counter() - t0
    stages: dict[str, list[float]] = {}
    for v in verdicts:
        for k, ms in v.stage_times_ms.items():
            stages.setdefault(k, []).append(ms)
    timed = [v for v in verdicts if v.speedup is not None]
    result = {
        "candidates": len(items), "jobs": args.jobs, "wall_s": round(wall, 1),
        "per_minute": round(60 * len(items) / wall, 1), "reached_timing": len(timed),
        "passed": sum(v.passed for v in verdicts),
        "stage_ms_median": {k: round(statistics.median(v), 1) for k, v in sorted(stages.items())},
        "timing_ms_per_timed_candidate": round(statistics.median([v.stage_times_ms["timing"] for v in timed]), 1)
        if timed else None,
    }  # fmt: skip
    print(json.dumps(result, indent=1), flush=True)
    return result


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("precision")
    p.add_argument("--processes", type=int, default=8)
    t = sub.add_parser("throughput")
    t.add_argument("--n", type=int, default=120, help="candidates in the batch (half honest, half failing)")
    t.add_argument("--copies", type=int, default=6)
    t.add_argument("--jobs", type=int, default=8)
    ap.add_argument("--out", type=Path, default=None, help="write the JSON result here")
    args = ap.parse_args()
    import torch

    result = {"gpu": torch.cuda.get_device_name(), "torch": torch.__version__}
    result.update(precision(args) if args.cmd == "precision" else throughput(args))
    if args.out:
        args.out.write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
