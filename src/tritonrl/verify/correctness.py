"""Compare candidate outputs with reference outputs (parent side; torch on the CPU, no candidate code).

`|out - ref| <= atol * scale + rtol * |ref|` elementwise in float64 over positions where both are finite, with
atol = rtol from the one table in `tasks/schema.py`; NaN and +/-Inf positions must match exactly; integer and
boolean outputs must be equal. `scale` is the RMS of the reference output (1 when it is all zeros): KernelBench's
absolute tolerance assumes O(1) outputs, while our `wide` (x100) and `small` (x1e-3) input distributions move
outputs by orders of magnitude. Without the scale, an fp32 matmul on wide inputs fails against torch's own fp32
result (errors ~1e-3 on outputs ~1e4 near cancellations) and a kernel that drops the K tail passes on small inputs
(outputs ~1e-6, far under 1e-4). A case fails with UNWRITTEN_OUTPUT when every mismatching element still holds the
poison value the worker filled fresh allocations with, which means the kernel never wrote it.

Tolerance rule (docs/verification.md): where the case building found the own-precision reference unreliable
(`truth_for`: non-finite where the float64 reference is finite, or ill-conditioned), the reference outputs come as
`References` carrying the float64 truth, and an element that fails the rule above still passes when it is within
atol + rtol * |truth| + NOISE_FLOOR_K * noise of the truth (noise: the own-precision reference's measured error).
A candidate that reproduces the own-precision reference always passes; one that is closer to the truth passes too.
"""

from __future__ import annotations

import dataclasses
import math

import torch

from tritonrl.tasks.schema import NOISE_FLOOR_K, tolerance_for
from tritonrl.types import CheckStats, FailureKind


@dataclasses.dataclass(frozen=True, slots=True)
class Comparison:
    failure: FailureKind | None
    message: str
    stats: CheckStats = CheckStats()  # passed on unchanged as the check's `CheckResult.stats`
    # "float64" when the float64 truth decided (see `Truth`). Not a stat: it only steers which message the summary of
    # several outputs keeps, and that message already says when the truth decided.
    reference: str = "own"


# Largest tensor (input or output, elements) for which case building computes the float64 truth: its runs and
# `truth_for` hold ~10 float64 tensors of that size at once (2^26 elements: ~5 GB). CPU-scaled cases (<= 8192
# elements) are far below; a larger KernelBench case on a GPU keeps its own-precision reference, with a note.
TRUTH_MAX_NUMEL = 1 << 26


@dataclasses.dataclass(frozen=True, slots=True)
class Truth:
    """The float64 reference of one output, kept only where the own-precision reference is unreliable."""

    values: torch.Tensor  # float64, the reference with its parameters and floating inputs in float64
    noise: torch.Tensor  # float64, per element: the own-precision reference's measured error (0 where not finite)
    why: str  # what makes the own-precision reference unreliable, for messages


class References(tuple):
    """A case's reference outputs: a plain tuple of tensors to every reader, plus `truth`, one `Truth | None` per
    output, which only `compare_outputs` reads (the judge passes a case's outputs through unchanged)."""

    truth: tuple[Truth | None, ...]

    def __new__(cls, outputs: tuple[torch.Tensor, ...], truth: tuple[Truth | None, ...] = ()) -> References:
        self = super().__new__(cls, outputs)
        self.truth = tuple(truth) or (None,) * len(self)
        return self


def float64_inputs(inputs: list) -> list:
    """Floating tensors cast to float64 (complex to complex128), everything else unchanged."""
    return [
        x.to(torch.complex128 if x.is_complex() else torch.float64)
        if isinstance(x, torch.Tensor) and (x.is_floating_point() or x.is_complex())
        else x
        for x in inputs
    ]


def nudged_inputs(inputs: list, seed: int) -> list:
    """Floating tensors (below float64) moved one ulp up or down per element, at random: a neighbour of the inputs at
    which the reference's own-precision error is a second, independent sample of its error at the inputs (the
    rounding pattern changes, the conditioning does not). Drawn on each tensor's device (on the host, 16M elements
    take 0.16 s; a GPU case builder nudges every case)."""
    gens: dict[torch.device, torch.Generator] = {}
    out = []
    for x in inputs:
        if isinstance(x, torch.Tensor) and x.is_floating_point() and x.dtype != torch.float64:
            if x.device not in gens:
                gens[x.device] = torch.Generator(x.device).manual_seed(seed)
            up = torch.rand(x.shape, generator=gens[x.device], device=x.device) < 0.5
            inf = torch.full_like(x, math.inf)
            moved = torch.nextafter(x, torch.where(up, inf, -inf))
            x = torch.where(torch.isfinite(moved), moved, x)
        out.append(x)
    return out


