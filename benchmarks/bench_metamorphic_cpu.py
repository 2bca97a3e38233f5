"""Cost of the metamorphic layer on the CPU: worker forward time with `metamorphic` off and on, side by side.

    python benchmarks/bench_metamorphic_cpu.py --repeats 3

For each built-in task below, its solution is verified R times with the flag off and R times on (alternating, so
machine load hits both), and the medians of the verdicts' `worker_forward` time and of the number of checks are
reported with their ratio. Ratios only: absolute times on the shared CPU machine are noisy.
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from tritonrl.tasks.loader import builtin_task  # noqa: E402
from tritonrl.verify.config import VerifyConfig  # noqa: E402
from tritonrl.verify.funnel import verify  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--tasks", default="relu,vector_add,matmul,softmax")
    args = ap.parse_args()
    print("| task | forward ms off | forward ms on | ratio | checks off | checks on |")
    print("|---|---|---|---|---|---|")
    for task_id in args.tasks.split(","):
        task = builtin_task(task_id)
        code = Path(task.solution_path).read_text()
        ms: dict[bool, list[float]] = {False: [], True: []}
        checks: dict[bool, int] = {}
        for _ in range(args.repeats):
            for flag in (False, True):
                v = verify(task, code, VerifyConfig(metamorphic=flag))
                assert v.passed, v.message
                ms[flag].append(v.stage_times_ms["worker_forward"])
                checks[flag] = len(v.checks)
        off, on = statistics.median(ms[False]), statistics.median(ms[True])
        print(f"| {task_id} | {off:.0f} | {on:.0f} | {on / off:.2f} | {checks[False]} | {checks[True]} |", flush=True)


if __name__ == "__main__":
    main()
