"""Local model folders: the one loader behind every `--model` (training, best-of-N, `tritonrl eval`'s generators).

A model folder is either a full model (config.json + weights) or a PEFT LoRA adapter (adapter_config.json), whose
base is named by `base_model_name_or_path`: an absolute path, or one relative to the adapter folder (then to the
working directory, PEFT's own convention). `resolve_model` reads only those small JSON files, so commands call it
first and a wrong folder fails before any sampling or verification. `load_causal_lm` and `load_tokenizer` load what it
found; `point_adapter_at_base` and `merge_adapter_folder` keep saved adapters loadable. Nothing is ever downloaded.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
from pathlib import Path
from typing import Any

from tritonrl.errors import ConfigError

log = logging.getLogger(__name__)

ADAPTER_CONFIG = "adapter_config.json"
MODEL_CONFIG = "config.json"
TOKENIZER_FILES = ("tokenizer_config.json", "tokenizer.json")


@dataclasses.dataclass(frozen=True, slots=True)
class ModelSource:
    """What a model folder holds, with every path resolved (absolute)."""

    path: str  # the folder that was given
    base_path: str  # the full model: `path` itself, or the adapter's base
    adapter_path: str | None  # `path` when it is a LoRA adapter, else None

    @property
    def is_adapter(self) -> bool:
        return self.adapter_path is not None

    @property
    def tokenizer_path(self) -> str:
        """The folder to read the tokenizer from: the given one when it has a tokenizer, else the base."""
        return self.path if any((Path(self.path) / f).is_file() for f in TOKENIZER_FILES) else self.base_path


def resolve_model(path: str | os.PathLike) -> ModelSource:
    """Say what a local model folder is, checking that everything it needs exists (no weights are read).

    Raises ConfigError naming the folder and the fix when it is neither a model nor an adapter, or when an adapter's
    base cannot be found.
    """
    folder = Path(path).expanduser().absolute()
    if (folder / ADAPTER_CONFIG).is_file():
        return ModelSource(str(folder), _adapter_base(folder), str(folder))
    if (folder / MODEL_CONFIG).is_file():
        return ModelSource(str(folder), str(folder), None)
    raise ConfigError(f"model {str(path)!r}: not a local model directory (no {MODEL_CONFIG} or {ADAPTER_CONFIG}). "
                      "Pass the folder of a downloaded model, a `tritonrl train` output, or one written by "
                      "`tritonrl train tiny-model --out DIR`; nothing is downloaded.")  # fmt: skip


def _adapter_base(adapter: Path) -> str:
    config_path = adapter / ADAPTER_CONFIG
    try:
        base = json.loads(config_path.read_text()).get("base_model_name_or_path")
    except (json.JSONDecodeError, AttributeError) as exc:
        raise ConfigError(f"{config_path}: not a JSON object ({exc}); re-save the adapter.") from exc
    if not isinstance(base, str) or not base:
        raise ConfigError(f"{config_path}: no base_model_name_or_path. Set it to the base model's folder (absolute, "
                          "or relative to the adapter folder).")  # fmt: skip
    given = Path(base).expanduser()
    tried = [given] if given.is_absolute() else [adapter / given, Path.cwd() / given]
    for candidate in tried:
        if (candidate / ADAPTER_CONFIG).is_file():
            raise ConfigError(f"adapter {str(adapter)!r}: its base {str(candidate)!r} is itself an adapter. Merge "
                              "that one into a full model first (`tritonrl train sft --merge` writes "
                              "OUT/merged).")  # fmt: skip
        if (candidate / MODEL_CONFIG).is_file():
            return str(candidate.resolve())
    looked = ", ".join(repr(str(c)) for c in tried)
    raise ConfigError(f"adapter {str(adapter)!r}: its base model {base!r} ({ADAPTER_CONFIG}: base_model_name_or_path) "
                      f"is not a local model folder; looked in {looked}. Fix: set base_model_name_or_path to the base "
                      "model's folder (absolute, or relative to the adapter folder), or pass a merged model (`tritonrl "
                      "train sft --merge` writes OUT/merged).")  # fmt: skip


def load_tokenizer(source: ModelSource | str, *, padding_side: str = "right"):  # noqa: ANN201 (a transformers tokenizer)
    """The folder's tokenizer (an adapter without one uses its base's), with a pad token (EOS when it has none)."""
    from transformers import AutoTokenizer

    source = source if isinstance(source, ModelSource) else resolve_model(source)
    tok = AutoTokenizer.from_pretrained(source.tokenizer_path, local_files_only=True)
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    tok.padding_side = padding_side
    return tok


def quantization_4bit(dtype: Any) -> dict[str, Any]:
    """`from_pretrained` kwargs for a QLoRA base: 4-bit NF4 weights with double quantization, computing (and storing
    the packed weights, which FSDP and ZeRO-3 need to shard them) in `dtype`. Each process puts its copy on its own
    GPU (LOCAL_RANK), except under ZeRO-3, which places the shards itself.

    Raises ConfigError naming the fix when bitsandbytes or a CUDA GPU is missing (4-bit layers run only on a GPU).
    """
    import importlib.util

    import torch

    if importlib.util.find_spec("bitsandbytes") is None:
        raise ConfigError("load_in_4bit (QLoRA) needs bitsandbytes: pip install bitsandbytes (and a CUDA GPU); or "
                          "drop --load-in-4bit to train the LoRA adapter on a full-precision base.")  # fmt: skip
    if not torch.cuda.is_available():
        raise ConfigError("load_in_4bit (QLoRA) needs a CUDA GPU (bitsandbytes' 4-bit layers run on the GPU; pip "
                          "install bitsandbytes there); none is visible here. Drop --load-in-4bit to train on the "
                          "CPU.")  # fmt: skip
    from transformers import BitsAndBytesConfig

    dtype = torch.bfloat16 if dtype == "auto" else dtype
    config = BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True,
                                bnb_4bit_compute_dtype=dtype, bnb_4bit_quant_storage=dtype)  # fmt: skip
    if os.environ.get("ACCELERATE_DEEPSPEED_ZERO_STAGE") == "3":  # set by `accelerate launch` with a ZeRO-3 config
        return {"quantization_config": config}
    return {"quantization_config": config, "device_map": {"": int(os.environ.get("LOCAL_RANK", "0") or 0)}}


def load_causal_lm(source: ModelSource | str, *, dtype: Any = "auto", trainable_adapter: bool = False,
                   load_in_4bit: bool = False):  # noqa: ANN201 # fmt: skip
    """Load a causal LM from a model folder.

    Args:
        source: a folder (or its resolved ModelSource).
        dtype: a torch dtype, or "auto" (the dtype the weights were saved in).
        trainable_adapter: for an adapter folder, return the PeftModel with the adapter's weights trainable (to
            continue training it); otherwise the adapter is merged into its base and a plain model comes back.
        load_in_4bit: QLoRA: the base weights in 4-bit NF4 (`quantization_4bit`; needs bitsandbytes and CUDA). An
            adapter is then only continued (`trainable_adapter`), never merged into the quantized base.
    """
    from transformers import AutoModelForCausalLM

    source = source if isinstance(source, ModelSource) else resolve_model(source)
    if load_in_4bit and source.is_adapter and not trainable_adapter:
        raise ConfigError(f"{source.path!r}: merging a LoRA adapter into a 4-bit base would lose precision; merge it "
                          "at full precision first (`tritonrl train sft --merge` writes OUT/merged) and pass that "
                          "folder with --load-in-4bit.")  # fmt: skip
    quantized = quantization_4bit(dtype) if load_in_4bit else {}
    model = AutoModelForCausalLM.from_pretrained(source.base_path, local_files_only=True, dtype=dtype, **quantized)
    if not source.is_adapter:
        return model
    from peft import PeftModel

    model = PeftModel.from_pretrained(model, source.adapter_path, is_trainable=trainable_adapter)
    return model if trainable_adapter else model.merge_and_unload()


def point_adapter_at_base(adapter_dir: str | os.PathLike, base_path: str) -> None:
    """Rewrite a saved adapter's base_model_name_or_path to the absolute `base_path`, so the adapter loads from any
    working directory (PEFT records whatever string the base was loaded with)."""
    config_path = Path(adapter_dir) / ADAPTER_CONFIG
    config = json.loads(config_path.read_text())
    config["base_model_name_or_path"] = str(Path(base_path).absolute())
    config_path.write_text(json.dumps(config, indent=2, sort_keys=True))


def merge_adapter_folder(adapter_dir: str | os.PathLike, out_dir: str | os.PathLike) -> str:
    """Write `adapter_dir`'s adapter merged into its base, with the tokenizer, as a full model folder `out_dir`."""
    source = resolve_model(adapter_dir)
    if not source.is_adapter:
        raise ConfigError(f"{str(adapter_dir)!r} is a full model, not an adapter: there is nothing to merge.")
    load_causal_lm(source).save_pretrained(str(out_dir))
    load_tokenizer(source).save_pretrained(str(out_dir))
    log.info("merged adapter %s into %s -> %s", source.adapter_path, source.base_path, out_dir)
    return str(out_dir)
