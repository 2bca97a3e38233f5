"""SFT and RL datasets in the shared prompt format; fusion tasks behind their flag."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tritonrl.errors import ConfigError
from tritonrl.tasks.loader import builtin_task, builtin_tasks
from tritonrl.tasks.prompts import build_messages
from tritonrl.train.data import load_pairs, rl_dataset, select_tasks, sft_dataset, solution_completion
from tritonrl.verify.extract import extract_code

pytest.importorskip("datasets")


def test_sft_rows_are_conversational_prompt_completion():
    relu = builtin_task("relu")
    (row,) = sft_dataset([relu])
    assert row["prompt"] == build_messages(relu)
    (message,) = row["completion"]
    assert message["role"] == "assistant" and message["content"].startswith("Plan: ")
    code, _ = extract_code(message["content"])
    assert code.strip() == Path(relu.solution_path).read_text().strip()


def test_sft_uses_every_bundled_solution():
    assert len(sft_dataset(builtin_tasks())) == sum(t.solution_path is not None for t in builtin_tasks())


def test_sft_from_verified_pairs(tmp_path):
    path = tmp_path / "pairs.jsonl"
    path.write_text(json.dumps({"task_id": "relu", "completion": "answer"}) + "\n"
                    + json.dumps({"task_id": "unknown", "completion": "x"}) + "\n")  # fmt: skip
    (row,) = sft_dataset([builtin_task("relu")], pairs=load_pairs(path))
    assert row["completion"] == [{"role": "assistant", "content": "answer"}]


def test_sft_without_solutions_is_an_error():
    import dataclasses

    with pytest.raises(ConfigError, match="no SFT data"):
        sft_dataset([dataclasses.replace(builtin_task("relu"), solution_path=None)])


def test_rl_rows_carry_task_id_and_level():
    ds = rl_dataset([builtin_task("relu"), builtin_task("linear_bias_relu")])
    assert ds["task_id"] == ["relu", "linear_bias_relu"] and ds["level"] == [1, 2]
    assert ds[0]["prompt"] == build_messages(builtin_task("relu"))


def test_fusion_tasks_only_with_the_flag(tmp_path):
    fusion = tmp_path / "fusion"
    fusion.mkdir()
    (fusion / "gemm_bias_gelu.py").write_text(builtin_task("linear_bias_relu").source)
    suite = [builtin_task("relu")]
    assert select_tasks(suite, fusion_data=False, fusion_dir=str(fusion)) == suite
    added = select_tasks(suite, fusion_data=True, fusion_dir=str(fusion))[1:]
    assert [(t.task_id, t.level) for t in added] == [("fusion/gemm_bias_gelu", 2)]
    assert select_tasks(suite, fusion_data=True, fusion_dir=None) == suite  # no export: the suite alone


def test_solution_completion_is_none_without_solution():
    import dataclasses

    assert solution_completion(dataclasses.replace(builtin_task("relu"), solution_path=None)) is None


def test_export_dataset_reads_a_tasks_export(tmp_path):
    """`tritonrl tasks export` output is trainer-ready: verified SFT pairs and RL prompts of one split."""
    import shutil

    from tritonrl.data.export import ExportConfig, export
    from tritonrl.data.suites import load_suite
    from tritonrl.train.data import export_dataset
    from tritonrl.verify.config import VerifyConfig

    folder = tmp_path / "tasks"
    (folder / "solutions").mkdir(parents=True)
    relu = builtin_task("relu")
    shutil.copy(relu.path, folder / "relu.py")
    shutil.copy(relu.solution_path, folder / "solutions" / "relu.py")
    out = tmp_path / "out"
    export([load_suite(str(folder))], ExportConfig(out=str(out)), VerifyConfig(device="cpu"))
    split = next(s for s in ("train", "val", "test") if (out / "rl" / f"{s}.jsonl").read_text())  # relu's split
    (row,) = export_dataset(out, "sft", split)
    assert row["task_id"] == "relu" and row["prompt"] == build_messages(relu)
    code, _ = extract_code(row["completion"][0]["content"])
    assert code.strip() == Path(relu.solution_path).read_text().strip()
    assert export_dataset(out, "rl", split)["task_id"] == ["relu"]
    with pytest.raises(ConfigError, match="'sft' or 'rl'"):
        export_dataset(out, "dpo", split)


def test_suite_pairs_are_the_fusion_generators_solutions():
    from tritonrl.data.fusion.spec import generate_fusion_tasks
    from tritonrl.data.suites import load_suite
    from tritonrl.train.data import suite_pairs

    generated = {g.task.task_id: g.solution for g in generate_fusion_tasks(3, seed=0)}
    pairs = suite_pairs(load_suite("fusion:3:0"))
    assert [task_id for task_id, _ in pairs] == list(generated)
    for task_id, answer in pairs:
        code, _ = extract_code(answer)
        assert answer.startswith("Plan: ") and code.strip() == generated[task_id].strip()
    builtin = dict(suite_pairs(load_suite("builtin")))
    assert builtin["relu"] == solution_completion(builtin_task("relu"))  # one completion format for both


def test_suite_pairs_leave_unverified_ports_out(caplog):
    from tritonrl.data.suites import load_suite
    from tritonrl.train.data import suite_pairs

    sample = Path(__file__).resolve().parents[1] / "fixtures/kernelbook/sample.jsonl"
    assert suite_pairs(load_suite(f"kernelbook:{sample}")) == []
    assert "kernelbook are unverified" in caplog.text and "tritonrl tasks export" in caplog.text


def test_rows_take_the_prompt_style():
    relu = builtin_task("relu")
    (sft,) = sft_dataset([relu], style="zero-shot")
    assert sft["prompt"] == build_messages(relu, style="zero-shot") != build_messages(relu, style="one-shot")
    assert rl_dataset([relu], style="zero-shot")[0]["prompt"] == build_messages(relu, style="zero-shot")
