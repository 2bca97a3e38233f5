"""tasks/coverage.py: the coverage rule, on the built-in tasks and on small hand-written tasks.

Each bug below passed the verifier before the rule, because no planned shape had the property that shows it: a special
path for a size of 1, a loop bound off by one at 2^k+1, one fixed tile on the long axis, two extents read the wrong
way round when the default order is reversed.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tritonrl.tasks.coverage import Coverage, Requirement
from tritonrl.tasks.loader import builtin_tasks, load_task, load_task_dir
from tritonrl.tasks.shapes import plan_shapes, plan_shapes_cached

FIXTURES = Path(__file__).parents[1] / "fixtures" / "tasks"
BUILTIN = {task.task_id: task for task in builtin_tasks()}

TEMPLATE = """
import torch
import torch.nn as nn

class Model(nn.Module):
    def forward(self, x):
        return {ret}

dim1 = 4096
dim2 = 256

def get_inputs():
    return [torch.randn(dim1, dim2)]

def get_init_inputs():
    return []
"""


def _task(tmp_path: Path, ret: str, name: str = "two_sizes.py"):
    path = tmp_path / name
    path.write_text(TEMPLATE.format(ret=ret))
    return load_task(path)


def _shapes(plan) -> list[dict[str, int]]:
    return [plan.base, *plan.variants]


@pytest.fixture(scope="module")
def two_sizes(tmp_path_factory):
    """dim1 = 4096 > dim2 = 256 by default; a row-wise cumulative sum runs at any sizes."""
    return plan_shapes(_task(tmp_path_factory.mktemp("two"), "x.cumsum(dim=1)"))


def test_reversed_default_order_is_planned(two_sizes):
    assert any(s["dim2"] > s["dim1"] for s in _shapes(two_sizes)), two_sizes
    assert any(s["dim1"] > s["dim2"] for s in _shapes(two_sizes)), two_sizes
    covered = dict(two_sizes.coverage.covered)
    assert "dim2>dim1" in covered and "dim1>dim2" in covered


def test_every_constant_gets_a_size_of_one(two_sizes):
    for name in ("dim1", "dim2"):
        assert any(s[name] == 1 for s in two_sizes.variants), (name, two_sizes.variants)


def test_every_constant_gets_2k_plus_one_and_2k_minus_one(two_sizes):
    for name in ("dim1", "dim2"):
        values = [s[name] for s in _shapes(two_sizes)]
        assert any(v >= 5 and (v - 1) & (v - 2) == 0 for v in values), (name, values)  # 2^k+1
        assert any(v >= 3 and (v + 1) & v == 0 for v in values), (name, values)  # 2^k-1


def test_long_axis_exceeds_common_block_sizes(two_sizes):
    base = two_sizes.base["dim1"]
    assert any(s["dim1"] > 1024 or s["dim1"] >= 4 * base for s in two_sizes.variants), two_sizes.variants
    assert all(s["dim1"] * s["dim2"] <= 2 * 8192 for s in two_sizes.variants)  # within the variant budget


def test_three_variants_cover_the_whole_rule(two_sizes):
    assert len(two_sizes.variants) == 3 and two_sizes.coverage.not_covered == ()
    kinds = {label.split("=")[-1] for label, _ in two_sizes.coverage.covered}
    assert {"1", "2^k+1", "2^k-1"} <= kinds


def test_impossible_requirements_are_recorded_not_raised(tmp_path):
    # The reference needs an even dim2 (pairs of columns): 1, 2^k+1 and 2^k-1 are all impossible for it.
    plan = plan_shapes(_task(tmp_path, "x.view(x.shape[0], -1, 2).sum(-1)"))
    missing = dict(plan.coverage.not_covered)
    for label in ("dim2=1", "dim2=2^k+1", "dim2=2^k-1"):
        assert "raised" in missing[label], missing  # the reference's own error, with the sizes it was tried at
    assert all(s["dim2"] % 2 == 0 for s in _shapes(plan))
    assert "dim1=1" not in missing and "dim1=2^k+1" not in missing  # the other constant is still covered


def test_budget_and_coupling_are_recorded_with_reasons():
    plan = plan_shapes(load_task(FIXTURES / "hinge_coupled.py"))
    missing = dict(plan.coverage.not_covered)
    assert missing["batch_size>input_shape[0]"].startswith("coupled")
    long = next(label for label in missing if label.startswith("batch_size>1024"))
    assert "over the size budget" in missing[long]  # (B, B) predictions: 129 x 129 > 2 x 8192


def test_a_constant_of_one_is_recorded_as_kept():
    plan = plan_shapes(next(t for t in load_task_dir(FIXTURES) if t.task_id == "declared_roles"))
    assert "never changed" in dict(plan.coverage.not_covered)["mult (every size but 1)"]
    assert all(s["mult"] == 1 for s in _shapes(plan))


def test_fewer_variants_say_which_shape_was_left_out(two_sizes, tmp_path):
    plan = plan_shapes(_task(tmp_path, "x.cumsum(dim=1)"), n_variants=2)
    assert plan.variants == two_sizes.variants[:2]  # the shapes that cover most come first
    assert plan.coverage.not_covered and all("beyond n_variants=2" in why for _, why in plan.coverage.not_covered)


@pytest.mark.parametrize("task_id", sorted(BUILTIN))
def test_builtin_tasks_meet_the_whole_rule(task_id: str):
    plan = plan_shapes_cached(BUILTIN[task_id])
    assert plan.coverage.not_covered == (), plan.coverage.not_covered
    assert len(plan.coverage.covered) >= 4  # =1, =2^k+1, =2^k-1 and the long axis, at the least
    json.dumps(plan.coverage.to_dict())  # goes into Verdict.extra as is


def test_requirement_predicates():
    plus, minus = Requirement("n", "pow+1", ("n",)), Requirement("n", "pow-1", ("n",))
    assert [v for v in range(1, 40) if plus.met({"n": v})] == [5, 9, 17, 33]  # 2^k+1, k >= 2
    assert [v for v in range(1, 40) if minus.met({"n": v})] == [3, 7, 15, 31]  # 2^k-1, k >= 2
    small, large = (Requirement("n", "long", ("n",), threshold=t) for t in (400, 8000))  # 4x base
    assert [small.met({"n": v}) for v in (399, 400, 1025)] == [False, True, True]
    assert [large.met({"n": v}) for v in (1024, 1025)] == [False, True]  # > 1024 is enough
    assert Requirement("a>b", "order", ("a", "b")).met({"a": 3, "b": 2})
    assert Coverage().to_dict() == {"covered": {}, "not_covered": {}}
