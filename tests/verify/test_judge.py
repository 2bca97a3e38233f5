"""verify/judge.py from hand-built frames (no worker process): one test per way a stream of frames fails, plus the
frames an honest worker sends for a candidate that passes, and the metamorphic relation checks the judge runs."""

from __future__ import annotations

import dataclasses
import signal

import pytest
import torch

from tritonrl.types import FailureKind, Stage
from tritonrl.verify.cases import Case, Shape
from tritonrl.verify.judge import Judge
from tritonrl.verify.messages import AwaitTiming, CaseFrame, Done, Loaded, Ready, Violation, WorkerError
from tritonrl.verify.metamorphic import SCALE, Relation
from tritonrl.verify.provenance import POLICIES
from tritonrl.verify.sandbox import ExitInfo

X = torch.arange(6.0).reshape(2, 3)
MINE = (("add_kernel", True),)


def _case(name: str, poison: str | None = None, dtype: torch.dtype = torch.float32) -> Case:
    return Case(name, "normal", 0, poison, [X.to(dtype)], (X.to(dtype) * 2,), [False])


def _shapes(n_cases: int = 1) -> list[Shape]:
    return [Shape("base", {"N": 6}, [], 0, {}, [_case(f"base/c{j}") for j in range(n_cases)])]


def _judge(*, ghost: bool = False, interpreter: bool = False, policy: str = "strict", shapes=None) -> Judge:
    judge = Judge(shapes or _shapes(), POLICIES[policy], tf32=False, ghost=ghost, interpreter=interpreter)
    assert judge.feed(Ready(netns=False)) is None and judge.feed(Loaded(load_ms=1.0)) is None
    return judge


CORRECT = CaseFrame(
    shape=0, case=0, mode="normal", container="tensor", outputs=(X * 2,), structure_error=None,
    ops={"aten.empty_like": 1}, launches=MINE, mutated=(False,), threads=0, tamper=(), forward_ms=1.0,
)  # fmt: skip


def _frame(**changes) -> CaseFrame:
    """Case 0's frame from an honest worker and a correct candidate, with `changes`."""
    return dataclasses.replace(CORRECT, **changes)


def _is(failure, stage: Stage, kind: FailureKind) -> None:
    assert failure is not None and (failure.stage, failure.kind) == (stage, kind), failure


# --- honest streams --------------------------------------------------------------------------------------------------
def test_a_correct_stream_passes_and_records_its_check_and_provenance():
    judge = _judge()
    assert judge.feed(_frame()) is None and judge.feed(Done()) is None
    assert judge.finish(ExitInfo(0)) is None
    assert [c.passed for c in judge.checks] == [True] and judge.provenance().candidate_kernels == ("add_kernel",)


def test_await_timing_after_every_check_starts_timing():
    judge = _judge()
    judge.feed(_frame())
    assert judge.feed(AwaitTiming()) is None and judge.timing_started


def test_ghost_run_that_changes_the_output_releases_the_deferred_case():
    judge = _judge(ghost=True)
    assert judge.feed(_frame()) is None and judge.checks == []  # held back until the ghost run
    assert judge.feed(_frame(mode="ghost", outputs=(torch.zeros(2, 3),))) is None
    assert judge.ghost_changed and [c.passed for c in judge.checks] == [True]


# --- violations and worker errors ------------------------------------------------------------------------------------
@pytest.mark.parametrize("loaded, timing, stage", [(False, False, Stage.LOAD), (True, False, Stage.PROVENANCE),
                                                    (True, True, Stage.TIMING)])  # fmt: skip
def test_violation_is_charged_to_the_phase_it_happened_in(loaded, timing, stage):
    judge = Judge(_shapes(), POLICIES["strict"], tf32=False, ghost=False)
    judge.loaded, judge.timing_started = loaded, timing
    _is(judge.feed(Violation(kind="network_access", detail="socket refused")), stage, FailureKind.NETWORK_ACCESS)


