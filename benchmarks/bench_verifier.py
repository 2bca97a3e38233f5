"""Cold workers vs the warm `Verifier`, one batch, same candidates (issue 13: one warm executor everywhere).

`--mode cold` is what `tritonrl eval`'s local runner, the reward client and curation did before the Verifier: a
thread pool of `--jobs` threads, each calling `funnel.verify` with no pool, so every candidate waits for a fresh
worker (Python + torch + triton import, and CUDA init on a GPU). `--mode warm` verifies the same batch through one
`Verifier(cfg, jobs=--jobs)`: workers are started ahead, and the next candidate's worker starts while the current one
runs. Like the `Verifier`'s default, those workers are forked from one warm process that has torch and triton imported
(`verify/forkserver.py`; its own start is inside the measured time); `--spawn` starts an interpreter per worker
instead. Time whole processes side by side (docs/benchmarks.md section 8):

    farm-bench -n 3 --timeout 1200 -- python benchmarks/bench_verifier.py --mode warm \\
        --vs 'python benchmarks/bench_verifier.py --mode cold'

Every run prints one JSON line: the mode, the batch size, the seconds, and the verdict stages (identical across
modes, or the comparison is void).
"""

from __future__ import annotations

import argparse
import concurrent.futures as cf
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FIX = ROOT / "tests/fixtures/candidates/relu"
SOLVED = ("relu", "leaky_relu", "vector_add", "row_sum", "softmax", "rmsnorm")  # fast on the CPU interpreter
REJECTED = ("aten_direct.py", "constant_output.py", "identity_on_negatives.py", "getattr_obfuscation.py")


def batch() -> list[tuple]:
    """Six passing built-in solutions and four relu fixtures rejected at different stages."""
    from tritonrl.tasks.loader import builtin_task

    tasks = [builtin_task(name) for name in SOLVED]
    relu = tasks[0]
    return [(t, Path(t.solution_path).read_text()) for t in tasks] + [(relu, (FIX / f).read_text()) for f in REJECTED]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--mode", choices=("cold", "warm"), required=True)
    ap.add_argument("--jobs", type=int, default=2, help="verifications at once")
    ap.add_argument("--device", default="cpu")
    workers = ap.add_mutually_exclusive_group()
    workers.add_argument("--fork-server", action="store_true",
                         help="warm mode: fork workers from a warm process (the default; section 8's recorded "
                              "commands name it, from when spawning was the default)")  # fmt: skip
    workers.add_argument("--spawn", action="store_true", help="warm mode: start an interpreter per worker")
    args = ap.parse_args(argv)

    from tritonrl.verify.config import VerifyConfig
    from tritonrl.verify.funnel import verify
    from tritonrl.verify.verifier import Verifier

    items = batch()
    cfg = VerifyConfig(device=args.device, compile_baseline=False)
    t0 = time.perf_counter()
    if args.mode == "cold":
        with cf.ThreadPoolExecutor(args.jobs) as pool:
            verdicts = list(pool.map(lambda item: verify(item[0], item[1], cfg), items))
    else:
        # a batch: nothing started after it
        with Verifier(cfg, jobs=args.jobs, keep_warm=False, fork_server=not args.spawn) as verifier:
            verdicts = verifier.verify_many(items)
    seconds = time.perf_counter() - t0
    stages = [f"{v.stage}/{v.failure}" if not v.passed else "passed" for v in verdicts]
    out = {"mode": args.mode, "fork_server": args.mode == "warm" and not args.spawn, "n": len(items), "jobs": args.jobs}
    print(json.dumps(out | {"seconds": round(seconds, 2), "stages": stages}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
