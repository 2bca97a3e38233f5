"""tritonrl.models: what a model folder is (full model or LoRA adapter + its base), errors that name the fix, and
loading an adapter merged or trainable."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tritonrl.errors import ConfigError
from tritonrl.models import load_causal_lm, load_tokenizer, merge_adapter_folder, point_adapter_at_base, resolve_model


def _adapter(folder: Path, base: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "adapter_config.json").write_text(json.dumps({"base_model_name_or_path": base, "peft_type": "LORA"}))
    return folder


@pytest.fixture(scope="module")
def saved_adapter(tiny_model_dir, tmp_path_factory) -> Path:
    """A real LoRA adapter on the tiny model, with non-zero B so merging changes the weights."""
    pytest.importorskip("peft")
    import torch
    from peft import LoraConfig, get_peft_model

    out = tmp_path_factory.mktemp("adapter")
    model = get_peft_model(load_causal_lm(tiny_model_dir), LoraConfig(r=2, target_modules="all-linear"))
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "lora_B" in name:
                p.fill_(0.05)
    model.save_pretrained(out)
    point_adapter_at_base(out, tiny_model_dir)
    return out


def test_a_full_model_folder_is_its_own_base(tiny_model_dir):
    source = resolve_model(tiny_model_dir)
    assert not source.is_adapter and source.base_path == source.path == str(Path(tiny_model_dir).absolute())


def test_an_adapter_base_given_absolute(tiny_model_dir, tmp_path):
    source = resolve_model(_adapter(tmp_path / "a", tiny_model_dir))
    assert source.is_adapter and source.base_path == str(Path(tiny_model_dir).resolve())
    assert source.tokenizer_path == source.base_path  # the adapter has no tokenizer of its own


def test_an_adapter_base_relative_to_the_adapter_folder(tiny_model_dir, tmp_path, monkeypatch):
    base = Path(tiny_model_dir)
    adapter = _adapter(base.parent / "runs" / "sft", "../../" + base.name)
    elsewhere = tmp_path / "x" / "y"
    elsewhere.mkdir(parents=True)
    monkeypatch.chdir(elsewhere)  # from here, ../../<name> is not the base
    assert resolve_model(adapter).base_path == str(base.resolve())


def test_a_missing_base_names_the_path_and_the_fix(tmp_path):
    adapter = _adapter(tmp_path / "sft", "/gone/tiny")
    with pytest.raises(ConfigError) as err:
        resolve_model(adapter)
    text = str(err.value)
    assert "'/gone/tiny'" in text and str(adapter) in text
    assert "set base_model_name_or_path" in text and "--merge" in text


def test_an_adapter_whose_base_is_an_adapter_is_refused(tmp_path, tiny_model_dir):
    first = _adapter(tmp_path / "first", tiny_model_dir)
    with pytest.raises(ConfigError, match="itself an adapter"):
        resolve_model(_adapter(tmp_path / "second", str(first)))


def test_a_hub_name_or_empty_folder_is_not_a_model(tmp_path):
    with pytest.raises(ConfigError, match="not a local model directory"):
        resolve_model("Qwen/Qwen3-8B")
    with pytest.raises(ConfigError, match="not a local model directory"):
        resolve_model(tmp_path)


def test_an_adapter_loads_merged_or_trainable(saved_adapter, tiny_model_dir):
    import torch

    ids = torch.tensor([[5, 6, 7, 8]])
    base_logits = load_causal_lm(tiny_model_dir)(ids).logits
    merged = load_causal_lm(saved_adapter)
    trainable = load_causal_lm(saved_adapter, trainable_adapter=True)
    assert not hasattr(merged, "peft_config") and hasattr(trainable, "peft_config")
    assert {n for n, p in trainable.named_parameters() if p.requires_grad} and all(
        "lora_" in n for n, p in trainable.named_parameters() if p.requires_grad)  # fmt: skip
    with torch.no_grad():
        assert torch.allclose(merged(ids).logits, trainable(ids).logits, atol=1e-5)
        assert not torch.allclose(merged(ids).logits, base_logits, atol=1e-4)  # the adapter did something


def test_merge_adapter_folder_writes_a_self_contained_model(saved_adapter, tmp_path):
    out = merge_adapter_folder(saved_adapter, tmp_path / "merged")
    source = resolve_model(out)
    assert not source.is_adapter and source.tokenizer_path == source.path
    assert load_tokenizer(out).chat_template
