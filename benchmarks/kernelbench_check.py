"""Check the verifier against a KernelBench checkout: every reference loads unchanged, plans at CPU scale with a
shape family, and, offered as a pure-PyTorch "candidate" (class renamed to ModelNew), is rejected for not using
Triton, with no harness error.

    python benchmarks/kernelbench_check.py /path/to/KernelBench --levels 1 2 --jobs 2 [--runtime]

Without --runtime the candidates go through the whole funnel (rejected at the static stage: no @triton.jit). With
--runtime the static stage is switched off, so each candidate runs in the sandbox and must be rejected by runtime
provenance (torch_compute, or no_triton_launch for forwards made only of views).
"""

from __future__ import annotations

import argparse
import collections
import json
import re
import sys
import time
import traceback
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from tritonrl.tasks.loader import load_task
from tritonrl.tasks.shapes import plan_shapes
from tritonrl.verify.config import VerifyConfig
from tritonrl.verify.funnel import verify

MODEL = re.compile(r"\bModel\b")


def check(path: Path, level: int, runtime: bool) -> dict:
    row = {"file": path.name, "level": level}
    t0 = time.perf_counter()
    try:
        task = load_task(path, level=level)
        plan = plan_shapes(task, device="cpu", n_variants=2)
        row["variants"] = len(plan.variants)
        row["base"] = plan.base
        cfg = VerifyConfig(static_checks=not runtime, timeout_s=120)
        v = verify(task, MODEL.sub("ModelNew", task.source), cfg)
        row["outcome"] = "pass" if v.passed else f"{v.stage.value}/{v.failure.value}"
        row["message"] = v.message[:200]
    except Exception as exc:  # noqa: BLE001 - a harness error is exactly what this script counts
        row["outcome"] = f"HARNESS ERROR {type(exc).__name__}"
        row["message"] = str(exc)[:300]
        row["traceback"] = traceback.format_exc()[-1500:]
    row["wall_s"] = round(time.perf_counter() - t0, 2)
    return row


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("kernelbench", type=Path, help="a KernelBench checkout (the folder holding KernelBench/level1)")
    ap.add_argument("--levels", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--runtime", action="store_true", help="switch the static stage off")
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    root = args.kernelbench / "KernelBench" if (args.kernelbench / "KernelBench").is_dir() else args.kernelbench
    files = [(p, lvl) for lvl in args.levels for p in sorted((root / f"level{lvl}").glob("*.py"))]
    if not files:
        print(f"no level folders under {root}", file=sys.stderr)
        return 2
    rows = []
    with ThreadPoolExecutor(args.jobs) as pool:
        for row in pool.map(lambda f: check(f[0], f[1], args.runtime), files):
            rows.append(row)
            print(
                f"L{row['level']} {row['file'][:50]:50s} {row['outcome']:32s} variants={row.get('variants', '-')} "
                f"{row['wall_s']:6.1f}s {row['message'][:80] if 'HARNESS' in row['outcome'] else ''}",
                flush=True,
            )
    counts = collections.Counter((r["level"], r["outcome"]) for r in rows)
    print("\nlevel | outcome | count")
    for (lvl, outcome), n in sorted(counts.items()):
        print(f"L{lvl} | {outcome} | {n}")
    short = [r for r in rows if r.get("variants", 0) < 2]
    print(f"tasks with < 2 shape variants: {len(short)}")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1))
    return 1 if any("HARNESS" in r["outcome"] or r["outcome"] == "pass" for r in rows) else 0


if __name__ == "__main__":
    sys.exit(main())
