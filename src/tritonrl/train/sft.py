"""Supervised fine-tuning with LoRA: TRL's SFTTrainer on prompt-completion rows, loss on the completion only.

`run_sft` takes a local model directory (nothing is downloaded), builds the dataset from tasks (bundled solutions or
verified pairs, see `train/data.py`) unless one is given, trains a LoRA adapter on every linear layer and saves the
adapter and tokenizer to `out_dir`. `merge_adapter` folds an adapter into its base for the next expert-iteration
round or for serving. No reporting integrations: `report_to="none"`; the log history goes to `train_log.json`.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from tritonrl.errors import ConfigError
from tritonrl.tasks.schema import Task
from tritonrl.train.config import LoraSettings

log = logging.getLogger(__name__)


def require_local_model(model_path: str) -> None:
    if not os.path.isdir(model_path) or not (Path(model_path) / "config.json").is_file():
        raise ConfigError(f"model {model_path!r}: not a local model directory (no config.json); download it first "
                          "and pass its path. Training never downloads.")  # fmt: skip


def load_tokenizer(model_path: str, *, padding_side: str = "right"):  # noqa: ANN201
    """The model's tokenizer from disk, with a pad token (falls back to EOS) and the given padding side."""
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(model_path, local_files_only=True)
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    tok.padding_side = padding_side
    return tok


def precision_kwargs() -> tuple[dict[str, Any], dict[str, Any]]:
    """(model_init_kwargs, TrainingArguments precision kwargs): bf16 on a GPU that has it, float32 otherwise
    (TRL 1.x loads a string model in float32 unless told)."""
    import torch

    if torch.cuda.is_available() and torch.cuda.is_bf16_supported():
        return {"dtype": torch.bfloat16}, {"bf16": True}
    return {"dtype": torch.float32}, {"bf16": False}


def write_log(out_dir: str | Path, name: str, payload: Any) -> None:
    path = Path(out_dir) / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(payload, indent=1, sort_keys=True, default=str))


def run_sft(
    model_path: str,
    tasks: Sequence[Task],
    out_dir: str | Path,
    *,
    steps: int,
    lr: float = 2e-4,
    lora: LoraSettings | None = None,
    batch_size: int = 2,
    grad_accum: int = 1,
    max_length: int = 4096,
    pairs: Iterable[tuple[str, str]] | None = None,
    dataset: Any | None = None,
    seed: int = 0,
    logging_steps: int = 1,
    callbacks: list | None = None,
) -> str:
    """Train a LoRA adapter with completion-only loss; returns `out_dir` (adapter + tokenizer + train_log.json).

    Args:
        model_path: local model directory.
        tasks: the tasks whose bundled solutions (or `pairs`) make the data.
        steps: optimizer steps (`max_steps`).
        pairs: verified (task_id, completion) pairs to train on instead of the bundled solutions.
        dataset: a ready prompt-completion `datasets.Dataset` (overrides tasks/pairs).
        callbacks: extra `transformers.TrainerCallback`s (tests snapshot the LoRA weights with one).
    """
    from trl import SFTConfig, SFTTrainer

    from tritonrl.train.data import sft_dataset

    require_local_model(model_path)
    lora = lora or LoraSettings()
    tokenizer = load_tokenizer(model_path)
    train_dataset = dataset if dataset is not None else sft_dataset(tasks, tokenizer, pairs=pairs)
    init_kwargs, precision = precision_kwargs()
    args = SFTConfig(
        output_dir=str(out_dir), max_steps=steps, learning_rate=lr, per_device_train_batch_size=batch_size,
        gradient_accumulation_steps=grad_accum, max_length=max_length, completion_only_loss=True, loss_type="nll",
        packing=False, report_to="none", save_strategy="no", logging_steps=logging_steps, seed=seed,
        model_init_kwargs=init_kwargs, **precision,
    )  # fmt: skip
    trainer = SFTTrainer(model=model_path, args=args, train_dataset=train_dataset, processing_class=tokenizer,
                         peft_config=lora.to_peft(), callbacks=callbacks)  # fmt: skip
    log.info("SFT: %d rows, %d steps, lr %.1e, LoRA r=%d alpha=%d", len(train_dataset), steps, lr, lora.r, lora.alpha)
    trainer.train()
    trainer.save_model(str(out_dir))
    tokenizer.save_pretrained(str(out_dir))
    write_log(out_dir, "train_log.json", {"base_model": model_path, "rows": len(train_dataset),
                                           "log_history": trainer.state.log_history})  # fmt: skip
    return str(out_dir)


def merge_adapter(base_path: str, adapter_dir: str | Path, out_dir: str | Path) -> str:
    """Fold a LoRA adapter into its base model and save a plain model directory (with the tokenizer)."""
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    base = AutoModelForCausalLM.from_pretrained(base_path, local_files_only=True, dtype="auto")
    merged = PeftModel.from_pretrained(base, str(adapter_dir)).merge_and_unload()
    merged.save_pretrained(str(out_dir))
    load_tokenizer(str(adapter_dir) if (Path(adapter_dir) / "tokenizer_config.json").is_file() else base_path
                   ).save_pretrained(str(out_dir))  # fmt: skip
    return str(out_dir)
