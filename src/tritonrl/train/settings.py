"""The `train:` and `lora:` sections of a run: what to train, for how long, with which optimiser and GRPO settings.

`TrainSettings` and `LoraSettings` are plain dataclasses with help text, validated in `__post_init__` (errors give
the value, the rule and the fix); `train/config.py` reads them from YAML and the CLI's flags override them.
`default_learning_rate` is TRL's guidance per command and for LoRA vs all weights. Nothing here imports torch.
"""

from __future__ import annotations

import dataclasses
import math
import re
from dataclasses import field

from tritonrl.errors import ConfigError


@dataclasses.dataclass
class LoraSettings:
    r: int = field(default=16, metadata={"help": "LoRA rank (the seeds use 16)."})
    alpha: int = field(default=32, metadata={"help": "LoRA alpha (the seeds use 32)."})
    dropout: float = field(default=0.05, metadata={"help": "LoRA dropout."})
    target_modules: str | list[str] = field(
        default="all-linear", metadata={"help": "'all-linear' (every Linear except the output layer) or names."}
    )
    enabled: bool = field(
        default=True,
        metadata={"help": "false: train every weight (full fine-tuning, for small models; flag --no-lora); a LoRA "
                          "adapter given as --model is then merged into its base first."},
    )  # fmt: skip
    load_in_4bit: bool = field(
        default=False,
        metadata={"help": "QLoRA: load the base model in 4-bit NF4 (bitsandbytes, CUDA only) and train a LoRA adapter "
                          "on it; flag --load-in-4bit."},
    )  # fmt: skip

    def __post_init__(self) -> None:
        if not isinstance(self.enabled, bool):
            raise ConfigError(f"lora enabled={self.enabled!r}: must be true or false.")
        if not isinstance(self.load_in_4bit, bool):
            raise ConfigError(f"lora load_in_4bit={self.load_in_4bit!r}: must be true or false.")
        if self.load_in_4bit and not self.enabled:
            raise ConfigError("lora load_in_4bit=true with enabled=false: 4-bit weights cannot be trained directly; "
                              "QLoRA trains a LoRA adapter on them (drop --no-lora, or --load-in-4bit).")  # fmt: skip
        if self.r < 1 or self.alpha < 1:
            raise ConfigError(f"lora r={self.r}, alpha={self.alpha}: both must be >= 1 (e.g. r=16, alpha=32).")
        if not 0.0 <= self.dropout < 1.0:
            raise ConfigError(f"lora dropout={self.dropout}: must be in [0, 1).")

    def to_peft(self):  # noqa: ANN201 (peft.LoraConfig, imported lazily)
        from peft import LoraConfig

        return LoraConfig(r=self.r, lora_alpha=self.alpha, lora_dropout=self.dropout,
                          target_modules=self.target_modules, task_type="CAUSAL_LM")  # fmt: skip


ROLLOUTS = ("policy", "scripted")
LOSS_TYPES = ("grpo", "dr_grpo", "dapo", "bnpo", "cispo", "sapo", "luspo", "vespo")  # TRL 1.16 GRPOConfig.loss_type
SCALE_REWARDS = ("group", "batch", "none")
# TRL's PEFT guidance (shared/notes/training.md 1.5): LoRA takes ~10x the full fine-tuning learning rate.
_DEFAULT_LR = {("sft", True): 2e-4, ("sft", False): 2e-5, ("grpo", True): 1e-5, ("grpo", False): 1e-6}


def default_learning_rate(command: str, lora: bool) -> float:
    """The learning rate when none is given: SFT (and best-of-N's fine-tuning) or GRPO, LoRA or all weights."""
    return _DEFAULT_LR[("grpo" if command == "grpo" else "sft", lora)]


