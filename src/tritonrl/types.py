"""Shared result types: the stages of the verification funnel, failure kinds and the Verdict.

Everything here is a frozen dataclass or a string enum, JSON-serialisable through `Verdict.to_dict()`, and
importable without torch or triton. A Verdict is the single source of truth for rewards and reports.
"""

from __future__ import annotations

import dataclasses
import enum
import hashlib
import json
import math
from typing import Any


def candidate_sha256(text: str) -> str:
    """The candidate hash every component keys on (verdicts, the result store, reward caches): sha256 of the UTF-8
    text, lone surrogates included (`surrogatepass`), so no candidate text can make hashing raise."""
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()


class Stage(enum.StrEnum):
    """Funnel stages, cheapest first. A verdict records the stage it reached (failed at) or DONE."""

    EXTRACT = "extract"  # find the code in a file or an LLM completion
    PARSE = "parse"  # ast.parse, find ModelNew, check its constructor against Model's
    STATIC = "static"  # AST rules (a cheap pre-filter, never the authority)
    LOAD = "load"  # import the candidate inside the sandbox and construct ModelNew
    PROVENANCE = "provenance"  # prove forward's work is done by candidate-defined Triton kernels
    CORRECTNESS = "correctness"  # compare against the reference on shapes x seeds x value distributions
    TIMING = "timing"  # GPU only
    DONE = "done"  # every stage passed


class FailureKind(enum.StrEnum):
    """Why a candidate was rejected. One value per failure mode; tests assert (stage, kind) pairs."""

    # extraction and parsing
    NO_CODE = "no_code"
    SYNTAX_ERROR = "syntax_error"
    NO_MODELNEW = "no_modelnew"
    BAD_SIGNATURE = "bad_signature"
    # static rules and sandbox violations (static or observed at run time)
    NO_TRITON_KERNEL = "no_triton_kernel"
    FORBIDDEN_IMPORT = "forbidden_import"
    FORBIDDEN_CONSTRUCT = "forbidden_construct"
    FILE_ACCESS = "file_access"
    NETWORK_ACCESS = "network_access"
    PROCESS_SPAWN = "process_spawn"
    TAMPERING = "tampering"
    # loading and running
    IMPORT_ERROR = "import_error"
    RUNTIME_ERROR = "runtime_error"
    TIMEOUT = "timeout"
    CRASH = "crash"
    EXITED = "exited"
    MEMORY_LIMIT = "memory_limit"
    OUTPUT_LIMIT = "output_limit"
    # provenance
    TORCH_COMPUTE = "torch_compute"
    NO_TRITON_LAUNCH = "no_triton_launch"
    FOREIGN_KERNEL = "foreign_kernel"
    NOT_DEPENDENT = "not_dependent"
    ENVIRONMENT_DEPENDENT = "environment_dependent"  # launches or ops differ between two ordinary environments
    # correctness
    WRONG_OUTPUT_STRUCTURE = "wrong_output_structure"
    WRONG_SHAPE = "wrong_shape"
    WRONG_DTYPE = "wrong_dtype"
    WRONG_VALUES = "wrong_values"
    NONFINITE_MISMATCH = "nonfinite_mismatch"
    UNWRITTEN_OUTPUT = "unwritten_output"
    NONDETERMINISTIC = "nondeterministic"
    INPUT_MUTATION = "input_mutation"
    # neither passed nor the candidate's fault
    INCONCLUSIVE_ON_CPU = "inconclusive_on_cpu"  # the Triton interpreter cannot run or judge this kernel; a GPU can
    # timing (GPU)
    TIMING_ESCAPE = "timing_escape"  # work ran outside the timed region: side streams, deferred or hidden work
    IMPLAUSIBLE_SPEED = "implausible_speed"  # timed faster than the speed-of-light floor of the task's work
    STALE_OUTPUT = "stale_output"  # outputs of timed calls are wrong: cached, replayed or skipped work


@dataclasses.dataclass(frozen=True, slots=True)
class StageOutcome:
    """The typed result of one cheap (parent-side) funnel stage."""

    stage: Stage
    ok: bool
    failure: FailureKind | None = None
    message: str = ""
    warnings: tuple[str, ...] = ()
    rule: str | None = None  # static-check rule id that fired, if any
    line: int | None = None  # source line the message refers to, if any


@dataclasses.dataclass(frozen=True, slots=True)
class Failure:
    """Why the sandboxed stages (load, provenance, correctness, timing) rejected a candidate; becomes the Verdict's
    stage/failure/message."""

    stage: Stage
    kind: FailureKind
    message: str  # one line
    detail: str = ""  # e.g. the candidate's traceback


