"""verify/cases.py: drawing a shape's cases (redrawn integer inputs the reference refuses stay native; the task's
constants reach the ties draw)."""

from __future__ import annotations

import torch

from tritonrl.tasks.loader import load_task
from tritonrl.verify.cases import draw_shape
from tritonrl.verify.config import VerifyConfig

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


THRESHOLD = """
import torch
import torch.nn as nn
import torch.nn.functional as F

class Model(nn.Module):
    def forward(self, x):
        return F.threshold(x, 0.5, -1.0)

n = 4096

def get_inputs():
    return [torch.randn(n)]

def get_init_inputs():
    return []
"""


def test_the_ties_case_hits_the_reference_threshold_exactly(tmp_path):
    """A `>=` written for F.threshold's `>` differs only at x == 0.5: the ties draw must hold that value."""
    path = tmp_path / "threshold.py"
    path.write_text(THRESHOLD)
    drawn = draw_shape(load_task(path), "base", {"n": 4096}, VerifyConfig(), ("ties",))
    (_, _, (x,)) = drawn.draws[0]
    assert int((x == 0.5).sum()) > 100
