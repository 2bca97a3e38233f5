"""tasks/kernelbook.py and tasks/rows.py: KernelBook rows -> tasks and candidate ports (no verification here)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from tritonrl.data.sources.kernelbook import convert_row, load_kernelbook, positional_inputs, task_source
from tritonrl.data.sources.rows import read_rows
from tritonrl.errors import TaskError
from tritonrl.tasks.reference import ReferenceProgram

SAMPLE = Path(__file__).resolve().parents[2] / "fixtures/kernelbook"
ROWS = {row["uuid"]: row for row in read_rows(SAMPLE / "sample.jsonl")}


def test_jsonl_and_parquet_give_the_same_items():
    pytest.importorskip("pyarrow")
    from_jsonl, from_parquet = load_kernelbook(SAMPLE / "sample.jsonl"), load_kernelbook(SAMPLE / "sample.parquet")
    assert [(i.task_id, i.error, i.candidate) for i in from_jsonl] == [
        (i.task_id, i.error, i.candidate) for i in from_parquet
    ]


def test_entry_point_renamed_to_model_and_nothing_else_changed():
    row = ROWS[101]
    item = convert_row(row)
    assert item.task_id == "kernelbook/101_ShiftedReLU" and item.error == ""
    assert item.task.source == row["python_code"].replace("ShiftedReLU", "Model").replace("[[], {}]", "[]")


def test_args_kwargs_inputs_become_one_positional_list():
    item = convert_row(ROWS[102])
    assert "return [4]" in item.task.source and item.task.init_arg_names == ("num_features", "init_scale")
    program = ReferenceProgram(item.task)
    model = program.make_model(0)
    (out,) = program.run(model, program.get_inputs())
    assert out.shape == (4, 4, 4, 4) and model.scale.shape == (4,)


def test_skipped_keywords_get_their_default():
    src = ("class Model:\n    def __init__(self, a, b=2, *, c=0):\n        pass\n"
           "def get_init_inputs():\n    return [[1], {'b': 5}]\n")  # fmt: skip
    assert positional_inputs(src).endswith("return [1, 5]\n")
    skip = src.replace("{'b': 5}", "{}").replace("[[1]", "[[7]")
    assert positional_inputs(skip).endswith("return [7]\n")


@pytest.mark.parametrize(
    ("returned", "message"),
    [("[[], {'zz': 1}]", "not positional parameters"), ("[[], {'b': 1}]", "required parameter 'a'"),
     ("[[1], {'a': 1}]", "both positionally and as a keyword")],
)  # fmt: skip
def test_keywords_that_cannot_be_placed_are_load_failures(returned, message):
    src = "class Model:\n    def __init__(self, a, b=2):\n        pass\n"
    src += f"def get_init_inputs():\n    return {returned}\n"
    with pytest.raises(TaskError, match=message):
        positional_inputs(src)


def test_missing_entry_point_is_a_load_failure_naming_the_classes():
    item = convert_row(ROWS[106])
    assert item.task is None and item.port is None
    assert "no module-level class 'Attention'" in item.error and "SelfAttention" in item.error


def test_an_existing_model_name_is_not_overwritten():
    code = ROWS[101]["python_code"] + "\nModel = None\n"
    with pytest.raises(TaskError, match="already binds the name `Model`"):
        task_source(code, "ShiftedReLU")


def test_candidate_is_modelnew_without_inductor_imports():
    item = convert_row(ROWS[101])
    code = item.candidate
    assert "class ModelNew(nn.Module)" in code and "ShiftedReLUNew" not in code
    assert "torch._inductor" not in code and "torch._C" not in code
    assert {"grid", "empty_strided_cuda", "triton_helpers.maximum"} <= set(item.port.rewrites)


def test_extern_gemm_libdevice_and_helpers_are_reported():
    assert convert_row(ROWS[104]).port.extern == ("mm",)
    assert convert_row(ROWS[107]).port.uses_libdevice
    blocked = convert_row(ROWS[108])
    assert blocked.candidate is None and any("welford_reduce" in b for b in blocked.port.blockers)


def test_rows_need_kernelbook_fields(tmp_path):
    (tmp_path / "x.jsonl").write_text(json.dumps({"python_code": "", "entry_point": "A"}) + "\n")
    with pytest.raises(TaskError, match="triton_code"):
        load_kernelbook(tmp_path / "x.jsonl")


def test_reference_of_every_converted_row_runs():
    for item in load_kernelbook(SAMPLE / "sample.jsonl"):
        if item.task is None:
            continue
        program = ReferenceProgram(item.task)
        outputs = program.run(program.make_model(0), program.get_inputs())
        assert all(isinstance(o, torch.Tensor) and o.numel() for o in outputs)
