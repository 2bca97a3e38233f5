"""tasks/difficulty.py: static profile -> level and difficulty; relabelling from measured pass rates."""

from __future__ import annotations

import pytest

from tritonrl.data.difficulty import infer_level, pass_rates, profile, relabel_by_pass_rate, structural_difficulty
from tritonrl.tasks.loader import builtin_task, load_task

MODEL_LIKE = """import torch
import torch.nn as nn


class Model(nn.Module):
    def __init__(self, width):
        super().__init__()
        self.layers = nn.ModuleList([nn.Linear(width, width) for _ in range(4)])

    def forward(self, x):
        for layer in self.layers:
            x = torch.relu(layer(x))
        return x


def get_inputs():
    return [torch.rand(8, 32)]


def get_init_inputs():
    return [32]
"""


def test_single_elementwise_op_is_level_1_easy():
    relu = builtin_task("relu")
    assert profile(relu).ops == ("relu",)
    assert infer_level(relu) == 1 and structural_difficulty(relu) == "easy"


def test_gemm_fusion_is_level_2_medium():
    task = builtin_task("linear_bias_relu")
    found = profile(task)
    assert found.has_gemm and not found.has_conv and infer_level(task) == 2
    assert structural_difficulty(task) == "medium"


def test_reduction_is_at_least_medium():
    task = builtin_task("softmax")
    assert profile(task).has_reduction and structural_difficulty(task) == "medium"


def test_layer_containers_make_a_model():
    task = load_task(MODEL_LIKE, task_id="stack")
    assert profile(task).model_like and infer_level(task) == 3 and structural_difficulty(task) == "hard"


def test_pass_rates_relabel_tasks_with_enough_samples():
    records = [{"task_id": "a", "passed": True}] * 9 + [{"task_id": "a", "passed": False}]
    records += [{"task_id": "b", "passed": False}] * 5 + [{"task_id": "c", "passed": True}] * 3
    rates = pass_rates(records)
    assert rates == {"a": (9, 10), "b": (0, 5), "c": (3, 3)}
    labels = relabel_by_pass_rate({"a": "hard", "b": "easy", "c": "hard", "d": "medium"}, rates)
    assert labels == {"a": "easy", "b": "hard", "c": "hard", "d": "medium"}  # c: 3 samples < min_samples


def test_relabel_thresholds_must_be_ordered():
    with pytest.raises(ValueError, match="need 0 <= hard <= easy <= 1"):
        relabel_by_pass_rate({}, {}, easy_above=0.2, hard_below=0.5)
