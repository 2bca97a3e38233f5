"""GPU timing benchmarks (issue 3): precision, A/A bias, throughput, timing cost. Run on a CUDA machine:

    python benchmarks/bench_timing_gpu.py precision --processes 8
    python benchmarks/bench_timing_gpu.py throughput --n 60 --jobs 8
    python benchmarks/bench_timing_gpu.py --out kb.json kernelbench --kernelbench kb --ours --procs 1 8

precision: for a ~4 us, a ~50 us and a ~1 ms problem, in N fresh processes each: (1) the speedup of the built-in
Triton solution over the PyTorch reference and (2) A/A, the solution timed against itself, both with the timing
code the sandboxed worker runs (`timing.measure_pair`: interleaved, flushed, adaptive reps, CUDA graphs when
launch-bound). Reports mean, CV and worst |1 - x| over processes; A/A's ideal is 1.000.
throughput: a mixed batch (built-in solutions reaching timing, known-bad fixtures failing early) through
`verify_many` on one GPU: candidates per minute and where the time goes (median of each stage, and a lock timeline:
seconds the GPU was held exclusive/shared/not at all, thread-seconds waiting, timings per exclusive window, the
parent's most-sampled frames; CPU seconds of the parent and of the workers, and how busy the machine's cores were).
`--parents P` splits the batch over P verifier processes started at once: is one parent process the bound?
kernelbench: KernelBench's own `eval_kernel_against_ref` (bench_kernelbench.py) on the same batch, with 1 and with 8
worker processes, after ours (--ours) in the same call: wall, candidates/min, good ones accepted, bad fixtures
accepted (false accepts) and each candidate's error. --dry-run does everything short of the GPU.
"""

from __future__ import annotations

import argparse
import collections
import itertools
import json
import logging
import os
import resource
import signal
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from tritonrl.tasks.loader import builtin_task, load_task  # noqa: E402
from tritonrl.tasks.schema import Task  # noqa: E402
from tritonrl.verify.config import VerifyConfig  # noqa: E402
from tritonrl.verify.funnel import verify  # noqa: E402

SOL = ROOT / "src/tritonrl/tasks/builtin/solutions"
# (label, task id, size overrides): sizes chosen for ~4 us, ~50 us and ~1 ms on an H100.
PROBLEMS = [
    ("add 4096 fp32 (~4 us)", "vector_add", {"n_elements": 4096}),
    ("softmax 4096x4096 (~50 us)", "softmax", {"batch_size": 4096, "dim": 4096}),
    ("matmul 1024x4096x2048 ieee (~1 ms)", "matmul", {}),
]

CHILD = r"""
import importlib.util, json, statistics, sys, time, torch
sys.path.insert(0, sys.argv[1] + "/src")
from tritonrl.tasks.loader import load_task
from tritonrl.tasks.reference import ReferenceProgram
from tritonrl.verify.messages import TimingParams
from tritonrl.verify.worker.timing import measure_pair
task = load_task(sys.argv[2], task_id=sys.argv[3]); sol = sys.argv[4]; n_sets = int(sys.argv[5])
spec = importlib.util.spec_from_file_location("sol", sol); mod = importlib.util.module_from_spec(spec)
spec.loader.exec_module(mod)
prog = ReferenceProgram(task); ref = prog.make_model(0).cuda(); cand = mod.ModelNew(*prog.get_init_inputs()).cuda()
sets = []
for s in range(n_sets):
    torch.manual_seed(s); sets.append([x.cuda() for x in prog.get_inputs()])
out = {}
with torch.no_grad():
    for name, fns in (("pair", (ref, cand)), ("aa", (cand, cand))):
        t0 = time.perf_counter()
        raw = measure_pair(torch, (lambda j: fns[0](*sets[j]), lambda j: fns[1](*sets[j])), n_sets, TimingParams())
        out[name] = statistics.median(raw["ref_us"]) / statistics.median(raw["cand_us"])
        out[name + "_s"] = time.perf_counter() - t0
        out[name + "_us"] = statistics.median(raw["cand_us"]); out["mode"] = raw["mode"]
print(json.dumps(out))
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
    """Each of N fresh processes times the pair (reference, solution) and A/A (solution, solution) with the
    verifier's protocol (`timing.measure_pair`, the code the worker runs)."""
    out = {}
    for label, task_id, sizes in PROBLEMS:
        if args.only and args.only not in label:
            continue
        task, _ = sized_task(task_id, sizes)
        runs = []
        for _ in range(args.processes):
            cmd = [
                sys.executable,
                "-c",
                CHILD,
                str(ROOT),
                task.source,
                task_id,
                str(SOL / f"{task_id}.py"),
                str(args.sets),
            ]
            res = subprocess.run(cmd, capture_output=True, text=True, check=True)
            runs.append(json.loads(res.stdout.strip().splitlines()[-1]))
        out[label] = {
            "speedup": summarise([r["pair"] for r in runs]),
            "cand_us_median": round(statistics.median(r["pair_us"] for r in runs), 2),
            "mode": sorted({r["mode"] for r in runs}),
            "timing_s_per_pair_median": round(statistics.median(r["pair_s"] for r in runs), 3),
            "aa_ratio": summarise([r["aa"] for r in runs]),
            "aa_bias_pct": round(100 * (statistics.fmean(r["aa"] for r in runs) - 1), 3),
            "input_sets": args.sets,
        }
        print(label, json.dumps(out[label]), flush=True)
    return out


