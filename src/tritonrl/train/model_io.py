"""What a training run starts from and what it leaves behind, for SFT, GRPO and best-of-N alike.

`start_model` loads `--model` through `tritonrl.models`: a full model gets a fresh LoRA adapter (on a 4-bit base with
`lora.load_in_4bit`: QLoRA), or trains every weight with LoRA off; a LoRA adapter is continued as it is, or merged
into its base first (`merge_input_adapter`, or LoRA off). `save_trained` writes a folder `resolve_model` loads on
its own: the adapter (its base recorded as an absolute path; a fresh adapter on a merged input gets that merged
input written to OUT/base as its base) or the full weights, always with the tokenizer, and on request the merged
model in a second folder.
"""

from __future__ import annotations

import dataclasses
import json
import logging
from pathlib import Path
from typing import Any

from tritonrl.errors import ConfigError
from tritonrl.models import ModelSource, load_causal_lm, merge_adapter_folder, point_adapter_at_base, resolve_model
from tritonrl.train.settings import LoraSettings, TrainSettings

log = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class StartModel:
    model: Any  # a transformers PreTrainedModel, or a PeftModel whose adapter is trainable
    peft_config: Any  # the peft.LoraConfig for the trainer to add, or None (adapter continued, or all weights)
    source: ModelSource  # what --model was
    mode: str  # "new adapter", "continue adapter", "new adapter on merged input" or "all weights" (train_log.json)


REPORT_TO = ("none", "tensorboard")
KEEP_CHECKPOINTS = 2  # each full-weight checkpoint of a 100M model holds ~1.2 GB with its optimizer state


@dataclasses.dataclass(frozen=True)
class RunOutputs:
    """What a run writes while it trains: checkpoints to resume from, and logs for TensorBoard."""

    save_steps: int = 0  # a checkpoint (weights, optimizer, scheduler, RNG, step) every N steps; 0: none
    resume: bool = False  # continue from the newest OUT/checkpoint-N
    report_to: str = "none"  # "tensorboard": event files under OUT/runs

    def __post_init__(self) -> None:
        if self.save_steps < 0:
            raise ConfigError(f"save_steps={self.save_steps}: must be >= 0 (0 writes no checkpoints).")
        if self.report_to not in REPORT_TO:
            raise ConfigError(f"report_to={self.report_to!r}: must be one of {REPORT_TO}.")
        if self.report_to == "tensorboard":
            try:
                import tensorboard  # noqa: F401
            except ImportError as exc:
                raise ConfigError("report_to='tensorboard' needs the tensorboard package: pip install tensorboard "
                                  "(in the train extra), or drop --report-to.") from exc  # fmt: skip

    @classmethod
    def of(cls, train: TrainSettings) -> RunOutputs:
        """The outputs a run's settings ask for (`save_steps`, `resume`, `report_to`)."""
        return cls(save_steps=train.save_steps, resume=train.resume, report_to=train.report_to)

    def trainer_kwargs(self) -> dict[str, Any]:
        """The TrainingArguments (SFTConfig / GRPOConfig) fields for these outputs."""
        save = {"save_strategy": "steps", "save_steps": self.save_steps, "save_total_limit": KEEP_CHECKPOINTS}
        return {**(save if self.save_steps else {"save_strategy": "no"}), "report_to": self.report_to}

    def resume_from(self, out_dir: str | Path) -> str | None:
        """The checkpoint `trainer.train` resumes from: the newest OUT/checkpoint-N with `resume`, else None."""
        if not self.resume:
            return None
        from transformers.trainer_utils import get_last_checkpoint

        found = get_last_checkpoint(str(out_dir)) if Path(out_dir).is_dir() else None
        if found is None:
            raise ConfigError(f"--resume: no checkpoint-N folder in {out_dir}; a run writes them with --save-steps N "
                              "(resume with the same --out).")  # fmt: skip
        log.info("resuming from %s", found)
        return found


def precision_kwargs() -> tuple[Any, dict[str, Any]]:
    """(load dtype, TrainingArguments precision kwargs): bf16 on a GPU that has it, float32 otherwise (TRL 1.x would
    load a string model in float32 unless told)."""
    import torch

    if torch.cuda.is_available() and torch.cuda.is_bf16_supported():
        return torch.bfloat16, {"bf16": True}
    return torch.float32, {"bf16": False}


def start_model(model_path: str, lora: LoraSettings, *, merge_input_adapter: bool = False) -> StartModel:
    """Load the model a run trains, as the LoRA settings and the kind of `model_path` say (see the module doc)."""
    source = resolve_model(model_path)
    dtype, _ = precision_kwargs()
    if source.is_adapter and lora.enabled and not merge_input_adapter:
        log.info("continuing the LoRA adapter %s on %s (its own rank; lora settings apply to new adapters only)",
                 source.adapter_path, source.base_path)  # fmt: skip
        model = load_causal_lm(source, dtype=dtype, trainable_adapter=True, load_in_4bit=lora.load_in_4bit)
        return StartModel(model, None, source, "continue adapter")
    if source.is_adapter:
        log.info("merging the LoRA adapter %s into its base %s before training", source.adapter_path, source.base_path)
    model = load_causal_lm(source, dtype=dtype, load_in_4bit=lora.load_in_4bit)  # an adapter with 4-bit: raises
    if not lora.enabled:
        return StartModel(model, None, source, "all weights")
    mode = "new adapter on merged input" if source.is_adapter else "new adapter"
    return StartModel(model, lora.to_peft(), source, mode)


def save_trained(trainer: Any, tokenizer: Any, out_dir: str | Path, start: StartModel, *,
                 merged_dir: str | Path | None = None) -> str:  # fmt: skip
    """Save the trained model and the tokenizer to `out_dir`, so it loads without anything else: an adapter records
    its base as an absolute path. With `merged_dir`, an adapter is also written there merged into its base (a full
    model folder); full-weight runs are already one, so it is skipped. Returns `out_dir`."""
    out = Path(out_dir)
    trainer.save_model(str(out))  # the adapter, or the full weights (the trainer gathers them when distributed)
    if not trainer.accelerator.is_main_process:
        return str(out)
    tokenizer.save_pretrained(str(out))
    if start.mode == "all weights":
        if merged_dir is not None:
            log.info("merge requested, but all weights were trained: %s is already a full model", out)
        return str(out)
    base = start.source.base_path
    if start.mode == "new adapter on merged input":  # the new adapter was trained on base + old adapter, not base
        base = merge_adapter_folder(start.source.path, out / "base")
    point_adapter_at_base(out, base)
    if merged_dir is not None:
        merge_adapter_folder(out, merged_dir)
    return str(out)


def write_log(out_dir: str | Path, name: str, payload: Any) -> None:
    path = Path(out_dir) / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(payload, indent=1, sort_keys=True, default=str))
