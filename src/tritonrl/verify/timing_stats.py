"""Judge the worker's raw timing frame (parent side, pure functions over numbers and tensors).

What is decided here, in order:
1. Structure and launches: every timed candidate call launched a candidate Triton kernel, no tampering, no threads.
2. Outputs of timed calls (the last call on each rotated input set) match the reference: caching, replay of stale
   results or skipped work shows up as STALE_OUTPUT.
3. Wall-clock cross-check: a batch of calls, then a device-wide synchronize. Work the events missed (side streams,
   deferred launches) must still finish before the synchronize returns, so wall time must not exceed
   max(host enqueue time, n x event median) by more than the reference's own ratio allows (TIMING_ESCAPE).
4. Speed-of-light floor: the bytes the *function* must move (every input read once, every output written once, at
   their dtypes) over the measured bandwidth ceiling; a candidate faster than that is impossible (IMPLAUSIBLE_SPEED).
   The reference's FLOPs are not a floor: they count the reference's algorithm, and a kernel that does less work
   (diag(a) @ B as a row scaling) is a success. They are reported as a roofline fraction only.
Then the statistics: medians, CV, a bootstrap 95% interval of the speedup, achieved fractions of the ceilings.
"""

from __future__ import annotations

import dataclasses
import math
import statistics
from typing import Any

import torch

from tritonrl.types import Failure, FailureKind, Roofline, Stage, TimingReport, WallCheck
from tritonrl.verify.correctness import compare_outputs

WALL_RATIO_LIMIT = 1.5  # legit runs measured at <= 1.1 (docs/benchmarks.md); hidden work of >= 1/3 exceeds this
WALL_SLACK_US = 300.0  # synchronize() and Python wake-up latency on one batch
# The floor uses the best measured bandwidth times a headroom: torch's copy reaches ~90% of HBM peak and a read-mostly
# kernel can beat a copy by a few percent.
BW_HEADROOM = 1.3
UNSTABLE_CV = 0.05
BOOTSTRAP_ROUNDS = 2000


@dataclasses.dataclass(frozen=True, slots=True)
class Ceilings:
    """Measured device ceilings (`calibrate.measure_ceilings`)."""

    gpu: str
    bandwidth_gbs: float  # best of copy (read + write) and read-only reduction, GB/s
    flops_tflops: float  # best dense matmul rate over fp32/tf32/fp16/bf16, TFLOP/s
    l2_bytes: int = 0


@dataclasses.dataclass(frozen=True, slots=True)
class Work:
    """What the reference does on one input set (`timing_cases.run_timing`). Only `set_bytes` and `bytes_written` are
    properties of the function; `flops` and the parameter bytes in `bytes_read` describe the reference's algorithm."""

    flops: int  # the reference's FLOPs (FlopCounterMode): reported, never a floor
    bytes_read: int  # inputs + parameters the reference reads
    bytes_written: int  # outputs, at their dtypes
    set_bytes: int  # input bytes of one set, at their dtypes: what any correct kernel must read


def bootstrap_ci(ref: list[float], cand: list[float], rounds: int = BOOTSTRAP_ROUNDS) -> tuple[float, float]:
    """95% percentile-bootstrap interval of median(ref) / median(cand), resampling each side independently (seeded:
    the same samples always give the same interval)."""
    gen = torch.Generator().manual_seed(0)
    r = torch.tensor(ref, dtype=torch.float64)
    c = torch.tensor(cand, dtype=torch.float64)
    rm = r[torch.randint(len(ref), (rounds, len(ref)), generator=gen)].median(dim=1).values
    cm = c[torch.randint(len(cand), (rounds, len(cand)), generator=gen)].median(dim=1).values
    ratio = (rm / cm).sort().values
    return float(ratio[int(0.025 * rounds)]), float(ratio[int(0.975 * rounds) - 1])


def cv(samples: list[float]) -> float:
    mean = statistics.fmean(samples)
    return statistics.pstdev(samples) / mean if mean > 0 else math.inf


def wall_ratio(wall: dict[str, float], median_us: float) -> float:
    """Wall time of a synchronised batch over what the events and the host explain."""
    explained = max(wall["host_us"], wall["n"] * median_us)
    return (wall["wall_us"] - WALL_SLACK_US) / explained if explained > 0 else math.inf


def min_bytes(work: Work, ceilings: Ceilings, warm_l2: bool, n_sets: int) -> int:
    """The DRAM bytes any correct kernel must move per call: its inputs read once, plus the outputs beyond L2.

    Parameters are left out: a kernel may legitimately skip an unused weight or keep a packed copy of one. Writes that
    fit in L2 can complete there before the kernel ends. In CUDA-graph mode (warm L2) inputs that fit twice in L2
    may stay there between replays: no DRAM floor applies.
    """
    if warm_l2 and n_sets * work.set_bytes <= 2 * ceilings.l2_bytes:
        return 0
    return work.set_bytes + max(0, work.bytes_written - ceilings.l2_bytes)


def floor_us(work: Work, ceilings: Ceilings, warm_l2: bool, n_sets: int) -> tuple[float, str]:
    """Speed-of-light time of the function (not of the reference's algorithm) and what bounds it: "memory", or
    "none" when no floor applies. FLOPs are no floor: the minimum FLOPs of a function are not known from the
    reference's count (diag(a) @ B: the reference does N^2 M multiply-adds, the function needs N M)."""
    must = min_bytes(work, ceilings, warm_l2, n_sets)
    t_bytes = must / (ceilings.bandwidth_gbs * 1e9 * BW_HEADROOM) * 1e6
    return t_bytes, ("memory" if must else "none")


