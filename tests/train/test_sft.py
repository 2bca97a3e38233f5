"""SFT with LoRA on the tiny offline model: trains, updates every LoRA parameter, saves an adapter."""

from __future__ import annotations

from pathlib import Path

import pytest

pytest.importorskip("trl")
pytest.importorskip("peft")

from tritonrl.tasks.loader import builtin_task  # noqa: E402
from tritonrl.train.config import LoraSettings  # noqa: E402
from tritonrl.train.sft import run_sft  # noqa: E402


def test_sft_two_steps_updates_every_lora_parameter(tiny_model_dir, tmp_path, lora_snapshot):
    tasks = [builtin_task("relu"), builtin_task("vector_add")]
    out = run_sft(tiny_model_dir, tasks, tmp_path / "sft", steps=2, lr=1e-2, lora=LoraSettings(r=4, alpha=8),
                  batch_size=2, callbacks=[lora_snapshot])  # fmt: skip
    assert lora_snapshot.before and all("lora_" in n for n in lora_snapshot.before)
    assert lora_snapshot.unchanged() == []
    assert (Path(out) / "adapter_config.json").is_file()
    assert (Path(out) / "train_log.json").is_file()
