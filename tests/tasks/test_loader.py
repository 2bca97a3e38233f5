"""tasks/loader.py: static parsing of KernelBench-format files, constant folding and size/fixed roles."""

from __future__ import annotations

from pathlib import Path

import pytest

from tritonrl.errors import TaskError
from tritonrl.tasks.loader import builtin_task, builtin_tasks, load_task, load_task_dir, source_fingerprint
from tritonrl.tasks.schema import ConstantRole

FIXTURES = Path(__file__).parents[1] / "fixtures" / "tasks"
SIZE, FIXED = ConstantRole.SIZE, ConstantRole.FIXED

TEMPLATE = """
import torch
import torch.nn as nn

class Model(nn.Module):
    def __init__(self, {init}):
        super().__init__()

    def forward(self, x):
        return x

{constants}

def get_inputs():
    return [torch.rand(4, 4)]

def get_init_inputs():
    return []
"""


def _source(constants: str = "", init: str = "*args") -> str:
    return TEMPLATE.format(constants=constants, init=init)


def _roles(task) -> dict[str, ConstantRole]:
    return {c.name: c.role for c in task.constants}


def test_softmax_sizes_are_size():
    task = load_task(FIXTURES / "softmax_huge.py")
    assert task.task_id == "softmax_huge"
    assert task.size_constants == {"batch_size": 4096, "dim": 393216}


def test_conv_hyperparameters_are_fixed():
    roles = _roles(load_task(FIXTURES / "conv2d.py"))
    assert {n: roles[n] for n in ("kernel_size", "stride", "padding", "dilation", "groups")} == dict.fromkeys(
        ("kernel_size", "stride", "padding", "dilation", "groups"), FIXED
    )
    assert {n: roles[n] for n in ("batch_size", "in_channels", "out_channels", "height", "width")} == dict.fromkeys(
        ("batch_size", "in_channels", "out_channels", "height", "width"), SIZE
    )


def test_chained_assignment_binds_both_names():
    task = load_task(FIXTURES / "conv2d.py")
    assert task.size_constants["height"] == task.size_constants["width"] == 256


def test_bools_and_strings_are_not_constants():
    task = load_task(_source('bias = False\nname = "x"\nbatch_size = 8'))
    assert [c.name for c in task.constants] == ["batch_size"]


def test_reduce_dim_is_fixed():
    task = load_task(FIXTURES / "sum_reduction.py")
    assert task.fixed_constants == {"reduce_dim": 1}
    assert task.size_constants == {"batch_size": 128, "dim1": 4096, "dim2": 4095}


@pytest.mark.parametrize(
    ("line", "role"),
    [
        ("dim = 2", FIXED),  # an axis
        ("dim = 65536", SIZE),
        ("eps = 1e-5", FIXED),  # floats are never sizes
        ("hidden_size = 4", SIZE),  # size name wins over value < 16
        ("pool_kernel_size = 16", FIXED),
        ("negative_slope = 3", FIXED),
        ("num_groups = 32", FIXED),
        ("k = 5", FIXED),  # a top-k count
        ("k = 768", SIZE),  # a matmul extent
        ("batch_size = 1", FIXED),  # 0 and 1 stay unless declared
        ("mystery = 100", SIZE),  # unknown names: by value
        ("mystery = 7", FIXED),
    ],
)
def test_role_table(line: str, role: ConstantRole):
    (constant,) = load_task(_source(line)).constants
    assert constant.role is role, constant.reason
    assert constant.reason


def test_constant_folding_and_derived_constants():
    task = load_task(FIXTURES / "square_matmul.py")
    values = {c.name: c for c in task.constants}
    assert values["N"].value == 4096 and values["N"].derived_from == ()
    assert values["M"].value == 2048 and values["M"].derived_from == ("N",)
    assert task.free_size_constants == {"N": 4096}


def test_tuple_constants_become_elements():
    task = load_task(FIXTURES / "hinge_coupled.py")
    assert task.size_constants == {"batch_size": 32768, "input_shape[0]": 32768}