def truth_for(
    own: torch.Tensor,
    hi: torch.Tensor,
    own2: torch.Tensor | None = None,
    hi2: torch.Tensor | None = None,
    *,
    tf32: bool = False,
) -> Truth | None:
    """The float64 truth of one output where the own-precision reference is unreliable, else None.

    Args:
        own, hi: the reference's output on the case's inputs, in the task's precision and in float64.
        own2, hi2: the same on `nudged_inputs` (None when that run was not possible).
        tf32: the tolerance is the TF32 one (as the judge will use).

    Returns:
        A `Truth` when `own`'s NaN/Inf pattern differs from the float64 result rounded to `own`'s dtype (overflow,
        NaN from inf - inf), or when NOISE_FLOOR_K times the measured own-precision error exceeds the tolerance at
        some element (ill-conditioned); None otherwise, and for outputs that are not below-float64 floating tensors.
    """
    if not own.is_floating_point() or own.dtype == torch.float64 or hi.dtype != torch.float64:
        return None
    if hi.shape != own.shape:
        return None
    noise = _error(own, hi)
    if own2 is not None and hi2 is not None and own2.shape == own.shape and hi2.shape == own.shape:
        noise = torch.maximum(noise, _error(own2, hi2.to(torch.float64)))
    dtype = _dtype_name(own.dtype)
    o, representable = own.to(torch.float64), hi.to(own.dtype).to(torch.float64)
    pattern = (torch.isnan(o) != torch.isnan(representable)) | (torch.isinf(o) != torch.isinf(representable))
    pattern |= torch.isinf(o) & torch.isinf(representable) & (o != representable)
    tol = tolerance_for(dtype, tf32=tf32)
    if tol == 0.0:
        return None
    finite = torch.isfinite(hi)
    rms = float(hi[finite].square().mean().sqrt()) if bool(finite.any()) else 0.0
    allowed = tol * (rms if rms > 0 else 1.0) + tol * hi.abs()
    ill = finite & (NOISE_FLOOR_K * noise > allowed)
    if n := int(pattern.sum()):
        why = f"the {dtype} reference's NaN/Inf pattern differs from float64's at {n} of {o.numel()} elements"
    elif bool(ill.any()):
        worst = int(torch.where(ill, noise / allowed, torch.zeros_like(noise)).argmax())
        err, tol_there = float(noise.flatten()[worst]), float(allowed.flatten()[worst])
        why = (
            f"the {dtype} reference is ill-conditioned: its own error reaches {err:.3g}, the tolerance {tol_there:.3g}"
        )
    else:
        return None
    return Truth(hi, noise, why)


def _error(own: torch.Tensor, hi: torch.Tensor) -> torch.Tensor:
    """|own - hi| in float64 where both are finite, 0 elsewhere."""
    o = own.to(torch.float64)
    both = torch.isfinite(o) & torch.isfinite(hi)
    return torch.where(both, (o - hi).abs(), torch.zeros_like(hi))


def _dtype_name(dtype: torch.dtype) -> str:
    return str(dtype).removeprefix("torch.")


def compare_outputs(
    outs: list[torch.Tensor],
    refs: tuple[torch.Tensor, ...],
    *,
    poison: float | int | None,
    tf32: bool,
    tol_scale: float = 1.0,
) -> Comparison:
    """Compare each output with its reference. `tol_scale` multiplies the table tolerance (the metamorphic
    self-consistency check uses a tenth of it, see verify/metamorphic.py). When `refs` is a `References`, an output
    that fails against its reference is judged again against the float64 truth kept for it, if any."""
    truths = refs.truth if isinstance(refs, References) else (None,) * len(refs)
    if len(outs) != len(refs):
        return Comparison(
            FailureKind.WRONG_OUTPUT_STRUCTURE, f"forward returned {len(outs)} outputs, expected {len(refs)}"
        )
    total = Comparison(None, "ok")
    for i, (out, ref, truth) in enumerate(zip(outs, refs, truths, strict=True)):
        if tuple(out.shape) != tuple(ref.shape):
            return Comparison(
                FailureKind.WRONG_SHAPE,
                f"output {i} has shape {tuple(out.shape)}, expected {tuple(ref.shape)}",
                stats=CheckStats(output_index=i),
            )
        if out.dtype != ref.dtype:
            return Comparison(
                FailureKind.WRONG_DTYPE,
                f"output {i} has dtype {out.dtype}, expected {ref.dtype}",
                stats=CheckStats(output_index=i),
            )
        result = _compare_tensor(out, ref, poison=poison, tf32=tf32, tol_scale=tol_scale, truth=truth)
        result = dataclasses.replace(result, stats=dataclasses.replace(result.stats, output_index=i))
        if result.failure is not None:
            return result
        by_truth = total if total.reference == "float64" else result  # a pass by the truth keeps its message
        mine, so_far = result.stats, total.stats
        total = dataclasses.replace(
            result,
            stats=dataclasses.replace(
                mine,
                n_elements=so_far.n_elements + mine.n_elements,
                max_abs_err=max(so_far.max_abs_err, mine.max_abs_err),
                max_rel_err=max(so_far.max_rel_err, mine.max_rel_err),
                output_index=None,
            ),
            message=by_truth.message,
            reference=by_truth.reference,
        )
    return total


