"""SFT on the tiny offline model: a new LoRA adapter, a continued one, a merged output, and all weights; every output
folder loads on its own through the one loader (tritonrl.models) that training, best-of-N and eval use."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

pytest.importorskip("trl")
pytest.importorskip("peft")

from tritonrl.generate import HFGenerator, SamplingConfig  # noqa: E402
from tritonrl.models import load_causal_lm, resolve_model  # noqa: E402
from tritonrl.tasks.loader import builtin_task  # noqa: E402
from tritonrl.train.settings import LoraSettings, TrainSettings  # noqa: E402
from tritonrl.train.sft import run_sft  # noqa: E402

LORA = LoraSettings(r=4, alpha=8)
TASKS = [builtin_task("relu"), builtin_task("vector_add")]


@pytest.fixture(scope="module")
def sft_adapter(tiny_model_dir, tmp_path_factory) -> Path:
    """One 2-step LoRA SFT run with --merge, shared by the tests that start from its output."""
    out = tmp_path_factory.mktemp("sft") / "run"
    run_sft(tiny_model_dir, TASKS, out, _train(2, 1e-2), lora=LORA, merged_dir=out / "merged")
    return out


def _train(steps: int, lr: float, **more) -> TrainSettings:
    """The tests' SFT settings: batches of 2."""
    return TrainSettings(steps=steps, learning_rate=lr, batch_size=2, **more)


def _log(out: Path) -> dict:
    return json.loads((out / "train_log.json").read_text())


def test_sft_two_steps_updates_every_lora_parameter(tiny_model_dir, tmp_path, lora_snapshot):
    out = run_sft(tiny_model_dir, TASKS, tmp_path / "sft", _train(2, 1e-2), lora=LORA, callbacks=[lora_snapshot])
    assert lora_snapshot.before and all("lora_" in n for n in lora_snapshot.before)
    assert lora_snapshot.unchanged() == []
    assert (Path(out) / "adapter_config.json").is_file()
    assert _log(Path(out))["mode"] == "new adapter"


def test_sft_output_is_self_contained(sft_adapter, tiny_model_dir):
    assert (sft_adapter / "tokenizer_config.json").is_file()  # the tokenizer travels with the adapter
    source = resolve_model(sft_adapter)
    assert source.is_adapter and source.tokenizer_path == str(sft_adapter)
    base = json.loads((sft_adapter / "adapter_config.json").read_text())["base_model_name_or_path"]
    assert base == str(Path(tiny_model_dir).absolute())  # absolute: loads from any working directory
    texts = HFGenerator(str(sft_adapter), SamplingConfig(max_new_tokens=4, seed=0), device="cpu").generate(TASKS[0], 2)
    assert len(texts) == 2  # `tritonrl eval --model <sft out>` loads it


def test_merge_writes_the_adapter_folded_into_its_base(sft_adapter):
    import torch

    merged = resolve_model(sft_adapter / "merged")
    assert not merged.is_adapter and merged.tokenizer_path == merged.path
    ids = torch.tensor([[3, 4, 5, 6]])
    with torch.no_grad():
        expected = load_causal_lm(sft_adapter, trainable_adapter=True).eval()(ids).logits  # eval: no dropout
        assert torch.allclose(load_causal_lm(merged)(ids).logits, expected, atol=1e-5)


def test_training_an_adapter_folder_continues_that_adapter(sft_adapter, tiny_model_dir, tmp_path, lora_snapshot):
    from safetensors.torch import load_file

    saved = load_file(str(sft_adapter / "adapter_model.safetensors"))
    out = Path(run_sft(str(sft_adapter), TASKS, tmp_path / "again", _train(2, 1e-2), lora=LORA,
                       callbacks=[lora_snapshot]))  # fmt: skip
    assert _log(out)["mode"] == "continue adapter"
    # Training started from the saved adapter's weights (B is non-zero after the first run), not a fresh init.
    b_before = [p for n, p in lora_snapshot.before.items() if "lora_B" in n]
    assert b_before and all(p.abs().sum() > 0 for p in b_before)
    assert sorted(p.abs().sum().item() for p in b_before) == pytest.approx(
        sorted(w.abs().sum().item() for n, w in saved.items() if "lora_B" in n))  # fmt: skip
    assert lora_snapshot.unchanged() == []
    assert resolve_model(out).base_path == str(Path(tiny_model_dir).resolve())


def test_merge_input_adapter_trains_a_fresh_adapter_on_the_merged_model(sft_adapter, tmp_path, lora_snapshot):
    out = Path(run_sft(str(sft_adapter), TASKS, tmp_path / "fresh", _train(1, 1e-2, merge_input_adapter=True),
                       lora=LORA, callbacks=[lora_snapshot]))  # fmt: skip
    assert _log(out)["mode"] == "new adapter on merged input"
    assert all(p.abs().sum() == 0 for n, p in lora_snapshot.before.items() if "lora_B" in n)  # a fresh init
    # The new adapter's base is the merged input (written to OUT/base), not the original base model.
    assert resolve_model(out).base_path == str((out / "base").resolve())
    assert not resolve_model(out / "base").is_adapter


def test_no_lora_trains_every_weight_and_saves_a_full_model(tiny_model_dir, tmp_path, lora_snapshot):
    out = Path(run_sft(tiny_model_dir, TASKS, tmp_path / "full", _train(2, 1e-3), lora=LoraSettings(enabled=False),
                       callbacks=[lora_snapshot]))  # fmt: skip
    assert _log(out)["mode"] == "all weights"
    names = set(lora_snapshot.before)
    assert "model.embed_tokens.weight" in names and not any("lora_" in n for n in names)
    assert lora_snapshot.unchanged() == []
    source = resolve_model(out)
    assert not source.is_adapter and (out / "model.safetensors").is_file() and source.tokenizer_path == source.path


def test_checkpoints_resume_and_tensorboard(tiny_model_dir, tmp_path):
    """--save-steps writes checkpoint-N, --resume continues from the newest one (to the new max_steps), and
    --report-to tensorboard writes event files under OUT/runs."""
    pytest.importorskip("tensorboard")
    from tritonrl.errors import ConfigError

    out = tmp_path / "ckpt"
    run_sft(tiny_model_dir, TASKS, out, _train(2, 1e-3, save_steps=1, report_to="tensorboard"), lora=LORA)
    assert sorted(p.name for p in out.glob("checkpoint-*")) == ["checkpoint-1", "checkpoint-2"]
    assert list((out / "runs").rglob("events.out.tfevents.*"))
    first = {h["step"]: h["loss"] for h in _log(out)["log_history"] if "loss" in h}
    # another learning rate: a fresh start would log another step-2 loss; a resumed run restores steps 1-2
    run_sft(tiny_model_dir, TASKS, out, _train(3, 0.5, save_steps=1, resume=True), lora=LORA)
    resumed = {h["step"]: h["loss"] for h in _log(out)["log_history"] if "loss" in h}
    assert sorted(resumed) == [1, 2, 3] and resumed[2] == first[2]
    assert (out / "checkpoint-3").is_dir() and not (out / "checkpoint-1").exists()  # the last 2 kept
    with pytest.raises(ConfigError, match="no checkpoint-N"):
        run_sft(tiny_model_dir, TASKS, tmp_path / "fresh", _train(1, 1e-3, resume=True), lora=LORA)
