"""verify/draws.py: value distributions (`distribute`), their rotation over shapes, the task's constants.

Each distribution exists for a bug the others never show: all-negative rows (a running max started at 0), ties
(argmax tie-breaking, a comparison at a written constant), all-zero rows (a missing eps clamp), per-row magnitudes
1e-3..1e3 (a scale from the wrong row).
"""

from __future__ import annotations

import pytest
import torch

from tritonrl.verify.config import DISTRIBUTIONS
from tritonrl.verify.draws import SIGNED, distribute, fixed_inputs, shape_distributions, task_constants


def _float(distribution: str, shape=(64, 32), dtype=torch.float32) -> torch.Tensor:
    (x,) = distribute([torch.zeros(shape, dtype=dtype)], distribution, seed=7)
    return x


def test_negative_rows_are_entirely_negative_and_far_from_zero():
    x = _float("negative")
    assert bool((x < -90).all())  # exp(x - 0) underflows: a running max started at 0 shows


def test_positive_values_are_never_negative():
    x = _float("positive")
    assert bool((x >= 0).all()) and bool((x > 0).any())


def test_ties_are_small_half_integers_with_many_repeats():
    x = _float("ties")
    assert bool((x * 2 == (x * 2).round()).all()) and set(x.unique().tolist()) == {k / 2 for k in range(-6, 7)}
    assert all(len(row.unique()) < len(row) for row in x)  # every row holds ties


def test_zero_rows_are_entirely_zero_and_the_rest_normal():
    x = _float("zero_rows")
    zero = (x == 0).all(dim=1)
    assert 1 <= int(zero.sum()) < x.shape[0] and bool((x[~zero] != 0).all())


def test_mixed_rows_span_six_decades():
    scales = _float("mixed").abs().amax(dim=1)
    assert float(scales.max() / scales.min()) > 1e5


@pytest.mark.parametrize("distribution", DISTRIBUTIONS)
def test_every_distribution_keeps_shape_and_dtype(distribution: str):
    x = _float(distribution, shape=(5, 3, 7), dtype=torch.float16)
    assert x.shape == (5, 3, 7) and x.dtype == torch.float16 and bool(torch.isfinite(x).all())


def test_native_returns_the_inputs():
    inputs = [torch.randn(3), 2]
    assert distribute(inputs, "native", seed=1) is inputs


def test_integers_take_boundary_values_within_their_native_range():
    idx = torch.arange(2, 10)  # an index input: any value in [2, 9] stays valid
    low, high, ties, normal = (distribute([idx], d, seed=3)[0] for d in ("negative", "positive", "ties", "normal"))
    assert bool((low == 2).all()) and bool((high == 9).all())
    assert set(ties.tolist()) <= {2, 9} and ties.dtype == idx.dtype  # -1, 0, 1 are outside [2, 9]
    assert normal is idx  # other distributions keep the task's integers
    assert distribute([idx], "ties", seed=3, integers=False)[0] is idx


def test_bools_are_all_true_all_false_and_random():
    mask = torch.zeros(256, dtype=torch.bool)
    true, false, mixed = (distribute([mask], d, seed=5)[0] for d in ("positive", "negative", "ties"))
    assert bool(true.all()) and not bool(false.any()) and 0 < int(mixed.sum()) < 256


def test_base_gets_every_distribution_and_variants_a_signed_rotation():
    assert shape_distributions(0, DISTRIBUTIONS) == DISTRIBUTIONS
    variants = [shape_distributions(i, DISTRIBUTIONS) for i in range(1, 4)]
    for picked in variants:
        assert picked[0] == "native" and any(d in SIGNED for d in picked) and len(picked) == 3
    assert len({d for picked in variants for d in picked}) == 7  # rotating: no two variants share a non-native
    assert shape_distributions(2, ("native",)) == ("native",)
    assert shape_distributions(1, ("offset", "wide")) == ("wide", "offset")


def test_ties_with_constants_draw_from_the_integers_and_the_constants():
    (x,) = distribute([torch.zeros(64, 256)], "ties", seed=3, constants=(-0.75, 0.75))
    assert set(x.unique().tolist()) == {k / 2 for k in range(-6, 7)} | {-0.75, 0.75}


def test_task_constants_are_boundaries_not_sizes():
    source = """
import torch
batch_size = 16
dim = 16384
negative_slope = 0.2
class Model(torch.nn.Module):
    def forward(self, x):
        y = torch.clamp(x, 0, 6)
        return torch.where(y > 0.3, y, y * negative_slope) + 1e-30 * 0 - 1e9 * 0
def get_inputs():
    return [torch.randn(batch_size, dim) * 100.0]
"""
    # 16/16384 are module-level sizes; 100.0 is a float literal (kept, harmless); 1e9 is past CONSTANT_MAX_ABS; 1e-30
    # is the fifth constant by distance from 1 (MAX_CONSTANTS = 4); multiples of 0.5 in [-3, 3] are already in the pool
    assert task_constants(source) == (-100.0, -6.0, -0.3, -0.2, 0.2, 0.3, 6.0, 100.0)
    assert task_constants("def broken(:") == ()


def test_inputs_equal_under_every_seed_are_fixed_tables():
    table = torch.arange(8.0).repeat(2)  # a deterministic table: the same in every draw
    natives = [[torch.randn(16), table.clone(), 3], [torch.randn(16), table.clone(), 3]]
    assert fixed_inputs(natives) == {1}
    assert fixed_inputs(natives[:1]) == frozenset()  # one draw decides nothing
    x, kept, n = distribute(natives[0], "wide", seed=0, fixed=fixed_inputs(natives))
    assert kept is natives[0][1] and not torch.equal(x, natives[0][0]) and n == 3
