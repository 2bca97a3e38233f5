"""tasks/augment.py: dtype and shape variants edit only what they must, run, and stay in the family."""

from __future__ import annotations

import torch

from tritonrl.data.augment import augment, dtype_variant, scale_variant
from tritonrl.data.sources.kernelbook import convert_row
from tritonrl.data.suites import load_suite
from tritonrl.tasks.loader import builtin_task
from tritonrl.tasks.reference import ReferenceProgram


def _run(task, sizes=None):
    program = ReferenceProgram(task, sizes)
    return program.run(program.make_model(0), program.get_inputs())


def _small(task):
    return {name: min(value, 8) for name, value in task.free_size_constants.items()}


def test_float16_variant_casts_inputs_only_where_needed():
    relu = builtin_task("relu")
    variant = dtype_variant(relu, "float16")
    assert variant.task_id == "relu+float16" and variant.level == relu.level
    assert "dtype=torch.float16" in variant.source and "self.to(" not in variant.source  # relu has no parameters
    assert len(variant.source) - len(relu.source) == len(", dtype=torch.float16")
    (out,) = _run(variant, _small(variant))
    assert out.dtype == torch.float16


def test_bfloat16_variant_moves_parameters_too():
    task = builtin_task("linear_bias_relu")
    variant = dtype_variant(task, "bfloat16")
    assert "self.to(torch.bfloat16)" in variant.source
    (out,) = _run(variant, _small(variant))
    assert out.dtype == torch.bfloat16


def test_scale_variant_scales_free_sizes_and_keeps_roles():
    task = builtin_task("softmax")
    variant = scale_variant(task, 0.5)
    assert variant.task_id == "softmax+x0.5"
    assert variant.free_size_constants == {k: max(1, round(v / 2)) for k, v in task.free_size_constants.items()}
    assert [c.role for c in variant.constants] == [c.role for c in task.constants]


def test_tasks_without_size_constants_have_no_shape_variant():
    task = convert_row({"uuid": 1, "entry_point": "A", "triton_code": "",
                        "python_code": "import torch\nclass A(torch.nn.Module):\n    def forward(self, x):\n"
                                       "        return x * 2\ndef get_inputs():\n    return [torch.rand([4, 4])]\n"
                                       "def get_init_inputs():\n    return [[], {}]\n"}).task  # fmt: skip
    assert scale_variant(task, 2.0) is None


def test_augment_checks_variants_and_keeps_the_family():
    entries = [e for e in load_suite("builtin").entries if e.task_id in ("relu", "cumsum")]
    kept, dropped = augment(entries, dtypes=("bfloat16",))
    assert {e.task_id for e in kept} | {d[0] for d in dropped} == {"relu+bfloat16", "cumsum+bfloat16"}
    assert all(e.family == e.task_id.split("+")[0] and e.variant == "bfloat16" and e.solution for e in kept)
    assert "relu+bfloat16" in {e.task_id for e in kept}


def test_a_variant_identical_to_its_task_is_dropped():
    entry = next(e for e in load_suite("builtin").entries if e.task_id == "relu")
    once, _ = augment([entry], dtypes=("float16",), usable=lambda task: "")
    again, dropped = augment(once, dtypes=("float16",), usable=lambda task: "")
    assert again == [] and dropped == [("relu+float16+float16", "nothing to vary")]
