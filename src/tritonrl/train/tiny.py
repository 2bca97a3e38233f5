"""A tiny random causal LM with a byte-level BPE tokenizer and a chat template, built offline in a few seconds.

For plumbing runs (tests, `scripts/gpu_train_smoke.sh`), never for results: `build_tiny_model(dir)` trains the
tokenizer on the built-in tasks and solutions (so prompts tokenize compactly), saves it, and saves a randomly
initialised Qwen3 (2 layers, hidden 64, ~0.1M parameters) next to it. Nothing is downloaded
(shared/notes/training.md 2.3). `tritonrl train tiny-model --out DIR` calls it.
"""

from __future__ import annotations

from pathlib import Path

SPECIAL_TOKENS = ("<|endoftext|>", "<|im_start|>", "<|im_end|>")
CHAT_TEMPLATE = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


def _corpus() -> list[str]:
    from tritonrl.tasks.loader import builtin_tasks

    tasks = builtin_tasks()
    return [t.source for t in tasks] + [Path(t.solution_path).read_text() for t in tasks if t.solution_path]


def build_tiny_model(
    out_dir: str | Path,
    *,
    seed: int = 0,
    vocab_size: int = 400,
    hidden_size: int = 64,
    num_layers: int = 2,
    max_position_embeddings: int = 8192,
) -> str:
    """Write a tokenizer and a random Qwen3ForCausalLM to `out_dir`; returns the directory as a string.

    Args:
        out_dir: created if missing; existing files of the same names are overwritten.
        seed: torch seed for the random weights (the tokenizer is deterministic).
        vocab_size: BPE vocabulary incl. the 256 byte symbols and 3 special tokens (byte-level: never UNK).
        hidden_size, num_layers: model width and depth (4 attention heads of hidden_size // 4, 2 KV heads).
        max_position_embeddings: longest prompt + completion in tokens.
    """
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast, Qwen3Config, Qwen3ForCausalLM

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=list(SPECIAL_TOKENS),
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())  # fmt: skip
    tok.train_from_iterator(_corpus(), trainer=trainer)
    hf = PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<|im_end|>", pad_token="<|endoftext|>")
    hf.chat_template = CHAT_TEMPLATE
    hf.save_pretrained(out)
    torch.manual_seed(seed)
    heads = 4
    cfg = Qwen3Config(vocab_size=len(hf), hidden_size=hidden_size, intermediate_size=2 * hidden_size,
                      num_hidden_layers=num_layers, num_attention_heads=heads, num_key_value_heads=2,
                      head_dim=hidden_size // heads, max_position_embeddings=max_position_embeddings,
                      eos_token_id=hf.eos_token_id, pad_token_id=hf.pad_token_id, bos_token_id=None,
                      tie_word_embeddings=True)  # fmt: skip
    model = Qwen3ForCausalLM(cfg)
    model.generation_config.pad_token_id = hf.pad_token_id
    model.generation_config.eos_token_id = hf.eos_token_id
    model.save_pretrained(out)
    return str(out)