def test_input_literals_become_constants():
    task = load_task(FIXTURES / "hardcoded_image.py")
    assert task.size_constants["get_inputs:224"] == 224
    assert "get_inputs:3" not in {c.name for c in task.constants}  # small literals are channel counts


def test_roles_declared_in_file():
    task = load_task(FIXTURES / "declared_roles.py")
    constants = {c.name: c for c in task.constants}
    assert constants["heads"].role is SIZE and "TRITONRL_ROLES" in constants["heads"].reason
    assert constants["window"].role is FIXED
    assert constants["mult"].role is SIZE
    assert "TRITONRL_ROLES" not in constants


def test_explicit_roles_win_over_file():
    task = load_task(FIXTURES / "declared_roles.py", roles={"heads": "fixed"})
    assert _roles(task)["heads"] is FIXED


def test_role_for_unknown_constant_raises():
    with pytest.raises(TaskError, match="not numeric module-level constants.*Fix the names"):
        load_task(FIXTURES / "softmax_huge.py", roles={"batchsize": "size"})


def test_bad_role_value_raises():
    with pytest.raises(TaskError, match='"size" or "fixed"'):
        load_task(FIXTURES / "softmax_huge.py", roles={"dim": "big"})


def test_init_signature():
    task = load_task(FIXTURES / "conv2d.py")
    assert task.init_arg_names[:3] == ("in_channels", "out_channels", "kernel_size")
    assert task.init_n_required == 3 and not task.init_has_varargs
    assert load_task(_source(init="a, *args")).init_has_varargs


def test_source_text_gets_an_inline_id():
    task = load_task(_source("batch_size = 8"))
    assert task.task_id.startswith("inline_") and task.path is None


def test_level_from_folder(tmp_path: Path):
    folder = tmp_path / "level2"
    folder.mkdir()
    (folder / "9_task.py").write_text(_source())
    assert load_task(folder / "9_task.py").level == 2


def test_never_executes_the_file(tmp_path: Path):
    marker = tmp_path / "ran"
    load_task(_source(f"open({str(marker)!r}, 'w').close()\nbatch_size = 8"))
    assert not marker.exists()


def test_locals_in_functions_do_not_shadow_constants():
    source = _source("batch_size = 8").replace("return [torch.rand(4, 4)]", "batch_size = 2\n    return []")
    assert load_task(source).size_constants == {"batch_size": 8}


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("syntax_error.py", r"syntax error at line 9"),
        ("missing_get_inputs.py", r"no module-level `def get_inputs\(\)`"),
        ("missing_model.py", r"no module-level `class Model"),
    ],
)
def test_malformed_files_raise(name: str, message: str):
    with pytest.raises(TaskError, match=message):
        load_task(FIXTURES / "bad" / name)


def test_missing_get_init_inputs_raises():
    with pytest.raises(TaskError, match="get_init_inputs"):
        load_task(_source().replace("def get_init_inputs", "def other"))


def test_unreadable_file_raises(tmp_path: Path):
    with pytest.raises(TaskError, match="cannot read task file"):
        load_task(tmp_path / "absent.py")


def test_load_task_dir_is_sorted_and_skips_subfolders():
    ids = [t.task_id for t in load_task_dir(FIXTURES)]
    assert ids == sorted(ids) and "softmax_huge" in ids and "raises" not in ids


def test_fingerprint_changes_with_roles():
    plain = load_task(FIXTURES / "declared_roles.py")
    assert source_fingerprint(plain) != source_fingerprint(
        load_task(FIXTURES / "declared_roles.py", roles={"heads": "fixed"})
    )


def test_builtin_tasks_round_trip():
    for task in builtin_tasks():
        assert builtin_task(task.task_id) == task


def test_unknown_builtin_task_raises():
    with pytest.raises(TaskError, match="no builtin task 'nope'"):
        builtin_task("nope")
