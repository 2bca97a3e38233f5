"""verify/messages.py: every frame survives the pipe as itself, and `decode` refuses anything that is not exactly a
frame (the worker is candidate-controlled, so the parent checks tags, keys and types)."""

from __future__ import annotations

import ast
import dataclasses
import os
from pathlib import Path

import pytest
import torch

from tritonrl.verify.messages import (
    AwaitTiming,
    CaseFrame,
    Done,
    Loaded,
    MalformedFrame,
    Ready,
    TimingFrame,
    TimingGo,
    Violation,
    Warm,
    WorkerError,
    decode,
)
from tritonrl.verify.protocol import read_frame, write_frame

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
    WorkerError(phase="load", kind="import_error", message="boom"), CASE, AwaitTiming(), TIMING, Done(),
    TimingGo(go=False),
]  # fmt: skip


def _same(a: object, b: object) -> bool:
    """Field-wise equality that compares tensors by value."""
    if isinstance(a, torch.Tensor):
        return isinstance(b, torch.Tensor) and torch.equal(a, b)
    if isinstance(a, tuple | list):
        return isinstance(b, tuple) and len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, dict):
        return isinstance(b, dict) and a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
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
