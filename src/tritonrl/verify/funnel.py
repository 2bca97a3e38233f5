"""The verification funnel: extract -> parse -> static -> load -> provenance -> correctness (-> timing on GPU).

Cheap parent-side stages run first and stop at the first failure. Then the worker process is started (its ~1.5 s
interpreter start overlaps with the parent computing reference outputs), or taken warm from a `WorkerPool`, the
request is sent, and every frame the worker streams back is judged as it arrives; the first certain failure kills the
worker. On cuda, inputs are drawn on the host first; the GPU is then held shared for the reference runs, and for
each step of the worker that may use it (`GpuAsk` .. `GpuFree`: the import, each construction, each case), so a
queued timing waits for one step, not a whole correctness phase; when every case is judged correct the parent takes
the GPU exclusively and lets the worker time (`timing.py` in the worker, `timing_stats.py` here), holding it until
the worker has exited. A candidate's failure is a Verdict; only infrastructure problems (a broken task, a worker that
cannot start) raise.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import secrets
import time
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING

from tritonrl.errors import WorkerLostError
from tritonrl.tasks.schema import Task
from tritonrl.tasks.shapes import ShapePlan, plan_shapes_cached
from tritonrl.types import Failure, FailureKind, Stage, StageOutcome, TimingReport, Verdict, candidate_sha256
from tritonrl.verify import calibration
from tritonrl.verify.cases import Seeds, draw_cases, ghost_informative, request_shapes, run_cases
from tritonrl.verify.config import VerifyConfig
from tritonrl.verify.extract import extract_code, parse_candidate, strip_main_guard
from tritonrl.verify.gpu_lock import GpuLock
from tritonrl.verify.judge import Judge
from tritonrl.verify.messages import (
    AwaitTiming,
    GpuAsk,
    GpuFree,
    GpuGo,
    Limits,
    Ready,
    Request,
    TimingFrame,
    TimingGo,
    TimingParams,
    TimingRequest,
)
from tritonrl.verify.provenance import POLICIES
from tritonrl.verify.sandbox import MODULE_NAMES, WorkerProcess
from tritonrl.verify.static_checks import run_static_checks
from tritonrl.verify.timing_cases import TimingSets, draw_timing, run_timing, timing_request, timing_slots
from tritonrl.verify.timing_stats import judge_timing

if TYPE_CHECKING:
    from tritonrl.verify.pool import WorkerPool

log = logging.getLogger(__name__)

# Workers replaced per verification when one ends before it is ready (seen once on an H100, under py-spy:
# docs/benchmarks.md 9c); one more loss raises WorkerLostError.
MAX_LOST_WORKERS = 1


def plan_for(task: Task, cfg: VerifyConfig) -> ShapePlan:
    """The (cached) shape plan of a task under this config."""
    return plan_shapes_cached(task, device=cfg.device, n_variants=cfg.n_variants, max_numel=cfg.max_numel)


class _Clock:
    def __init__(self) -> None:
        self.times: dict[str, float] = {}
        self._t = time.perf_counter()

    def lap(self, name: str) -> None:
        now = time.perf_counter()
        self.times[name] = round(self.times.get(name, 0.0) + (now - self._t) * 1e3, 3)
        self._t = now


def verify(
    task: Task,
    candidate: str,
    cfg: VerifyConfig | None = None,
    *,
    pool: WorkerPool | None = None,
    replay: Mapping[str, Mapping[str, int]] | None = None,
) -> Verdict:
    """Verify one candidate (a .py text or a raw LLM completion) against one task. `pool`: take a pre-started worker
    from it (`verify/pool.py`; the `Verifier` does this for batches). `replay`: the `extra["seeds"]` of an earlier
    verdict of this task and config, to draw exactly its cases again (`cases.Seeds`)."""
    screened = screen(task, candidate, cfg)
    return screened if isinstance(screened, Verdict) else sandboxed(screened, pool=pool, replay=replay)


@dataclasses.dataclass(frozen=True)
class Screened:
    """A candidate that passed the host-side stages (extract, parse, static) and needs the sandbox next."""

    task: Task
    code: str
    cfg: VerifyConfig
    clock: _Clock
    base: dict
    warnings: tuple[str, ...]


def screen(task: Task, candidate: str, cfg: VerifyConfig | None = None) -> Verdict | Screened:
    """The host-side stages, milliseconds, no worker: a rejection's verdict, or what the sandbox stage needs. The
    `Verifier` screens as it is handed work, so it knows how many workers the queue will really take."""
    cfg = cfg or VerifyConfig()
    clock = _Clock()
    digest = candidate_sha256(candidate)
    base = {"task_id": task.task_id, "device": cfg.device, "candidate_sha256": digest}

    def rejected(outcome: StageOutcome, warnings: tuple[str, ...] = ()) -> Verdict:
        return Verdict(
            **base,
            passed=False,
            stage=outcome.stage,
            failure=outcome.failure,
            message=outcome.message,
            static_warnings=warnings,
            stage_times_ms=clock.times,
        )

    stage = Stage.EXTRACT
    try:  # the parent-side stages walk candidate-shaped ASTs: absurd nesting must become a verdict, not a crash
        code, outcome = extract_code(candidate)
        clock.lap("extract")
        if code is None:
            return rejected(outcome)
        stage = Stage.PARSE
        tree, outcome = parse_candidate(code, task)
        clock.lap("parse")
        if tree is None:
            return rejected(outcome)
        code, tree = strip_main_guard(code, tree)
        warnings: tuple[str, ...] = ()
        if cfg.static_checks:
            stage = Stage.STATIC
            outcome = run_static_checks(tree, code, policy=cfg.policy)
            clock.lap("static")
            warnings = outcome.warnings
            if not outcome.ok:
                return rejected(outcome, warnings)
    except (RecursionError, MemoryError):
        why = "the code is nested too deeply to analyse"
        return rejected(StageOutcome(stage, ok=False, failure=FailureKind.FORBIDDEN_CONSTRUCT, message=why))
    return Screened(task, code, cfg, clock, base, warnings)


def sandboxed(
    screened: Screened,
    *,
    pool: WorkerPool | None = None,
    replay: Mapping[str, Mapping[str, int]] | None = None,
    cfg: VerifyConfig | None = None,
) -> Verdict:
    """The sandboxed stages of a screened candidate. `cfg`: the same config on another device (a `Verifier` picks
    the device when a slot frees, after screening)."""
    s = screened
    cfg = cfg or s.cfg
    base = {**s.base, "device": cfg.device}
    return _run_sandboxed(s.task, s.code, cfg, s.clock, base, s.warnings, pool, Seeds(replay))


class _GpuHold:
    """The GPU lock as this verification moves through it: shared for correctness, exclusive for timing. Each
    transition is logged at debug level ("gpu hold: ..."): benchmarks/bench_timing_gpu.py draws the lock timeline
    from these records."""

    def __init__(self, cfg: VerifyConfig) -> None:
        self.lock = GpuLock(cfg.device) if cfg.is_cuda else None
        self.stack = contextlib.ExitStack()
        self.held: str | None = None

    def shared(self) -> float:
        """Hold the GPU shared (kept if already held); returns the seconds waited."""
        if self.lock is None or self.held is not None:
            return 0.0
        t0 = time.monotonic()
        log.debug("gpu hold: asking")
        self.stack.enter_context(self.lock.shared())
        self._now("shared")
        return time.monotonic() - t0

    def exclusive(self) -> float:
        """Trade the shared hold for an exclusive one; returns the seconds waited."""
        if self.lock is None:
            return 0.0
        self.release()
        log.debug("gpu hold: waiting")
        waited = self.stack.enter_context(self.lock.exclusive())
        self._now("exclusive")
        return waited

    def release(self) -> None:
        self.stack.close()
        if self.held is not None:
            self._now(None)

    def _now(self, held: str | None) -> None:
        self.held = held
        log.debug("gpu hold: %s", held or "released")


def _run_sandboxed(
    task: Task, code: str, cfg: VerifyConfig, clock: _Clock, base: dict, warnings: tuple[str, ...],
    pool: WorkerPool | None, seeds: Seeds,
) -> Verdict:  # fmt: skip
    hold = _GpuHold(cfg)
    proc = _worker(code, cfg, pool)  # started first: its interpreter start overlaps our planning
    try:
        clock.lap("spawn")
        plan = plan_for(task, cfg)
        clock.lap("plan")
        baseline = _baselines(task, plan.base, cfg)  # before any GPU hold: a calibration takes the GPU exclusively
        clock.lap("calibration")
        # Seeds, parameters and inputs are drawn on the host before the GPU is held: under the hold they lengthen
        # the drain every queued timing waits for (H100 batch, docs/benchmarks.md 4b: drawing under the hold, the
        # GPU sat held shared for 85% of the batch; drawn first, the batch verified 25% more candidates a minute).
        drawn = draw_cases(task, plan, cfg, seeds)
        drawn_timing = draw_timing(drawn[0], cfg, seeds) if cfg.times else None
        clock.lap("draw")
        proc.wait_warm()  # its start-up (~4 s on a GPU) overlaps other candidates' GPU work, not under our hold
        clock.lap("worker_warm")
        hold.shared()
        clock.lap("gpu_wait_shared")
        shapes, notes, uses_matmul = run_cases(drawn, plan, cfg)
        sets = run_timing(drawn_timing, cfg) if drawn_timing is not None else None
        hold.release()  # the worker asks for the GPU step by step (`Request.gpu_steps`)
        del drawn, drawn_timing
        clock.lap("reference")
        policy = POLICIES[cfg.policy]
        ghost = cfg.ghost_replay and policy.require_dependence and ghost_informative(shapes[0].cases[0])
        if cfg.ghost_replay and not ghost:
            notes.append("ghost replay skipped: on every case some reference output equals an input")
        timing = None
        if sets is not None:
            timing = timing_request(task, shapes[0], sets, _timing_params(cfg), timing_slots(cfg))
        result: dict = {}

        def on_timing(frame: TimingFrame) -> Failure | None:  # judged on arrival: before the post-timing recorded call
            failure, result["timing"], result["speedup"] = _judge_timing(judge, frame, sets, baseline)
            return failure

        lost = 0
        while True:
            judge = Judge(
                shapes, policy, tf32=cfg.use_tf32_tolerance and uses_matmul, ghost=ghost, interpreter=not cfg.is_cuda
            )
            proc.send_request(_request(proc, cfg, shapes, ghost, timing))
            try:
                failure = _judge_stream(proc, judge, clock, hold, on_timing)
                break
            except WorkerLostError as exc:
                # No candidate code ran (it ended before "ready"), so a fresh worker gets the same request: the
                # draws and reference outputs are kept. A second loss is the machine's problem, not a verdict.
                hold.release()
                if lost == MAX_LOST_WORKERS:
                    raise
                lost += 1
                log.warning("%s; verifying %s with a fresh worker", str(exc).splitlines()[0], task.task_id)
                proc.close()
                proc = _worker(code, cfg, pool)
                proc.wait_warm()
        clock.lap("sandbox")
        stdout, stderr = proc.output("stdout"), proc.output("stderr")
    finally:
        hold.release()
        proc.close()
    speedup, timing = result.get("speedup"), result.get("timing")
    if failure is None and cfg.times and timing is None:
        notes.append("timing did not run: the worker sent no timing results")
    extra = {
        "sandbox": {"network": "netns" if judge.netns else "audit-hook", "audit_guard": cfg.audit_guard},
        "plan": {"base": plan.base, "variants": [dict(v) for v in plan.variants[: cfg.n_variants]]},
        "coverage": plan.coverage.to_dict(),  # the coverage rule: what base + variants meet, why not the rest
        "notes": notes,
        "tf32_tolerance": judge.tf32,
        "config_hash": cfg.config_hash(),
        "seeds": seeds.used,  # revealed after the run: `verify(..., replay=...)` draws the same cases again
    }
    if lost:
        extra["workers_lost"] = lost  # replaced before any candidate code ran (Verifier.stats.retried counts them)
    if failure is not None and failure.detail:
        extra["detail"] = failure.detail[-4000:]
    passed = failure is None
    return Verdict(
        **base,
        passed=passed,
        stage=Stage.DONE if passed else failure.stage,
        failure=None if passed else failure.kind,
        message="passed every check" if passed else failure.message,
        checks=tuple(judge.checks),
        provenance=judge.provenance(),
        static_warnings=warnings,
        stdout=stdout,
        stderr=stderr,
        stage_times_ms=clock.times,
        speedup=speedup if passed else None,
        timing=timing,
        extra=extra,
    )


def _worker(code: str, cfg: VerifyConfig, pool: WorkerPool | None) -> WorkerProcess:
    """A started worker holding `code`: a pre-started one from `pool`, or a fresh one."""
    proc = pool.take(code, cfg) if pool is not None else WorkerProcess(code, cfg)
    if proc.proc is None:
        proc.start()
    return proc


def _timing_params(cfg: VerifyConfig) -> dict:
    params = TimingParams(budget_s=cfg.timing_budget_s, target_rel_err=cfg.timing_target_rel_err)
    return dataclasses.asdict(params)


def _baselines(task: Task, sizes: dict, cfg: VerifyConfig) -> dict:
    """Device ceilings and the torch.compile ratio for this task (cached; measured on first use)."""
    if not cfg.times:
        return {}
    return {
        "ceilings": calibration.device_ceilings(cfg) if cfg.roofline else None,
        "compile_ratio": calibration.compile_ratio(task, sizes, cfg) if cfg.compile_baseline else None,
    }


def _judge_timing(
    judge: Judge, frame: TimingFrame, sets: TimingSets, baseline: dict
) -> tuple[Failure | None, TimingReport, float | None]:
    return judge_timing(
        frame.to_wire(), sets.ref_outputs, tf32=judge.tf32, work=sets.work,
        ceilings=baseline.get("ceilings"), compile_ratio=baseline.get("compile_ratio"),
    )  # fmt: skip


def _request(
    proc: WorkerProcess, cfg: VerifyConfig, shapes: list, ghost: bool, timing: TimingRequest | None
) -> Request:
    """What the worker gets: where the candidate is, the limits, and the inputs (never the reference outputs).
    Config values are cast to the request's types here (the worker checks them exactly)."""
    return Request(
        candidate_path=str(proc.candidate_path),
        workdir=str(proc.workdir),
        device="cuda" if cfg.is_cuda else "cpu",
        guard=bool(cfg.audit_guard),
        ghost=bool(ghost),
        repeat=bool(cfg.poison_outputs),
        profile=bool(cfg.environment_profiles),
        profile_module=secrets.choice([n for n in MODULE_NAMES if n != proc.candidate_path.stem]),
        limits=Limits(
            fsize_mb=int(cfg.file_size_limit_mb),
            # CPU only: CUDA reserves ~17 GiB of address space, so on a GPU the RSS watchdog is the limit
            as_mb=int(max(4 * cfg.memory_limit_mb, 16384)) if cfg.device == "cpu" else None,
        ),
        shapes=request_shapes(shapes),
        timing=timing,
        gpu_steps=cfg.is_cuda,
    )


