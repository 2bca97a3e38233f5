"""verify/cases.py: value distributions (`distribute`), their rotation over shapes, and redrawn integer inputs.

Each distribution exists for a bug the others never show: all-negative rows (a running max started at 0), ties
(argmax tie-breaking), all-zero rows (a missing eps clamp), per-row magnitudes 1e-3..1e3 (a scale from the wrong row).
"""

from __future__ import annotations

import pytest
import torch

from tritonrl.tasks.loader import load_task
from tritonrl.verify.cases import SIGNED, distribute, draw_shape, shape_distributions
from tritonrl.verify.config import DISTRIBUTIONS, VerifyConfig


def _float(distribution: str, shape=(64, 32), dtype=torch.float32) -> torch.Tensor:
    (x,) = distribute([torch.zeros(shape, dtype=dtype)], distribution, seed=7)
    return x


def test_negative_rows_are_entirely_negative_and_far_from_zero():
    x = _float("negative")
    assert bool((x < -90).all())  # exp(x - 0) underflows: a running max started at 0 shows


def test_positive_values_are_never_negative():
    x = _float("positive")
    assert bool((x >= 0).all()) and bool((x > 0).any())


def test_ties_are_small_integers_with_many_repeats():
    x = _float("ties")
    assert bool((x == x.round()).all()) and set(x.unique().tolist()) == {-3.0, -2.0, -1.0, 0.0, 1.0, 2.0, 3.0}
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


RISING = """
import torch
import torch.nn as nn

class Model(nn.Module):
    def forward(self, x, offsets):
        if bool((offsets[1:] <= offsets[:-1]).any()):
            raise ValueError("offsets must rise")
        return x[offsets]

n = 16

def get_inputs():
    return [torch.randn(n), torch.arange(0, n, 2)]

def get_init_inputs():
    return []
"""


def test_redrawn_integers_the_reference_refuses_stay_native(tmp_path):
    path = tmp_path / "rising.py"
    path.write_text(RISING)
    drawn = draw_shape(load_task(path), "base", {"n": 16}, VerifyConfig(), ("positive", "ties"))
    for distribution, _, (x, offsets) in drawn.draws:
        assert torch.equal(offsets, torch.arange(0, 16, 2)), distribution  # all-max offsets do not rise
        assert bool((x >= 0).all()) or distribution == "ties"  # the floats are still redrawn
