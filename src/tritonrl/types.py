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
class CheckStats:
    """What one comparison of outputs with their reference measured (`verify/correctness.compare_outputs`), carried
    unchanged into the check that reports it. The comparison never gives a NaN error maximum: it reports inf."""

    output_index: int | None = None  # which output of a tuple failed (None on a pass: the stats cover every output)
    n_elements: int = 0
    n_mismatch: int = 0
    max_abs_err: float = 0.0
    max_rel_err: float = 0.0
    first_bad_index: tuple[int, ...] | None = None
    atol: float = 0.0  # the absolute tolerance as applied (the table's, scaled by the reference's RMS)
    rtol: float = 0.0

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> CheckStats:
        index = d.get("first_bad_index")
        return cls(**{**_floats_back(cls, d), "first_bad_index": tuple(index) if index is not None else None})


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
    stats: CheckStats = CheckStats()

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> CheckResult:
        d = _migrate_check(d)
        return cls(
            **{
                **d,
                "failure": FailureKind(d["failure"]) if d.get("failure") else None,
                "stats": CheckStats.from_dict(d.get("stats") or {}),
            }
        )


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


@dataclasses.dataclass(frozen=True, slots=True)
class WallCheck:
    """The timing stage's wall-clock cross-check: each side's best synchronised batch, as wall time over what its
    events and host enqueue time explain. Above `limit` the candidate's work escaped the timed region."""

    ref_ratio: float
    cand_ratio: float
    limit: float  # max(1.5, 1.5 x ref_ratio): the reference calibrates the check
    batches: int  # synchronised batches of candidate calls measured


@dataclasses.dataclass(frozen=True, slots=True)
class Roofline:
    """Where the candidate's median time sits against the measured device ceilings. `flops` and `bytes` are the
    reference's (its algorithm, not the function's): a fraction above 1 says "less work", not "impossible"."""

    flops: int  # the reference's FLOPs per call
    bytes: int  # bytes the reference reads and writes per call
    min_bytes: int  # DRAM bytes any correct kernel must move per call: what the floor is made of
    floor_us: float  # speed-of-light time of the function; faster is implausible_speed
    bound: str  # "memory", or "none" when no floor applies
    bandwidth_fraction: float
    flops_fraction: float
    ceilings: dict[str, Any]  # the measured device ceilings (`timing_stats.Ceilings` as a dict; that class needs torch)


@dataclasses.dataclass(frozen=True, slots=True)
class TimingReport:
    """What the GPU timing stage measured and decided. On a timing failure it is partial: the fields computed before
    the failing check are set, the later ones stay None (a stale output fails before any median is taken)."""

    mode: str  # "events" (L2-flushed CUDA events) or "cuda_graph" (graph replays of launch-bound work)
    gpu: str | None = None
    clock_mhz: int | None = None  # SM clock seen after timing, when NVML is reachable
    wall_check: WallCheck | None = None
    ref_us: float | None = None  # median per call
    cand_us: float | None = None
    ref_cv: float | None = None
    cand_cv: float | None = None
    speedup: float | None = None  # over eager: ref_us / cand_us (the Verdict's `speedup` once the candidate passes)
    speedup_ci95: tuple[float, float] | None = None  # percentile bootstrap of the speedup
    n_reps: tuple[int, int] | None = None  # (reference, candidate)
    graph_calls: int | None = None  # calls per graph replay (1 in events mode)
    protocol: dict[str, Any] | None = None  # the measured protocol parameters, free-form (worker TimingParams etc.)
    unstable: bool = False  # a side's CV exceeds `timing_stats.UNSTABLE_CV`
    speedup_compile: float | None = None  # over torch.compile (with the compile baseline)
    roofline: Roofline | None = None  # with device ceilings and the reference's work (`VerifyConfig.roofline`)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TimingReport:
        wall, roof, ci, reps = d.get("wall_check"), d.get("roofline"), d.get("speedup_ci95"), d.get("n_reps")
        return cls(
            **{
                **_floats_back(cls, d),
                "wall_check": WallCheck(**_floats_back(WallCheck, wall)) if wall else None,
                "roofline": Roofline(**_floats_back(Roofline, roof)) if roof else None,
                "speedup_ci95": tuple(float(x) for x in ci) if ci is not None else None,
                "n_reps": tuple(reps) if reps is not None else None,
            }
        )


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
    timing: TimingReport | None = None  # once timing results came back; partial when the timing stage rejected
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
        if baseline == "eager":
            value = self.speedup
        else:
            value = self.timing.speedup_compile if self.timing is not None else None
        if isinstance(value, bool) or not isinstance(value, int | float):
            return None
        return float(value) if math.isfinite(value) and value > 0 else None

    def to_dict(self) -> dict[str, Any]:
        return _jsonable(dataclasses.asdict(self))

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Verdict:
        checks = tuple(CheckResult.from_dict(c) for c in d.get("checks", ()))
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
        d = _migrate_timing(d)
        timing = d.get("timing")
        return cls(
            **{
                **d,
                "timing": TimingReport.from_dict(timing) if timing is not None else None,
                "stage": Stage(d["stage"]),
                "failure": FailureKind(d["failure"]) if d.get("failure") else None,
                "checks": checks,
                "provenance": provenance,
                "static_warnings": tuple(d.get("static_warnings", ())),
            }
        )


def _migrate_timing(d: dict[str, Any]) -> dict[str, Any]:
    """Verdicts stored before `Verdict.timing` existed (result JSONL files, the verdict caches, a reward server of an
    older tritonrl) kept the timing report in `extra["timing"]` and a copy of its speedup over torch.compile in
    `extra["speedup_compile"]`: move both into "timing", so such records read back like new ones."""
    extra = d.get("extra") or {}
    if "timing" in d or not ("timing" in extra or "speedup_compile" in extra):
        return d
    extra = dict(extra)
    report, compile_speedup = extra.pop("timing", None), extra.pop("speedup_compile", None)
    if report is None and compile_speedup is None:
        return {**d, "extra": extra}
    timing = {"mode": "", **(report or {})}  # "mode" is in every report the funnel wrote; a hand-built one may lack it
    if compile_speedup is not None:
        timing["speedup_compile"] = compile_speedup
    return {**d, "extra": extra, "timing": timing}


_STATS_FIELDS = frozenset(f.name for f in dataclasses.fields(CheckStats))


def _migrate_check(c: dict[str, Any]) -> dict[str, Any]:
    """Checks stored before `CheckResult.stats` existed (result JSONL files, the verdict caches, a reward server of an
    older tritonrl) carried the comparison's statistics flat on the check: nest them under "stats", so such records
    read back like new ones."""
    if "stats" in c:
        return c
    return {
        **{k: v for k, v in c.items() if k not in _STATS_FIELDS},
        "stats": {k: v for k, v in c.items() if k in _STATS_FIELDS},
    }


def _floats_back(cls: type, d: dict[str, Any]) -> dict[str, Any]:
    """`d` with the float fields of dataclass `cls` as floats again: `to_dict` stores non-finite floats as text (JSON
    has no NaN/Inf), and a typed report should not hand "inf" to code that formats or compares a float."""
    names = {f.name for f in dataclasses.fields(cls) if f.type.startswith("float")}
    return {k: float(v) if k in names and isinstance(v, str) else v for k, v in d.items()}


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
