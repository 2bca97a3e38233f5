"""QLoRA (`lora.load_in_4bit`, `--load-in-4bit`): configuration, and the clear error on a machine without
bitsandbytes or CUDA (this CPU machine). The 4-bit load itself is a GPU check (benchmarks/bench_multi_gpu.py)."""

from __future__ import annotations

import importlib.util
import json

import pytest

from tritonrl.cli.train import train_main
from tritonrl.errors import ConfigError
from tritonrl.models import quantization_4bit
from tritonrl.train.model_io import start_model
from tritonrl.train.settings import LoraSettings


def test_missing_bitsandbytes_names_the_install(monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "bitsandbytes" else real(name))
    with pytest.raises(ConfigError, match="pip install bitsandbytes"):
        quantization_4bit("auto")


def test_missing_cuda_is_a_clear_error(monkeypatch):
    import torch

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda n, *a: object() if n == "bitsandbytes" else real(n))
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(ConfigError, match="needs a CUDA GPU.*pip install bitsandbytes"):
        quantization_4bit("auto")


def test_start_model_refuses_4bit_on_this_machine(tiny_model_dir):
    pytest.importorskip("transformers")
    import torch

    if importlib.util.find_spec("bitsandbytes") is not None and torch.cuda.is_available():
        pytest.skip("bitsandbytes and CUDA are present: the 4-bit load would run")
    with pytest.raises(ConfigError, match="bitsandbytes"):
        start_model(tiny_model_dir, LoraSettings(load_in_4bit=True))


def test_4bit_needs_lora():
    with pytest.raises(ConfigError, match="load_in_4bit=true with enabled=false"):
        LoraSettings(enabled=False, load_in_4bit=True)


def test_flag_and_yaml_set_load_in_4bit(tmp_path, capsys):
    assert train_main(["sft", "--device", "cpu", "--load-in-4bit", "--dry-run"]) == 0
    assert json.loads(capsys.readouterr().out)["lora"]["load_in_4bit"] is True
    recipe = tmp_path / "r.yaml"
    recipe.write_text("lora: {load_in_4bit: true}\n")
    assert train_main(["sft", "--config", str(recipe), "--device", "cpu", "--dry-run"]) == 0
    assert json.loads(capsys.readouterr().out)["lora"]["load_in_4bit"] is True
    assert train_main(["sft", "--device", "cpu", "--dry-run"]) == 0
    assert json.loads(capsys.readouterr().out)["lora"]["load_in_4bit"] is False
