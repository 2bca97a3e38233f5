"""Verify every built-in solution, every candidate fixture and the unseen corpus (tests/fixtures/corpus) on one
device; print a table, optionally write JSON.

    python benchmarks/sweep_fixtures.py --device cuda --jobs 4 --json out.json

Used to check the GPU path against the same fixtures the CPU tests use (expected outcomes come from each fixture's
`# expect:` header) and to see where verification time goes.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from tritonrl.tasks.loader import builtin_task, builtin_tasks, load_task
from tritonrl.verify.expect import Expectation, parse_expectation
from tritonrl.verify.funnel import verify

ROOT = Path(__file__).resolve().parents[1]


def jobs(selector: str) -> list[tuple[str, Path, Expectation]]:
    """(task: a built-in id or a reference file path, candidate path, expectation)."""
    out = [(t.task_id, Path(t.solution_path), Expectation(True)) for t in builtin_tasks() if t.solution_path]
    for p in sorted(
        p
        for r in (ROOT / "tests/fixtures/candidates", ROOT / "src/tritonrl/tasks/builtin/examples")
        for p in r.glob("*/*.*")
    ):
        out.append((p.parent.name, p, parse_expectation(p.read_text())))
    for case in sorted((ROOT / "tests/fixtures/corpus").glob("*/*/candidate.py")):
        ref = case.parent / "reference.py"
        name = "" if ref.is_file() else (case.parent / "task.txt").read_text().strip()
        task = str(ref) if ref.is_file() else str(ROOT / "tests/fixtures" / name) if name.endswith(".py") else name
        out.append((task, case, parse_expectation(case.read_text())))
    return [j for j in out if selector in f"{j[0]}/{j[1]}"]


def _label(task: str, path: Path) -> tuple[str, str]:
    if path.name == "candidate.py":  # a corpus case: named by its folder
        return path.parent.parent.name, path.parent.name
    return task, path.name


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--select", default="")
    ap.add_argument("--json")
    ap.add_argument("--no-compile-baseline", action="store_true", help="skip the torch.compile ratio (minutes/task)")
    args = ap.parse_args()

    def one(job: tuple[str, Path, Expectation]) -> dict:
        task_id, path, expect = job
        task_label, candidate_label = _label(task_id, path)
        expected = expect.label
        t0 = time.perf_counter()
        try:
            task = load_task(Path(task_id)) if task_id.endswith(".py") else builtin_task(task_id)
            cfg = expect.config(device=args.device, compile_baseline=not args.no_compile_baseline)
            v = verify(task, path.read_text(), cfg)
        except Exception as exc:  # noqa: BLE001 - a harness crash is a finding, not a reason to stop the sweep
            return {
                "task": task_label, "candidate": candidate_label, "expected": expected, "got": f"HARNESS {exc!r}"[:80],
                "message": "", "wall_s": time.perf_counter() - t0, "stage_times_ms": {}, "sandbox": None, "detail": "",
            }  # fmt: skip
        got = "pass" if v.passed else f"{v.stage.value}/{v.failure.value}"
        return {
            "task": task_label, "candidate": candidate_label, "expected": expected, "got": got, "message": v.message,
            "wall_s": time.perf_counter() - t0, "stage_times_ms": v.stage_times_ms, "sandbox": v.extra.get("sandbox"),
            "detail": v.extra.get("detail", "")[-600:],
        }  # fmt: skip

    rows = []
    with ThreadPoolExecutor(args.jobs) as pool:
        for r in pool.map(one, jobs(args.select)):
            rows.append(r)
            mark = "ok " if r["got"] == r["expected"] else "inc" if r["got"].endswith("inconclusive_on_cpu") else "BAD"
            print(
                f"{mark} {r['wall_s']:5.1f}s {r['task']:16s} {r['candidate']:28s} exp={r['expected']:28s} "
                f"got={r['got']:28s} {r['message'][:110]}",
                flush=True,
            )
    bad = [r for r in rows if r["got"] != r["expected"]]
    print(f"{len(rows) - len(bad)}/{len(rows)} as expected on {args.device}")
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1))
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
