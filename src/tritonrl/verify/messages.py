"""What the parent and the worker agree on: the typed frames they exchange, the timing parameters, the poison table.

Both sides of the trust line import this module; it imports nothing of either side (stdlib, and torch for tensors and
dtypes). Each frame kind is a frozen dataclass, and so is each part of the parent's request (`Request`). On the pipe a
frame is a plain dict (`to_wire`: its tag under "t", then its fields; a nested record is a plain dict of its fields),
so `protocol.py` still carries only what `torch.load(weights_only=True)` accepts. `decode` is the parent's one way in
from the candidate-controlled worker: it checks the tag, the key set and every field's type against the annotations
and raises `MalformedFrame` for anything else; it never builds anything but these frames. The worker checks the
request the same way (`Request.from_wire`) before it uses any of it.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from typing import Any, ClassVar, Literal, Self

import torch

Mode = Literal["normal", "ghost", "repeat", "profile", "post_timing"]  # how a case was run (calls.py says why)
Phase = Literal["load", "construct", "forward", "timing"]  # where a worker-side error happened


class MalformedFrame(ValueError):
    """A frame (the request included) that authenticated but is not one of the frames below: unknown tag,
    missing/extra keys, wrong types."""


@dataclasses.dataclass(frozen=True, slots=True)
class Record:
    """Base of every typed value on the pipe: its fields are its payload, checked by `from_wire`."""

    def to_wire(self) -> dict[str, Any]:
        """The plain dict the pipe carries (shallow: tensors are not copied)."""
        return {f.name: _wire(getattr(self, f.name)) for f in dataclasses.fields(self)}

    @classmethod
    def from_wire(cls, wire: object, where: str = "") -> Self:
        """Check `wire` against this record's fields and build it; `where` names it in errors."""
        return _build(cls, wire, where or cls.__name__, where or cls.__name__)


@dataclasses.dataclass(frozen=True, slots=True)
class Frame(Record):
    """Base of every frame: a record with a wire name, `TAG`, under "t"."""

    TAG: ClassVar[str] = ""

    def to_wire(self) -> dict[str, Any]:
        return {"t": self.TAG, **Record.to_wire(self)}  # not super(): slots=True dataclasses break its cell

    @classmethod
    def from_wire(cls, wire: object, where: str = "") -> Self:
        """Check the tag, then the fields. Sequences come back as tuples."""
        if not isinstance(wire, dict):
            raise MalformedFrame(f"a {cls.TAG!r} frame must be a dict, not {type(wire).__name__}")
        if wire.get("t") != cls.TAG:
            raise MalformedFrame(f"a {cls.TAG!r} frame tagged {wire.get('t')!r:.60}")
        return _build(cls, wire, where or cls.TAG, f"{cls.TAG!r} frame", tagged=True)


# --- worker -> parent ----------------------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True, slots=True)
class Warm(Frame):
    """Imports (and CUDA init) done, before the request: the parent may take the GPU now (`WorkerProcess.wait_warm`)."""

    TAG: ClassVar[str] = "warm"


@dataclasses.dataclass(frozen=True, slots=True)
class Ready(Frame):
    """Request read, limits set, no candidate code run yet: the candidate's time limit starts here."""

    TAG: ClassVar[str] = "ready"
    netns: bool  # the worker got a private network namespace (else only the audit hook refuses sockets)


@dataclasses.dataclass(frozen=True, slots=True)
class Loaded(Frame):
    """The candidate file imported and `ModelNew` is a class."""

    TAG: ClassVar[str] = "loaded"
    load_ms: float  # wall time of the import


@dataclasses.dataclass(frozen=True, slots=True)
class Violation(Frame):
    """The sandbox refused something (audit hook, dispatch or launch guard). Sent as it happens, from any phase."""

    TAG: ClassVar[str] = "violation"
    kind: str  # a `FailureKind` value (this module cannot import types.py: the parent converts and checks it)
    detail: str  # what was refused, and where


@dataclasses.dataclass(frozen=True, slots=True)
class WorkerError(Frame):
    """Candidate code raised (or the import found tampering); the worker stops after sending this."""

    TAG: ClassVar[str] = "error"
    phase: Phase
    kind: str  # a `FailureKind` value, from `worker/failures.classify`
    message: str  # formatted traceback, truncated by the worker
    shape: int | None = None  # construct and forward errors: index into the request's shapes
    case: int | None = None  # forward errors: index into that shape's cases
    mode: Mode | None = None  # forward errors