@pytest.mark.parametrize("phase, stage", [("load", Stage.LOAD), ("construct", Stage.LOAD), ("timing", Stage.TIMING)])
def test_worker_error_outside_forward(phase, stage):
    failure = _judge().feed(WorkerError(phase=phase, kind="import_error", message="Traceback\nImportError: no x"))
    _is(failure, stage, FailureKind.IMPORT_ERROR)
    assert "ImportError: no x" in failure.message and failure.detail.startswith("Traceback")


def test_forward_error_names_the_case_and_mode():
    failure = _judge().feed(WorkerError(phase="forward", kind="runtime_error", message="RuntimeError: boom",
                                        shape=0, case=0, mode="repeat"))  # fmt: skip
    _is(failure, Stage.CORRECTNESS, FailureKind.RUNTIME_ERROR)
    assert failure.message == "forward failed on base/c0#repeat: RuntimeError: boom"


# --- per-case provenance -------------------------------------------------------------------------------------------
def test_threads_left_running():
    _is(_judge().feed(_frame(threads=2)), Stage.PROVENANCE, FailureKind.PROCESS_SPAWN)


def test_tampering_found_by_the_worker():
    _is(_judge().feed(_frame(tamper=("patched: torch.allclose",))), Stage.PROVENANCE, FailureKind.TAMPERING)


def test_torch_compute_under_the_strict_policy():
    _is(_judge().feed(_frame(ops={"aten.mul": 1})), Stage.PROVENANCE, FailureKind.TORCH_COMPUTE)


def test_no_candidate_launch():
    _is(_judge().feed(_frame(launches=())), Stage.PROVENANCE, FailureKind.NO_TRITON_LAUNCH)


def test_foreign_kernel():
    _is(_judge().feed(_frame(launches=MINE + (("triton_poi_fused", False),))), Stage.PROVENANCE,
        FailureKind.FOREIGN_KERNEL)  # fmt: skip


def test_ghost_run_with_unchanged_output_is_not_dependent():
    judge = _judge(ghost=True)
    judge.feed(_frame())
    _is(judge.feed(_frame(mode="ghost")), Stage.PROVENANCE, FailureKind.NOT_DEPENDENT)


def test_second_profile_that_launches_other_kernels_is_environment_dependent():
    judge = _judge()
    judge.feed(_frame())
    failure = judge.feed(_frame(mode="profile", launches=(("other_kernel", True),)))
    _is(failure, Stage.PROVENANCE, FailureKind.ENVIRONMENT_DEPENDENT)


# --- per-case correctness ------------------------------------------------------------------------------------------
def test_structure_error_from_the_worker():
    failure = _judge().feed(_frame(outputs=(), structure_error="forward returned tuple of ['int']"))
    _is(failure, Stage.CORRECTNESS, FailureKind.WRONG_OUTPUT_STRUCTURE)


def test_container_unlike_the_reference():
    _is(_judge().feed(_frame(container="tuple")), Stage.CORRECTNESS, FailureKind.WRONG_OUTPUT_STRUCTURE)


def test_input_mutation():
    _is(_judge().feed(_frame(mutated=(True,))), Stage.CORRECTNESS, FailureKind.INPUT_MUTATION)


def test_wrong_values():
    failure = _judge().feed(_frame(outputs=(X * 3,)))
    _is(failure, Stage.CORRECTNESS, FailureKind.WRONG_VALUES)
    assert failure.message.startswith("base/c0: ")


def test_bf16_mismatch_in_the_interpreter_is_inconclusive():
    shapes = [Shape("base", {"N": 6}, [], 0, {}, [_case("base/c0", dtype=torch.bfloat16)])]
    failure = _judge(interpreter=True, shapes=shapes).feed(_frame(outputs=(X.to(torch.bfloat16) * 3,)))
    _is(failure, Stage.CORRECTNESS, FailureKind.INCONCLUSIVE_ON_CPU)


# --- metamorphic relations (RelationChecker, fed each judged case frame) ---------------------------------------------
def _relation_shapes() -> list[Shape]:
    """Case 0 and its scaled copy, which must return 2^10 times what the candidate returned on case 0."""
    relation = Relation("scale_pow2", 0, "f(s*x) == s*f(x)", factor=SCALE)
    derived = Case("base/c0~scale_pow2", "normal", 0, None, [X * SCALE], (X * 2 * SCALE,), [False], relation=relation)
    return [Shape("base", {"N": 6}, [], 0, {}, [_case("base/c0"), derived])]


