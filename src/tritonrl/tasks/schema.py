"""The task model: a KernelBench-format reference file kept as text, plus what static analysis found in it.

A task file defines `class Model(nn.Module)`, `get_inputs()`, `get_init_inputs()` and module-level constants, exactly
as KernelBench ships them. Building a `Task` never executes anything (see `tasks/loader.py`); running the trusted
reference is `tasks/reference.py`'s job. This module also holds the one tolerance table every comparison uses.
"""

from __future__ import annotations

import dataclasses
import enum


class ConstantRole(enum.StrEnum):
    SIZE = "size"  # may be scaled: batch, channels, features, lengths, dims, heads...
    FIXED = "fixed"  # hyperparameter that must keep its value: kernel_size, stride, eps, axis indices...


@dataclasses.dataclass(frozen=True, slots=True)
class Constant:
    """A module-level constant of the task file (`name = <int or float literal>`).

    Elements of a tuple of numbers (`input_shape = (32768,)`) are constants named `input_shape[0]`, ...
    """

    name: str
    value: int | float
    role: ConstantRole
    reason: str  # why this role: "declared", "name looks like a hyperparameter", ...
    derived_from: tuple[str, ...] = ()  # constants its expression reads (`M = N // 2`); derived ones recompute


@dataclasses.dataclass(frozen=True, slots=True)
class Task:
    """A reference problem. `source` is the file's text, unchanged."""

    task_id: str
    source: str
    path: str | None = None
    level: int | None = None
    constants: tuple[Constant, ...] = ()
    init_arg_names: tuple[str, ...] = ()  # Model.__init__ parameters after self (for the signature check)
    init_n_required: int = 0  # parameters without defaults
    init_has_varargs: bool = False
    solution_path: str | None = None  # a known-correct Triton solution (bundled tasks)

    @property
    def size_constants(self) -> dict[str, int]:
        return {c.name: int(c.value) for c in self.constants if c.role is ConstantRole.SIZE}

    @property
    def free_size_constants(self) -> dict[str, int]:
        """SIZE constants that may be overridden independently (derived ones recompute from these)."""
        return {c.name: int(c.value) for c in self.constants if c.role is ConstantRole.SIZE and not c.derived_from}

    @property
    def fixed_constants(self) -> dict[str, int | float]:
        return {c.name: c.value for c in self.constants if c.role is ConstantRole.FIXED}


# Tolerances, atol = rtol, applied as |out - ref| <= atol + rtol * |ref| elementwise.
# Source: KernelBench `src/kernelbench/eval.py::get_tolerance_for_precision` (fp32 1e-4, fp16/bf16 1e-2), read at
# commit 423217d (see docs/verification.md). "fp32_tf32" is for fp32 tasks whose reference runs a matrix product or
# convolution on a GPU, where Triton's tl.dot defaults to TF32 (10-bit mantissa); KernelBench v0/v0.1 used 1e-2 for
# fp32 throughout. fp64 is ours: 1e3 ulps of float64.
TOLERANCES: dict[str, float] = {
    "float64": 1e-12,
    "float32": 1e-4,
    "float32_tf32": 1e-2,
    "float16": 1e-2,
    "bfloat16": 1e-2,
}

# Where the task's own-precision reference is unreliable (non-finite where the float64 reference is finite, or its own
# rounding error reaches 1/NOISE_FLOOR_K of the tolerance), a candidate may also pass against the float64 reference
# with the per-element allowance atol + rtol * |truth| + NOISE_FLOOR_K * noise, noise = the larger of two independent
# samples of the own-precision reference's error there (verify/correctness.py, docs/verification.md "Tolerance rule").
# 16: a same-precision candidate's error is a third sample of that noise, and the ratio of one sample to the larger of
# two is heavy-tailed (Gaussian: above 8 with probability 1%, above 16 with 0.25%). Measured on fp32 attention at
# randn*100 (1200 cases, an online-softmax kernel emulated in torch): the honest kernel needed at most 7.5; bf16 or
# TF32 arithmetic inside an fp32 task needs more than 1e5 and a missing 1/sqrt(d) more than 900, so 16 stays orders
# of magnitude below a real defect. FlashAttention's tests bound the tensor-wide max error by 2x PyTorch's own.
NOISE_FLOOR_K = 16.0


def tolerance_for(dtype_name: str, *, tf32: bool = False) -> float:
    """Look up the tolerance for a torch dtype name such as "float32" (from `str(t.dtype)` minus "torch.").

    Integer and boolean outputs must match exactly (0.0).

    >>> tolerance_for("float32"), tolerance_for("float32", tf32=True), tolerance_for("int64")
    (0.0001, 0.01, 0.0)
    """
    if dtype_name == "float32" and tf32:
        return TOLERANCES["float32_tf32"]
    return TOLERANCES.get(dtype_name, 0.0)
