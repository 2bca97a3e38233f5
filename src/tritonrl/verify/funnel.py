"""The verification funnel: extract -> parse -> static -> load -> provenance -> correctness (-> timing on GPU).

Cheap parent-side stages run first and stop at the first failure. Then the worker process is started (its ~1.5 s
interpreter start overlaps with the parent computing reference outputs), the request is sent, and every frame the
worker streams back is judged as it arrives; the first certain failure kills the worker. A candidate's failure is a
Verdict; only infrastructure problems (a broken task, a worker that cannot start) raise.
"""

from __future__ import annotations

import logging
import time

from tritonrl.errors import SandboxError
from tritonrl.tasks.schema import Task
from tritonrl.tasks.shapes import ShapePlan, plan_shapes_cached
from tritonrl.types import FailureKind, Stage, StageOutcome, Verdict, candidate_sha256
from tritonrl.verify.cases import build_cases, ghost_informative, request_shapes
from tritonrl.verify.config import VerifyConfig
from tritonrl.verify.extract import extract_code, parse_candidate, strip_main_guard
from tritonrl.verify.judge import Failure, Judge
from tritonrl.verify.provenance import POLICIES
from tritonrl.verify.sandbox import WorkerProcess
from tritonrl.verify.static_checks import run_static_checks

log = logging.getLogger(__name__)


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


def verify(task: Task, candidate: str, cfg: VerifyConfig | None = None) -> Verdict:
    """Verify one candidate (a .py text or a raw LLM completion) against one task."""
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
    return _run_sandboxed(task, code, cfg, clock, base, warnings)


def _run_sandboxed(
    task: Task, code: str, cfg: VerifyConfig, clock: _Clock, base: dict, warnings: tuple[str, ...]
) -> Verdict:
    with WorkerProcess(code, cfg) as proc:  # started first: its interpreter start overlaps our planning
        clock.lap("spawn")
        plan = plan_for(task, cfg)
        clock.lap("plan")
        shapes, notes, uses_matmul = build_cases(task, plan, cfg)
        clock.lap("reference")
        policy = POLICIES[cfg.policy]
        ghost = cfg.ghost_replay and policy.require_dependence and ghost_informative(shapes[0].cases[0])
        if cfg.ghost_replay and not ghost:
            notes.append("ghost replay skipped: on every case some reference output equals an input")
        judge = Judge(shapes, policy, tf32=cfg.use_tf32_tolerance and uses_matmul, ghost=ghost)
        proc.send_request(_request(proc, cfg, shapes, ghost))
        failure = _judge_stream(proc, judge, clock)
        clock.lap("sandbox")
        stdout, stderr = proc.output("stdout"), proc.output("stderr")
    extra = {
        "sandbox": {"network": "netns" if judge.netns else "audit-hook", "audit_guard": cfg.audit_guard},
        "plan": {"base": plan.base, "variants": [dict(v) for v in plan.variants[: cfg.n_variants]]},
        "notes": notes,
        "tf32_tolerance": judge.tf32,
        "config_hash": cfg.config_hash(),
    }
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
        extra=extra,
    )


def _request(proc: WorkerProcess, cfg: VerifyConfig, shapes: list, ghost: bool) -> dict:
    """What the worker gets: where the candidate is, the limits, and the inputs (never the reference outputs)."""
    return {
        "candidate_path": str(proc.candidate_path),
        "workdir": str(proc.workdir),
        "device": "cuda" if cfg.is_cuda else "cpu",
        "guard": cfg.audit_guard,
        "ghost": ghost,
        "repeat": cfg.poison_outputs,
        "limits": {
            "fsize_mb": cfg.file_size_limit_mb,
            # CPU only: CUDA reserves ~17 GiB of address space, so on a GPU the RSS watchdog is the limit
            "as_mb": max(4 * cfg.memory_limit_mb, 16384) if cfg.device == "cpu" else None,
        },
        "shapes": request_shapes(shapes),
    }


def _judge_stream(proc: WorkerProcess, judge: Judge, clock: _Clock) -> Failure | None:
    """Feed the worker's frames to the judge; stop the worker at the first certain failure; classify its exit."""
    failure: Failure | None = None
    for msg in proc.messages():
        if msg.get("t") == "ready":  # interpreter start + torch/triton import + dispatch warm-up
            clock.times["worker_ready_after_spawn"] = round((time.monotonic() - proc.started) * 1e3, 3)
        failure = judge.feed(msg)
        if failure is not None:
            proc.kill()
            break
    if proc.exit is None:  # we stopped early: drain until EOF so the worker is reaped and its exit recorded
        for _ in proc.messages():
            pass
    if not judge.ready and failure is None:
        raise SandboxError(
            "the worker process ended before it was ready (candidate code never ran); its stderr:\n"
            + proc.output("stderr")[-2000:]
        )
    if failure is None and proc.exit is not None:
        failure = judge.finish(proc.exit)
    clock.times["worker_load"] = round(judge.load_ms, 3)
    clock.times["worker_forward"] = round(judge.forward_ms, 3)
    return failure
