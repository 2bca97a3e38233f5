"""End-to-end latency of `tritonrl verify` on the CPU, each run a fresh CLI process (what a user sees).

    python benchmarks/bench_verify_cpu.py --repeats 5

For each candidate it runs `tritonrl verify TASK FILE --device cpu --json` R times, reports the median wall time,
and the median of every stage timing the verdict records, so the table says where the time goes. Timings on a
shared 2-core machine are noisy: compare medians measured in the same run.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SOL = ROOT / "src/tritonrl/tasks/builtin/solutions"
EXAMPLES = ROOT / "src/tritonrl/tasks/builtin/examples"
CANDIDATES = [
    ("relu", SOL / "relu.py", "passes"),
    ("softmax", SOL / "softmax.py", "passes"),
    ("layernorm", SOL / "layernorm.py", "passes"),
    ("matmul", SOL / "matmul.py", "passes"),
    ("relu", EXAMPLES / "relu/torch_fallback.py", "rejected at provenance"),
    ("relu", EXAMPLES / "relu/sandbox_escape.py", "rejected at static"),
]
STAGES = [
    "extract",
    "parse",
    "static",
    "spawn",
    "plan",
    "reference",
    "worker_ready_after_spawn",
    "worker_load",
    "worker_forward",
    "sandbox",
]


def one(task: str, path: Path) -> tuple[float, dict]:
    t0 = time.perf_counter()
    out = subprocess.run(
        [sys.executable, "-m", "tritonrl.cli.main", "verify", task, str(path), "--device", "cpu", "--json"],
        capture_output=True,
        text=True,
        check=False,
    )
    wall = time.perf_counter() - t0
    return wall, json.loads(out.stdout)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args()
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-c", "import torch"], check=True)
    torch_import = time.perf_counter() - t0
    print(
        f"machine: {platform.processor() or platform.machine()}, {sys.version.split()[0]}; "
        f"`import torch` in a fresh process: {torch_import:.2f} s\n"
    )
    print("| candidate | outcome | median wall (s) | min | max | " + " | ".join(STAGES) + " |")
    print("|---|---|---|---|---|" + "---|" * len(STAGES))
    all_walls = []
    for task, path, what in CANDIDATES:
        walls, stages = [], {s: [] for s in STAGES}
        for _ in range(args.repeats):
            wall, verdict = one(task, path)
            walls.append(wall)
            for s in STAGES:
                stages[s].append(verdict["stage_times_ms"].get(s, 0.0))
        all_walls += walls
        med = {s: statistics.median(v) / 1e3 for s, v in stages.items()}
        print(
            f"| {task}/{path.name} | {what} | {statistics.median(walls):.2f} | {min(walls):.2f} | {max(walls):.2f} | "
            + " | ".join(f"{med[s]:.2f}" for s in STAGES)
            + " |",
            flush=True,
        )
    print(f"\nmedian over all {len(all_walls)} runs: {statistics.median(all_walls):.2f} s")


if __name__ == "__main__":
    main()
