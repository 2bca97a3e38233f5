"""verify/messages.py: every frame survives the pipe as itself, and `decode` refuses anything that is not exactly a
frame (the worker is candidate-controlled, so the parent checks tags, keys and types). The parent's request survives
the pipe the same way, and the worker's `Request.from_wire` refuses a malformed one, naming the field."""

from __future__ import annotations

import ast
import dataclasses
import os
import threading
from pathlib import Path

import pytest
import torch

from tritonrl.tasks.loader import builtin_task
from tritonrl.verify.cases import draw_cases, run_cases
from tritonrl.verify.config import VerifyConfig
from tritonrl.verify.funnel import _request, _timing_params, plan_for
from tritonrl.verify.messages import (
    AwaitTiming,
    CaseFrame,
    CaseRequest,
    Done,
    GpuAsk,
    GpuFree,
    GpuGo,
    Limits,
    Loaded,
    MalformedFrame,
    Ready,
    Request,
    ShapeRequest,
    TimingFrame,
    TimingGo,
    TimingRequest,
    Violation,
    Warm,
    WorkerError,
    decode,
)
from tritonrl.verify.protocol import read_frame, write_frame
from tritonrl.verify.sandbox import WorkerProcess
from tritonrl.verify.timing_cases import draw_timing, run_timing, timing_request, timing_slots

KEY = bytes(range(32))
CASE = CaseFrame(
    shape=0, case=1, mode="ghost", container="tuple", outputs=(torch.arange(6.0).reshape(2, 3),), structure_error=None,
    ops={"aten.empty_like": 2}, launches=(("add_kernel", True),), mutated=(False, True), threads=0, tamper=(),
    forward_ms=1.5,
)  # fmt: skip
TIMING = TimingFrame(
    mode="cuda_graph", graph_calls=10, note="", ref_us=(2.0, 2.1), cand_us=(1.0, 1.1), rounds=2, warmup_calls=(3, 4),
    host_us_per_call=(5.0, 6.0), estimate_us=(2.0, 1.0), wall=(({"n": 10, "host_us": 3.0, "wall_us": 30.0},),) * 2,
    gpu="H100", l2_bytes=50 << 20, clock_mhz=None, params={"budget_s": 0.8, "min_reps": 20},
    cand_calls={"n": 40, "without_launch": 0}, outputs=((0, (torch.ones(3),)), (1, None)), tamper=("x",), threads=1,
)  # fmt: skip
FRAMES = [
    Warm(), Ready(netns=True), Loaded(load_ms=12.5), Violation(kind="file_access", detail="open refused"),
    WorkerError(phase="forward", kind="runtime_error", message="boom", shape=0, case=1, mode="repeat"),
    WorkerError(phase="load", kind="import_error", message="boom"), CASE, GpuAsk(), GpuFree(), AwaitTiming(), TIMING,
    Done(), TimingGo(go=False), GpuGo(),
]  # fmt: skip
REQUEST = Request(
    candidate_path="/tmp/x/model_new.py",
    workdir="/tmp/x",
    device="cpu",
    guard=True,
    ghost=True,
    repeat=False,
    profile=True,
    profile_module="solution",
    limits=Limits(fsize_mb=256, as_mb=None),
    shapes=(
        ShapeRequest(
            name="base",
            init_args=(3, 0.5),
            init_seed=7,
            state_dict={"weight": torch.ones(2, 3)},
            cases=(
                CaseRequest(
                    name="base/native", inputs=(torch.arange(6.0), 4), poison="sentinel", max_output_numel=1030
                ),
                CaseRequest(name="base/wide", inputs=(torch.zeros(6), 4), poison=None, max_output_numel=1030),
            ),
        ),
    ),
    timing=TimingRequest(
        task_source="class Model: ...",
        task_id="relu",
        roles={"n": "size"},
        sizes={"n": 64},
        init_seed=7,
        seeds=(11, 12, 13, 14, 15),
        n_slots=2,
        params={"budget_s": 0.8, "min_reps": 20},
    ),
)


def _same(a: object, b: object) -> bool:
    """Field-wise equality that compares tensors by value."""
    if isinstance(a, torch.Tensor):
        return isinstance(b, torch.Tensor) and torch.equal(a, b)
    if isinstance(a, tuple | list):
        return isinstance(b, tuple) and len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, dict):
        return isinstance(b, dict) and a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if dataclasses.is_dataclass(a):  # a record nested in the request
        return type(a) is type(b) and all(_same(getattr(a, f.name), getattr(b, f.name)) for f in dataclasses.fields(a))
    return type(a) is type(b) and a == b


