"""Verification throughput and a training step at 1..N GPUs of one host (runs on N=1 too).

    python benchmarks/bench_multi_gpu.py                          # verification at 1, 2, 4, ... up to every GPU
    python benchmarks/bench_multi_gpu.py --gpus 1,2 --repeat 4 --train-model PATH --train-steps 10
    python benchmarks/bench_multi_gpu.py --dry-run                # print the plan, measure nothing

Verification: a mixed batch (the built-in solutions, which pass, and the tests/fixtures/candidates files of the
built-in tasks, most of them known-bad, each with its `# expect:` header) `--repeat` times, verified with
`verify_many(device="cuda", jobs=--jobs)` in a fresh process that sees the first n GPUs (CUDA_VISIBLE_DEVICES), so
the table gives candidates per minute at each n and whether every verdict still met its header. Training: with
`--train-model`, `accelerate launch --num_processes n` of `tritonrl train sft` for `--train-steps` steps per n, and
the trainer's own runtime per step (model loading excluded) next to the wall time.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = ROOT / "tests/fixtures/candidates"


@dataclasses.dataclass(frozen=True)
class Step:
    kind: str  # "verify" or "train"
    gpus: int  # how many GPUs it sees (the first n of the visible ones)


def gpu_counts(spec: str | None, visible: int) -> list[int]:
    """The GPU counts to measure: `spec` ('1,2,4'), else 1, 2, 4, ... and every visible GPU last."""
    if spec:
        counts = sorted({int(x) for x in spec.split(",")})
        if counts[0] < 1 or counts[-1] > max(1, visible):
            raise SystemExit(f"--gpus {spec}: counts must be in 1..{max(1, visible)} (GPUs visible here)")
        return counts
    counts, n = [], 1
    while n < visible:
        counts.append(n)
        n *= 2
    return counts + [max(1, visible)]


def plan(args: argparse.Namespace, visible: int) -> list[Step]:
    counts = gpu_counts(args.gpus, visible)
    steps = [Step("verify", n) for n in counts]
    if args.train_model:
        steps += [Step("train", n) for n in counts]
    return steps


SLOW = ("hang_", "memory_hog")  # fixtures that run into the timeout or the memory watchdog: they measure the limits


def mixed_batch() -> list[tuple[str, Path]]:
    """(task id, candidate file) pairs: every built-in solution, then every fixture of a built-in task whose header
    holds under the default config (no policy/static options) and that does not just wait for a limit."""
    from tritonrl.tasks.loader import builtin_tasks
    from tritonrl.verify.expect import parse_expectation

    tasks = builtin_tasks()
    ids = {t.task_id for t in tasks}
    batch = [(t.task_id, Path(t.solution_path)) for t in tasks if t.solution_path]
    for folder in sorted(p for p in FIXTURES.iterdir() if p.is_dir() and p.name in ids):
        for f in sorted(folder.glob("*.py")):
            text = f.read_text()
            if text.startswith("# expect:") and not parse_expectation(text).options and not f.name.startswith(SLOW):
                batch.append((folder.name, f))
    return batch


def verify_once(repeat: int, jobs: int) -> dict:
    """In the child process: verify the batch on every GPU this process sees; one JSON result."""
    from tritonrl.tasks.loader import builtin_task
    from tritonrl.verify.config import VerifyConfig
    from tritonrl.verify.expect import parse_expectation
    from tritonrl.verify.gpu_lock import batch_devices
    from tritonrl.verify.verifier import verify_many

    batch = mixed_batch() * repeat
    tasks = {t: builtin_task(t) for t, _ in batch}
    items = [(tasks[t], f.read_text()) for t, f in batch]
    cfg = VerifyConfig.for_rewards("cuda")
    t0 = time.perf_counter()
    verdicts = verify_many(items, cfg, jobs=jobs)
    wall = time.perf_counter() - t0
    met = 0
    for (_, f), v in zip(batch, verdicts, strict=True):
        text = f.read_text()
        met += parse_expectation(text).met_by(v) if text.startswith("# expect:") else v.passed
    return {"devices": len(batch_devices("cuda")), "n": len(items), "wall_s": wall, "met": met,
            "passed": sum(v.passed for v in verdicts)}  # fmt: skip


def run_verify(n: int, args: argparse.Namespace, visible_ids: list[str]) -> dict:
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": ",".join(visible_ids[:n])}
    cmd = [sys.executable, __file__, "--_verify-once", "--repeat", str(args.repeat), "--jobs", str(args.jobs)]
    out = subprocess.run(cmd, env=env, capture_output=True, text=True, check=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def run_train(n: int, args: argparse.Namespace, visible_ids: list[str]) -> dict:
    with tempfile.TemporaryDirectory() as out:
        env = {**os.environ, "CUDA_VISIBLE_DEVICES": ",".join(visible_ids[:n])}
        cmd = ["accelerate", "launch", "--config_file", str(args.accelerate_config), "--num_processes", str(n),
               "-m", "tritonrl.cli.main", "train", "sft", "--model", args.train_model, "--out", out,
               "--steps", str(args.train_steps), "--device", "cuda", "--batch-size", str(args.batch_size)]  # fmt: skip
        if args.load_in_4bit:
            cmd.append("--load-in-4bit")
        t0 = time.perf_counter()
        subprocess.run(cmd, env=env, check=True, cwd=ROOT)
        wall = time.perf_counter() - t0
        history = json.loads((Path(out) / "train_log.json").read_text()).get("log_history", [])
    runtime = next((h["train_runtime"] for h in history if "train_runtime" in h), None)
    return {"wall_s": wall, "step_s": runtime / args.train_steps if runtime else None}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--gpus", help="GPU counts to measure, e.g. 1,2,4 (default: 1, 2, 4, ... and all)")
    p.add_argument("--jobs", type=int, default=2, help="verifications at once per GPU")
    p.add_argument("--repeat", type=int, default=2, help="copies of the mixed batch per measurement")
    p.add_argument("--train-model", help="a local model folder: also time `train sft` under accelerate")
    p.add_argument("--train-steps", type=int, default=10)
    p.add_argument("--batch-size", type=int, default=2, help="per-GPU batch of the training step")
    p.add_argument("--load-in-4bit", action="store_true", help="time QLoRA instead of LoRA")
    p.add_argument("--accelerate-config", type=Path, default=ROOT / "configs/accelerate/ddp.yaml")
    p.add_argument("--dry-run", action="store_true", help="print the plan and exit")
    p.add_argument("--_verify-once", action="store_true", help=argparse.SUPPRESS)
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args._verify_once:
        print(json.dumps(verify_once(args.repeat, args.jobs)))
        return 0
    import torch

    visible = torch.cuda.device_count()
    env_ids = [d for d in os.environ.get("CUDA_VISIBLE_DEVICES", "").split(",") if d.strip()]
    visible_ids = env_ids or [str(i) for i in range(visible)]
    steps = plan(args, visible)
    if args.dry_run or not visible:
        print("\n".join(f"{s.kind} on {s.gpus} GPU(s)" for s in steps))
        return 0 if args.dry_run else 1
    rows = []
    for s in steps:
        if s.kind == "verify":
            r = run_verify(s.gpus, args, visible_ids)
            rate = 60 * r["n"] / r["wall_s"]
            rows.append(f"| verify | {s.gpus} | {r['n']} candidates in {r['wall_s']:.1f} s: {rate:.1f}/min | "
                        f"{r['met']}/{r['n']} verdicts as expected, on {r['devices']} device(s) |")  # fmt: skip
        else:
            r = run_train(s.gpus, args, visible_ids)
            step = f"{r['step_s']:.3f} s/step" if r["step_s"] else "no train_runtime logged"
            rows.append(f"| train sft | {s.gpus} | {step} | wall {r['wall_s']:.1f} s for {args.train_steps} steps |")
        print(rows[-1], flush=True)
    print(f"\n{torch.cuda.get_device_name(0)} x{visible}, jobs {args.jobs}/GPU, batch x{args.repeat}\n")
    print("| what | GPUs | throughput | notes |\n|---|---|---|---|")
    print("\n".join(rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