def _compare_tensor(
    out: torch.Tensor,
    ref: torch.Tensor,
    *,
    poison: float | int | None,
    tf32: bool,
    tol_scale: float = 1.0,
    truth: Truth | None = None,
) -> Comparison:
    tol = tolerance_for(_dtype_name(ref.dtype), tf32=tf32) * tol_scale
    n = ref.numel()
    if not (ref.is_floating_point() or ref.is_complex()):
        bad = out != ref
        return _finish(out, ref, bad, None, (0.0, 0.0), n, poison, abs_err=None)
    o, r = out.to(torch.float64), ref.to(torch.float64)
    o_nan, r_nan = torch.isnan(o), torch.isnan(r)
    o_inf, r_inf = torch.isinf(o), torch.isinf(r)
    nonfinite_bad = (o_nan != r_nan) | (o_inf != r_inf) | (r_inf & o_inf & (torch.sign(o) != torch.sign(r)))
    finite = ~(o_nan | r_nan | o_inf | r_inf)
    abs_err = torch.where(finite, (o - r).abs(), torch.zeros_like(o))
    finite_ref = r[finite]
    rms = float(finite_ref.square().mean().sqrt()) if finite_ref.numel() else 0.0
    atol = max(tol * (rms if rms > 0 else 1.0), atol_floor(ref.dtype))
    finite_bad = finite & (abs_err > atol + tol * r.abs())
    bad = nonfinite_bad | finite_bad
    if truth is not None and bool(bad.any()):
        return _against_truth(out, ref, o, bad, truth, tol, poison)
    return _finish(out, ref, bad, nonfinite_bad, (atol, tol), n, poison, abs_err=abs_err)


def atol_floor(dtype: torch.dtype) -> float:
    """The absolute difference below which values are not told apart: float32 results under the smallest normal
    (1.2e-38) are subnormals that GPU arithmetic legally flushes to zero (Triton's `tl.exp` lowers to
    `ex2.approx.ftz.f32`), so a kernel returning 0 for softplus(-100) = 3.7e-44 is right; in fp16/bf16 one step of
    the subnormal spacing (6e-8 in fp16) is the finest difference the format has, and an RMS-scaled atol can fall
    below it (outputs around 1e-6 in fp16)."""
    if dtype == torch.float32:
        return torch.finfo(torch.float32).tiny
    if dtype in (torch.float16, torch.bfloat16):
        return torch.finfo(dtype).smallest_normal * torch.finfo(dtype).eps
    return 0.0


def _against_truth(
    out: torch.Tensor,
    ref: torch.Tensor,
    o: torch.Tensor,
    bad_own: torch.Tensor,
    truth: Truth,
    tol: float,
    poison: float | int | None,
) -> Comparison:
    """Judge the elements that failed against the own-precision reference once more, against the float64 truth.

    An element passes when it is within atol + rtol * |t| + NOISE_FLOOR_K * noise of the truth t (atol scaled by
    the truth's RMS), is the same NaN or the same signed Inf as a non-finite truth, or is the same signed Inf where
    the truth is finite but beyond the output dtype's range (the candidate's store overflowed exactly as it must).
    A non-finite candidate element where the truth is finite and representable fails unless it also matched the
    own-precision reference (it reproduces the task's own precision, e.g. an fp16 intermediate that overflows).
    """
    t, noise = truth.values, truth.noise
    t_fin, o_fin = torch.isfinite(t), torch.isfinite(o)
    rms = float(t[t_fin].square().mean().sqrt()) if bool(t_fin.any()) else 0.0
    atol = max(tol * (rms if rms > 0 else 1.0), atol_floor(ref.dtype))
    both = o_fin & t_fin
    abs_err = torch.where(both, (o - t).abs(), torch.zeros_like(o))
    close = both & (abs_err <= atol + tol * t.abs() + NOISE_FLOOR_K * noise)
    same = (torch.isnan(o) & torch.isnan(t)) | (torch.isinf(o) & (o == t))
    beyond_range = t_fin & torch.isinf(t.to(ref.dtype))
    saturated = beyond_range & torch.isinf(o) & (torch.sign(o) == torch.sign(t))
    bad = bad_own & ~(close | same | saturated)
    nonfinite_bad = bad & (~o_fin | ~t_fin | beyond_range)
    note = f" (judged against the float64 reference: {truth.why})"
    result = _finish(out, t, bad, nonfinite_bad, (atol, tol), out.numel(), poison, abs_err=abs_err, own=ref)
    return dataclasses.replace(result, message=result.message + note, reference="float64")


