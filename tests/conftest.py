"""Shared test setup: every test starts from the same seeds; `gpu` tests skip themselves without CUDA."""

from __future__ import annotations

import random

import pytest
import torch

SEED = 0


@pytest.fixture(autouse=True)
def _seed_everything():
    """Seed Python's and torch's generators before every test (verification draws its own secret seeds)."""
    random.seed(SEED)
    torch.manual_seed(SEED)
    try:
        import numpy as np
    except ImportError:  # numpy is a dependency, but the seed fixture should not be what breaks first
        return
    np.random.seed(SEED)


@pytest.fixture(autouse=True)
def _restore_prompt_style():
    """The CLI sets the run's prompt style process-wide (`--prompt`); a test that runs the CLI must not leak it."""
    from tritonrl.tasks.prompts import prompt_style, set_default_style

    before = prompt_style()
    yield
    set_default_style(before)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    gpu_items = [item for item in items if item.get_closest_marker("gpu")]
    if not gpu_items:
        return
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA GPU (torch.cuda.is_available() is False)")
    for item in gpu_items:
        item.add_marker(skip)


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory) -> str:
    """A random 2-layer Qwen3 causal LM and a byte-level BPE tokenizer with a chat template, built offline
    (`tritonrl.train.tiny`). Skips when transformers/tokenizers are not installed."""
    pytest.importorskip("transformers")
    from tritonrl.train.tiny import build_tiny_model

    return build_tiny_model(tmp_path_factory.mktemp("tiny_model"))
