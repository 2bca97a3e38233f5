"""verify/cases.py: drawing a shape's cases (redrawn integer inputs the reference refuses stay native; the task's
constants reach the ties draw) and running them (a variant the reference cannot run is dropped, the base is not)."""

from __future__ import annotations

import pytest
import torch

from tritonrl.tasks.loader import load_task
from tritonrl.verify.cases import draw_shape
from tritonrl.verify.config import VerifyConfig

RISING = """
import pytest
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
import pytest
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


CONV = """
import pytest
import torch
import torch.nn as nn


class Model(nn.Module):
    def __init__(self, channels):
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3)

    def forward(self, x):
        return self.conv(x)


channels = 2
height = 8
width = 8


def get_inputs():
    return [torch.randn(1, channels, height, width)]


def get_init_inputs():
    return [channels]
"""


def test_a_variant_the_reference_cannot_run_is_dropped_and_the_base_still_judges():
    from tritonrl.errors import TaskError
    from tritonrl.tasks.shapes import ShapePlan
    from tritonrl.verify.cases import build_cases

    task = load_task(CONV, task_id="conv3x3")
    cfg = VerifyConfig(distributions=("native",))
    too_small = {"channels": 2, "height": 2, "width": 15}  # a 3x3 kernel on a 2-row input: the reference refuses
    other = {"channels": 3, "height": 9, "width": 7}
    plan = ShapePlan(base={"channels": 2, "height": 8, "width": 8}, variants=(too_small, other), notes=())
    shapes, notes, _ = build_cases(task, plan, cfg)
    assert [s.name for s in shapes] == ["base", "variant2"]
    assert any(n.startswith("variant1: dropped, the reference fails") for n in notes)
    broken_base = ShapePlan(base=too_small, variants=(), notes=())
    with pytest.raises(TaskError):  # the task's own shape failing is still the task's error
        build_cases(task, broken_base, cfg)
