"""verify/correctness.py: `compare_outputs` on hand-built tensors (pure, CPU, no worker).

The fp32 tolerance is 1e-4 from `tasks/schema.py`; absolute tolerance is scaled by the reference's RMS.
"""

from __future__ import annotations

import math

import pytest
import torch

from tritonrl.tasks.schema import tolerance_for
from tritonrl.types import FailureKind
from tritonrl.verify.correctness import compare_outputs
from tritonrl.verify.messages import poison_value

K = FailureKind
TOL = tolerance_for("float32")
SENTINEL = poison_value(torch.float32, "sentinel")
NAN = poison_value(torch.float32, "nan")


def compare(out, ref, poison=None):
    outs = list(out) if isinstance(out, tuple) else [out]
    refs = ref if isinstance(ref, tuple) else (ref,)
    return compare_outputs(outs, refs, poison=poison, tf32=False)


def test_exact_match_passes():
    ref = torch.randn(4, 5)
    result = compare(ref.clone(), ref)
    assert result.failure is None
    assert result.n_elements == 20
    assert result.max_abs_err == 0.0


def test_error_within_tolerance_passes():
    ref = torch.randn(64)
    out = ref + TOL * 0.1 * ref.abs()  # a tenth of the relative tolerance
    assert compare(out, ref).failure is None


def test_error_beyond_tolerance_is_wrong_values():
    assert compare(torch.ones(4, 5) + 1.0, torch.ones(4, 5)).failure is K.WRONG_VALUES


def test_wrong_values_reports_count_first_index_and_max_error():
    ref = torch.ones(4, 5)
    out = ref.clone()
    out[1, 2] = 1.5
    out[3, 0] = 3.0
    result = compare(out, ref)
    assert result.failure is K.WRONG_VALUES
    assert result.n_mismatch == 2
    assert result.first_bad_index == (1, 2)  # row-major order: (1, 2) comes before (3, 0)
    assert result.max_abs_err == pytest.approx(2.0)


def test_nan_where_reference_is_finite_is_nonfinite_mismatch():
    ref = torch.randn(16)
    out = ref.clone()
    out[5] = float("nan")
    result = compare(out, ref)
    assert result.failure is K.NONFINITE_MISMATCH
    assert result.first_bad_index == (5,)


def test_inf_where_reference_is_finite_is_nonfinite_mismatch():
    ref = torch.randn(16)
    out = ref.clone()
    out[2] = float("inf")
    assert compare(out, ref).failure is K.NONFINITE_MISMATCH


def test_matching_nan_and_inf_positions_pass():
    ref = torch.randn(8)
    ref[1], ref[3], ref[6] = float("nan"), float("inf"), float("-inf")
    assert compare(ref.clone(), ref).failure is None


def test_inf_sign_mismatch_fails():
    ref = torch.randn(8)
    ref[3] = float("inf")
    out = ref.clone()
    out[3] = float("-inf")
    result = compare(out, ref)
    assert result.failure is K.NONFINITE_MISMATCH
    assert result.first_bad_index == (3,)


def test_wrong_shape():
    result = compare(torch.zeros(4, 5), torch.zeros(5, 4))
    assert result.failure is K.WRONG_SHAPE


def test_wrong_dtype():
    result = compare(torch.zeros(4, dtype=torch.float64), torch.zeros(4, dtype=torch.float32))
    assert result.failure is K.WRONG_DTYPE


def test_wrong_number_of_outputs_is_wrong_structure():
    ref = torch.zeros(4)
    result = compare_outputs([ref.clone(), ref.clone()], (ref,), poison=None, tf32=False)
    assert result.failure is K.WRONG_OUTPUT_STRUCTURE


def test_integer_outputs_must_match_exactly():
    ref = torch.arange(1000, 1010, dtype=torch.int64)
    out = ref.clone()
    out[4] += 1  # a relative error of 1e-3 would pass any float tolerance; integers have none
    result = compare(out, ref)
    assert result.failure is K.WRONG_VALUES
    assert result.n_mismatch == 1
    assert result.first_bad_index == (4,)


def test_equal_integer_outputs_pass():
    ref = torch.arange(10, dtype=torch.int32)
    assert compare(ref.clone(), ref).failure is None


def test_every_bad_element_holding_the_sentinel_is_unwritten_output():
    ref = torch.randn(100)
    out = ref.clone()
    out[-7:] = SENTINEL  # stored in fp32: no longer exactly the Python float -1.2345e30
    assert out[-1].item() != SENTINEL
    result = compare(out, ref, poison=SENTINEL)
    assert result.failure is K.UNWRITTEN_OUTPUT
    assert result.n_mismatch == 7


def test_sentinel_mixed_with_other_wrong_values_is_wrong_values():
    ref = torch.randn(100)
    out = ref.clone()
    out[-7:] = SENTINEL
    out[0] = ref[0] + 10.0
    assert compare(out, ref, poison=SENTINEL).failure is K.WRONG_VALUES


def test_nan_poison_is_never_classified_unwritten():
    assert math.isnan(NAN)
    ref = torch.randn(100)
    out = ref.clone()
    out[-7:] = NAN
    assert compare(out, ref, poison=NAN).failure is K.NONFINITE_MISMATCH


def test_tiny_outputs_with_one_percent_relative_error_fail():
    # A fixed atol of 1e-4 would accept any error on outputs ~1e-6; the RMS-scaled atol does not.
    ref = torch.randn(256, dtype=torch.float32) * 1e-6
    out = ref * (1 + 1e-2)
    assert compare(out, ref).failure is K.WRONG_VALUES


def test_large_outputs_with_small_absolute_error_pass():
    # Outputs ~1e4 with absolute error 1e-3, including elements near zero where rtol * |ref| alone is too small.
    ref = torch.randn(256, dtype=torch.float64) * 1e4
    ref[0] = 1e-3
    out = ref + 1e-3
    result = compare(out.float(), ref.float())
    assert result.failure is None
    assert result.atol > 1e-3


def test_tuple_outputs_report_the_failing_output_index():
    a, b = torch.randn(8), torch.randn(3, 3)
    bad_b = b.clone()
    bad_b[2, 1] += 5.0
    result = compare((a.clone(), bad_b), (a, b))
    assert result.failure is K.WRONG_VALUES
    assert result.output_index == 1
    assert result.first_bad_index == (2, 1)


def test_tuple_outputs_that_match_report_no_output_index():
    a, b = torch.randn(8), torch.randn(3, 3)
    result = compare((a.clone(), b.clone()), (a, b))
    assert result.failure is None
    assert result.output_index is None
    assert result.n_elements == 17
