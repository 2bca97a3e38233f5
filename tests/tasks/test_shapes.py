"""tasks/shapes.py: meta-device probes, CPU scaling, coverage-rule and awkward-size variants, reference validation.

The coverage rule itself (which requirements each plan meets) is tested in test_coverage.py.
"""

from __future__ import annotations

import resource
from pathlib import Path

import pytest

from tritonrl.errors import TaskError
from tritonrl.tasks.loader import builtin_tasks, load_task, load_task_dir
from tritonrl.tasks.shapes import (
    N_VARIANTS,
    cpu_scale,
    plan_shapes,
    plan_shapes_cached,
    probe,
    shape_family,
    validate_variant,
)

FIXTURES = Path(__file__).parents[1] / "fixtures" / "tasks"
GOOD = {task.task_id: task for task in load_task_dir(FIXTURES)}
BUILTIN = {task.task_id: task for task in builtin_tasks()}
BUDGET = 8192

INLINE = """
import torch
import torch.nn as nn

class Model(nn.Module):
    def forward(self, x):
        return {ret}

batch_size = 1024
dim = 4096

def get_inputs():
    return [torch.rand(batch_size, dim)]

def get_init_inputs():
    return []
"""


def _inline(ret: str, task_id: str = "inline"):
    return load_task(INLINE.format(ret=ret), task_id=task_id)


@pytest.fixture(scope="module", autouse=True)
def _warm_torch():
    """The first meta-device op in a process pays ~1 s of torch's lazy imports; keep it out of the timings."""
    plan_shapes(GOOD["hinge_coupled"])


def test_probe_on_meta_does_not_allocate():
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    found = probe(GOOD["softmax_huge"])  # 4096 x 393216 fp32 is 6 GiB
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before < 512 * 1024  # far below 6 GiB
    assert found.ok and found.input_numels == (4096 * 393216,) and found.output_numels == (4096 * 393216,)
    assert found.max_numel == 4096 * 393216


def test_probe_counts_parameters_separately():
    found = probe(GOOD["conv2d"], {"batch_size": 1, "height": 8, "width": 8})
    assert found.max_param_numel == 64 * 3 * 5 * 5


def test_probe_reports_a_broken_shape():
    found = probe(GOOD["conv2d"], {"height": 2, "width": 2})  # smaller than the 5x5 kernel even with padding 1
    assert not found.ok and "Model.forward" in found.error


def test_probe_without_meta_kernel_reports_inputs_only():
    found = probe(_inline("x[x > 0.5]"))  # boolean masking has data-dependent shape: no meta kernel
    assert found.ok and found.output_numels is None and found.input_numels == (1024 * 4096,)


@pytest.mark.parametrize("task_id", sorted(GOOD))
def test_cpu_scale_reaches_the_budget(task_id: str):
    task = GOOD[task_id]
    sizes = cpu_scale(task, BUDGET)
    found = probe(task, sizes, device="cpu")
    assert found.ok and found.max_numel <= BUDGET
    assert set(sizes) == set(task.free_size_constants)


def test_cpu_scale_keeps_hyperparameters_and_small_floors():
    sizes = cpu_scale(GOOD["conv2d"])
    assert "kernel_size" not in sizes and "stride" not in sizes
    assert sizes["in_channels"] >= 2  # 3 may halve to 2, never to 1
    assert sizes["height"] >= 5  # the conv still fits its kernel


def test_cpu_scale_halves_coupled_sizes_together():
    sizes = cpu_scale(GOOD["hinge_coupled"])
    assert sizes["batch_size"] == sizes["input_shape[0]"] <= 64


def test_cpu_scale_measures_outputs_without_meta_kernel():
    sizes = cpu_scale(_inline("x[x > 0.5]"))
    assert sizes["batch_size"] * sizes["dim"] <= BUDGET


def test_cpu_scale_raises_when_the_budget_is_unreachable():
    with pytest.raises(TaskError, match=r"no scaling reaches max_numel=4 .*Fix: raise max_numel"):
        cpu_scale(GOOD["conv2d"], max_numel=4)


@pytest.mark.parametrize("task_id", ["softmax_huge", "square_matmul", "hinge_coupled", "declared_roles"])
def test_shape_family_avoids_multiples_of_16(task_id: str):
    task = GOOD[task_id]
    base = cpu_scale(task)
    variants = shape_family(task, base, n=2)
    assert len(variants) == 2
    for variant in variants:
        assert all(v % 16 != 0 for v in variant.values() if v > 1), variant


