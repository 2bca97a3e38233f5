"""Supervised fine-tuning: TRL's SFTTrainer on prompt-completion rows, loss on the completion only.

`run_sft` takes a local model folder (a full model or a LoRA adapter, `tritonrl.models`; nothing is downloaded),
builds the dataset from tasks (bundled solutions or verified pairs, see `train/data.py`) unless one is given, and
trains a new LoRA adapter on every linear layer, continues a given adapter, or with LoRA off trains every weight
(`train/model_io.py`). `out_dir` ends up self-contained: the adapter (or model) and the tokenizer, plus the merged
model in `merged_dir` when asked. The log history goes to `train_log.json`; checkpoints (with resume) and TensorBoard
logs are opt-in (`RunOutputs`).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from tritonrl.models import load_tokenizer
from tritonrl.tasks.schema import Task
from tritonrl.train.model_io import RunOutputs, precision_kwargs, save_trained, start_model, write_log
from tritonrl.train.settings import LoraSettings, TrainSettings, default_learning_rate

log = logging.getLogger(__name__)


def run_sft(
    model_path: str,
    tasks: Sequence[Task],
    out_dir: str | Path,
    train: TrainSettings | None = None,
    *,
    lora: LoraSettings | None = None,
    pairs: Iterable[tuple[str, str]] | None = None,
    dataset: Any | None = None,
    callbacks: list | None = None,
    merged_dir: str | Path | None = None,
) -> str:
    """Fine-tune with completion-only loss; returns `out_dir` (adapter or model, tokenizer, train_log.json).

    Args:
        model_path: local model folder: a full model, or a LoRA adapter (continued unless
            `train.merge_input_adapter`).
        tasks: the tasks whose bundled solutions (or `pairs`) make the data.
        train: the run's settings, the object `tritonrl train sft` fills from YAML and flags: `steps` (TRL's
            `max_steps`), `learning_rate` (default: TRL's guidance for LoRA or all weights), `batch_size` (default
            2), `grad_accum`, `max_length`, `seed`, `logging_steps`, and the checkpoints and logs (`save_steps`,
            `resume`, `report_to`). Default: `TrainSettings()`.
        lora: the adapter to train (default `LoraSettings()`); `enabled=False` trains every weight.
        pairs: verified (task_id, completion) pairs to train on instead of the bundled solutions.
        dataset: a ready prompt-completion `datasets.Dataset` (overrides tasks/pairs).
        callbacks: extra `transformers.TrainerCallback`s (tests snapshot the trainable weights with one).
        merged_dir: also write the adapter merged into its base here, as a full model folder.
    """
    from trl import SFTConfig, SFTTrainer

    from tritonrl.train.data import sft_dataset
    from tritonrl.train.guards import NonFiniteGradGuard

    train = train or TrainSettings()
    lora = lora or LoraSettings()
    outputs = RunOutputs.of(train)
    lr = train.learning_rate or default_learning_rate("sft", lora.enabled)
    start = start_model(model_path, lora, merge_input_adapter=train.merge_input_adapter)
    tokenizer = load_tokenizer(start.source)
    train_dataset = dataset if dataset is not None else sft_dataset(tasks, tokenizer, pairs=pairs)
    _, precision = precision_kwargs()
    args = SFTConfig(
        output_dir=str(out_dir),
        max_steps=train.steps,
        learning_rate=lr,
        per_device_train_batch_size=train.batch_size or 2,
        gradient_accumulation_steps=train.grad_accum,
        max_length=train.max_length,
        completion_only_loss=True,
        loss_type="nll",
        packing=False,
        logging_steps=train.logging_steps,
        seed=train.seed,
        **precision,
        **outputs.trainer_kwargs(),
    )
    guard = NonFiniteGradGuard()
    trainer = SFTTrainer(model=start.model, args=args, train_dataset=train_dataset, processing_class=tokenizer,
                         peft_config=start.peft_config, callbacks=[*(callbacks or []), guard])  # fmt: skip
    log.info("SFT: %d rows, %d steps, lr %.1e, %s", len(train_dataset), train.steps, lr, start.mode)
    trainer.train(resume_from_checkpoint=outputs.resume_from(out_dir))
    save_trained(trainer, tokenizer, out_dir, start, merged_dir=merged_dir)
    write_log(out_dir, "train_log.json", {"model": model_path, "base_model": start.source.base_path,
                                           "mode": start.mode, "rows": len(train_dataset),
                                           "skipped_nonfinite_steps": guard.skipped,
                                           "log_history": trainer.state.log_history})  # fmt: skip
    return str(out_dir)
