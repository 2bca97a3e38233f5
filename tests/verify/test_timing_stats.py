"""Parent-side judgement of raw timing frames (`verify/timing_stats.py`): pure functions over numbers and tensors,
so every decision is tested here on the CPU with hand-built frames; the GPU tests feed it real ones."""

from __future__ import annotations

import json
import random
import statistics

import pytest
import torch

from tritonrl.types import FailureKind, Stage, TimingReport, Verdict
from tritonrl.verify.timing_stats import Ceilings, Work, bootstrap_ci, floor_us, judge_timing, wall_ratio
from tritonrl.verify.worker.timing import rel_err_of_median

H100 = Ceilings("H100", bandwidth_gbs=3000.0, flops_tflops=800.0, l2_bytes=50 << 20)
REF = [(torch.arange(6.0).reshape(2, 3),), (torch.ones(2, 3),)]


def _samples(center: float, n: int = 100, spread: float = 0.01, seed: int = 0) -> list[float]:
    rng = random.Random(seed)
    return [center * (1 + rng.gauss(0, spread)) for _ in range(n)]


def _raw(ref_us: float = 100.0, cand_us: float = 50.0, **over) -> dict:
    raw = {
        "mode": "events",
        "gpu": "H100",
        "ref_us": _samples(ref_us, seed=1),
        "cand_us": _samples(cand_us, seed=2),
        "wall": [
            [{"n": 200, "host_us": 2000.0, "wall_us": 200 * ref_us}] * 3,
            [{"n": 400, "host_us": 4000.0, "wall_us": 400 * cand_us}] * 3,
        ],
        "cand_calls": {"n": 300, "without_launch": 0},
        "outputs": [[0, [REF[0][0].clone()]], [1, [REF[1][0].clone()]]],
        "threads": 0,
        "tamper": [],
        "params": {"budget_s": 0.8},
    }
    raw.update(over)
    return raw


def _judge(raw: dict, work: Work | None = None, compile_ratio: float | None = None):
    return judge_timing(raw, REF, tf32=False, work=work, ceilings=H100 if work else None, compile_ratio=compile_ratio)


def test_honest_pair_gets_speedup_with_interval_and_fractions():
    work = Work(flops=0, bytes_read=64 << 20, bytes_written=64 << 20, set_bytes=64 << 20)
    failure, report, speedup = _judge(_raw(), work, compile_ratio=0.5)
    assert failure is None
    assert speedup == pytest.approx(2.0, rel=0.01)
    lo, hi = report.speedup_ci95
    assert lo < speedup < hi and hi - lo < 0.05
    assert report.speedup == pytest.approx(speedup, rel=1e-3) and report.n_reps == (100, 100) and not report.unstable
    assert report.speedup_compile == pytest.approx(1.0, rel=0.01)
    assert 0 < report.roofline.bandwidth_fraction < 1 and report.roofline.bound == "memory"


@pytest.mark.parametrize("over", [{}, {"outputs": []}], ids=["full", "partial"])
def test_report_survives_the_verdicts_json_round_trip(over: dict):
    work = Work(flops=10**9, bytes_read=64 << 20, bytes_written=64 << 20, set_bytes=64 << 20)
    failure, report, _ = _judge(_raw(**over), work, compile_ratio=0.5)
    assert type(report) is TimingReport and (report.roofline is None) is (failure is not None)
    stage, kind = (Stage.DONE, None) if failure is None else (failure.stage, failure.kind)
    v = Verdict("t", failure is None, stage, kind, "", timing=report)
    assert Verdict.from_dict(json.loads(v.to_json())).timing == report


def test_bootstrap_interval_is_deterministic_and_covers_truth():
    ref, cand = _samples(30.0, 200, 0.05, 3), _samples(10.0, 200, 0.05, 4)
    assert bootstrap_ci(ref, cand) == bootstrap_ci(ref, cand)
    lo, hi = bootstrap_ci(ref, cand)
    assert lo < statistics.median(ref) / statistics.median(cand) < hi and 2.8 < lo and hi < 3.2


def test_rel_err_of_median_shrinks_with_reps():
    assert rel_err_of_median(_samples(10, 400)) < rel_err_of_median(_samples(10, 25))
    assert rel_err_of_median([1.0, 2.0]) == float("inf")


@pytest.mark.parametrize(
    ("over", "kind"),
    [
        ({"threads": 1}, FailureKind.PROCESS_SPAWN),
        ({"tamper": ["patched: torch.cuda.Event.elapsed_time"]}, FailureKind.TAMPERING),
        ({"cand_calls": {"n": 300, "without_launch": 12}}, FailureKind.NO_TRITON_LAUNCH),
        ({"outputs": [[0, [REF[1][0].clone()]]]}, FailureKind.STALE_OUTPUT),  # set 0's call returned set 1's result
        ({"outputs": [[0, None]]}, FailureKind.STALE_OUTPUT),
        ({"outputs": []}, FailureKind.STALE_OUTPUT),
    ],
)
def test_each_timing_defence_rejects(over: dict, kind: FailureKind):
    failure, report, speedup = _judge(_raw(**over))
    assert failure is not None and (failure.stage, failure.kind) == (Stage.TIMING, kind) and speedup is None
    # the report is partial: what was known before the check failed, nothing measured after it
    assert (report.mode, report.gpu) == ("events", "H100") and report.wall_check is None and report.speedup is None