@pytest.mark.parametrize("frame", FRAMES, ids=lambda f: type(f).__name__)
def test_every_frame_round_trips_through_the_pipe(frame):
    r, w = os.pipe()
    try:
        write_frame(w, frame.to_wire(), KEY)
        got = decode(read_frame(r, KEY))
    finally:
        os.close(r)
        os.close(w)
    assert type(got) is type(frame)
    assert all(_same(getattr(frame, f.name), getattr(got, f.name)) for f in dataclasses.fields(frame))


def test_sequences_sent_as_lists_come_back_as_tuples():
    wire = {**CASE.to_wire(), "launches": [["k", True]], "mutated": [False], "tamper": []}
    got = decode(wire)
    assert got.launches == (("k", True),) and got.mutated == (False,) and got.tamper == ()


def test_numbers_are_checked_never_converted():
    got = decode({**Loaded(load_ms=1.0).to_wire(), "load_ms": 3})
    assert got.load_ms == 3 and type(got.load_ms) is int  # messages quote what was sent, digit for digit


@pytest.mark.parametrize(
    "wire, why",
    [
        ([1, 2], "must be a dict"),
        ({"t": "exec"}, "unknown frame tag"),
        ({"netns": True}, "unknown frame tag"),
        ({"t": "ready"}, "without 'netns'"),
        ({"t": "ready", "netns": True, "extra": 1}, "unknown keys"),
        ({"t": "ready", "netns": 1}, "expected bool"),  # a bool is no int, and an int is no bool
        ({**CASE.to_wire(), "shape": True}, "expected int"),
        ({**CASE.to_wire(), "mode": "fast"}, "case.mode"),
        ({**CASE.to_wire(), "outputs": [torch.ones(1).numpy()]}, "expected Tensor"),
        ({**CASE.to_wire(), "launches": [["k"]]}, "case.launches"),
        ({**CASE.to_wire(), "ops": {"aten.add": "1"}}, "expected int"),
        ({**CASE.to_wire(), "structure_error": 3}, "case.structure_error"),
        ({**TIMING.to_wire(), "outputs": [[0, [torch.ones(1), "x"]]]}, "timing.outputs"),
        ({"t": "error", "phase": "exec", "kind": "crash", "message": ""}, "error.phase"),
    ],
)
def test_anything_but_a_frame_is_malformed(wire, why):
    with pytest.raises(MalformedFrame, match=why):
        decode(wire)


def test_timing_frame_fields_are_what_the_worker_fills_in():
    # run_timing builds TimingFrame(**measure_pair(...), cand_calls=..., outputs=...): the keys of measure_pair's
    # returned dict must be exactly the frame's measured fields (this checks it on the CPU; timing runs on a GPU only).
    source = Path(__file__).resolve().parents[2] / "src/tritonrl/verify/worker/timing.py"
    fn = next(n for n in ast.walk(ast.parse(source.read_text())) if getattr(n, "name", "") == "measure_pair")
    returned = next(n.value for n in ast.walk(fn) if isinstance(n, ast.Return) and isinstance(n.value, ast.Dict))
    keys = {k.value for k in returned.keys}
    assert keys | {"cand_calls", "outputs", "tamper", "threads"} == {f.name for f in dataclasses.fields(TimingFrame)}


# --- the parent's request ------------------------------------------------------------------------------------------
def _through_the_pipe(request: Request) -> Request:
    """The worker's view of `request`: encoded, sent, read back and checked as `worker/main.py` does."""
    r, w = os.pipe()
    writer = threading.Thread(target=write_frame, args=(w, request.to_wire(), KEY))  # a request outgrows the pipe
    writer.start()
    try:
        return Request.from_wire(read_frame(r, KEY))
    finally:
        writer.join()
        os.close(r)
        os.close(w)


def test_the_request_round_trips_through_the_pipe():
    got = _through_the_pipe(REQUEST)
    assert _same(REQUEST, got) and type(got.shapes[0].cases[0]) is CaseRequest and type(got.timing) is TimingRequest


def test_the_request_goes_on_the_pipe_as_plain_containers():
    # `torch.load(weights_only=True)` builds no classes: nested records travel as dicts, sequences as tuples
    wire = REQUEST.to_wire()
    assert wire["t"] == "request" and type(wire["limits"]) is dict and type(wire["timing"]) is dict
    assert type(wire["shapes"]) is tuple and type(wire["shapes"][0]["cases"][1]) is dict
    assert wire["shapes"][0]["state_dict"]["weight"] is REQUEST.shapes[0].state_dict["weight"]  # not copied


