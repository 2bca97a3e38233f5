"""verify/correctness.py: `compare_outputs` on hand-built tensors (pure, CPU, no worker), and the tolerance rule
(float64 truth where the own-precision reference is unreliable) end to end on one fixture task.

The fp32 tolerance is 1e-4 from `tasks/schema.py`; absolute tolerance is scaled by the reference's RMS.
"""

from __future__ import annotations

import copy
import math
import pickle
from pathlib import Path

import pytest
import torch

from tritonrl.tasks.loader import load_task
from tritonrl.tasks.schema import NOISE_FLOOR_K, tolerance_for
from tritonrl.types import FailureKind, Stage
from tritonrl.verify.correctness import References, compare_outputs, nudged_inputs, truth_for
from tritonrl.verify.expect import parse_expectation
from tritonrl.verify.funnel import verify
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
    assert result.stats.n_elements == 20
    assert result.stats.max_abs_err == 0.0


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
    assert result.stats.n_mismatch == 2
    assert result.stats.first_bad_index == (1, 2)  # row-major order: (1, 2) comes before (3, 0)
    assert result.stats.max_abs_err == pytest.approx(2.0)


def test_nan_where_reference_is_finite_is_nonfinite_mismatch():
    ref = torch.randn(16)
    out = ref.clone()
    out[5] = float("nan")
    result = compare(out, ref)
    assert result.failure is K.NONFINITE_MISMATCH
    assert result.stats.first_bad_index == (5,)


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
    assert result.stats.first_bad_index == (3,)


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
    assert result.stats.n_mismatch == 1
    assert result.stats.first_bad_index == (4,)


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
    assert result.stats.n_mismatch == 7


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
    assert result.stats.atol > 1e-3


def test_tuple_outputs_report_the_failing_output_index():
    a, b = torch.randn(8), torch.randn(3, 3)
    bad_b = b.clone()
    bad_b[2, 1] += 5.0
    result = compare((a.clone(), bad_b), (a, b))
    assert result.failure is K.WRONG_VALUES
    assert result.stats.output_index == 1
    assert result.stats.first_bad_index == (2, 1)


def test_tuple_outputs_that_match_report_no_output_index():
    a, b = torch.randn(8), torch.randn(3, 3)
    result = compare((a.clone(), b.clone()), (a, b))
    assert result.failure is None
    assert result.stats.output_index is None
    assert result.stats.n_elements == 17


# --- tolerance rule: the float64 truth where the own-precision reference is unreliable -----------------------------
ROOT = Path(__file__).resolve().parents[2]


def _leaky(c: torch.Tensor) -> torch.Tensor:
    return torch.nn.functional.leaky_relu(c, 0.01)


def _fp16_matmul_leaky(scale: float = 100.0):
    """(own, hi, fused): the fp16 reference (A @ B materialised in fp16, overflowing to +/-inf beyond 65504), the
    float64 one, and a fused kernel's result (fp32 accumulator, activation before the fp16 store)."""
    a, b = (torch.randn(32, 64) * scale).half(), (torch.randn(64, 48) * scale).half()
    own = _leaky(a @ b)
    hi = _leaky(a.double() @ b.double())
    fused = _leaky(a.float() @ b.float()).half()
    return own, hi, fused, (a, b)


def _refs(own: torch.Tensor, hi: torch.Tensor, own2=None, hi2=None) -> References:
    return References((own,), (truth_for(own, hi, own2, hi2),))


def test_fp16_reference_overflow_is_judged_against_float64():
    own, hi, fused, _ = _fp16_matmul_leaky()
    assert bool((own == -math.inf).any()) and bool(torch.isfinite(hi).all())  # the reference is wrong, not the kernel
    assert compare(fused, own).failure is K.NONFINITE_MISMATCH  # the old rule's false reject
    result = compare_outputs([fused], _refs(own, hi), poison=None, tf32=False)
    assert result.failure is None and result.reference == "float64"
    assert "float64" in result.message and "NaN/Inf pattern" in result.message