@dataclasses.dataclass(frozen=True, slots=True)
class CaseFrame(Frame):
    """One recorded forward call: its outputs and what it did. The worker never judges these; the parent does."""

    TAG: ClassVar[str] = "case"
    shape: int  # index into the request's shapes
    case: int  # index into that shape's cases
    mode: Mode
    container: Literal["tensor", "tuple", "list"]  # exact type of what forward returned
    outputs: tuple[torch.Tensor, ...]  # on the CPU; empty when structure_error is set
    structure_error: str | None  # why the outputs could not be copied out (non-tensors, far too many elements)
    ops: dict[str, int]  # torch ops dispatched by candidate code -> count
    launches: tuple[tuple[str, bool], ...]  # Triton launches in order: (kernel name, defined in the candidate file)
    mutated: tuple[bool, ...]  # per input: forward changed it
    threads: int  # Python threads alive after the call minus before the candidate ran
    tamper: tuple[str, ...]  # integrity findings (patched functions, displaced recorder, hooks)
    forward_ms: float  # wall time of the recording window


@dataclasses.dataclass(frozen=True, slots=True)
class GpuAsk(Frame):
    """The worker's next step may use the GPU (load, construct, a case); it blocks until the parent answers `GpuGo`,
    holding the GPU shared for it. Sent only when the request says `gpu_steps`."""

    TAG: ClassVar[str] = "gpu_ask"


@dataclasses.dataclass(frozen=True, slots=True)
class GpuFree(Frame):
    """The step's GPU work is finished (the device synchronised): the parent may release its shared hold."""

    TAG: ClassVar[str] = "gpu_free"


@dataclasses.dataclass(frozen=True, slots=True)
class AwaitTiming(Frame):
    """Every case was sent; the worker blocks on the control pipe until the parent answers with `TimingGo`."""

    TAG: ClassVar[str] = "await_timing"


@dataclasses.dataclass(frozen=True, slots=True)
class TimingFrame(Frame):
    """Raw timing samples and facts (`worker/timing.measure_pair` plus the candidate checks); the parent judges them
    (`timing_stats.judge_timing`, which reads `to_wire()`)."""

    TAG: ClassVar[str] = "timing"
    mode: Literal["events", "cuda_graph"]
    graph_calls: int  # calls per graph replay (1 in events mode)
    note: str  # why CUDA-graph capture fell back to events, if it did
    ref_us: tuple[float, ...]  # per-call samples of the reference
    cand_us: tuple[float, ...]  # per-call samples of the candidate
    rounds: int  # interleaved blocks run
    warmup_calls: tuple[int, ...]  # per side
    host_us_per_call: tuple[float, ...]  # per side, during warm-up
    estimate_us: tuple[float, ...]  # per side, the first block's median
    wall: tuple[tuple[dict[str, float], ...], ...]  # per side, synchronised batches {n, host_us, wall_us}
    gpu: str
    l2_bytes: int
    clock_mhz: int | None  # SM clock after timing, when NVML is reachable
    params: dict[str, float]  # the TimingParams used
    cand_calls: dict[str, int]  # {"n": timed candidate calls, "without_launch": of those, calls with no launch}
    outputs: tuple[tuple[int, tuple[torch.Tensor, ...] | None], ...]  # (value set, last outputs or None: non-tensor)
    tamper: tuple[str, ...] = ()  # integrity findings after timing
    threads: int = 0  # new Python threads left running after timing


@dataclasses.dataclass(frozen=True, slots=True)
class Done(Frame):
    """Every phase finished; the worker exits next."""

    TAG: ClassVar[str] = "done"


# --- parent -> worker (control pipe) -------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True, slots=True)
class TimingGo(Frame):
    """The parent's answer to `AwaitTiming`: time now (it holds the GPU exclusively), or skip timing."""

    TAG: ClassVar[str] = "go"
    go: bool


@dataclasses.dataclass(frozen=True, slots=True)
class GpuGo(Frame):
    """The parent's answer to `GpuAsk`: it holds the GPU shared now; the step may run."""

    TAG: ClassVar[str] = "gpu_go"


# --- parent -> worker (stdin) ---------------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True, slots=True)
class Limits(Record):
    """Resource limits the worker sets on itself before any candidate code runs."""

    fsize_mb: int  # RLIMIT_FSIZE
    as_mb: int | None  # RLIMIT_AS; None on a GPU (CUDA reserves ~17 GiB of address space: the RSS watchdog limits)