def test_the_request_the_parent_builds_survives_the_pipe():
    # What funnel._run_sandboxed sends, timing part included (built on the CPU here; on cuda only its device
    # differs): every field comes back with the type the worker's annotations promise.
    task, cfg = builtin_task("relu"), VerifyConfig(n_variants=1)
    drawn = draw_cases(task, plan_for(task, cfg), cfg)
    sets = run_timing(draw_timing(drawn[0], cfg), cfg)
    shapes, _, _ = run_cases(drawn, plan_for(task, cfg), cfg)
    timing = timing_request(task, shapes[0], sets, _timing_params(cfg), timing_slots(cfg))
    proc = WorkerProcess("", cfg)
    try:
        request = _request(proc, cfg, shapes, True, timing)
    finally:
        proc.close()
    got = _through_the_pipe(request)
    assert _same(request, got) and got.timing.seeds == tuple(sets.seeds) and len(got.shapes) == 2
    assert [c.name for c in got.shapes[1].cases] == [c.name for c in shapes[1].cases]


def test_a_worker_frame_cannot_be_a_request_nor_a_request_a_worker_frame():
    with pytest.raises(MalformedFrame, match="unknown frame tag 'request'"):
        decode(REQUEST.to_wire())  # the parent's decoder never builds a request from what the worker sends
    with pytest.raises(MalformedFrame, match="a 'request' frame tagged 'done'"):
        Request.from_wire(Done().to_wire())


def _wire(**changes) -> dict:
    """REQUEST's wire form with `changes`, keyed "field" or "part.field" (part: limits, timing, shape for the first
    shape, case for its first case); a value of ... deletes the field."""
    wire = REQUEST.to_wire()  # fresh dicts all the way down (tensors are shared)
    shape = wire["shapes"][0]
    parts = {"": wire, "limits": wire["limits"], "timing": wire["timing"], "shape": shape, "case": shape["cases"][0]}
    for key, value in changes.items():
        part, _, name = key.rpartition(".")
        if value is ...:
            del parts[part][name]
        else:
            parts[part][name] = value
    return wire


@pytest.mark.parametrize(
    "wire, why",
    [
        ([REQUEST.to_wire()], "'request' frame must be a dict, not list"),
        (_wire(shapes=...), "'request' frame without 'shapes'"),
        (_wire(isolate_network=False), r"'request' frame with unknown keys \['isolate_network'\]"),
        (_wire(device="tpu"), "request.device: expected"),
        (_wire(guard=1), "request.guard: expected bool, got int"),
        (_wire(**{"limits.fsize_mb": 256.0}), "request.limits.fsize_mb: expected int, got float"),
        (_wire(**{"limits.as_mb": ...}), "request.limits without 'as_mb'"),
        (_wire(limits=256), "request.limits must be a dict, not int"),
        (_wire(**{"shape.state_dict": {"weight": [1.0]}}), r"request.shapes\[0\].state_dict\['weight'\]"),
        (_wire(**{"shape.init_seed": "7"}), r"request.shapes\[0\].init_seed: expected int, got str"),
        (_wire(**{"case.poison": "zeros"}), r"request.shapes\[0\].cases\[0\].poison"),
        (_wire(**{"case.max_output_numel": None}), r"request.shapes\[0\].cases\[0\].max_output_numel"),
        (_wire(**{"case.outputs": ()}), r"request.shapes\[0\].cases\[0\] with unknown keys \['outputs'\]"),
        (_wire(**{"timing.seeds": (1, "2")}), r"request.timing.seeds\[1\]: expected int, got str"),
        (_wire(**{"timing.params": {"budget_s": "0.8"}}), r"request.timing.params\['budget_s'\]: expected float"),
        (_wire(**{"timing.n_slots": ...}), "request.timing without 'n_slots'"),
        (_wire(timing=[]), "request.timing: expected TimingRequest | None, got list"),
    ],
)
def test_a_malformed_request_is_refused_naming_the_field(wire, why):
    with pytest.raises(MalformedFrame, match=why):
        Request.from_wire(wire)


def test_a_request_without_timing_has_none():
    wire = {k: v for k, v in REQUEST.to_wire().items() if k != "timing"}
    assert Request.from_wire(wire).timing is None and Request.from_wire({**wire, "timing": None}).timing is None


def test_timing_request_fields_are_what_the_worker_reads():
    # timing_phase.prepare rebuilds the reference from the TimingRequest on a GPU only: it must read exactly the
    # request's fields (this checks it on the CPU, as the TimingFrame test above does for the frame).
    source = Path(__file__).resolve().parents[2] / "src/tritonrl/verify/worker/timing_phase.py"
    fn = next(n for n in ast.walk(ast.parse(source.read_text())) if getattr(n, "name", "") == "prepare")
    read = {n.attr for n in ast.walk(fn) if isinstance(n, ast.Attribute) and getattr(n.value, "id", "") == "spec"}
    assert read == {f.name for f in dataclasses.fields(TimingRequest)}