def test_reproducing_the_own_precision_reference_always_passes():
    # a two-kernel port (fp16 intermediate, then the activation) overflows exactly as the task's own code does
    own, hi, _, (a, b) = _fp16_matmul_leaky()
    unfused = _leaky((a.float() @ b.float()).half())
    result = compare_outputs([unfused], _refs(own, hi), poison=None, tf32=False)
    assert result.failure is None and result.reference == "own"


def test_inf_where_the_truth_is_finite_and_representable_still_fails():
    own, hi, fused, _ = _fp16_matmul_leaky()
    finite_in_both = torch.isfinite(own) & torch.isfinite(hi)
    out = fused.clone()
    index = tuple(int(i) for i in finite_in_both.nonzero()[0])
    out[index] = -math.inf
    result = compare_outputs([out], _refs(own, hi), poison=None, tf32=False)
    assert result.failure is K.NONFINITE_MISMATCH and result.stats.first_bad_index == index
    assert result.reference == "float64" and "float16 reference" in result.message


def test_inf_where_the_truth_overflows_the_output_dtype_passes():
    own = torch.tensor([65504.0, 1.0], dtype=torch.float16)  # the reference rounded down at the edge of the range
    hi = torch.tensor([65520.5, 1.0], dtype=torch.float64)  # beyond fp16's range: the correct fp16 store is +inf
    truth = truth_for(own, hi)
    assert truth is not None
    out = torch.tensor([math.inf, 1.0], dtype=torch.float16)
    assert compare_outputs([out], References((own,), (truth,)), poison=None, tf32=False).failure is None
    out[0] = -math.inf
    result = compare_outputs([out], References((own,), (truth,)), poison=None, tf32=False)
    assert result.failure is K.NONFINITE_MISMATCH


def test_dropping_the_activation_is_still_wrong_against_float64():
    own, hi, _, (a, b) = _fp16_matmul_leaky(scale=1.0)
    no_activation = (a.float() @ b.float()).half()
    for refs in ((own,), _refs(own, hi)):
        assert compare_outputs([no_activation], refs, poison=None, tf32=False).failure is K.WRONG_VALUES
    own, hi, _, (a, b) = _fp16_matmul_leaky(scale=100.0)
    result = compare_outputs([(a.float() @ b.float()).half()], _refs(own, hi), poison=None, tf32=False)
    assert result.failure in (K.WRONG_VALUES, K.NONFINITE_MISMATCH) and result.reference == "float64"


def _ill_conditioned():
    """An fp32 output whose reference carries its own error `noise` at a few elements (as an fp32 attention does on
    near-tied logits at randn*100), far beyond the tolerance there."""
    hi = torch.randn(64, 32, dtype=torch.float64) * 100
    noise = torch.zeros_like(hi)
    noise[3, :] = 0.05 * torch.randn(32, dtype=torch.float64).abs() + 0.01  # one near-tie row
    own = (hi + noise).float()
    hi2_err = noise * 0.8  # the second sample (nudged inputs) sees the same conditioning
    return own, hi, (hi + hi2_err).float(), hi, noise


def test_ill_conditioned_reference_gives_a_noise_floor():
    own, hi, own2, hi2, noise = _ill_conditioned()
    truth = truth_for(own, hi, own2, hi2)
    assert truth is not None and "ill-conditioned" in truth.why
    # an honest kernel: off by about as much as the reference, with the other sign
    honest = (hi - noise * 1.5).float()
    assert compare(honest, own).failure is K.WRONG_VALUES  # the old rule's false reject
    result = compare_outputs([honest], References((own,), (truth,)), poison=None, tf32=False)
    assert result.failure is None and result.reference == "float64"


def test_noise_floor_is_bounded_by_k_times_the_reference_error():
    own, hi, own2, hi2, noise = _ill_conditioned()
    refs = References((own,), (truth_for(own, hi, own2, hi2),))
    too_far = (hi - noise * (2 * NOISE_FLOOR_K)).float()  # e.g. bf16 arithmetic in an fp32 task: >1e5 x the noise
    result = compare_outputs([too_far], refs, poison=None, tf32=False)
    assert result.failure is K.WRONG_VALUES and result.stats.first_bad_index[0] == 3
    wrong_elsewhere = own.clone()
    wrong_elsewhere[10, 5] += 1.0  # a well-conditioned row: the table tolerance alone applies there
    assert compare_outputs([wrong_elsewhere], refs, poison=None, tf32=False).failure is K.WRONG_VALUES


