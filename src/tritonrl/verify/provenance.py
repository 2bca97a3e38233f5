"""Provenance policy (parent side): judge what the worker's Recorder saw during forward. Pure functions.

The rule (provenance by construction): every aten op issued while the candidate's call is in progress is classified
by what it is, whoever issued it. Allocation, views and aliases, copies and fills, and metadata are allowed; any
other op is compute and a violation. Triton's launch machinery needs no exception: it issues only ops of the allowed
classes (the interpreter's host copies: `new_empty`, `set_`, `empty`, `copy_`; the autotuner's cache flush and
restore: `empty`, `zero_`, `clone`, `copy_`; measured on triton 3.6), while the kernel bodies compute in Triton (on
the GPU) or in numpy (in the interpreter). So code that Triton calls on the candidate's behalf (heuristics, config
pre-hooks, pruning, perf models, grid callables) is held to the same rule as `forward` itself, and so are module
hooks, `__torch_function__` overrides and finalisers (the window ends after a garbage collection).

Strict policy (TritonRL's): forward may only allocate, take views, copy, fill and read metadata; at least one Triton
kernel defined in the candidate file must launch on every call; no Triton kernel the candidate did not define may
launch (Inductor, library kernels); and the output must depend on the candidate's kernels (Ghost Replay: with them
turned into no-ops the output changes). The partial policy allows any aten op but keeps the other three
requirements, for users who study partial ports; the verdict still lists the torch ops."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable

from tritonrl.types import FailureKind

ALLOCATION = frozenset(
    {
        "aten.empty", "aten.empty_like", "aten.empty_strided", "aten.new_empty", "aten.new_empty_strided",
        "aten.zeros", "aten.zeros_like", "aten.new_zeros", "aten.ones", "aten.ones_like", "aten.new_ones",
        "aten.full", "aten.full_like", "aten.new_full", "aten.scalar_tensor", "aten.lift_fresh",
        "aten.lift_fresh_copy",
    }
)  # fmt: skip
VIEWS = frozenset(
    {
        "aten.view", "aten._unsafe_view", "aten._reshape_alias", "aten.reshape", "aten.permute", "aten.transpose",
        "aten.t", "aten.expand", "aten.expand_as", "aten.squeeze", "aten.unsqueeze", "aten.select", "aten.slice",
        "aten.narrow", "aten.as_strided", "aten.unflatten", "aten.flatten", "aten.split", "aten.split_with_sizes",
        "aten.chunk", "aten.unbind", "aten.view_as", "aten.movedim", "aten.alias", "aten.detach", "aten.diagonal",
        "aten.unfold", "aten.view_as_real", "aten.view_as_complex", "aten.swapaxes", "aten.numpy_T",
        "aten.set_",  # re-points a tensor at a storage: an alias (the interpreter's host copies use it)
    }
)  # fmt: skip
COPIES = frozenset({"aten.clone", "aten.contiguous", "aten.copy_", "aten._to_copy", "aten.fill_", "aten.zero_"})
METADATA = frozenset(
    {
        "aten.size", "aten.stride", "aten.sym_size", "aten.sym_stride", "aten.sym_numel", "aten.numel", "aten.dim",
        "aten.is_contiguous", "aten.storage_offset", "aten.sym_storage_offset", "aten._local_scalar_dense",
        "aten.is_same_size", "aten.resize_",
    }
)  # fmt: skip
STRICT_ALLOWED = ALLOCATION | VIEWS | COPIES | METADATA


@dataclasses.dataclass(frozen=True, slots=True)
class ProvenancePolicy:
    name: str
    allowed_ops: frozenset[str] | None  # None: every op allowed
    require_candidate_launch: bool = True
    forbid_foreign_kernels: bool = True
    require_dependence: bool = True

    def forbidden(self, ops: Iterable[str]) -> list[str]:
        if self.allowed_ops is None:
            return []
        return sorted(op for op in ops if op not in self.allowed_ops)


POLICIES = {
    "strict": ProvenancePolicy("strict", STRICT_ALLOWED),
    "partial": ProvenancePolicy("partial", None),
}


def judge_call(
    policy: ProvenancePolicy, ops: dict[str, int], launches: list[tuple[str, bool]]
) -> tuple[FailureKind, str] | None:
    """Judge one forward call. Returns (failure kind, message) or None when it is legitimate."""
    bad = policy.forbidden(ops)
    if bad:
        shown = ", ".join(f"{op} x{ops[op]}" for op in bad[:6])
        more = f" (+{len(bad) - 6} more)" if len(bad) > 6 else ""
        return FailureKind.TORCH_COMPUTE, f"forward computed with PyTorch outside Triton kernels: {shown}{more}"
    foreign = sorted({name for name, mine in launches if not mine})
    if policy.forbid_foreign_kernels and foreign:
        return FailureKind.FOREIGN_KERNEL, f"Triton kernels not defined by the candidate launched: {foreign[:5]}"
    if policy.require_candidate_launch and not any(mine for _, mine in launches):
        return FailureKind.NO_TRITON_LAUNCH, "forward launched no Triton kernel defined in the candidate"
    return None
