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
    (shared/notes/training.md 2.3). Skips when transformers/tokenizers are not installed."""
    pytest.importorskip("transformers")
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast, Qwen3Config, Qwen3ForCausalLM

    from tritonrl.tasks.loader import builtin_tasks

    d = tmp_path_factory.mktemp("tiny_model")
    corpus = [t.source for t in builtin_tasks()] + [open(t.solution_path).read() for t in builtin_tasks()]
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.train_from_iterator(corpus, trainer=trainers.BpeTrainer(
        vocab_size=400, special_tokens=["<|endoftext|>", "<|im_start|>", "<|im_end|>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))  # fmt: skip
    hf = PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<|im_end|>", pad_token="<|endoftext|>")
    hf.chat_template = (
        "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
        "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
    )
    hf.save_pretrained(d)
    torch.manual_seed(0)
    cfg = Qwen3Config(vocab_size=len(hf), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                      num_attention_heads=4, num_key_value_heads=2, head_dim=16, max_position_embeddings=8192,
                      eos_token_id=hf.eos_token_id, pad_token_id=hf.pad_token_id, bos_token_id=None,
                      tie_word_embeddings=True)  # fmt: skip
    model = Qwen3ForCausalLM(cfg)
    model.generation_config.pad_token_id = hf.pad_token_id
    model.generation_config.eos_token_id = hf.eos_token_id
    model.save_pretrained(d)
    return str(d)
