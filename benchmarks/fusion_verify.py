"""Verify the template solutions of generated fusion tasks with the real verifier, in parallel.

    python benchmarks/fusion_verify.py --n 500 --device cpu --jobs 2 --out fusion_cpu.jsonl
    python benchmarks/fusion_verify.py --n 500 --device cuda --jobs 4 --out fusion_h100.jsonl

Generates the first N tasks of `generate_fusion_tasks(N, seed)` (a prefix of any larger N), verifies every solution
with `verify(task, solution, VerifyConfig(device=...))` in a process pool (each verification also starts its own
sandboxed worker), appends one JSON line per task to --out (--resume skips task ids already there), and prints the
share verified, pass rates by family and dtype, and the failures grouped by (op chain, failure kind).
On a 2-core CPU each task costs a few seconds of Triton interpreter time; on a GPU the tasks run at their real sizes.
"""

from __future__ import annotations

import argparse
import collections
import concurrent.futures as cf
import json
import multiprocessing
import sys
import time
from pathlib import Path


def _verify_one(item: tuple) -> dict:
    from tritonrl.verify.config import VerifyConfig
    from tritonrl.verify.funnel import verify

    task, solution, info, device, timeout_s = item
    t0 = time.perf_counter()
    record = {"task_id": task.task_id, **info}
    try:
        verdict = verify(task, solution, VerifyConfig(device=device, timeout_s=timeout_s))
    except Exception as e:  # noqa: BLE001 - an infrastructure error is a result row here, not the end of the sweep
        return record | {"passed": False, "stage": "infrastructure", "failure": type(e).__name__,
                         "message": str(e)[:500], "wall_s": round(time.perf_counter() - t0, 2)}  # fmt: skip
    return record | {
        "passed": verdict.passed,
        "stage": str(verdict.stage.value if hasattr(verdict.stage, "value") else verdict.stage),
        "failure": None if verdict.failure is None else str(getattr(verdict.failure, "value", verdict.failure)),
        "message": verdict.message[:500],
        "wall_s": round(time.perf_counter() - t0, 2),
        "forward_s": round(verdict.stage_times_ms.get("worker_forward", 0.0) / 1e3, 2),  # all candidate forwards
    }


def _items(n: int, seed: int, device: str, timeout_s: float, skip: set[str]) -> list[tuple]:
    from tritonrl.data.fusion.spec import generate_fusion_tasks

    items = []
    for g in generate_fusion_tasks(n, seed):
        if g.task.task_id in skip:
            continue
        info = {"family": g.spec["family"], "dtype": g.spec["dtype"], "ops": g.spec["ops"], "difficulty": g.difficulty}
        items.append((g.task, g.solution, info, device, timeout_s))
    return items


def _done_ids(path: Path) -> set[str]:
    if not path.is_file():
        return set()
    return {json.loads(line)["task_id"] for line in path.read_text().splitlines() if line.strip()}


def summarize(records: list[dict]) -> str:
    """Markdown: the share verified, pass rates by family x dtype, failures by (op chain, failure kind)."""
    n, ok = len(records), sum(r["passed"] for r in records)
    out = [f"verified {ok} of {n} ({100.0 * ok / max(n, 1):.1f}%)", ""]
    out += ["| family | dtype | tasks | verified |", "|---|---|---|---|"]
    groups: dict[tuple[str, str], list[dict]] = collections.defaultdict(list)
    for r in records:
        groups[(r["family"], r["dtype"])].append(r)
    for (family, dtype), rs in sorted(groups.items()):
        out.append(f"| {family} | {dtype} | {len(rs)} | {sum(r['passed'] for r in rs)} |")
    kinds = collections.Counter(r["failure"] or r["stage"] for r in records if not r["passed"])
    out += ["", "failures by kind: " + (", ".join(f"{k} {c}" for k, c in kinds.most_common()) or "none")]
    fails = collections.Counter((" -> ".join(r["ops"]), r["dtype"], r["failure"] or r["stage"])
                                for r in records if not r["passed"])  # fmt: skip
    if fails:
        out += ["", "| op chain | dtype | failure kind | count | first message |", "|---|---|---|---|---|"]
        first = {}
        for r in records:
            if not r["passed"]:
                first.setdefault((" -> ".join(r["ops"]), r["dtype"], r["failure"] or r["stage"]), r["message"])
        for key, count in fails.most_common():
            out.append(f"| {key[0]} | {key[1]} | {key[2]} | {count} | {first[key][:160].replace('|', '/')} |")
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=500, help="tasks to generate and verify (the first N for this seed)")
    ap.add_argument("--seed", type=int, default=0, help="generator seed")
    ap.add_argument("--device", default="cpu", help="cpu (Triton interpreter), cuda or cuda:N")
    ap.add_argument("--jobs", type=int, default=2, help="verifications in flight (each also runs a sandbox worker)")
    ap.add_argument("--timeout-s", type=float, default=180.0, help="per-verification worker timeout")
    ap.add_argument("--out", type=Path, default=Path("fusion_verify.jsonl"), help="JSONL of per-task results")
    ap.add_argument("--resume", action="store_true", help="skip task ids already in --out and append")
    args = ap.parse_args(argv)
    if not args.resume and args.out.exists():
        args.out.unlink()
    items = _items(args.n, args.seed, args.device, args.timeout_s, _done_ids(args.out) if args.resume else set())
    print(f"verifying {len(items)} tasks on {args.device} with {args.jobs} jobs -> {args.out}", file=sys.stderr)
    t0 = time.perf_counter()
    # spawn: a forked child of a parent that touched CUDA cannot use it; each child imports torch once.
    ctx = multiprocessing.get_context("spawn")
    with cf.ProcessPoolExecutor(max_workers=args.jobs, mp_context=ctx) as pool, args.out.open("a") as sink:
        futures = [pool.submit(_verify_one, item) for item in items]
        for i, future in enumerate(cf.as_completed(futures), 1):
            record = future.result()
            sink.write(json.dumps(record) + "\n")
            sink.flush()
            mark = "ok " if record["passed"] else f"FAIL {record['failure'] or record['stage']}"
            print(f"[{i}/{len(items)}] {mark} {record['task_id']} ({record['wall_s']} s)", file=sys.stderr)
    records = [json.loads(line) for line in args.out.read_text().splitlines() if line.strip()]
    print(f"device {args.device}, seed {args.seed}, wall {time.perf_counter() - t0:.0f} s")
    print(summarize(records))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
