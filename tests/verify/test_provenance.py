"""verify/provenance.py: `judge_call` applies the strict and partial policies to one forward's records (pure)."""

from __future__ import annotations

import pytest

from tritonrl.types import FailureKind
from tritonrl.verify.provenance import POLICIES, judge_call

K = FailureKind
MINE = [("relu_kernel", True)]
ALLOWED_OPS = {"aten.empty_like": 1, "aten.view": 2, "aten.contiguous": 1, "aten._to_copy": 1, "aten.size": 3}
FORBIDDEN_OPS = ["aten.relu", "aten.mm", "aten._to_copy[dtype-change]"]


@pytest.mark.parametrize("policy", ["strict", "partial"])
def test_allocation_view_copy_and_metadata_ops_pass(policy):
    assert judge_call(POLICIES[policy], ALLOWED_OPS, MINE) is None


@pytest.mark.parametrize("op", FORBIDDEN_OPS)
def test_forbidden_op_is_torch_compute_under_strict(op):
    verdict = judge_call(POLICIES["strict"], {**ALLOWED_OPS, op: 1}, MINE)
    assert verdict is not None
    assert verdict[0] is K.TORCH_COMPUTE
    assert op in verdict[1]


@pytest.mark.parametrize("op", FORBIDDEN_OPS)
def test_forbidden_op_passes_under_partial(op):
    assert judge_call(POLICIES["partial"], {**ALLOWED_OPS, op: 1}, MINE) is None


@pytest.mark.parametrize("policy", ["strict", "partial"])
def test_no_candidate_launch_is_no_triton_launch(policy):
    verdict = judge_call(POLICIES[policy], ALLOWED_OPS, [])
    assert verdict is not None and verdict[0] is K.NO_TRITON_LAUNCH


@pytest.mark.parametrize("policy", ["strict", "partial"])
def test_foreign_kernel_is_foreign_kernel(policy):
    verdict = judge_call(POLICIES[policy], ALLOWED_OPS, MINE + [("triton_poi_fused_relu_0", False)])
    assert verdict is not None
    assert verdict[0] is K.FOREIGN_KERNEL
    assert "triton_poi_fused_relu_0" in verdict[1]


@pytest.mark.parametrize("policy", ["strict", "partial"])
def test_only_foreign_launches_are_foreign_kernel(policy):
    verdict = judge_call(POLICIES[policy], {}, [("library_kernel", False)])
    assert verdict is not None and verdict[0] is K.FOREIGN_KERNEL


def test_strict_reports_torch_compute_before_a_missing_launch():
    verdict = judge_call(POLICIES["strict"], {"aten.relu": 1}, [])
    assert verdict is not None and verdict[0] is K.TORCH_COMPUTE