@dataclasses.dataclass
class TrainSettings:
    model: str | None = field(default=None, metadata={"help": "Local model directory (never downloaded)."})
    output_dir: str = field(default="runs/train", metadata={"help": "Where adapters, logs and stats go."})
    suite: str = field(default="builtin", metadata={"help": "Task suite (see data/suites.py)."})
    steps: int = field(default=10, metadata={"help": "Optimizer steps (SFT and GRPO; per round for best-of-N)."})
    learning_rate: float | None = field(
        default=None,
        metadata={"help": "None: 2e-4 SFT / 1e-5 GRPO with LoRA, 2e-5 / 1e-6 with lora.enabled false (TRL's "
                          "guidance)."},
    )  # fmt: skip
    batch_size: int | None = field(
        default=None,
        metadata={"help": "Per-device batch: examples (SFT, best-of-N; None: 2) or completions (GRPO; a multiple of "
                          "num_generations; None: one group)."},
    )  # fmt: skip
    grad_accum: int = field(default=1, metadata={"help": "Gradient accumulation steps."})
    num_generations: int = field(default=4, metadata={"help": "GRPO group size (TRL num_generations)."})
    max_completion_length: int = field(default=1024, metadata={"help": "Generated tokens per completion."})
    steps_per_generation: int | None = field(
        default=None,
        metadata={"help": "GRPO: optimizer steps that share one generation round (None: 1). N samples and verifies N "
                          "steps' completions at once, so one generate call and one verifier round serve N steps; "
                          "steps after the first are off-policy (clipped ratio). TRL's steps_per_generation counts "
                          "micro-batches: it gets N x grad_accum."},
    )  # fmt: skip
    loss_type: str = field(
        default="dapo",
        metadata={"help": f"GRPO loss aggregation, one of {LOSS_TYPES} (TRL's default dapo: normalised by the active "
                          "tokens of the accumulated batch, no length bias)."},
    )  # fmt: skip
    scale_rewards: str = field(
        default="group",
        metadata={"help": f"GRPO advantage scaling, one of {SCALE_REWARDS}: divide by the group's std, the batch's, "
                          "or not at all (Dr. GRPO)."},
    )  # fmt: skip
    mask_truncated_completions: bool = field(
        default=False, metadata={"help": "GRPO: leave completions cut at max_completion_length out of the loss."}
    )
    reward_weights: list[float] | None = field(
        default=None,
        metadata={"help": "GRPO: one weight per reward function (kernel_<kind>, then kernel_speed when timed on a "
                          "GPU); None: all 1."},
    )  # fmt: skip
    merge: bool = field(
        default=False,
        metadata={"help": "SFT and GRPO with LoRA: also write the adapter merged into its base as a full model folder "
                          "OUT/merged (for vLLM or serving)."},
    )  # fmt: skip
    merge_input_adapter: bool = field(
        default=False,
        metadata={"help": "When --model is a LoRA adapter: merge it into its base and train a fresh adapter, instead "
                          "of continuing to train that adapter."},
    )  # fmt: skip
    max_length: int = field(default=4096, metadata={"help": "SFT: longest tokenized prompt + completion."})
    temperature: float = field(default=1.0, metadata={"help": "Sampling temperature (GRPO and best-of-N)."})
    seed: int = field(default=0, metadata={"help": "Seed for data order, curriculum and training."})
    device: str = field(default="auto", metadata={"help": "Verifier device: auto, cpu, cuda or cuda:N."})
    workers: int = field(default=2, metadata={"help": "Parallel verifier workers."})
    use_vllm: bool = field(default=False, metadata={"help": "GRPO generation through vLLM (when installed)."})
    fusion_dir: str | None = field(default=None, metadata={"help": "Folder of generated L2 fusion task files."})
    pairs: str | None = field(
        default=None, metadata={"help": "SFT data: JSONL (file or folder) of verified {task_id, completion} pairs."}
    )
    rounds: int = field(default=1, metadata={"help": "Best-of-N: expert-iteration rounds."})
    n: int = field(default=10, metadata={"help": "Best-of-N: completions sampled per task (the seeds use 10)."})
    k: int = field(default=3, metadata={"help": "Best-of-N: correct completions kept per task (the seeds use 3)."})
    logging_steps: int = field(default=1, metadata={"help": "Log every N steps."})
    save_steps: int = field(
        default=0,
        metadata={"help": "SFT and GRPO: a checkpoint (weights, optimizer, scheduler, RNG, step) every N steps in "
                          "OUT/checkpoint-N, the last 2 kept; 0: none."},
    )  # fmt: skip
    resume: bool = field(
        default=False, metadata={"help": "SFT and GRPO: continue from the newest OUT/checkpoint-N (same --out)."}
    )
    report_to: str = field(
        default="none",
        metadata={"help": "none, or tensorboard: event files under OUT/runs (needs the tensorboard package)."},
    )  # fmt: skip
    rollouts: str = field(
        default="policy",
        metadata={"help": "GRPO and best-of-N completions: 'policy' samples the model; 'scripted' answers each group "
                          "with the bundled solution and a wrong answer (real verdicts; a plumbing check, "
                          "train/scripted.py)."},
    )  # fmt: skip

    def __post_init__(self) -> None:
        if self.rollouts not in ROLLOUTS:
            raise ConfigError(f"train.rollouts={self.rollouts!r}: choose one of {ROLLOUTS}.")
        if not re.fullmatch(r"auto|cpu|cuda(:\d+)?", self.device):
            raise ConfigError(f"train.device={self.device!r}: must be auto, cpu, cuda or cuda:N.")
        if self.batch_size is not None and self.batch_size < 1:
            raise ConfigError(f"train.batch_size={self.batch_size}: must be >= 1 (or null for the default).")
        if self.save_steps < 0:
            raise ConfigError(f"train.save_steps={self.save_steps}: must be >= 0 (0 writes no checkpoints).")
        if self.report_to not in ("none", "tensorboard"):
            raise ConfigError(f"train.report_to={self.report_to!r}: must be 'none' or 'tensorboard'.")
        for name in ("steps", "grad_accum", "num_generations", "max_completion_length", "max_length",
                     "workers", "rounds", "n", "k", "logging_steps"):  # fmt: skip
            if getattr(self, name) < 1:
                raise ConfigError(f"train.{name}={getattr(self, name)}: must be >= 1.")
        if self.steps_per_generation is not None and self.steps_per_generation < 1:
            raise ConfigError(f"train.steps_per_generation={self.steps_per_generation}: must be >= 1 (or null: one "
                              "generation round per optimizer step, TRL's default).")  # fmt: skip
        if not self.temperature > 0:
            raise ConfigError(f"train.temperature={self.temperature}: GRPO and best-of-N sample several answers per "
                              "prompt, so it must be > 0 (1.0 samples the model as it is).")  # fmt: skip
        if self.num_generations < 2:
            raise ConfigError(f"train.num_generations={self.num_generations}: GRPO needs groups of >= 2.")
        if self.k > self.n:
            raise ConfigError(f"train.k={self.k} > train.n={self.n}: cannot keep more completions than sampled.")
        if self.learning_rate is not None and self.learning_rate <= 0:
            raise ConfigError(f"train.learning_rate={self.learning_rate}: must be positive (e.g. 2e-4 for SFT).")
        if self.loss_type not in LOSS_TYPES:
            raise ConfigError(f"train.loss_type={self.loss_type!r}: must be one of {LOSS_TYPES}; dapo is TRL's "
                              "default.")  # fmt: skip
        if self.scale_rewards not in SCALE_REWARDS:
            raise ConfigError(f"train.scale_rewards={self.scale_rewards!r}: must be one of {SCALE_REWARDS}; 'none' is "
                              "what Dr. GRPO recommends, 'group' TRL's default.")  # fmt: skip
        if self.reward_weights is not None:
            if isinstance(self.reward_weights, str) or not self.reward_weights or not all(
                    isinstance(w, int | float) and not isinstance(w, bool) and math.isfinite(w)
                    for w in self.reward_weights):  # fmt: skip
                raise ConfigError(f"train.reward_weights={self.reward_weights!r}: must be a non-empty list of finite "
                                  "numbers, one per reward function (e.g. [1.0, 0.5]), or null for all 1.")  # fmt: skip
            self.reward_weights = [float(w) for w in self.reward_weights]