def test_a_relation_case_is_checked_against_the_candidates_own_output():
    judge = _judge(shapes=_relation_shapes())
    assert judge.feed(_frame()) is None and judge.feed(_frame(case=1, outputs=(X * 2 * SCALE,))) is None
    assert [(c.case, c.passed) for c in judge.checks] == [
        ("base/c0", True),
        ("base/c0~scale_pow2", True),
        ("base/c0~scale_pow2:relation", True),
    ]


def test_a_candidate_inconsistent_with_itself_fails_the_relation():
    # Both outputs pass the ordinary check, but f(s*x) is not s*f(x) to a tenth of the tolerance.
    judge = _judge(shapes=_relation_shapes())
    off = X * 2 + 5e-5 * float((X * 2).square().mean().sqrt())
    assert judge.feed(_frame(outputs=(off,))) is None
    failure = judge.feed(_frame(case=1, outputs=(X * 2 * SCALE,)))
    _is(failure, Stage.CORRECTNESS, FailureKind.WRONG_VALUES)
    assert failure.message.startswith("metamorphic relation scale_pow2 violated on base/c0")
    assert [(c.case, c.passed) for c in judge.checks[1:]] == [
        ("base/c0~scale_pow2", True),
        ("base/c0~scale_pow2:relation", False),
    ]


# --- frames no honest worker sends: fail closed -----------------------------------------------------------------------
@pytest.mark.parametrize(
    "frame",
    [
        Violation(kind="not_a_kind", detail="x"),
        WorkerError(phase="load", kind="not_a_kind", message="x"),
        WorkerError(phase="forward", kind="runtime_error", message="x"),  # a forward error without its case
        WorkerError(phase="forward", kind="runtime_error", message="x", shape=0, case=7, mode="normal"),
        _frame(shape=3),
        _frame(case=-1),
    ],
)
def test_impossible_frame_is_a_corrupted_channel(frame):
    failure = _judge().feed(frame)
    _is(failure, Stage.PROVENANCE, FailureKind.TAMPERING)
    assert failure.message.startswith("result channel corrupted")


# --- end of stream -------------------------------------------------------------------------------------------------
def test_done_before_every_check_arrived():
    judge = _judge(shapes=_shapes(n_cases=2))
    judge.feed(_frame())
    judge.feed(Done())
    _is(judge.finish(ExitInfo(0)), Stage.CORRECTNESS, FailureKind.EXITED)


def test_deferred_case_is_judged_at_the_end_of_the_stream():
    judge = _judge(ghost=True)
    judge.feed(_frame(outputs=(X * 3,)))
    _is(judge.finish(ExitInfo(0)), Stage.CORRECTNESS, FailureKind.WRONG_VALUES)


@pytest.mark.parametrize(
    "exit_info, kind",
    [
        (ExitInfo(-9, protocol_error="frame failed authentication"), FailureKind.TAMPERING),
        (ExitInfo(-9, timed_out=True), FailureKind.TIMEOUT),
        (ExitInfo(-9, memory_exceeded=True, peak_rss_mb=9000.0), FailureKind.MEMORY_LIMIT),
        (ExitInfo(-signal.SIGXFSZ), FailureKind.OUTPUT_LIMIT),
        (ExitInfo(-signal.SIGSEGV), FailureKind.CRASH),
        (ExitInfo(1), FailureKind.EXITED),
    ],
)
@pytest.mark.parametrize("loaded", [False, True])
def test_unfinished_worker_exit_is_classified(exit_info, kind, loaded):
    judge = Judge(_shapes(), POLICIES["strict"], tf32=False, ghost=False)
    judge.feed(Ready(netns=False))
    if loaded:
        judge.feed(Loaded(load_ms=1.0))
    stage = Stage.PROVENANCE if kind is FailureKind.TAMPERING else Stage.CORRECTNESS if loaded else Stage.LOAD
    _is(judge.finish(exit_info), stage, kind)
