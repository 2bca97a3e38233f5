"""types.py: a Verdict's typed TimingReport survives the JSON round trip whole or partial, verdicts stored before it
existed (report in `extra["timing"]`, compile speedup in `extra["speedup_compile"]`) read back into it, and
`speedup_of("compile")` reads it; its checks' CheckStats survive the round trip too, and checks stored before
`CheckResult.stats` existed (the statistics flat on the check) read back into it. Verdicts are built by hand; nothing
is verified or timed."""

from __future__ import annotations

import dataclasses
import json
import math

import pytest

from tritonrl.types import CheckResult, CheckStats, FailureKind, Roofline, Stage, TimingReport, Verdict, WallCheck

CEILINGS = {"gpu": "H100", "bandwidth_gbs": 3000.0, "flops_tflops": 800.0, "l2_bytes": 50 << 20}
FULL = TimingReport(
    mode="events",
    gpu="H100",
    clock_mhz=1980,
    wall_check=WallCheck(ref_ratio=1.02, cand_ratio=1.05, limit=1.53, batches=3),
    ref_us=100.0,
    cand_us=50.0,
    ref_cv=0.01,
    cand_cv=0.07,
    speedup=2.0,
    speedup_ci95=(1.98, 2.02),
    n_reps=(100, 120),
    graph_calls=1,
    protocol={"budget_s": 0.8, "n_sets": 2, "note": ""},
    unstable=True,
    speedup_compile=1.0,
    roofline=Roofline(
        flops=0,
        bytes=128 << 20,
        min_bytes=64 << 20,
        floor_us=17.2,
        bound="memory",
        bandwidth_fraction=0.89,
        flops_fraction=0.0,
        ceilings=CEILINGS,
    ),
)
PARTIAL = TimingReport(mode="cuda_graph", gpu="H100", clock_mhz=None)  # rejected before the wall check (stale output)


def _verdict(timing: TimingReport | None, passed: bool = True, **extra: object) -> Verdict:
    return Verdict(
        task_id="relu",
        passed=passed,
        stage=Stage.DONE if passed else Stage.TIMING,
        failure=None if passed else FailureKind.STALE_OUTPUT,
        message="",
        speedup=timing.speedup if passed and timing else None,
        timing=timing,
        extra={"notes": [], **extra},
    )


def _through_json(v: Verdict) -> Verdict:
    return Verdict.from_dict(json.loads(v.to_json()))


@pytest.mark.parametrize("timing", [FULL, PARTIAL, None], ids=["full", "partial", "none"])
def test_timing_report_round_trips_through_json(timing: TimingReport | None):
    v = _verdict(timing, passed=timing is not PARTIAL)
    back = _through_json(v)
    assert back == v
    assert back.timing is None or (type(back.timing) is TimingReport and back.timing == timing)
    if timing is FULL:
        assert type(back.timing.wall_check) is WallCheck and type(back.timing.roofline) is Roofline
        assert back.timing.speedup_ci95 == (1.98, 2.02) and back.timing.n_reps == (100, 120)  # tuples again
        assert json.loads(v.to_json())["timing"]["speedup_ci95"] == [1.98, 2.02]
    assert "timing" not in back.extra and "speedup_compile" not in back.extra


def test_non_finite_report_floats_come_back_as_floats():
    # JSON stores inf as text; the typed report gives a float back, so formatting it cannot raise
    wall = WallCheck(ref_ratio=math.inf, cand_ratio=2.0, limit=math.inf, batches=3)
    v = _verdict(TimingReport("events", wall_check=wall, cand_cv=math.inf), passed=False)
    assert json.loads(v.to_json())["timing"]["wall_check"]["ref_ratio"] == "inf"
    back = _through_json(v).timing
    assert back.wall_check.ref_ratio == math.inf and back.wall_check.limit == math.inf and back.cand_cv == math.inf
    assert back == v.timing


def _old_record(timing: dict | None, speedup_compile: float | None) -> dict:
    """A verdict as tritonrl wrote it before `Verdict.timing`: the report in extra, with lists for pairs."""
    d = _verdict(None).to_dict()
    del d["timing"]
    d["extra"] = {"notes": ["kept"], "seeds": {"base": {"init": 1}}}
    if timing is not None:
        d["extra"]["timing"] = timing
    if speedup_compile is not None:
        d["extra"]["speedup_compile"] = speedup_compile
    return d


OLD_FULL = {
    "mode": "events", "gpu": "H100", "clock_mhz": 1980,
    "wall_check": {"ref_ratio": 1.02, "cand_ratio": 1.05, "limit": 1.53, "batches": 3},
    "ref_us": 100.0, "cand_us": 50.0, "ref_cv": 0.01, "cand_cv": 0.07, "speedup": 2.0, "speedup_ci95": [1.98, 2.02],
    "n_reps": [100, 120], "graph_calls": 1, "protocol": {"budget_s": 0.8, "n_sets": 2, "note": ""}, "unstable": True,
    "speedup_compile": 1.0,
    "roofline": {"flops": 0, "bytes": 128 << 20, "min_bytes": 64 << 20, "floor_us": 17.2, "bound": "memory",
                 "bandwidth_fraction": 0.89, "flops_fraction": 0.0, "ceilings": CEILINGS},
}  # fmt: skip