def test_shape_family_is_distinct_deterministic_and_in_budget():
    task = GOOD["conv2d"]
    base = cpu_scale(task)
    variants = shape_family(task, base, n=3)
    assert shape_family(task, base, n=3) == variants
    assert len({tuple(sorted(v.items())) for v in [base, *variants]}) == 4
    for variant in variants:
        assert probe(task, variant, device="cpu").max_numel <= 2 * BUDGET


def test_shape_family_keeps_ones():
    task = GOOD["declared_roles"]
    assert all(v["mult"] == 1 for v in shape_family(task, cpu_scale(task), n=2))


def test_validate_variant_accepts_a_good_reference():
    task = GOOD["softmax_huge"]
    assert validate_variant(task, cpu_scale(task), seed=0) is None


def test_validate_variant_flags_a_degenerate_reference():
    task = load_task(FIXTURES / "bad" / "degenerate.py")
    reason = validate_variant(task, cpu_scale(task), seed=0)
    assert reason is not None and "degenerate" in reason and "output 0 is all 0.0" in reason


def test_validate_variant_flags_a_raising_reference():
    reason = validate_variant(load_task(FIXTURES / "bad" / "raises.py"), {"M": 4, "K": 8}, seed=0)
    assert reason is not None and "Model.forward raised" in reason


def test_validate_variant_flags_all_nan_output():
    task = _inline("x * float('nan')")
    assert validate_variant(task, {"batch_size": 4, "dim": 4}, seed=0) == "output 0 is all NaN/Inf"


def test_plan_cpu():
    plan = plan_shapes(GOOD["softmax_huge"], device="cpu")
    assert plan.base == cpu_scale(GOOD["softmax_huge"]) and len(plan.variants) == N_VARIANTS and plan.notes == ()


def test_plan_cpu_keeps_a_degenerate_base_with_a_note():
    plan = plan_shapes(load_task(FIXTURES / "bad" / "degenerate.py"))
    assert any(n.startswith("DEGENERATE TASK") for n in plan.notes)


def test_plan_cpu_raises_for_a_broken_reference():
    with pytest.raises(TaskError, match="does not build at its default sizes"):
        plan_shapes(load_task(FIXTURES / "bad" / "raises.py"))


def test_plan_notes_rng_in_forward():
    plan = plan_shapes(_inline("torch.nn.functional.dropout(x, 0.5, training=True)"))
    assert any("forward uses the RNG" in note for note in plan.notes)


def test_plan_cuda_keeps_defaults_and_only_probes():
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    plan = plan_shapes(GOOD["softmax_huge"], device="cuda")
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before < 512 * 1024  # never ran at 6 GiB
    assert plan.base == {"batch_size": 4096, "dim": 393216}
    assert len(plan.variants) == N_VARIANTS and all(v % 16 for variant in plan.variants for v in variant.values())
    assert any("meta device only" in note for note in plan.notes)


def test_plan_cache_returns_copies():
    task = GOOD["sum_reduction"]
    first = plan_shapes_cached(task)
    first.base["batch_size"] = -1
    again = plan_shapes_cached(task)
    assert again.base == plan_shapes(task).base and again.base["batch_size"] != -1


# Red-team findings: every planned size even (a kernel dropping an odd tail passed), reduced dims halved below one tile
# (a fixed 1024-wide softmax passed), and halving making M == K (a matmul reading K from A.shape[0] passed). Under the
# coverage rule a variant may hold several sizes of 1 (the long-axis shape), so "distinct" means distinct above 1.


@pytest.fixture(scope="module")
def builtin_plans():
    return {task_id: plan_shapes(task) for task_id, task in BUILTIN.items()}


def _shapes(plan):
    return [("base", plan.base)] + [(f"variant{i + 1}", v) for i, v in enumerate(plan.variants)]


def _all_odd(sizes: dict[str, int]) -> bool:
    return all(v % 2 == 1 for v in sizes.values())


def _distinct_above_one(sizes: dict[str, int]) -> bool:
    values = [v for v in sizes.values() if v > 1]
    return len(set(values)) == len(values)


def _long_variant(task, plan) -> dict[str, int]:
    """The variant where the constant of the largest default is largest (the coverage rule's long-axis shape)."""
    long = max(task.free_size_constants, key=task.free_size_constants.get)
    return max(plan.variants, key=lambda v: v[long])


@pytest.mark.parametrize("task_id", sorted(BUILTIN))
def test_builtin_plans_have_an_all_odd_variant(task_id: str, builtin_plans):
    plan = builtin_plans[task_id]
    assert len(plan.variants) == N_VARIANTS and plan.notes == (), plan
    assert sum(_all_odd(v) for v in plan.variants) >= 2, plan.variants  # the long and swap shapes: 2^k+-1 and 1s