def test_work_hidden_from_events_is_a_timing_escape():
    # events say 5 us per call, but a synchronised batch of 400 calls needs 400 us each: side-stream work
    raw = _raw(cand_us=5.0, wall=[[{"n": 200, "host_us": 2000.0, "wall_us": 20000.0}] * 3,
                                  [{"n": 400, "host_us": 4000.0, "wall_us": 160000.0}] * 3])  # fmt: skip
    failure, report, _ = _judge(raw)
    assert failure.kind is FailureKind.TIMING_ESCAPE and report.wall_check.cand_ratio > 30 and report.speedup is None


def test_launch_bound_candidate_is_not_an_escape():
    # host-bound: 20 us of Python per call, 3 us of GPU: wall follows the host, which the check accounts for
    raw = _raw(cand_us=3.0, wall=[[{"n": 200, "host_us": 2000.0, "wall_us": 20000.0}] * 3,
                                  [{"n": 400, "host_us": 8000.0, "wall_us": 8300.0}] * 3])  # fmt: skip
    assert _judge(raw)[0] is None


def test_one_stalled_wall_batch_is_not_an_escape_but_escape_in_every_batch_is():
    # the candidate's second batch stalled 1.6x (another process started a CUDA context): its best batch decides
    ok = {"n": 400, "host_us": 4000.0, "wall_us": 400 * 50.0}
    stalled = {**ok, "wall_us": 1.6 * 400 * 50.0 * 1.5}
    ref = [{"n": 200, "host_us": 2000.0, "wall_us": 200 * 100.0}] * 3
    assert _judge(_raw(wall=[ref, [ok, stalled, ok]]))[0] is None
    failure, report, _ = _judge(_raw(wall=[ref, [stalled] * 3]))
    assert failure.kind is FailureKind.TIMING_ESCAPE and report.wall_check.batches == 3


def test_reference_ratio_calibrates_the_wall_check():
    assert wall_ratio({"n": 10, "host_us": 10.0, "wall_us": 1300.0}, 100.0) == pytest.approx(1.0)


# KernelBench level1/12: torch.diag(a) @ B with a [N] and B [N, M], fp32, N = M = 4096. The reference builds the N x N
# diagonal and runs a 2 N^2 M = 137 GFLOP matmul; the function needs one multiply per output (a row scaling), and no
# correct kernel can avoid reading a and B once and writing C once: 16 KiB + 64 MiB + 64 MiB.
N = M = 4096
DIAG = Work(flops=2 * N * N * M, bytes_read=4 * (N + N * M), bytes_written=4 * N * M, set_bytes=4 * (N + N * M))


def test_kernel_doing_less_work_than_the_reference_is_not_implausible():
    cand_us = 55.0  # a row-scaling kernel: 128 MiB at ~2.4 TB/s
    old_flop_floor = DIAG.flops / (H100.flops_tflops * 1e12 * 1.15) * 1e6  # the rule this replaces: 149 us
    assert old_flop_floor > cand_us
    floor, bound = floor_us(DIAG, H100, warm_l2=False, n_sets=3)
    assert bound == "memory" and floor < cand_us
    failure, report, speedup = _judge(_raw(ref_us=2700.0, cand_us=cand_us), DIAG)
    assert failure is None and speedup == pytest.approx(2700 / 55, rel=0.02)
    # the reference's FLOPs stay in the report as a fraction: above 1 says "less work than the reference"
    assert report.roofline.flops_fraction > 1 and report.roofline.floor_us == pytest.approx(floor, abs=1e-3)


def test_faster_than_reading_the_inputs_once_is_rejected():
    floor, _ = floor_us(DIAG, H100, warm_l2=False, n_sets=3)
    must = 4 * (N + N * M) + 4 * N * M - (50 << 20)  # inputs read once + the outputs beyond L2 written
    assert floor == pytest.approx(must / (3000e9 * 1.3) * 1e6)  # at the best measured bandwidth x1.3
    failure, report, speedup = _judge(_raw(ref_us=2700.0, cand_us=floor / 2), DIAG)
    assert (failure.stage, failure.kind) == (Stage.TIMING, FailureKind.IMPLAUSIBLE_SPEED) and speedup is None
    assert "read the inputs once" in failure.message and report.roofline.min_bytes == must
    assert _judge(_raw(ref_us=2700.0, cand_us=floor * 1.2), DIAG)[0] is None


def test_floor_leaves_out_parameters_and_writes_within_l2_and_drops_when_graph_inputs_fit_l2():
    # 100 MiB of inputs, 400 MiB of weights the reference reads, 10 MiB of outputs (they fit in L2): only the inputs
    # are certain traffic (a kernel may skip an unused weight or keep a packed copy)
    weighty = Work(flops=0, bytes_read=500 << 20, bytes_written=10 << 20, set_bytes=100 << 20)
    t, bound = floor_us(weighty, H100, warm_l2=False, n_sets=3)
    assert bound == "memory" and t == pytest.approx((100 << 20) / (3000e9 * 1.3) * 1e6)
    tiny = Work(flops=0, bytes_read=1 << 20, bytes_written=1 << 20, set_bytes=1 << 20)
    assert floor_us(tiny, H100, warm_l2=True, n_sets=3) == (0.0, "none")