def test_old_record_with_extra_timing_is_migrated():
    v = Verdict.from_dict(json.loads(json.dumps(_old_record(OLD_FULL, speedup_compile=1.0))))
    assert v.timing == FULL
    assert v.extra == {"notes": ["kept"], "seeds": {"base": {"init": 1}}}  # the rest of extra is left as it was
    assert v.speedup_of("compile") == 1.0
    assert _through_json(v) == v and "timing" in v.to_dict() and "speedup_compile" not in v.to_dict()["extra"]


def test_old_partial_and_stable_records_are_migrated():
    partial = Verdict.from_dict(_old_record({"mode": "cuda_graph", "gpu": "H100", "clock_mhz": None}, None))
    assert partial.timing == PARTIAL and partial.extra == {"notes": ["kept"], "seeds": {"base": {"init": 1}}}
    # before, "unstable" was written only when true
    stable = {k: v for k, v in OLD_FULL.items() if k not in ("unstable", "speedup_compile")}
    v = Verdict.from_dict(_old_record(stable, None))
    assert v.timing.unstable is False and v.timing.speedup_compile is None and v.speedup_of("compile") is None


def test_old_record_with_only_speedup_compile_is_migrated():
    v = Verdict.from_dict(_old_record(None, speedup_compile=0.8))
    assert v.timing == TimingReport(mode="", speedup_compile=0.8) and v.speedup_of("compile") == 0.8
    assert "speedup_compile" not in v.extra


def test_old_record_without_timing_gets_none():
    v = Verdict.from_dict(_old_record(None, None))
    assert v.timing is None and v.extra == {"notes": ["kept"], "seeds": {"base": {"init": 1}}}


def test_speedup_of_compile_reads_the_timing_report():
    assert _verdict(FULL).speedup_of("compile") == 1.0
    assert _verdict(FULL).speedup_of("eager") == 2.0
    assert _verdict(None).speedup_of("compile") is None
    assert _verdict(PARTIAL, passed=False).speedup_of("compile") is None
    # a value in extra is no longer read: only the typed report counts
    assert _verdict(None, speedup_compile=3.0).speedup_of("compile") is None
    for bad in (math.inf, math.nan, 0.0, -1.0, True):
        assert _verdict(dataclasses.replace(FULL, speedup_compile=bad)).speedup_of("compile") is None, bad


BAD_STATS = CheckStats(
    output_index=1, n_elements=64, n_mismatch=3, max_abs_err=2.5, max_rel_err=math.inf, first_bad_index=(3, 7),
    atol=1e-4, rtol=1e-4,
)  # fmt: skip
CHECKS = (
    CheckResult("base/normal", {"N": 64, "M": 8}, "normal", 11, True, message="ok",
                stats=CheckStats(n_elements=512, max_abs_err=1e-7, max_rel_err=2e-6, atol=1e-4, rtol=1e-4)),
    CheckResult("base/wide", {"N": 64, "M": 8}, "wide", 12, False, FailureKind.WRONG_VALUES, "3 of 64 differ",
                stats=BAD_STATS),
    CheckResult("variant1/normal", {"N": 1, "M": 8}, "normal", 13, False, FailureKind.WRONG_SHAPE, "shape"),
)  # fmt: skip


def _with_checks(checks: tuple[CheckResult, ...] = CHECKS) -> Verdict:
    return Verdict("relu", False, Stage.CORRECTNESS, FailureKind.WRONG_VALUES, "base/wide: 3 of 64 differ",
                   checks=checks)  # fmt: skip


def test_checks_round_trip_through_json_with_their_stats_nested():
    v = _with_checks()
    d = json.loads(v.to_json())
    assert d["checks"][1]["stats"]["first_bad_index"] == [3, 7] and d["checks"][1]["stats"]["max_rel_err"] == "inf"
    assert "n_mismatch" not in d["checks"][1]  # nested only, not copied flat as well
    back = Verdict.from_dict(d)
    assert back == v
    bad = back.checks[1]
    assert type(bad.stats) is CheckStats and bad.stats.first_bad_index == (3, 7)  # a tuple again, not a list
    assert bad.stats.max_rel_err == math.inf and bad.failure is FailureKind.WRONG_VALUES
    assert back.checks[2].stats == CheckStats()


def test_old_flat_checks_are_migrated():
    """Checks as tritonrl wrote them before `CheckResult.stats`: every statistic flat on the check."""
    new = _with_checks().to_dict()
    old = dict(new, checks=[{**{k: v for k, v in c.items() if k != "stats"}, **c["stats"]} for c in new["checks"]])
    assert "stats" not in old["checks"][1] and old["checks"][1]["first_bad_index"] == [3, 7]
    v = Verdict.from_dict(json.loads(json.dumps(old)))
    assert v == _with_checks()
    assert v.checks[1].stats == BAD_STATS and v.checks[1].stats.first_bad_index == (3, 7)
    assert v.to_dict() == new  # written back in the nested form
    # a hand-built old check may lack statistics (or all of them): the defaults fill in
    sparse = {"case": "c", "sizes": {}, "distribution": "normal", "seed": 1, "passed": True, "n_elements": 8}
    assert CheckResult.from_dict(sparse).stats == CheckStats(n_elements=8)
    assert CheckResult.from_dict({**sparse, "n_elements": 0}).stats == CheckStats()
