"""cli/display.py: the human-readable verdict renders the typed timing report (on a GPU only, so exercised here
with hand-built reports): the speedup line once the statistics exist, nothing of timing for a partial report."""

from __future__ import annotations

import dataclasses

from tritonrl.cli import display
from tritonrl.types import FailureKind, Roofline, Stage, TimingReport, Verdict, WallCheck

ROOF = Roofline(flops=0, bytes=1 << 20, min_bytes=1 << 20, floor_us=0.35, bound="memory", bandwidth_fraction=0.5,
                flops_fraction=0.0, ceilings={})  # fmt: skip
TIMED = TimingReport(
    mode="events", gpu="H100", wall_check=WallCheck(1.0, 1.0, 1.5, 3), ref_us=10.0, cand_us=5.0, ref_cv=0.01,
    cand_cv=0.02, speedup=2.0, speedup_ci95=(1.9, 2.1), n_reps=(100, 100), graph_calls=1, roofline=ROOF,
)  # fmt: skip


def _render(v: Verdict) -> str:
    with display.console.capture() as cap:
        display.print_verdict(v)
    return cap.get()


def test_speedup_compile_and_roofline_lines():
    v = Verdict("relu", True, Stage.DONE, None, "passed every check", speedup=2.0, timing=TIMED)
    out = _render(v)
    assert "speedup 2.000x (95% CI 1.900-2.100) over eager: 10.00 us -> 5.00 us, events" in out
    assert "over torch.compile" not in out and "roofline: floor 0.35 us (memory), achieved 50.0%" in out
    out = _render(dataclasses.replace(v, timing=dataclasses.replace(TIMED, speedup_compile=0.8, roofline=None)))
    assert "; 0.800x over torch.compile" in out and "roofline" not in out


def test_partial_report_prints_no_timing():
    partial = TimingReport(mode="events", gpu="H100", wall_check=WallCheck(1.0, 40.0, 1.5, 3))
    v = Verdict("relu", False, Stage.TIMING, FailureKind.TIMING_ESCAPE, "work escaped the timing", timing=partial)
    out = _render(v)
    assert "work escaped the timing" in out and "speedup" not in out and "roofline" not in out