LOGGERS = ("tritonrl.verify.funnel", "tritonrl.verify.gpu_lock")


class Timeline(logging.Handler):
    """Collects the funnel's "gpu hold: ..." debug records (time, thread, state) and samples every thread's stack
    every 50 ms, to say where a batch's wall time goes: holding the GPU shared or exclusive, waiting, or neither."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.events: list[tuple[float, int, str]] = []
        self.windows: list[tuple[float, str]] = []  # gpu_lock's "window opens for N timings" / "window closes"
        self.samples: collections.Counter[str] = collections.Counter()
        self._stop = threading.Event()
        self._sampler = threading.Thread(target=self._sample, daemon=True)

    def emit(self, record: logging.LogRecord) -> None:
        msg = record.getMessage()
        if msg.startswith("gpu hold: "):
            self.events.append((record.created, record.thread, msg[10:]))
        elif msg.startswith("window "):
            self.windows.append((record.created, msg))

    def __enter__(self) -> Timeline:
        for name in LOGGERS:
            logging.getLogger(name).setLevel(logging.DEBUG)
            logging.getLogger(name).addHandler(self)
        self._sampler.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for name in LOGGERS:
            logging.getLogger(name).removeHandler(self)

    def _sample(self) -> None:
        me = threading.get_ident()
        while not self._stop.wait(0.05):
            for tid, frame in sys._current_frames().items():  # noqa: SLF001 - a sampling profiler's one way in
                if tid != me:
                    code = frame.f_code
                    self.samples[f"{Path(code.co_filename).name}:{code.co_name}"] += 1

    def summary(self, t0: float, t1: float) -> dict:
        """Seconds of the batch with the GPU held exclusive, held shared (only), and free; seconds threads spent
        waiting for each kind of hold; the 15 most-sampled innermost frames."""
        state: dict[int, str] = {}
        spans = {"exclusive": 0.0, "shared_only": 0.0, "free": 0.0}
        waits = {"asking": 0.0, "waiting": 0.0}
        last = t0
        for t, thread, what in sorted(self.events) + [(t1, 0, "end")]:
            dt = max(0.0, t - last)
            held = set(state.values())
            spans["exclusive" if "exclusive" in held else "shared_only" if "shared" in held else "free"] += dt
            for kind in waits:
                waits[kind] += dt * sum(1 for s in state.values() if s == kind)
            last = t
            if what in ("released", "end"):
                state.pop(thread, None)
            else:
                state[thread] = what
        opened = [int(m.split()[3]) for _, m in self.windows if m.startswith("window opens")]
        return {
            "gpu_s": {k: round(v, 1) for k, v in spans.items()},
            "thread_wait_s": {"for_shared": round(waits["asking"], 1), "for_exclusive": round(waits["waiting"], 1)},
            "exclusive_grants": sum(1 for e in self.events if e[2] == "exclusive"),
            "windows": len(opened),
            "timings_queued_at_window_open": opened,
            "events": [(round(t - t0, 3), thread % 100000, what) for t, thread, what in sorted(self.events)],
            "window_events": [(round(t - t0, 3), m) for t, m in sorted(self.windows)],
            "top_frames": self.samples.most_common(15),
        }


def cpu_ticks() -> tuple[int, int]:
    """(busy, total) jiffies of all cores since boot (/proc/stat; (0, 0) where there is none)."""
    try:
        fields = [int(x) for x in Path("/proc/stat").read_text().split("\n")[0].split()[1:]]
    except OSError:
        return 0, 0
    idle = fields[3] + fields[4]  # idle + iowait
    return sum(fields) - idle, sum(fields)


def mixed_batch(n: int, copies: int) -> list[tuple[str, bool, Task, str]]:
    """throughput's batch as (name, good, task, text): n // 2 built-in solutions ("relu#1": copy 1, taken in turn
    until `copies` of each) and the known-bad fixtures that fail early ("relu/aten_direct"), n in all, alternating,
    so every prefix has the batch's mix (a harness cut by a time limit still gives a fair rate)."""
    fixtures = sorted((ROOT / "tests/fixtures/candidates").glob("*/*.py"))
    slow = ("expect: pass", "timeout", "memory_limit", "output_limit")  # the batch wants early failures
    bad = [(f"{p.parent.name}/{p.stem}", False, builtin_task(p.parent.name), p.read_text()) for p in fixtures
           if not any(w in p.read_text().split("\n")[0] for w in slow)]  # fmt: skip
    solutions = sorted(SOL.glob("*.py"))
    good = [(f"{p.stem}#{k}", True, builtin_task(p.stem), p.read_text()) for k in range(copies) for p in solutions]
    good, bad = good[: n // 2], bad[: n - n // 2]
    return [x for pair in itertools.zip_longest(good, bad) for x in pair if x is not None]


def zygote_cpu_s() -> float:
    """CPU seconds of the live fork servers and of the workers they forked and reaped (/proc/PID/stat utime, stime,
    cutime, cstime): forked workers are not this process's children, so RUSAGE_CHILDREN misses them."""
    from tritonrl.verify.forkserver import server_pids

    total = 0.0
    for pid in server_pids():
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += sum(int(x) for x in fields[11:15]) / os.sysconf("SC_CLK_TCK")
    return total


def throughput(args: argparse.Namespace, batch: list[tuple[str, bool, Task, str]] | None = None) -> dict:
    from tritonrl.verify.verifier import verify_many

    batch = batch if batch is not None else mixed_batch(args.n, args.copies)
    cfg = VerifyConfig(device=getattr(args, "device", "cuda"), compile_baseline=False)
    k, of = (int(x) for x in getattr(args, "slice", "0/1").split("/"))
    if of == 1:
        verify(batch[0][2], batch[0][3], cfg)  # ceilings calibrated once (cached on disk), outside the measured batch
    if getattr(args, "parents", 1) > 1:
        return parents(args)
    batch = batch[k::of]
    items = [(task, text) for _, _, task, text in batch]
    t0, cpu0, epoch0 = time.perf_counter(), time.process_time(), time.time()
    children0, ticks0, zygotes0 = resource.getrusage(resource.RUSAGE_CHILDREN), cpu_ticks(), zygote_cpu_s()
    rows: list[dict] = []  # one per verdict, in the order they came

    def progress(index: int, verdict) -> None:  # noqa: ANN001
        at_s = time.perf_counter() - t0
        rows.append({"name": batch[index][0], "stage": verdict.stage.value, "passed": verdict.passed, "at_s": at_s})
        print(f"[{at_s:6.1f} s] {len(rows)}/{len(items)} {verdict.task_id}: {verdict.stage.value}", flush=True)

    def cut(signum: int, frame: object) -> None:  # `timeout` sends SIGTERM, Ctrl-C SIGINT: keep what was measured
        partial = {"partial": True, "candidates": len(items), "jobs": args.jobs, "verdicts": len(rows),
                   "per_minute_so_far": round(60 * len(rows) / rows[-1]["at_s"], 1) if rows else None, "rows": rows,
                   "timeline": timeline.summary(wall0, time.time())}  # fmt: skip
        if getattr(args, "out", None):
            Path(args.out).write_text(json.dumps(partial, indent=1))
        print(json.dumps({k: v for k, v in partial.items() if k != "rows"}, indent=1), flush=True)
        raise KeyboardInterrupt

    with Timeline() as timeline:
        wall0 = time.time()
        previous = {sig: signal.signal(sig, cut) for sig in (signal.SIGTERM, signal.SIGINT)}
        try:
            verdicts = verify_many(items, cfg, jobs=args.jobs, on_verdict=progress, fork_server=not args.spawn)
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
        wall1 = time.time()
    wall = time.perf_counter() - t0
    parent_cpu_s = time.process_time() - cpu0
    children = resource.getrusage(resource.RUSAGE_CHILDREN)  # the workers, once reaped: their CPU beside ours
    ticks = [b - a for a, b in zip(ticks0, cpu_ticks(), strict=True)]
    workers_cpu_s = children.ru_utime + children.ru_stime - children0.ru_utime - children0.ru_stime
    workers_cpu_s += zygote_cpu_s() - zygotes0  # forked workers are the fork server's children, reaped by it
    stages: dict[str, list[float]] = {}
    for v in verdicts:
        for k, ms in v.stage_times_ms.items():
            stages.setdefault(k, []).append(ms)
    timed = [v for v in verdicts if v.speedup is not None]
    result = {
        "candidates": len(items), "jobs": args.jobs, "fork_server": not args.spawn,
        "wall_s": round(wall, 1), "epochs": [epoch0, time.time()],
        "per_minute": round(60 * len(items) / wall, 1), "reached_timing": len(timed),
        "passed": sum(v.passed for v in verdicts),
        "accepted_good": sum(v.passed for (_, good, _, _), v in zip(batch, verdicts, strict=True) if good),
        "accepted_bad": [name for (name, good, _, _), v in zip(batch, verdicts, strict=True) if not good and v.passed],
        "stage_ms_median": {k: round(statistics.median(v), 1) for k, v in sorted(stages.items())},
        "honest_rejected": [
            {"task": v.task_id, "stage": v.stage.value, "failure": v.failure.value, "message": v.message[:300]}
            for (_, good, _, _), v in zip(batch, verdicts, strict=True)
            if good and not v.passed
        ],
        "parent_cpu_s": round(parent_cpu_s, 1), "workers_cpu_s": round(workers_cpu_s, 1), "cpus": os.cpu_count(),
        "machine_cpu_busy": round(ticks[0] / ticks[1], 3) if ticks[1] else None,
        "timeline": timeline.summary(wall0, wall1),
        "timing_ms_per_timed_candidate": round(statistics.median([v.stage_times_ms["timing"] for v in timed]), 1)
        if timed else None,
    }  # fmt: skip
    print(json.dumps(result, indent=1), flush=True)
    return result


def parents(args: argparse.Namespace) -> dict:
    """The batch split over `args.parents` verifier processes started at once (each `--jobs / parents` workers, the
    slice k::parents): is the parent process (its GIL, its host work) what bounds one process's throughput?"""
    n, jobs = args.parents, max(1, args.jobs // args.parents)
    outs = [Path(f"{args.out or 'throughput.json'}.part{k}") for k in range(n)]
    common = ["--n", str(args.n), "--copies", str(args.copies), "--jobs", str(jobs), "--device", args.device]
    common += ["--spawn"] if args.spawn else []
    procs = [subprocess.Popen([sys.executable, __file__, "--out", str(o), "throughput", *common, "--slice", f"{k}/{n}"])
             for k, o in enumerate(outs)]  # fmt: skip
    codes = [p.wait() for p in procs]
    parts = [json.loads(o.read_text()) for o in outs if o.exists()]
    if codes != [0] * n or len(parts) != n:
        raise SystemExit(f"a slice failed: exit codes {codes}, {len(parts)} of {n} results")
    wall = max(p["epochs"][1] for p in parts) - min(p["epochs"][0] for p in parts)
    total = sum(p["candidates"] for p in parts)
    result = {"parents": n, "jobs_each": jobs, "candidates": total, "wall_s": round(wall, 1),
              "per_minute": round(60 * total / wall, 1), "passed": sum(p["passed"] for p in parts),
              "accepted_bad": [b for p in parts for b in p["accepted_bad"]],
              "honest_rejected": [h for p in parts for h in p["honest_rejected"]],
              "parent_cpu_s": [p["parent_cpu_s"] for p in parts], "slices": parts}  # fmt: skip
    print(json.dumps({k: v for k, v in result.items() if k != "slices"}, indent=1), flush=True)
    return result


def kernelbench(args: argparse.Namespace, result: dict, save: Callable[[], None]) -> None:
    """KernelBench's harness on throughput's batch, once per --procs value, after ours (--ours) in the same call.
    Each part lands in `result` and is saved as soon as it ends, so a call cut by its time limit keeps the rest."""
    import bench_kernelbench as kb

    batch = [b for b in mixed_batch(args.n, args.copies) if b[0] not in args.exclude]
    cands = [kb.Candidate(name, good, task.source, text) for name, good, task, text in batch]
    opts = kb.Options(args.correct_trials, args.perf_trials, not args.no_perf, args.timeout_s)
    # rev-parse walks up to an enclosing repository (the checkout carried inside ours has no .git of its own): its
    # HEAD is the checkout's only when the checkout is that repository's top level.
    top = subprocess.run(["git", "-C", str(args.kernelbench), "rev-parse", "--show-toplevel", "HEAD"],
                         capture_output=True, text=True).stdout.split()  # fmt: skip
    own = len(top) == 2 and Path(top[0]).resolve() == Path(args.kernelbench).resolve()
    result["kernelbench"] = {"path": str(args.kernelbench), "commit": args.kb_commit or (top[1] if own else None),
                             "excluded": args.exclude, "imports": kb.import_report(args.kernelbench)}  # fmt: skip
    if args.dry_run:
        result["plan"] = kb.dry_run(args.kernelbench, cands, opts)
        return
    missing = result["kernelbench"]["imports"]["missing"]
    if args.ours:
        result["ours"] = throughput(args, batch)
        save()
    for procs in args.procs:
        key = f"kernelbench_{procs}proc"
        try:
            if missing:
                raise kb.KernelBenchUnavailable(f"KernelBench's eval path imports modules missing here: {missing}")
            result[key] = kb.run(args.kernelbench, cands, procs, opts, progress=lambda m: print(m, flush=True))
        except kb.KernelBenchUnavailable as exc:
            result[key] = {"error": str(exc)}
        print(key, json.dumps({k: v for k, v in result[key].items() if k != "per_candidate"}, indent=1), flush=True)
        save()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("precision")
    p.add_argument("--processes", type=int, default=8)
    p.add_argument("--sets", type=int, default=3, help="input sets, each at its own address, cycled through")
    p.add_argument("--only", default="", help="only the problems whose label contains this")
    t = sub.add_parser("throughput")
    k = sub.add_parser("kernelbench", help="KernelBench's eval_kernel_against_ref on throughput's batch")
    for q, n in ((t, 120), (k, 60)):
        q.add_argument("--n", type=int, default=n, help="candidates in the batch (half honest, half failing)")
        q.add_argument("--copies", type=int, default=6)
        q.add_argument("--jobs", type=int, default=8, help="our verifier's workers (throughput, --ours)")
        workers = q.add_mutually_exclusive_group()
        workers.add_argument(
            "--fork-server",
            action="store_true",
            help="no effect: forked workers are the default (the Verifier's); kept so that recorded commands still run",
        )
        workers.add_argument("--spawn", action="store_true", help="start an interpreter per worker instead")
    t.add_argument("--parents", type=int, default=1, help="split the batch over this many verifier processes")
    t.add_argument("--device", default="cuda", help="cuda, or cpu for a smoke run of this script")
    t.add_argument("--slice", default="0/1", help="k/P: verify only batch[k::P] (what --parents runs)")
    k.add_argument("--kernelbench", type=Path, required=True, help="a KernelBench checkout (the eval module in src/)")
    k.add_argument("--kb-commit", default=None, help="recorded as the commit (else `git rev-parse` in the checkout)")
    k.add_argument("--procs", type=int, nargs="+", default=[1, 8], help="KernelBench worker processes; a run each")
    k.add_argument("--ours", action="store_true", help="first run `throughput` on the same batch, in this command")
    k.add_argument("--timeout-s", type=float, default=120.0, help="per candidate; a timeout counts as rejected")
    k.add_argument("--correct-trials", type=int, default=5, help="KernelBench's num_correct_trials")
    k.add_argument("--perf-trials", type=int, default=100, help="KernelBench's num_perf_trials")
    k.add_argument("--no-perf", action="store_true", help="measure_performance=False (correctness only)")
    k.add_argument("--exclude", nargs="*", default=[], help="candidate names left out of every part")
    k.add_argument("--dry-run", action="store_true", help="CPU only: build the batch, import and bind, print the plan")
    ap.add_argument("--out", type=Path, default=None, help="write the JSON result here")
    args = ap.parse_args()
    result: dict = {}

    def save() -> None:
        if args.out:
            args.out.write_text(json.dumps(result, indent=1))

    if not getattr(args, "dry_run", False):
        import torch

        gpu = torch.cuda.get_device_name() if torch.cuda.is_available() else None
        result |= {"gpu": gpu, "torch": torch.__version__}
    if args.cmd == "kernelbench":
        kernelbench(args, result, save)
        if args.dry_run:
            print(json.dumps(result, indent=1))
    else:
        result.update(precision(args) if args.cmd == "precision" else throughput(args))
    save()


if __name__ == "__main__":
    main()
