"""Compare candidate outputs with reference outputs (parent side; torch on the CPU, no candidate code).

`|out - ref| <= atol * scale + rtol * |ref|` elementwise in float64 over positions where both are finite, with
atol = rtol from the one table in `tasks/schema.py`; NaN and +/-Inf positions must match exactly; integer and
boolean outputs must be equal. `scale` is the RMS of the reference output (1 when it is all zeros): KernelBench's
absolute tolerance assumes O(1) outputs, while our `wide` (x100) and `small` (x1e-3) input distributions move
outputs by orders of magnitude. Without the scale, an fp32 matmul on wide inputs fails against torch's own fp32
result (errors ~1e-3 on outputs ~1e4 near cancellations) and a kernel that drops the K tail passes on small inputs
(outputs ~1e-6, far under 1e-4). A case fails with UNWRITTEN_OUTPUT when every mismatching element still holds the
poison value the worker filled fresh allocations with, which means the kernel never wrote it.
"""

from __future__ import annotations

import dataclasses
import math

import torch

from tritonrl.tasks.schema import tolerance_for
from tritonrl.types import FailureKind


@dataclasses.dataclass(frozen=True, slots=True)
class Comparison:
    failure: FailureKind | None
    message: str
    output_index: int | None = None
    n_elements: int = 0
    n_mismatch: int = 0
    max_abs_err: float = 0.0
    max_rel_err: float = 0.0
    first_bad_index: tuple[int, ...] | None = None
    atol: float = 0.0
    rtol: float = 0.0


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
    self-consistency check uses a tenth of it, see verify/metamorphic.py)."""
    if len(outs) != len(refs):
        return Comparison(
            FailureKind.WRONG_OUTPUT_STRUCTURE, f"forward returned {len(outs)} outputs, expected {len(refs)}"
        )
    total = Comparison(None, "ok")
    for i, (out, ref) in enumerate(zip(outs, refs, strict=True)):
        if tuple(out.shape) != tuple(ref.shape):
            return Comparison(
                FailureKind.WRONG_SHAPE,
                f"output {i} has shape {tuple(out.shape)}, expected {tuple(ref.shape)}",
                output_index=i,
            )
        if out.dtype != ref.dtype:
            return Comparison(
                FailureKind.WRONG_DTYPE, f"output {i} has dtype {out.dtype}, expected {ref.dtype}", output_index=i
            )
        result = _compare_tensor(out, ref, poison=poison, tf32=tf32, tol_scale=tol_scale)
        result = dataclasses.replace(result, output_index=i)
        if result.failure is not None:
            return result
        total = dataclasses.replace(
            result,
            n_elements=total.n_elements + result.n_elements,
            max_abs_err=max(total.max_abs_err, result.max_abs_err),
            max_rel_err=max(total.max_rel_err, result.max_rel_err),
            output_index=None,
        )
    return total


def _compare_tensor(
    out: torch.Tensor, ref: torch.Tensor, *, poison: float | int | None, tf32: bool, tol_scale: float = 1.0
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
    atol = tol * (rms if rms > 0 else 1.0)
    finite_bad = finite & (abs_err > atol + tol * r.abs())
    return _finish(out, ref, nonfinite_bad | finite_bad, nonfinite_bad, (atol, tol), n, poison, abs_err=abs_err)


def _finish(
    out: torch.Tensor,
    ref: torch.Tensor,
    bad: torch.Tensor,
    nonfinite_bad: torch.Tensor | None,
    tols: tuple[float, float],
    n: int,
    poison: float | int | None,
    abs_err: torch.Tensor | None,
) -> Comparison:
    atol, rtol = tols
    n_bad = int(bad.sum())
    max_abs = float(abs_err.max()) if abs_err is not None and n else 0.0
    max_rel = 0.0
    if abs_err is not None and n:
        rel = abs_err / ref.to(torch.float64).abs().clamp_min(torch.finfo(torch.float32).tiny)
        max_rel = float(rel[torch.isfinite(rel)].max()) if bool(torch.isfinite(rel).any()) else 0.0
    if n_bad == 0:
        return Comparison(None, "ok", n_elements=n, max_abs_err=max_abs, max_rel_err=max_rel, atol=atol, rtol=rtol)
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
    return Comparison(
        kind,
        message,
        n_elements=n,
        n_mismatch=n_bad,
        max_abs_err=max_abs,
        max_rel_err=max_rel,
        first_bad_index=index,
        atol=atol,
        rtol=rtol,
    )


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
