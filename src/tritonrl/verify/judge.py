"""Turn the worker's message stream into stage outcomes (parent side, pure logic over typed frames, `messages.py`).

`Judge.feed` consumes one frame and returns a failure as soon as one is certain, so the funnel can kill the worker
early; `Judge.finish` classifies how the worker ended when no frame explained it. Stage attribution: anything before
the first forward is LOAD; what forward did (sandbox violations, torch compute, launches, tampering, dependence) is
PROVENANCE; failing to produce the right outputs (exceptions, crashes, timeouts, wrong values) is CORRECTNESS.
A frame that decoded but cannot be right (an unknown failure kind, a case that does not exist) fails closed, as a
corrupted result channel, like a frame that does not decode at all.
"""

from __future__ import annotations

import collections
import re
from typing import Any

import torch

from tritonrl.types import CheckResult, Failure, FailureKind, ProvenanceReport, Stage
from tritonrl.verify.cases import Shape
from tritonrl.verify.correctness import compare_outputs
from tritonrl.verify.messages import (
    AwaitTiming,
    CaseFrame,
    Done,
    Frame,
    Loaded,
    Ready,
    Violation,
    WorkerError,
    case_poison,
    poison_value,
)
from tritonrl.verify.metamorphic import RelationChecker
from tritonrl.verify.provenance import ProvenancePolicy, judge_call
from tritonrl.verify.sandbox import ExitInfo

_POISON = {"nan": float("nan")}
_VALUE_FAILURES = frozenset({FailureKind.WRONG_VALUES, FailureKind.NONFINITE_MISMATCH})


def _has_bf16(case: Any) -> bool:
    tensors = [*case.ref_outputs, *(x for x in case.inputs if isinstance(x, torch.Tensor))]
    return any(t.dtype == torch.bfloat16 for t in tensors)


def _poison_for(kind: str | None, dtype: torch.dtype) -> float | int | None:
    return None if kind is None else poison_value(dtype, kind)  # the same table the worker used


def _corrupted(why: str) -> Failure:
    """The result channel said something no honest worker says: fail closed (the candidate shares the worker)."""
    return Failure(Stage.PROVENANCE, FailureKind.TAMPERING, f"result channel corrupted: {why}")


def _failure_kind(value: str) -> FailureKind | None:
    try:
        return FailureKind(value)
    except ValueError:
        return None


def _identical(a: list[torch.Tensor], b: list[torch.Tensor]) -> bool:
    if len(a) != len(b):
        return False
    for x, y in zip(a, b, strict=True):
        if x.shape != y.shape or x.dtype != y.dtype:
            return False
        if x.is_floating_point():
            if not bool(((x == y) | (torch.isnan(x) & torch.isnan(y))).all()):
                return False
        elif not torch.equal(x, y):
            return False
    return True


