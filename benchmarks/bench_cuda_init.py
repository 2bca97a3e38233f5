"""Is CUDA context creation serialised across processes, and does the wait burn CPU? (issue 13's throughput bound)

    python benchmarks/bench_cuda_init.py --out cuda_init.json                   # on a CUDA machine
    python benchmarks/bench_cuda_init.py --modes sleep --counts 1 4             # the harness alone, on a CPU

docs/benchmarks.md 9c: with 12 forked workers, creating the CUDA context was 36% of the workers' busy samples, and a
worker became ready 5.8 s after its request against 0.4 s alone. Two readings predict different numbers here. If
the driver serialises context creation, the slowest of N children started together takes ~N times one child's
time; if the waiters also spin, each child's CPU time grows with N as well (a CPU bound, like 9c's), else it stays
flat (a latency bound only).

The parent imports torch without initialising CUDA, as the fork server does (`verify/worker/zygote.py`), then forks
N children that wait on one pipe and start together. Each child times one step and reports its wall time and its
CPU time over that step (rusage, all its threads):
  driver  cuInit, the primary context retained and made current, a 1 KiB allocation (libcuda through ctypes)
  torch   `torch.empty(1, device="cuda")` and a synchronize (what a worker does first)
  sleep   a 0.2 s sleep: no CUDA, so the harness itself can be checked on a CPU
"""

from __future__ import annotations

import argparse
import ctypes
import json
import os
import resource
import statistics
import sys
import time
from pathlib import Path
from typing import Any

MODES = ("driver", "torch", "sleep")


def _cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _step(mode: str) -> None:
    if mode == "driver":
        cuda = ctypes.CDLL("libcuda.so.1")
        device, context, pointer = ctypes.c_int(), ctypes.c_void_p(), ctypes.c_uint64()
        for rc in (
            cuda.cuInit(0),
            cuda.cuDeviceGet(ctypes.byref(device), 0),
            cuda.cuDevicePrimaryCtxRetain(ctypes.byref(context), device),
            cuda.cuCtxSetCurrent(context),
            cuda.cuMemAlloc_v2(ctypes.byref(pointer), ctypes.c_size_t(1024)),
        ):
            if rc != 0:
                raise RuntimeError(f"CUDA driver call failed with {rc}")
    elif mode == "torch":
        import torch

        torch.empty(1, device="cuda")
        torch.cuda.synchronize()
    else:
        time.sleep(0.2)


def _child(mode: str, go: int, report: int) -> None:
    """Wait for the common start, time the step, write one JSON line, exit without running the parent's cleanup."""
    code = 0
    try:
        os.read(go, 1)
        cpu0, t0 = _cpu_s(), time.perf_counter()
        _step(mode)
        row = {"init_s": time.perf_counter() - t0, "cpu_s": _cpu_s() - cpu0}
    except Exception as exc:  # noqa: BLE001 - reported to the parent, which counts the failures
        row, code = {"error": repr(exc)[:200]}, 1
    os.write(report, (json.dumps(row) + "\n").encode())
    os._exit(code)


def trial(mode: str, n: int) -> dict[str, Any]:
    """Fork `n` children, release them at once, and summarise their step times (module docstring)."""
    go_r, go_w = os.pipe()
    report_r, report_w = os.pipe()
    pids = []
    for _ in range(n):
        pid = os.fork()
        if pid == 0:
            os.close(go_w)
            os.close(report_r)
            _child(mode, go_r, report_w)
        pids.append(pid)
    os.close(go_r)
    os.close(report_w)
    time.sleep(0.3)  # every child is waiting on the pipe
    t0 = time.perf_counter()
    os.write(go_w, b"x" * n)
    for pid in pids:
        os.waitpid(pid, 0)
    wall_s = time.perf_counter() - t0
    with os.fdopen(report_r) as lines:
        rows = [json.loads(line) for line in lines]
    os.close(go_w)
    done = [r for r in rows if "init_s" in r]
    errors = [r["error"] for r in rows if "error" in r]
    inits = sorted(r["init_s"] for r in done) or [0.0]
    cpus = [r["cpu_s"] for r in done] or [0.0]
    return {
        "mode": mode,
        "children": n,
        "ok": len(done),
        "errors": errors[:3],
        "wall_s": round(wall_s, 3),
        "init_min_s": round(inits[0], 3),
        "init_median_s": round(statistics.median(inits), 3),
        "init_max_s": round(inits[-1], 3),
        "cpu_per_child_s": round(statistics.mean(cpus), 3),
        "cpu_total_s": round(sum(cpus), 3),
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--modes", nargs="+", choices=MODES, default=["driver", "torch"])
    ap.add_argument("--counts", nargs="+", type=int, default=[1, 4, 12, 16, 1],
                    help="children started together, one trial each (the last 1 again: a warm driver)")  # fmt: skip
    ap.add_argument("--out", help="write the rows as JSON here")
    args = ap.parse_args(argv)
    if any(n < 1 for n in args.counts):
        ap.error(f"--counts {args.counts}: each count is a number of children, at least 1")
    if "torch" in args.modes:
        import torch  # noqa: F401 - imported before the fork, CUDA not initialised: the fork server's state

    rows = []
    for mode in args.modes:
        for n in args.counts:
            rows.append(trial(mode, n))
            print(json.dumps(rows[-1]), flush=True)
    if args.out:
        Path(args.out).write_text(json.dumps(rows, indent=1))
    return 0 if all(r["ok"] == r["children"] for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