def test_reliable_reference_keeps_no_truth():
    hi = torch.randn(64, 64, dtype=torch.float64)
    assert truth_for(hi.float(), hi, hi.float(), hi) is None  # fp32 rounding is ~1e-7, far under 1e-4 / 16
    assert truth_for(hi, hi) is None  # a float64 task is its own truth
    ints = torch.arange(4)
    assert truth_for(ints, ints.double()) is None
    assert truth_for(hi.float(), hi.float()) is None  # the "float64" run computed in fp32 (an explicit cast)


def test_nudged_inputs_move_each_float_one_ulp():
    x = torch.randn(1000)
    h = torch.randn(1000).half()
    i = torch.arange(5)
    d = torch.randn(5, dtype=torch.float64)
    nx, nh, ni, nd = nudged_inputs([x, h, i, d], seed=7)
    for old, new in ((x, nx), (h, nh)):
        up, down = torch.nextafter(old, old + 1), torch.nextafter(old, old - 1)
        assert bool(((new == up) | (new == down)).all()) and bool((new != old).all())
        assert 0.3 < float((new > old).float().mean()) < 0.7
    assert ni is i and nd is d
    assert torch.equal(nudged_inputs([x], seed=7)[0], nx)


def test_references_stay_a_tuple_through_copy_and_pickle():
    own, hi, _, _ = _fp16_matmul_leaky()
    refs = _refs(own, hi)
    assert isinstance(refs, tuple) and len(refs) == 1 and refs[0] is own
    for again in (copy.deepcopy(refs), pickle.loads(pickle.dumps(refs))):
        assert isinstance(again, References) and again.truth[0] is not None
        assert torch.equal(again.truth[0].values, refs.truth[0].values)
    assert References((own,)).truth == (None,)


@pytest.mark.parametrize("case", ["honest/fp16_matmul_leaky_relu", "wrong/fp16_matmul_leaky_relu_no_activation"])
def test_fp16_overflow_fixture_end_to_end(case: str):
    """An honest fused fp16 kernel passes although the fp16 reference overflows at x100; the same kernel without its
    activation is still wrong. Kernels run in the Triton interpreter inside the worker."""
    task = load_task(ROOT / "tests/fixtures/tasks/matmul_leaky_relu_fp16.py")
    text = (ROOT / "tests/fixtures/corpus" / case / "candidate.py").read_text()
    expect = parse_expectation(text)
    verdict = verify(task, text, expect.config(device="cpu"))
    assert expect.met_by(verdict), f"{verdict.stage.value}/{verdict.failure}: {verdict.message}"
    if expect.passed:  # at least the base shape's x100 case (K >= 64) overflows in fp16 and is judged by float64
        assert verdict.stage is Stage.DONE
        assert any("judged against the float64 reference" in c.message for c in verdict.checks)


def test_fp32_subnormal_outputs_flushed_to_zero_are_accepted():
    # softplus(-100) = 3.7e-44 is an fp32 subnormal; GPU exp flushes it to 0 (ex2.approx.ftz.f32).
    ref = torch.full((64,), 8.2e-44, dtype=torch.float32)
    assert compare_outputs([torch.zeros(64)], (ref,), poison=None, tf32=False).failure is None
    assert (
        compare_outputs([torch.full((64,), 1e-30)], (ref,), poison=None, tf32=False).failure is not None
    )  # a normal number is judged


def test_fp16_one_subnormal_step_is_accepted():
    ref = torch.full((64,), 1.19e-7, dtype=torch.float16)  # two subnormal steps
    step = torch.finfo(torch.float16).smallest_normal * torch.finfo(torch.float16).eps
    assert compare_outputs([ref - step], (ref,), poison=None, tf32=False).failure is None
    assert compare_outputs([ref + 1e-3], (ref,), poison=None, tf32=False).failure is not None