@dataclasses.dataclass(frozen=True, slots=True)
class CaseRequest(Record):
    """One correctness case as the worker gets it: the inputs, never the reference outputs."""

    name: str
    inputs: tuple[Any, ...]  # forward's arguments (CPU tensors, numbers), handed to the candidate as they are
    poison: Literal["sentinel", "nan"] | None  # what the candidate's fresh allocations are filled with
    max_output_numel: int  # the worker refuses a flood of outputs before it reaches the parent


@dataclasses.dataclass(frozen=True, slots=True)
class ShapeRequest(Record):
    """One planned shape: how to build ModelNew as the reference was built, and the cases to run on it."""

    name: str
    init_args: tuple[Any, ...]  # ModelNew(*init_args)
    init_seed: int  # torch.manual_seed before construction
    state_dict: dict[str, torch.Tensor]  # the reference's parameters; ModelNew loads the entries that match
    cases: tuple[CaseRequest, ...]


@dataclasses.dataclass(frozen=True, slots=True)
class TimingRequest(Record):
    """How the worker rebuilds the reference and the timing inputs before any candidate code is imported
    (`worker/timing_phase.prepare`): the task and seeds, never outputs."""

    task_source: str
    task_id: str
    roles: dict[str, str]  # constant name -> role, as the parent classified the task's constants
    sizes: dict[str, int]  # the base shape's
    init_seed: int  # the base shape's
    seeds: tuple[int, ...]  # one per value set: the parent drew the same inputs from them
    n_slots: int  # input slots per side
    params: dict[str, float]  # TimingParams fields (`TimingParams.from_dict`)


@dataclasses.dataclass(frozen=True, slots=True)
class Request(Frame):
    """Everything the worker is told, once, on stdin: the candidate, the limits, what to run, and how."""

    TAG: ClassVar[str] = "request"
    candidate_path: str
    workdir: str  # the private directory; the guard allows writes only here
    device: Literal["cpu", "cuda"]
    guard: bool  # install the audit guard (`worker/guard.py`)
    ghost: bool  # also run case 0 with the candidate's kernels skipped
    repeat: bool  # also run case 0 with the other poison value
    profile: bool  # also run case 0 in a second environment profile
    profile_module: str  # the module name the candidate is imported under in that profile
    limits: Limits
    shapes: tuple[ShapeRequest, ...]
    timing: TimingRequest | None = None  # on cuda when the candidate is to be timed
    gpu_steps: bool = False  # ask for the GPU (`GpuAsk`) before each step that may use it, free it after


WorkerFrame = (
    Warm | Ready | Loaded | Violation | WorkerError | CaseFrame | GpuAsk | GpuFree | AwaitTiming | TimingFrame | Done
)
_BY_TAG: dict[str, type[Frame]] = {c.TAG: c for c in typing.get_args(WorkerFrame) + (TimingGo, GpuGo)}
# Resolved at import: in the worker that is before any candidate code runs (it reads `TimingGo` after the candidate).
_HINTS: dict[type[Record], dict[str, Any]] = {
    c: typing.get_type_hints(c) for c in (*_BY_TAG.values(), Request, Limits, ShapeRequest, CaseRequest, TimingRequest)
}


def decode(wire: object) -> Frame:
    """The frame `wire` (a decoded pipe payload) holds; `MalformedFrame` for anything that is not exactly one."""
    if not isinstance(wire, dict):
        raise MalformedFrame(f"a frame must be a dict, not {type(wire).__name__}")
    tag = wire.get("t")
    cls = _BY_TAG.get(tag) if isinstance(tag, str) else None
    if cls is None:
        raise MalformedFrame(f"unknown frame tag {tag!r:.60}")
    return cls.from_wire(wire)


def _build(cls: type[Record], wire: object, path: str, label: str, tagged: bool = False) -> Any:
    """`cls` from `wire`, every field checked (`path` prefixes field names in errors, `label` names the record)."""
    if not isinstance(wire, dict):
        raise MalformedFrame(f"{label} must be a dict, not {type(wire).__name__}")
    hints, fields = _HINTS[cls], {f.name: f for f in dataclasses.fields(cls)}
    extra = sorted(str(k) for k in wire.keys() - fields.keys() - ({"t"} if tagged else set()))
    if extra:
        raise MalformedFrame(f"{label} with unknown keys {extra[:5]}")
    values = {}
    for name, f in fields.items():
        if name in wire:
            values[name] = _check(wire[name], hints[name], f"{path}.{name}")
        elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            raise MalformedFrame(f"{label} without {name!r}")
    return cls(**values)