@pytest.mark.parametrize("task_id", sorted(BUILTIN))
def test_builtin_plans_give_distinct_constants_distinct_values(task_id: str, builtin_plans):
    plan = builtin_plans[task_id]
    assert len(set(plan.base.values())) == len(plan.base), plan.base  # no builtin task couples two of its sizes
    for name, sizes in _shapes(plan):
        assert _distinct_above_one(sizes), (name, sizes)


def test_matmul_and_linear_never_plan_equal_extents(builtin_plans):
    for name, sizes in _shapes(builtin_plans["matmul"]):
        assert _distinct_above_one(sizes), (name, sizes)
    assert sum(len({s["M"], s["K"], s["N"]}) == 3 for _, s in _shapes(builtin_plans["matmul"])) >= 3
    for name, sizes in _shapes(builtin_plans["linear_bias_relu"]):
        assert sizes["in_features"] != sizes["out_features"], (name, sizes)
    assert builtin_plans["matmul"].base == {"M": 48, "K": 64, "N": 128}  # K keeps its value: its default is largest


@pytest.mark.parametrize("task_id", sorted(BUILTIN))
def test_builtin_plans_have_a_long_axis_variant(task_id: str, builtin_plans):
    task, plan = BUILTIN[task_id], builtin_plans[task_id]
    long = max(task.free_size_constants, key=task.free_size_constants.get)
    variant = _long_variant(task, plan)
    assert variant[long] > 1024 and variant[long] % 2 == 1, variant
    assert all(v == 1 for name, v in variant.items() if name != long), variant  # the others at 1
    assert probe(task, variant, device="cpu").max_numel <= 2 * BUDGET


def test_softmax_long_axis_is_longer_than_one_tile(builtin_plans):
    plan = builtin_plans["softmax"]
    assert {"batch_size": 1, "dim": 8193} in plan.variants  # 2^13+1: one column past an 8192-wide tile
    assert any(v["dim"] > 1024 for v in plan.variants)


def test_vector_add_has_an_odd_length(builtin_plans):
    assert any(v["n_elements"] % 2 for v in builtin_plans["vector_add"].variants)


def test_cpu_scale_separates_sizes_that_halving_made_equal():
    assert cpu_scale(BUILTIN["matmul"]) == {"M": 48, "K": 64, "N": 128}  # halving alone gives M == K == 64
    sizes = cpu_scale(GOOD["conv2d"])  # height = width = 256: equal defaults, not coupled
    assert sizes["height"] != sizes["width"] and len(set(sizes.values())) == len(sizes)
    assert len(set(cpu_scale(GOOD["sum_reduction"]).values())) == 3


def test_coupled_sizes_stay_equal_in_every_shape_with_a_note():
    plan = plan_shapes(GOOD["hinge_coupled"])
    for name, sizes in _shapes(plan):
        assert sizes["batch_size"] == sizes["input_shape[0]"], name  # (B,) targets broadcast against (B, D)
    assert len(plan.variants) == N_VARIANTS and all(_all_odd(v) for v in plan.variants)
    assert any("batch_size == input_shape[0]" in note for note in plan.notes)


@pytest.mark.parametrize("task_id", sorted(GOOD))
def test_fixture_plans_odd_distinct_and_long(task_id: str):
    task = GOOD[task_id]
    plan = plan_shapes(task)
    assert plan_shapes(task) == plan  # deterministic
    assert any(_all_odd(v) for v in plan.variants), plan.variants
    defaults = task.free_size_constants
    axis = max(defaults, key=defaults.get)
    long = _long_variant(task, plan)
    assert long[axis] > plan.base[axis] and long[axis] == max(long.values()), long
    if task_id != "hinge_coupled":
        for name, sizes in _shapes(plan):
            assert _distinct_above_one(sizes), (name, sizes)


def test_plan_cuda_variants_are_odd_distinct_and_long():
    plan = plan_shapes(GOOD["sum_reduction"], device="cuda")
    assert all(_all_odd(v) and _distinct_above_one(v) for v in plan.variants), plan.variants
    long = _long_variant(GOOD["sum_reduction"], plan)
    assert long == {"batch_size": 1, "dim1": 8193, "dim2": 1}  # 2^13+1 <= 4x dim1's base; the others at 1
    assert any(v["dim2"] > v["dim1"] > 1 or v["batch_size"] > v["dim2"] for v in plan.variants)


def test_shape_family_keeps_n_variants_semantics():
    task = GOOD["softmax_huge"]
    base = cpu_scale(task)
    one, two, four = (shape_family(task, base, n=n) for n in (1, 2, 4))
    assert one == two[:1] and two == four[:2] and len(four) == 4
    assert shape_family(task, base, n=0) == []