def _judge_stream(
    proc: WorkerProcess, judge: Judge, clock: _Clock, hold: _GpuHold, on_timing: Callable[[TimingFrame], Failure | None]
) -> Failure | None:
    """Feed the worker's frames to the judge; stop the worker at the first certain failure; classify its exit."""
    failure: Failure | None = None
    steps_waited: float | None = None  # seconds the worker's GPU steps waited for the GPU (None: it never asked)
    for msg in proc.messages():
        if isinstance(msg, GpuAsk):  # a worker step that may use the GPU: it runs under our shared hold
            waited = hold.shared()  # kept as it is when already held (exclusive at timing)
            proc.pause_clock(waited)
            steps_waited = (steps_waited or 0.0) + waited
            proc.send_control(GpuGo())
            continue
        if isinstance(msg, GpuFree):  # the step's GPU work is done: timings may have the GPU
            if hold.held == "shared":
                hold.release()
            continue
        if isinstance(msg, Ready):  # interpreter start + torch/triton import + dispatch warm-up
            clock.times["worker_ready_after_spawn"] = round((time.monotonic() - proc.started) * 1e3, 3)
        failure = judge.feed(msg)
        if isinstance(msg, TimingFrame):
            clock.lap("timing")
            # the hold stays exclusive through the post-timing recorded call (~0.1 s): its GPU work would
            # otherwise overlap the next candidate's timing
            failure = on_timing(msg)
            clock.lap("timing_stats")
        if failure is not None:
            proc.kill()
            break
        if isinstance(msg, AwaitTiming):  # every case is in and judged correct: time, alone on the GPU
            go = judge.all_checked()
            if go:
                clock.lap("correctness")
                waited = hold.exclusive()
                proc.pause_clock(waited)
                clock.times["gpu_wait"] = round(waited * 1e3, 3)
            proc.send_control(TimingGo(go=go))
    if proc.exit is None:  # we stopped early: drain until EOF so the worker is reaped and its exit recorded
        for _ in proc.messages():
            pass
    if not judge.ready and failure is None:
        raise WorkerLostError(
            "the worker process ended before it was ready (candidate code never ran); its stderr:\n"
            + proc.output("stderr")[-2000:]
        )
    if failure is None and proc.exit is not None:
        failure = judge.finish(proc.exit)
    if steps_waited is not None:
        clock.times["gpu_wait_steps"] = round(steps_waited * 1e3, 3)
    clock.times["worker_load"] = round(judge.load_ms, 3)
    clock.times["worker_forward"] = round(judge.forward_ms, 3)
    return failure
