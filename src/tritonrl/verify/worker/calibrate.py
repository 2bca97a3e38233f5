"""Trusted GPU measurements, run once per device or per task in a subprocess that never sees candidate code:
device ceilings (copy and read bandwidth, dense matmul rate) and a task's torch.compile baseline.

`python -m tritonrl.verify.worker.calibrate` reads one JSON request on stdin and writes one JSON result on stdout. It is
started by `calibration.py` while the GPU is held exclusively, and its results are cached on disk, so the cost
(about 2 s for ceilings, 5-60 s for a torch.compile) is paid once per (GPU, torch version, task, sizes).
"""

from __future__ import annotations

import json
import statistics
import sys
from typing import Any

import torch

from tritonrl.verify.messages import TimingParams
from tritonrl.verify.worker.timing import Hooks, Timer


def _median_us(fn: Any, reps: int = 20) -> float:
    timer = Timer(torch, TimingParams(), (lambda _slot: fn(), lambda _slot: fn()), 1, Hooks())
    fn()
    torch.cuda.synchronize()
    return statistics.median(timer.event_block(0, 0, reps))


def _bandwidth_gbs() -> float:
    n = 1 << 28  # 1 GiB of fp32: far beyond any L2
    x = torch.randn(n, device="cuda")
    y = torch.empty_like(x)
    copy_us = _median_us(lambda: y.copy_(x))
    read_us = _median_us(lambda: x.sum())
    return max(2 * 4 * n / copy_us, 4 * n / read_us) * 1e-3


def measure_ceilings() -> dict[str, Any]:
    """Best copy/read bandwidth over 1 GiB and best dense matmul rate at 8192^3 over the float formats."""
    bandwidth = _bandwidth_gbs()
    rates = {}
    m = 8192
    for name, dtype, tf32 in (("fp32", torch.float32, False), ("tf32", torch.float32, True),
                              ("fp16", torch.float16, False), ("bf16", torch.bfloat16, False)):  # fmt: skip
        torch.backends.cuda.matmul.allow_tf32 = tf32
        a = torch.randn(m, m, device="cuda", dtype=dtype)
        b = torch.randn(m, m, device="cuda", dtype=dtype)
        rates[name] = 2 * m**3 / _median_us(lambda a=a, b=b: a @ b, reps=10) * 1e-6  # TFLOP/s
    torch.backends.cuda.matmul.allow_tf32 = False
    props = torch.cuda.get_device_properties(torch.cuda.current_device())
    return {
        "gpu": torch.cuda.get_device_name(),
        "bandwidth_gbs": round(bandwidth, 1),
        "flops_tflops": round(max(rates.values()), 1),
        "l2_bytes": int(getattr(props, "L2_cache_size", 0)),
        "matmul_tflops": {k: round(v, 1) for k, v in rates.items()},
    }


def compile_baseline(spec: dict[str, Any]) -> dict[str, Any]:
    """Eager vs torch.compile'd reference at the base sizes, timed side by side with the candidate protocol."""
    from tritonrl.tasks.loader import load_task
    from tritonrl.tasks.reference import ReferenceProgram
    from tritonrl.verify.worker.timing import measure_pair

    task = load_task(spec["task_source"], task_id=spec["task_id"], roles=spec["roles"])
    prog = ReferenceProgram(task, spec["sizes"])
    model = prog.make_model(0).to("cuda").eval()
    compiled = torch.compile(model)
    sets = []
    for seed in range(3):
        sets.append([x.to("cuda") if isinstance(x, torch.Tensor) else x for x in prog.inputs(seed)])
    with torch.no_grad():
        compiled(*sets[0])  # compile outside the timing
        raw = measure_pair(torch, (lambda j: model(*sets[j]), lambda j: compiled(*sets[j])), len(sets),
                           TimingParams(budget_s=2.0))  # fmt: skip
    eager_us, compiled_us = statistics.median(raw["ref_us"]), statistics.median(raw["cand_us"])
    return {"eager_us": eager_us, "compiled_us": compiled_us, "compile_ratio": compiled_us / eager_us,
            "mode": raw["mode"]}  # fmt: skip


def main() -> None:
    request = json.loads(sys.stdin.read())
    result: dict[str, Any] = {}
    try:
        if request.get("ceilings"):
            result["ceilings"] = measure_ceilings()
        if request.get("compile"):
            result["compile"] = compile_baseline(request["compile"])
    except Exception as exc:  # noqa: BLE001 - reported to the parent, which logs it and goes on without
        result["error"] = f"{type(exc).__name__}: {exc}"
    sys.stdout.write("\n" + json.dumps(result) + "\n")


if __name__ == "__main__":
    main()