def judge_timing(
    raw: dict[str, Any],
    ref_outputs: list[tuple[torch.Tensor, ...]],
    *,
    tf32: bool,
    work: Work | None,
    ceilings: Ceilings | None,
    compile_ratio: float | None,
) -> tuple[Failure | None, TimingReport, float | None]:
    """Returns (failure or None, the report for `Verdict.timing`, the eager speedup or None).

    The report's fields are collected as each check computes them, so a failure returns what was measured up to it.
    """
    report: dict[str, Any] = {"mode": raw["mode"], "gpu": raw.get("gpu"), "clock_mhz": raw.get("clock_mhz")}

    def fail(kind: FailureKind, message: str) -> tuple[Failure, TimingReport, None]:
        return Failure(Stage.TIMING, kind, message), TimingReport(**report), None

    if raw.get("threads", 0) > 0:
        return fail(FailureKind.PROCESS_SPAWN, f"timed calls left {raw['threads']} new thread(s) running")
    if raw.get("tamper"):
        return fail(FailureKind.TAMPERING, "tampering during timing: " + "; ".join(raw["tamper"]))
    calls = raw.get("cand_calls", {})
    if calls.get("without_launch", 0):
        return fail(
            FailureKind.NO_TRITON_LAUNCH,
            f"{calls['without_launch']} of {calls.get('n', '?')} timed calls launched no candidate Triton kernel "
            "(work skipped or served from a cache)",
        )
    checked = raw.get("outputs", [])
    if not checked:
        return fail(FailureKind.STALE_OUTPUT, "no outputs of timed calls came back to be checked")
    for v, outs in checked:
        if outs is None:
            return fail(FailureKind.STALE_OUTPUT, f"a timed call on value set {v} returned a non-tensor")
        cmp = compare_outputs(list(outs), ref_outputs[int(v)], poison=None, tf32=tf32)
        if cmp.failure is not None:
            return fail(FailureKind.STALE_OUTPUT, f"outputs of a timed call on value set {v} are wrong (cached, "
                        f"replayed or skipped work): {cmp.message}")  # fmt: skip
    ref, cand = list(raw["ref_us"]), list(raw["cand_us"])
    med_ref, med_cand = statistics.median(ref), statistics.median(cand)
    # each side's best batch (escaped work slows all of them; a one-off stall only one): (ratio, batch) per side
    best = [min(((wall_ratio(w, m), w) for w in batches), key=lambda rw: rw[0])
            for batches, m in zip(raw["wall"], (med_ref, med_cand), strict=True)]  # fmt: skip
    ratios = [r for r, _ in best]
    limit = max(WALL_RATIO_LIMIT, WALL_RATIO_LIMIT * ratios[0])  # the reference calibrates the check
    report["wall_check"] = WallCheck(ref_ratio=round(ratios[0], 3), cand_ratio=round(ratios[1], 3), limit=limit,
                                     batches=len(raw["wall"][1]))  # fmt: skip
    if ratios[1] > limit:
        wall = best[1][1]
        return fail(
            FailureKind.TIMING_ESCAPE,
            f"a synchronised batch of {wall['n']} calls took {wall['wall_us'] / wall['n']:.1f} us per call, "
            f"{ratios[1]:.1f}x what the timed region ({med_cand:.1f} us) and the host explain: work escaped the timing",
        )
    speedup = med_ref / med_cand
    lo, hi = bootstrap_ci(ref, cand)
    report.update(
        ref_us=round(med_ref, 3),
        cand_us=round(med_cand, 3),
        ref_cv=round(cv(ref), 5),
        cand_cv=round(cv(cand), 5),
        speedup=round(speedup, 4),
        speedup_ci95=(round(lo, 4), round(hi, 4)),
        n_reps=(len(ref), len(cand)),
        graph_calls=raw.get("graph_calls", 1),
        protocol={**raw.get("params", {}), "n_sets": len(ref_outputs), "note": raw.get("note", "")},
    )
    if max(report["ref_cv"], report["cand_cv"]) > UNSTABLE_CV:
        report["unstable"] = True
    if compile_ratio is not None:
        report["speedup_compile"] = round(speedup * compile_ratio, 4)  # compile_ratio = compiled_us / eager_us
    if work is not None and ceilings is not None:
        warm_l2 = raw["mode"] == "cuda_graph"
        floor, bound = floor_us(work, ceilings, warm_l2, len(ref_outputs))
        must = min_bytes(work, ceilings, warm_l2, len(ref_outputs))
        moved = work.bytes_read + work.bytes_written
        # Fractions use the reference's traffic and FLOPs: a kernel doing less work than the reference can show a FLOP
        # fraction above 1, which says "less work", not "impossible".
        report["roofline"] = Roofline(
            flops=work.flops,
            bytes=moved,
            min_bytes=must,
            floor_us=round(floor, 3),
            bound=bound,
            bandwidth_fraction=round(moved / (med_cand * 1e-6) / (ceilings.bandwidth_gbs * 1e9), 4),
            flops_fraction=round(work.flops / (med_cand * 1e-6) / (ceilings.flops_tflops * 1e12), 4),
            ceilings=dataclasses.asdict(ceilings),
        )
        if med_cand < floor:
            return fail(
                FailureKind.IMPLAUSIBLE_SPEED,
                f"timed at {med_cand:.2f} us, under the {floor:.2f} us it takes to read the inputs once and write the "
                f"outputs ({must:.3g} B from DRAM at {ceilings.bandwidth_gbs:.0f} GB/s x{BW_HEADROOM} on "
                f"{ceilings.gpu})",
            )
    return None, TimingReport(**report), speedup