class Judge:
    def __init__(
        self, shapes: list[Shape], policy: ProvenancePolicy, *, tf32: bool, ghost: bool, interpreter: bool = False
    ) -> None:
        self.shapes = shapes
        self.interpreter = interpreter  # kernels ran in the CPU interpreter (whose bf16 arithmetic is unreliable)
        self.ghost_pending = ghost  # the first case's correctness waits for the ghost run: provenance comes first
        self._deferred: tuple[CaseFrame, str] | None = None
        self.policy = policy
        self.tf32 = tf32
        self.ready = False
        self.netns: bool | None = None
        self.loaded = False
        self.load_ms = 0.0
        self.forward_ms = 0.0
        self.done = False
        self.checks: list[CheckResult] = []
        self.ops: collections.Counter[str] = collections.Counter()
        self.kernels: set[str] = set()
        self.foreign: set[str] = set()
        self.n_launches = 0
        self.ghost_changed: bool | None = None
        self.timing_started = False
        self.relations = RelationChecker(shapes, tf32=tf32)
        self.first_call: tuple[frozenset, frozenset] | None = None  # case 0's op and kernel sets, profile A

    # --- per frame ---------------------------------------------------------------------------------------------
    def feed(self, frame: Frame) -> Failure | None:
        match frame:
            case Ready():
                self.ready, self.netns = True, frame.netns
            case Loaded():
                self.loaded, self.load_ms = True, float(frame.load_ms)
            case Done():
                self.done = True
            case AwaitTiming():
                failure = self.run_deferred()
                self.timing_started = failure is None and self.all_checked()
                return failure
            case Violation():
                if (kind := _failure_kind(frame.kind)) is None:
                    return _corrupted(f"a violation of unknown kind {frame.kind!r:.60}")
                stage = Stage.TIMING if self.timing_started else Stage.PROVENANCE if self.loaded else Stage.LOAD
                return Failure(stage, kind, f"sandbox refused: {frame.detail}")
            case WorkerError():
                return self._error(frame)
            case CaseFrame():
                return self._case(frame)
        return None  # TimingFrame: the funnel judges it (`timing_stats.py`)

    def _error(self, frame: WorkerError) -> Failure:
        phase, kind = frame.phase, _failure_kind(frame.kind)
        if kind is None:
            return _corrupted(f"an error of unknown kind {frame.kind!r:.60}")
        text = frame.message
        if phase in ("load", "construct"):
            return Failure(Stage.LOAD, kind, f"{phase} failed: {_last_line(text)}", text)
        if phase == "timing":
            return Failure(Stage.TIMING, kind, f"a timed call failed: {_last_line(text)}", text)
        if (where := self._case_name(frame.shape, frame.case, frame.mode)) is None:
            return _corrupted(f"a forward error on shape {frame.shape}, case {frame.case}, which do not exist")
        return Failure(Stage.CORRECTNESS, kind, f"forward failed on {where}: {_last_line(text)}", text)

    def _case_name(self, shape_index: int | None, case_index: int | None, mode: str | None) -> str | None:
        """The case's name as verdicts show it; None when the indices name no case of this request."""
        if shape_index is None or not 0 <= shape_index < len(self.shapes):
            return None
        shape = self.shapes[shape_index]
        if case_index is not None and not 0 <= case_index < len(shape.cases):
            return None
        name = shape.cases[case_index].name if case_index is not None else shape.name
        return name + ("" if mode in (None, "normal") else f"#{mode}")

    def _case(self, frame: CaseFrame) -> Failure | None:
        self.forward_ms += float(frame.forward_ms)
        if (where := self._case_name(frame.shape, frame.case, frame.mode)) is None:
            return _corrupted(f"a result for shape {frame.shape}, case {frame.case}, which do not exist")
        if frame.threads > 0:
            return Failure(
                Stage.PROVENANCE,
                FailureKind.PROCESS_SPAWN,
                f"forward left {frame.threads} new thread(s) running on {where}",
            )
        if frame.tamper:
            return Failure(
                Stage.PROVENANCE, FailureKind.TAMPERING, f"runtime tampering on {where}: " + "; ".join(frame.tamper)
            )
        launches = list(frame.launches)
        if frame.mode == "ghost":
            self.ghost_pending = False
            first = list(self._deferred[0].outputs) if self._deferred else []
            self.ghost_changed = not _identical(list(frame.outputs), first)
            if self.policy.require_dependence and not self.ghost_changed:
                return Failure(
                    Stage.PROVENANCE,
                    FailureKind.NOT_DEPENDENT,
                    "with the candidate's Triton kernels "
                    "turned into no-ops the output is unchanged: the kernels do not compute it",
                )
            return self.run_deferred()
        ops = dict(frame.ops)
        if (failure := self._same_as_first_call(frame, ops, launches, where)) is not None:
            return failure
        self.ops.update(ops)
        self.n_launches += len(launches)
        self.kernels |= {n for n, mine in launches if mine}
        self.foreign |= {n for n, mine in launches if not mine}
        verdict = judge_call(self.policy, ops, launches)
        if verdict is not None:
            return Failure(Stage.PROVENANCE, verdict[0], f"{verdict[1]} (on {where})")
        if frame.structure_error:  # nothing to replay or compare: say what came back
            return Failure(Stage.CORRECTNESS, FailureKind.WRONG_OUTPUT_STRUCTURE, f"{frame.structure_error} on "
                           f"{where}")  # fmt: skip
        if self.ghost_pending and self._deferred is None:
            self._deferred = (frame, where)
            return None
        return self._correctness(frame, where)

    def _same_as_first_call(
        self, frame: CaseFrame, ops: dict[str, int], launches: list[tuple[str, bool]], where: str
    ) -> Failure | None:
        """Case 0 runs in two environment profiles; both must launch the same kernels and issue the same kinds of op.
        Sets, not counts: a first call's autotuning launches each config a number of times that depends on timing
        (on a GPU, do_bench sizes its repetitions by the measured time), so counts differ between honest runs."""
        if frame.mode == "normal" and frame.shape == 0 and frame.case == 0:
            self.first_call = (frozenset(ops), frozenset(launches))
        elif frame.mode == "profile" and self.first_call is not None:
            first_ops, first_launches = self.first_call
            if frozenset(ops) != first_ops or frozenset(launches) != first_launches:
                return Failure(
                    Stage.PROVENANCE,
                    FailureKind.ENVIRONMENT_DEPENDENT,
                    f"forward behaved differently in a second ordinary environment (module name, thread count, "
                    f"locale) on {where}: ops only in one {sorted(frozenset(ops) ^ first_ops)[:4]}, kernels only in "
                    f"one {sorted(n for n, _ in frozenset(launches) ^ first_launches)[:4]}",
                )
        return None

    def run_deferred(self) -> Failure | None:
        """Judge the correctness of the case held back for the ghost run (also called at the end of the stream)."""
        if self._deferred is None:
            return None
        frame, where = self._deferred
        self._deferred = None
        return self._correctness(frame, where)

    def _correctness(self, frame: CaseFrame, where: str) -> Failure | None:
        shape = self.shapes[frame.shape]
        case = shape.cases[frame.case]
        if frame.structure_error:
            return Failure(Stage.CORRECTNESS, FailureKind.WRONG_OUTPUT_STRUCTURE, f"{frame.structure_error} on {where}")
        outputs = list(frame.outputs)
        if frame.container != case.ref_container:
            return Failure(
                Stage.CORRECTNESS,
                FailureKind.WRONG_OUTPUT_STRUCTURE,
                f"forward returned a {frame.container}, the reference a {case.ref_container} (on {where})",
            )
        mutated = [m and not r for m, r in zip(frame.mutated, case.ref_mutated, strict=False)]
        if any(mutated):
            index = mutated.index(True)
            return Failure(
                Stage.CORRECTNESS,
                FailureKind.INPUT_MUTATION,
                f"forward modified input {index} on {where}; the reference does not",
            )
        poison_kind = case_poison(case.poison, frame.mode)
        poison = _poison_for(poison_kind, case.ref_outputs[0].dtype) if case.ref_outputs else None
        cmp = compare_outputs(outputs, case.ref_outputs, poison=poison, tf32=self.tf32)
        check = CheckResult(
            case=where, sizes=shape.sizes, distribution=case.distribution, seed=case.seed,
            passed=cmp.failure is None, failure=cmp.failure, message=cmp.message, stats=cmp.stats,
        )  # fmt: skip
        self.checks.append(check)
        related = self.relations.check(frame)
        if related is not None:  # a violated relation explains more
            self.checks.append(related)
            if not related.passed:
                return Failure(Stage.CORRECTNESS, related.failure, related.message)
        if cmp.failure is not None:
            if self.interpreter and cmp.failure in _VALUE_FAILURES and _has_bf16(case):
                # The interpreter emulates bf16 in numpy; products of two bf16 values come back wrong (triton 3.6,
                # measured up to 9e37 off), so a bf16 mismatch on the CPU says nothing about the kernel.
                return Failure(Stage.CORRECTNESS, FailureKind.INCONCLUSIVE_ON_CPU, f"{where}: bf16 values differ "
                               f"in the CPU interpreter, whose bf16 arithmetic is unreliable: verify on a GPU "
                               f"({cmp.message})")  # fmt: skip
            return Failure(Stage.CORRECTNESS, cmp.failure, f"{where}: {cmp.message}")
        return None

    def all_checked(self) -> bool:
        """Every correctness case arrived and was judged (failures stop the stream before this is asked)."""
        return self._deferred is None and len(self.checks) >= sum(len(s.cases) for s in self.shapes)

    # --- end of stream -----------------------------------------------------------------------------------------
    def finish(self, exit: ExitInfo) -> Failure | None:
        if (failure := self.run_deferred()) is not None:
            return failure
        if self.done:
            expected = sum(len(s.cases) for s in self.shapes)
            if len(self.checks) < expected:
                return Failure(
                    Stage.CORRECTNESS,
                    FailureKind.EXITED,
                    f"worker finished after {len(self.checks)} of {expected} checks",
                )
            return None
        stage = Stage.CORRECTNESS if self.loaded else Stage.LOAD
        if exit.protocol_error:
            return _corrupted(exit.protocol_error)
        if exit.timed_out:
            return Failure(stage, FailureKind.TIMEOUT, "the worker exceeded its time limit and was killed")
        if exit.memory_exceeded:
            return Failure(
                stage, FailureKind.MEMORY_LIMIT, f"resident memory exceeded the limit ({exit.peak_rss_mb:.0f} MB seen)"
            )
        sig = exit.signal_name
        if sig == "SIGXFSZ":
            return Failure(stage, FailureKind.OUTPUT_LIMIT, "the candidate wrote more than the file-size limit")
        if sig is not None:
            return Failure(stage, FailureKind.CRASH, f"the worker died from {sig}")
        return Failure(stage, FailureKind.EXITED, f"the worker exited (status {exit.returncode}) before finishing")

    def provenance(self) -> ProvenanceReport:
        return ProvenanceReport(
            candidate_kernels=tuple(sorted(self.kernels)),
            foreign_kernels=tuple(sorted(self.foreign)),
            n_launches=self.n_launches,
            torch_ops=dict(sorted(self.ops.items())),
            forbidden_ops=tuple(self.policy.forbidden(self.ops)),
            policy=self.policy.name,
            ghost_replay_changed_output=self.ghost_changed,
        )


_EXC_LINE = re.compile(r"^[A-Za-z_][\w.]*(Error|Exception|Exit|Interrupt)\b.*")


def _last_line(text: str) -> str:
    """The exception line of a traceback (CUDA errors append hint lines after it)."""
    lines = [ln.strip() for ln in text.strip().splitlines() if ln.strip()]
    for line in reversed(lines):
        if _EXC_LINE.match(line):
            return line
    return lines[-1] if lines else "unknown error"