def _finish(
    out: torch.Tensor,
    ref: torch.Tensor,
    bad: torch.Tensor,
    nonfinite_bad: torch.Tensor | None,
    tols: tuple[float, float],
    n: int,
    poison: float | int | None,
    abs_err: torch.Tensor | None,
    own: torch.Tensor | None = None,
) -> Comparison:
    """`ref` is what the errors are measured against; `own`, when given, the own-precision reference it replaced
    (its value at the first bad element goes into the message too)."""
    atol, rtol = tols
    n_bad = int(bad.sum())
    max_abs = float(abs_err.max()) if abs_err is not None and n else 0.0
    max_rel = 0.0
    if abs_err is not None and n:
        rel = abs_err / ref.to(torch.float64).abs().clamp_min(torch.finfo(torch.float32).tiny)
        max_rel = float(rel[torch.isfinite(rel)].max()) if bool(torch.isfinite(rel).any()) else 0.0
    # Clamped here, where every error maximum is measured, so no Comparison (nor the check it becomes) carries a NaN:
    # NaN compares false with everything, so compare_outputs' max() over outputs, or a report that sorts or
    # thresholds on the error, would take it for a small error; inf says unbounded.
    max_abs, max_rel = _nan_to_inf(max_abs), _nan_to_inf(max_rel)
    if n_bad == 0:
        stats = CheckStats(n_elements=n, max_abs_err=max_abs, max_rel_err=max_rel, atol=atol, rtol=rtol)
        return Comparison(None, "ok", stats=stats)
    flat = int(bad.flatten().nonzero()[0, 0])
    index = tuple(int(i) for i in _unravel(flat, tuple(ref.shape)))
    got, want = out.flatten()[flat].item(), ref.flatten()[flat].item()
    kind = FailureKind.WRONG_VALUES
    if poison is not None and _all_poison(out[bad], poison):
        kind = FailureKind.UNWRITTEN_OUTPUT
        why = f"{n_bad} of {n} elements were never written (still hold the poison value {poison})"
    elif nonfinite_bad is not None and int(nonfinite_bad.sum()) == n_bad:
        kind = FailureKind.NONFINITE_MISMATCH
        why = f"NaN/Inf pattern differs from the reference at {n_bad} of {n} elements"
        if poison is not None and isinstance(poison, float) and math.isnan(poison):
            why += " (NaN there may also mean the element was never written)"
    else:
        why = f"{n_bad} of {n} elements differ beyond atol={atol:.3g} rtol={rtol:g}"
    message = f"{why}; first at index {index}: got {got:.6g}, expected {want:.6g}"
    if own is not None:
        message += f" ({_dtype_name(own.dtype)} reference: {own.flatten()[flat].item():.6g})"
    stats = CheckStats(
        n_elements=n,
        n_mismatch=n_bad,
        max_abs_err=max_abs,
        max_rel_err=max_rel,
        first_bad_index=index,
        atol=atol,
        rtol=rtol,
    )
    return Comparison(kind, message, stats=stats)


def _nan_to_inf(x: float) -> float:
    """x, with NaN (and -inf, which a maximum of absolute values never is) as inf."""
    return x if math.isfinite(x) else math.inf


def _all_poison(values: torch.Tensor, poison: float | int) -> bool:
    """True when every value equals a finite sentinel poison. NaN poison is ambiguous (a kernel can compute NaN),
    so those cases report NONFINITE_MISMATCH; the worker alternates NaN and sentinel poison across cases."""
    if isinstance(poison, float) and math.isnan(poison):
        return False
    return bool((values == torch.tensor(poison, dtype=values.dtype)).all())


def _unravel(flat: int, shape: tuple[int, ...]) -> list[int]:
    index = []
    for dim in reversed(shape):
        index.append(flat % dim if dim else 0)
        flat = flat // dim if dim else 0
    return list(reversed(index)) or [0]
