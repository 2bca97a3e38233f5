"""Random small causal LMs for this domain: a byte-level BPE tokenizer trained on Triton tasks, plus a Qwen3 model.

`init_model(InitModelConfig(size, out))` trains the tokenizer on a corpus (default: the built-in tasks and 2000
generated fusion tasks: PyTorch references inside the zero-shot chat prompt of `tasks/prompts.py`, and the
plan-plus-code answers SFT trains on), wraps it as a transformers `PreTrainedTokenizerFast` with a ChatML chat template
and pad/EOS tokens, and saves it next to a randomly initialised `Qwen3ForCausalLM` of about 5M (tiny), 30M (small)
or 100M (base) parameters, so every command that takes `--model PATH` takes the folder. Nothing is downloaded.
`tritonrl train init-model` calls it; `train/tiny.py` uses `write_model` for the 0.1M plumbing model.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import time
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from tritonrl.errors import ConfigError

log = logging.getLogger(__name__)

SPECIAL_TOKENS = ("<|endoftext|>", "<|im_start|>", "<|im_end|>")
BYTE_SYMBOLS = 256  # byte-level BPE starts from every byte, so any text encodes (never an unknown token)
CHAT_TEMPLATE = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
DEFAULT_CORPUS = ("builtin", "fusion:2000:0")
TEXT_SUFFIXES = (".py", ".md", ".txt")


@dataclasses.dataclass(frozen=True, slots=True)
class ModelShape:
    """The architecture of a Qwen3 model (grouped-query attention, SwiGLU MLP, tied input/output embeddings)."""

    hidden_size: int
    num_layers: int
    num_heads: int  # head_dim = hidden_size // num_heads
    num_kv_heads: int
    intermediate_size: int
    vocab_size: int  # the BPE's target; it stops earlier when the corpus has fewer distinct words
    max_position_embeddings: int = 16384  # longest prompt + completion (RoPE: no table is allocated for it)

    def __post_init__(self) -> None:
        if self.hidden_size % self.num_heads or self.num_heads % self.num_kv_heads:
            raise ConfigError(f"{self}: hidden_size must be a multiple of num_heads, and num_heads of "
                              "num_kv_heads (each KV head serves num_heads // num_kv_heads query heads).")  # fmt: skip


# Parameters with the default corpus, measured with `tritonrl train init-model`: the BPE stops at 4,197 tokens there
# (generated code repeats its words), so tiny reaches its 4,096 target and small/base stop below theirs. The
# embedding is tied (vocab_size x hidden_size counted once): 1.0M / 2.1M / 3.2M of the totals below.
SIZES: dict[str, ModelShape] = {
    "tiny": ModelShape(256, 6, 4, 2, 640, vocab_size=4096),  # 5.18M
    "small": ModelShape(512, 9, 8, 4, 1536, vocab_size=8192),  # 30.47M
    "base": ModelShape(768, 12, 12, 4, 2816, vocab_size=16384),  # 99.98M
}


@dataclasses.dataclass
class InitModelConfig:
    size: str = dataclasses.field(metadata={"help": f"Model size: one of {sorted(SIZES)} (~5M, ~30M, ~100M)."})
    out: str = dataclasses.field(metadata={"help": "Output folder (created; tokenizer and model files replaced)."})
    corpus: tuple[str, ...] = dataclasses.field(
        default=DEFAULT_CORPUS,
        metadata={"help": "Tokenizer corpus: suite specs (builtin, fusion:N:SEED, kernelbench:PATH, ...: prompts "
                          "and solutions), text files, or folders of *.py/*.md/*.txt files."},
    )  # fmt: skip
    vocab_size: int | None = dataclasses.field(
        default=None, metadata={"help": "BPE vocabulary target incl. 256 bytes and 3 special tokens (default: size's)."}
    )
    seed: int = dataclasses.field(default=0, metadata={"help": "torch seed of the random weights."})

    def __post_init__(self) -> None:
        if self.size not in SIZES:
            raise ConfigError(f"size={self.size!r}: must be one of {sorted(SIZES)} (e.g. --size tiny).")
        if not self.corpus:
            raise ConfigError(f"corpus=(): give at least one suite or file (default {list(DEFAULT_CORPUS)}).")
        smallest = BYTE_SYMBOLS + len(SPECIAL_TOKENS)
        if self.vocab_size is not None and self.vocab_size <= smallest:
            raise ConfigError(f"vocab_size={self.vocab_size}: must exceed {smallest} (256 byte symbols + "
                              f"{len(SPECIAL_TOKENS)} special tokens); e.g. --vocab-size 4096.")  # fmt: skip


@dataclasses.dataclass(frozen=True, slots=True)
class InitModelResult:
    out_dir: str  # the model folder (pass it as --model)
    n_params: int  # parameters of the model (tied embedding counted once)
    vocab_size: int  # tokens in the trained tokenizer (BPE merges + 256 bytes + special tokens)
    corpus_docs: int  # texts the tokenizer was trained on
    corpus_chars: int  # their total length
    seconds: float  # wall time to build and save everything


def corpus_texts(sources: Sequence[str]) -> list[str]:
    """The texts of a corpus: an existing file is one text; an existing folder gives each *.py/*.md/*.txt file in it
    (recursively, sorted); anything else is a suite spec, giving per task its zero-shot user prompt (the instruction
    around the reference) and, when it carries a solution, the SFT answer (plan + code)."""
    from tritonrl.data.export import completion
    from tritonrl.data.suites import load_suite
    from tritonrl.tasks.prompts import SYSTEM, PromptStyle, user_prompt

    texts = [SYSTEM]
    for source in sources:
        path = Path(source)
        if path.is_file():
            texts.append(path.read_text(errors="replace"))
        elif path.is_dir():
            files = sorted(f for f in path.rglob("*") if f.is_file() and f.suffix in TEXT_SUFFIXES)
            texts += [f.read_text(errors="replace") for f in files]
        else:
            suite = load_suite(source)
            for e in suite.entries:
                texts.append(user_prompt(e.task, style=PromptStyle.ZERO_SHOT))
                if e.solution is not None:
                    texts.append(completion(e, "partial" if e.label == "partial_port" else "strict"))
        log.info("corpus: %s -> %d texts so far", source, len(texts))
    return texts


def train_tokenizer(texts: Iterable[str], vocab_size: int) -> Any:  # PreTrainedTokenizerFast
    """A byte-level BPE (lossless: no normaliser, no prefix space, no space clean-up on decode) with the ChatML chat
    template, EOS `<|im_end|>` (ends an assistant turn) and pad `<|endoftext|>`."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=list(SPECIAL_TOKENS), show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())  # fmt: skip
    tok.train_from_iterator(texts, trainer=trainer)
    hf = PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<|im_end|>", pad_token="<|endoftext|>",
                                 clean_up_tokenization_spaces=False)  # fmt: skip
    hf.chat_template = CHAT_TEMPLATE
    return hf


def random_model(shape: ModelShape, tokenizer: Any, seed: int) -> Any:  # Qwen3ForCausalLM
    """A randomly initialised Qwen3ForCausalLM of `shape` over the tokenizer's vocabulary."""
    import torch
    from transformers import Qwen3Config, Qwen3ForCausalLM

    torch.manual_seed(seed)
    cfg = Qwen3Config(vocab_size=len(tokenizer), hidden_size=shape.hidden_size,
                      intermediate_size=shape.intermediate_size, num_hidden_layers=shape.num_layers,
                      num_attention_heads=shape.num_heads, num_key_value_heads=shape.num_kv_heads,
                      head_dim=shape.hidden_size // shape.num_heads,
                      max_position_embeddings=shape.max_position_embeddings, eos_token_id=tokenizer.eos_token_id,
                      pad_token_id=tokenizer.pad_token_id, bos_token_id=None, tie_word_embeddings=True)  # fmt: skip
    model = Qwen3ForCausalLM(cfg)
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    return model


def write_model(
    out_dir: str | Path,
    shape: ModelShape,
    texts: Sequence[str],
    *,
    vocab_size: int | None = None,
    seed: int = 0,
    provenance: dict[str, Any] | None = None,
) -> InitModelResult:
    """Train the tokenizer on `texts`, build the model, save both (and `init_model.json`) to `out_dir`."""
    t0 = time.perf_counter()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    tokenizer = train_tokenizer(texts, vocab_size or shape.vocab_size)
    log.info("tokenizer: %d tokens from %d texts (%.1fs)", len(tokenizer), len(texts), time.perf_counter() - t0)
    tokenizer.save_pretrained(out)
    model = random_model(shape, tokenizer, seed)
    n_params = model.num_parameters()
    log.info("model: Qwen3, %d layers x %d wide, %.2fM parameters", shape.num_layers, shape.hidden_size, n_params / 1e6)
    model.save_pretrained(out)
    result = InitModelResult(str(out), n_params, len(tokenizer), len(texts), sum(map(len, texts)),
                             round(time.perf_counter() - t0, 2))  # fmt: skip
    record = {**(provenance or {}), "shape": dataclasses.asdict(shape), "seed": seed, **dataclasses.asdict(result)}
    (out / "init_model.json").write_text(json.dumps(record, indent=1) + "\n")
    return result


def init_model(cfg: InitModelConfig) -> InitModelResult:
    """Build the `cfg.size` model with a tokenizer trained on `cfg.corpus` (see the module docstring)."""
    texts = corpus_texts(cfg.corpus)
    shape = SIZES[cfg.size]
    target = cfg.vocab_size or shape.vocab_size
    provenance = {"size": cfg.size, "corpus": list(cfg.corpus), "vocab_size_target": target}
    return write_model(cfg.out, shape, texts, vocab_size=target, seed=cfg.seed, provenance=provenance)