def _wire(value: Any) -> Any:
    """A field's wire form: records (also inside tuples) become plain dicts, since the pipe builds no classes."""
    if isinstance(value, Record):
        return value.to_wire()
    if type(value) is tuple:
        return tuple(_wire(v) for v in value)
    return value


def _check(value: Any, tp: Any, where: str) -> Any:
    """`value` if it has type `tp` (sequences as tuples), else MalformedFrame. Numbers are never converted: an int
    where a float is declared stays an int, so what the parent reads is exactly what was sent."""
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if tp is Any:  # opaque to both sides (a case's inputs): handed to the candidate as the parent drew them
        return value
    if origin in (types.UnionType, typing.Union):
        for arg in args:
            if isinstance(value, dict) and _is_record(arg):  # the one arm a dict can be: its error names the field
                return _check(value, arg, where)
            try:
                return _check(value, arg, where)
            except MalformedFrame:
                pass
    elif origin is Literal:
        if type(value) is str and value in args:
            return value
    elif origin is tuple:
        if type(value) in (tuple, list):
            if len(args) == 2 and args[1] is Ellipsis:
                return tuple(_check(v, args[0], f"{where}[{i}]") for i, v in enumerate(value))
            if len(value) == len(args):
                return tuple(_check(v, a, f"{where}[{i}]") for i, (v, a) in enumerate(zip(value, args, strict=True)))
    elif origin is dict:
        if type(value) is dict:
            return {
                _check(k, args[0], f"{where} key"): _check(v, args[1], f"{where}[{k!r:.40}]") for k, v in value.items()
            }
    elif _is_record(tp):
        return tp.from_wire(value, where)
    elif tp is float:
        if type(value) in (float, int):
            return value
    elif tp is torch.Tensor:
        if isinstance(value, torch.Tensor):
            return value
    elif tp is type(None):
        if value is None:
            return value
    elif type(value) is tp:  # bool, int, str: exact, so a bool is no int
        return value
    raise MalformedFrame(f"{where}: expected {_name(tp)}, got {type(value).__name__}")


def _is_record(tp: Any) -> bool:
    return isinstance(tp, type) and issubclass(tp, Record)


def _name(tp: Any) -> str:
    return getattr(tp, "__name__", None) or str(tp).replace("typing.", "")


# --- shared tables -------------------------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class TimingParams:
    warmup_ms: float = 25.0
    min_reps: int = 20
    max_reps: int = 400
    block: int = 5  # reps per side before switching sides
    target_rel_err: float = 0.002  # relative standard error of each median
    budget_s: float = 0.8  # measuring time per candidate (both sides), warm-up and cross-check excluded
    flush_mb: int = 256
    graph_below_us: float = 30.0
    graph_target_us: float = 2000.0  # one graph replay lasts about this long
    wall_batch_ms: float = 20.0
    wall_repeats: int = 3  # wall-clock batches per side; the parent judges each side's best

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TimingParams:
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in names})


_SENTINELS = {torch.float16: -31337.0, torch.bfloat16: -1.2345e30, torch.float32: -1.2345e30, torch.float64: -1.2345e30}


def case_poison(poison: str | None, mode: str) -> str | None:
    """The poison a case's run fills fresh allocations with, by mode; the worker and the judge both ask here.

    `repeat` runs with the other poison. `profile` (the second environment) runs with none: a fixed poison is a
    fingerprint (an int32 `torch.empty(1).item()` reads -0x5A5A5A5 only under the verifier, helpers' wave 2), so a
    candidate that behaves only while poisoned allocations say it is watched must also pass one unpoisoned run."""
    if mode == "profile":
        return None
    if mode == "repeat" and poison:
        return "nan" if poison == "sentinel" else "sentinel"
    return poison


def poison_value(dtype: torch.dtype, kind: str) -> float | int | None:
    """The value fresh candidate allocations are filled with: NaN or a distinctive finite sentinel."""
    if dtype.is_floating_point:
        return float("nan") if kind == "nan" else _SENTINELS.get(dtype, -1.2345e30)
    if dtype == torch.bool:
        return None
    if dtype.is_complex:
        return None
    return {torch.uint8: 0xA5, torch.int8: -91}.get(dtype, -0x5A5A5A5)
