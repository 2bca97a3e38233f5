"""cli/display.py: the human-readable verdict renders the typed timing report (on a GPU only, so exercised here
with hand-built reports): the speedup line once the statistics exist, nothing of timing for a partial report; and
the checks table from each check's `CheckStats`."""

from __future__ import annotations

import dataclasses
import json
import math

from tritonrl.cli import display
from tritonrl.types import CheckResult, CheckStats, FailureKind, Roofline, Stage, TimingReport, Verdict, WallCheck

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


def test_checks_table_reads_each_checks_stats():
    bad = CheckStats(n_elements=64, n_mismatch=3, max_abs_err=math.inf, max_rel_err=0.5, first_bad_index=(2,))
    checks = (
        CheckResult("base/normal", {"N": 64}, "normal", 1, True, stats=CheckStats(n_elements=64, max_abs_err=1.5e-6)),
        CheckResult("base/wide", {"N": 64}, "wide", 2, False, FailureKind.WRONG_VALUES, "3 of 64 differ", stats=bad),
    )
    v = Verdict("relu", False, Stage.CORRECTNESS, FailureKind.WRONG_VALUES, "base/wide: 3 of 64 differ", checks=checks)
    out = _render(v)
    assert "1.50e-06" in out and "0/64" in out and "5.00e-01" in out and "3/64" in out and "inf" in out
    # a verdict read back from JSON (inf stored as text) renders the same
    assert _render(Verdict.from_dict(json.loads(v.to_json()))) == out
