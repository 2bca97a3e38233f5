"""`tritonrl train sft --suite fusion:N:SEED`: the generator's solutions are the SFT pairs (CPU, tiny model)."""

from __future__ import annotations

import json

import pytest

pytest.importorskip("trl")
pytest.importorskip("peft")

from tritonrl.cli.train import train_main  # noqa: E402
from tritonrl.tasks.loader import builtin_task  # noqa: E402
from tritonrl.tasks.prompts import PromptStyle, prompt_style, set_default_style  # noqa: E402


def test_sft_two_steps_from_a_fusion_suite(tiny_model_dir, tmp_path):
    out = tmp_path / "sft"
    argv = ["sft", "--model", tiny_model_dir, "--suite", "fusion:8:0", "--out", str(out), "--steps", "2",
            "--device", "cpu", "--prompt", "zero-shot", "--max-length", "2048"]  # fmt: skip
    try:
        assert train_main(argv) == 0
    finally:
        set_default_style(PromptStyle.ONE_SHOT)  # the flag set the process-wide default
    log = json.loads((out / "train_log.json").read_text())
    assert log["rows"] == 8 and log["log_history"][-1]["step"] == 2
    assert json.loads((out / "run_config.json").read_text())["prompt"] == "zero-shot"
    assert prompt_style() is PromptStyle.ONE_SHOT


def test_sft_from_a_suite_without_solutions_says_so(tiny_model_dir, tmp_path, capsys):
    folder = tmp_path / "tasks"
    folder.mkdir()
    (folder / "relu.py").write_text(builtin_task("relu").source)  # a task without solutions/relu.py
    argv = ["sft", "--model", tiny_model_dir, "--suite", str(folder), "--out", str(tmp_path / "o"), "--steps", "1",
            "--device", "cpu"]  # fmt: skip
    assert train_main(argv) == 2
    assert "no SFT data" in capsys.readouterr().err