@dataclasses.dataclass(frozen=True, slots=True)
class CheckResult:
    """One correctness check: one forward of the candidate on one input case, compared with the reference."""

    case: str  # e.g. "variant1/normal"
    sizes: dict[str, int]  # the size constants this case used
    distribution: str  # value distribution of the floating inputs
    seed: int  # input seed (drawn fresh per run; revealed only after the run)
    passed: bool
    failure: FailureKind | None = None
    message: str = ""
    output_index: int | None = None  # which output of a tuple failed
    n_elements: int = 0
    n_mismatch: int = 0
    max_abs_err: float = 0.0
    max_rel_err: float = 0.0
    first_bad_index: tuple[int, ...] | None = None
    atol: float = 0.0
    rtol: float = 0.0


@dataclasses.dataclass(frozen=True, slots=True)
class ProvenanceReport:
    """What forward executed, aggregated over every checked call."""

    candidate_kernels: tuple[str, ...] = ()  # names of candidate-defined Triton kernels that launched
    foreign_kernels: tuple[str, ...] = ()  # Triton kernels launched that the candidate did not define
    n_launches: int = 0
    torch_ops: dict[str, int] = dataclasses.field(default_factory=dict)  # aten ops outside launches -> count
    forbidden_ops: tuple[str, ...] = ()  # the subset of torch_ops the policy does not allow
    policy: str = ""
    ghost_replay_changed_output: bool | None = None  # None when not run


BASELINES = ("eager", "compile")  # what a speedup is measured against
_BEFORE_VALID = frozenset({Stage.EXTRACT, Stage.PARSE, Stage.STATIC})
_BEFORE_COMPILED = _BEFORE_VALID | {Stage.LOAD}


@dataclasses.dataclass(frozen=True, slots=True)
class Verdict:
    """The outcome of verifying one candidate against one task."""

    task_id: str
    passed: bool  # correct and legitimate
    stage: Stage  # the stage reached (where it failed), or DONE
    failure: FailureKind | None
    message: str
    checks: tuple[CheckResult, ...] = ()
    provenance: ProvenanceReport | None = None
    static_warnings: tuple[str, ...] = ()
    stdout: str = ""  # candidate stdout, truncated
    stderr: str = ""  # candidate stderr, truncated
    device: str = "cpu"
    candidate_sha256: str = ""
    stage_times_ms: dict[str, float] = dataclasses.field(default_factory=dict)
    speedup: float | None = None  # GPU timing stage only
    extra: dict[str, Any] = dataclasses.field(default_factory=dict)  # JSON-safe facts (sandbox mode, sizes)

    @property
    def is_valid(self) -> bool:
        """The candidate got past the static stage (it was extracted, parsed and passed the AST rules)."""
        return self.stage not in _BEFORE_VALID

    @property
    def is_compiled(self) -> bool:
        """The candidate loaded and ran a forward (it got past LOAD)."""
        return self.stage not in _BEFORE_COMPILED

    @property
    def is_inconclusive(self) -> bool:
        """The CPU interpreter could not decide (its limitation, not the candidate's fault): verify on a GPU."""
        return self.failure is FailureKind.INCONCLUSIVE_ON_CPU

    def speedup_of(self, baseline: str = "eager") -> float | None:
        """The speedup over `baseline` ("eager" or "compile"), or None when it was not timed.

        A value that is not a finite positive number (JSON stores NaN/Inf as text) counts as not timed: it can only
        come from a broken measurement, and a table must not turn it into a speedup.
        """
        if baseline not in BASELINES:
            raise ValueError(f"baseline={baseline!r}: must be one of {BASELINES}.")
        value = self.speedup if baseline == "eager" else self.extra.get("speedup_compile")
        if isinstance(value, bool) or not isinstance(value, int | float):
            return None
        return float(value) if math.isfinite(value) and value > 0 else None

    def to_dict(self) -> dict[str, Any]:
        return _jsonable(dataclasses.asdict(self))

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Verdict:
        checks = tuple(
            CheckResult(
                **{
                    **c,
                    "failure": FailureKind(c["failure"]) if c.get("failure") else None,
                    "first_bad_index": tuple(c["first_bad_index"]) if c.get("first_bad_index") is not None else None,
                }
            )
            for c in d.get("checks", ())
        )
        prov = d.get("provenance")
        provenance = (
            ProvenanceReport(
                **{
                    **prov,
                    "candidate_kernels": tuple(prov["candidate_kernels"]),
                    "foreign_kernels": tuple(prov["foreign_kernels"]),
                    "forbidden_ops": tuple(prov["forbidden_ops"]),
                }
            )
            if prov
            else None
        )
        return cls(
            **{
                **d,
                "stage": Stage(d["stage"]),
                "failure": FailureKind(d["failure"]) if d.get("failure") else None,
                "checks": checks,
                "provenance": provenance,
                "static_warnings": tuple(d.get("static_warnings", ())),
            }
        )


def _jsonable(x: Any) -> Any:
    if isinstance(x, enum.Enum):
        return x.value
    if isinstance(x, dict):
        return {str(k): _jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_jsonable(v) for v in x]
    if isinstance(x, float) and (x != x or x in (float("inf"), float("-inf"))):
        return str(x)  # JSON has no NaN/Inf; keep the information as text
    return x
