"""Training configuration: one flag per extension, named presets, and the YAML recipe loader.

`ExtensionConfig` says which of the seed project's extensions are on; `to_verify_config` and `to_reward_config` turn
the flags into what actually runs (a flag that is off really switches its layer off, so ablations compare like with
like). `load_config(path, preset)` reads a YAML recipe with `extensions:`, `train:` and `lora:` sections on top of a
preset. Nothing here imports torch, transformers or TRL.
"""

from __future__ import annotations

import dataclasses
import logging
import re
from dataclasses import field
from pathlib import Path
from typing import Any

from tritonrl.errors import ConfigError
from tritonrl.verify.config import VerifyConfig

log = logging.getLogger(__name__)

EXTENSIONS = (
    "multi_input",
    "numerical_stability",
    "staged_reward",
    "curriculum",
    "calibrated_timing",
    "strict_sandbox",
    "fusion_data",
    "learning_zone",
    "hrd",
    "metamorphic",
)


@dataclasses.dataclass
class ExtensionConfig:
    multi_input: bool = field(
        default=False,
        metadata={"help": "Check shape-family variants and several value distributions (off: base shape, native "
                          "values only)."},
    )  # fmt: skip
    numerical_stability: bool = field(
        default=False,
        metadata={"help": "Extreme value distributions: x100 (overflow), x1e-3 (eps matters) and +100 (one-pass "
                          "variance cancels). Off: native (and, with multi_input, normal) values only."},
    )  # fmt: skip
    staged_reward: bool = field(
        default=False, metadata={"help": "Staged partial credit by funnel stage reached instead of binary reward."}
    )
    curriculum: bool = field(
        default=False, metadata={"help": "Adaptive L1/L2 mix driven by the moving average of L1 correctness."}
    )
    calibrated_timing: bool = field(
        default=False,
        metadata={"help": "Speed reward from the GPU timing stage (warmup, CUDA events, robust statistics). "
                          "Unavailable on cpu: the speed reward is then left out."},
    )  # fmt: skip
    strict_sandbox: bool = field(default=False, metadata={"help": "In-worker audit guard plus the static AST checks."})
    fusion_data: bool = field(
        default=False,
        metadata={"help": "Add generated L2 fusion tasks from a data export (`train.fusion_dir`) when one exists."},
    )
    learning_zone: bool = field(
        default=False,
        metadata={"help": "Difficulty-aware sampling: prefer tasks whose estimated pass rate is near 0.5."},
    )
    hrd: bool = field(
        default=False,
        metadata={"help": "Hierarchical reward decomposition: plan tokens and code tokens get separate advantages."},
    )
    metamorphic: bool = field(
        default=False,
        metadata={"help": "Metamorphic relations: extra cases with rows permuted, inputs scaled by 2^10 or swapped, "
                          "where the reference satisfies the law exactly; the candidate must satisfy it against "
                          "itself (verify/metamorphic.py). ~30% more verifier forward calls."},
    )  # fmt: skip
    curriculum_start: float = field(default=0.10, metadata={"help": "Initial fraction of L2 tasks."})
    curriculum_step: float = field(default=0.05, metadata={"help": "L2 fraction added per promotion."})
    curriculum_max: float = field(default=0.50, metadata={"help": "Largest L2 fraction."})
    curriculum_threshold: float = field(
        default=0.4, metadata={"help": "Promote when the moving average of L1 correctness is >= this."}
    )
    curriculum_window: int = field(default=5, metadata={"help": "Steps in the L1-correctness moving average."})
    learning_zone_target: float = field(default=0.5, metadata={"help": "Pass rate the sampler prefers."})
    learning_zone_floor: float = field(
        default=0.05, metadata={"help": "Smallest relative sampling weight, so solved/hopeless tasks still appear."}
    )
    learning_zone_decay: float = field(
        default=0.9, metadata={"help": "Per-update decay of old pass/fail counts (1.0: never forget)."}
    )
    hrd_alpha: float = field(
        default=0.1, metadata={"help": "HRD: weight of the other part's advantage in each token's advantage."}
    )

    def __post_init__(self) -> None:
        for name in EXTENSIONS:
            if not isinstance(getattr(self, name), bool):
                raise ConfigError(f"{name}={getattr(self, name)!r}: must be true or false.")
        if not 0.0 <= self.curriculum_start <= self.curriculum_max <= 1.0:
            raise ConfigError(
                f"curriculum_start={self.curriculum_start}, curriculum_max={self.curriculum_max}: need "
                "0 <= start <= max <= 1 (the seeds use 0.1 and 0.5)."
            )
        if not 0.0 < self.curriculum_step <= 1.0:
            raise ConfigError(f"curriculum_step={self.curriculum_step}: must be in (0, 1]; the seeds use 0.05.")
        if not 0.0 <= self.curriculum_threshold <= 1.0:
            raise ConfigError(f"curriculum_threshold={self.curriculum_threshold}: a correctness rate in [0, 1].")
        if self.curriculum_window < 1:
            raise ConfigError(f"curriculum_window={self.curriculum_window}: must be >= 1; the seeds use 5.")
        if not 0.0 < self.learning_zone_target < 1.0:
            raise ConfigError(f"learning_zone_target={self.learning_zone_target}: must be in (0, 1); use 0.5.")
        if not 0.0 <= self.learning_zone_floor <= 1.0:
            raise ConfigError(f"learning_zone_floor={self.learning_zone_floor}: must be in [0, 1].")
        if not 0.0 < self.learning_zone_decay <= 1.0:
            raise ConfigError(f"learning_zone_decay={self.learning_zone_decay}: must be in (0, 1].")
        if not 0.0 <= self.hrd_alpha <= 1.0:
            raise ConfigError(f"hrd_alpha={self.hrd_alpha}: must be in [0, 1]; TritonRL uses 0.1.")

    @property
    def enabled(self) -> tuple[str, ...]:
        return tuple(name for name in EXTENSIONS if getattr(self, name))


_ALL = dict.fromkeys(EXTENSIONS, True)
PRESETS: dict[str, dict[str, bool]] = {
    "baseline": {},
    "multi_input_only": {"multi_input": True},
    "curriculum_only": {"curriculum": True},
    "staged_eval_only": {"staged_reward": True},
    "calibrated_timing_only": {"calibrated_timing": True},
    "sandbox_only": {"strict_sandbox": True},
    "fusion_data_only": {"fusion_data": True},
    "metamorphic_only": {"metamorphic": True},
    "easy_combo": {"multi_input": True, "curriculum": True, "staged_reward": True},
    "all_extensions": _ALL,
}


def preset(name: str, **overrides: Any) -> ExtensionConfig:
    """The ExtensionConfig of a named preset, with field overrides."""
    if name not in PRESETS:
        raise ConfigError(f"preset {name!r}: choose one of {sorted(PRESETS)}.")
    return _build(ExtensionConfig, {**PRESETS[name], **overrides}, f"preset {name}")


def timing_available(device: str) -> bool:
    """The timing stage needs a GPU: CUDA events on the device that ran the candidate."""
    return device.startswith("cuda")


def to_verify_config(ext: ExtensionConfig, base: VerifyConfig | None = None) -> VerifyConfig:
    """The VerifyConfig the flags mean, starting from `base` (the hardened defaults when None).

    multi_input off -> n_variants=0 and no `normal` values; numerical_stability off -> none of the edge-case values
    (wide/small/offset/negative/positive/ties/zero_rows/mixed; both off: native values only); strict_sandbox off ->
    no static checks and no audit guard; metamorphic on/off -> VerifyConfig.metamorphic on/off (a layer the hardened
    base leaves off); calibrated_timing off -> timing=False (on: the GPU timing stage, which cannot exist on cpu: it
    logs that). Any other flag that is on keeps the base's setting.
    """
    base = base or VerifyConfig()
    overrides: dict[str, Any] = {}
    if not ext.multi_input:
        overrides["n_variants"] = 0
    keep = {"native"} | ({"normal"} if ext.multi_input else set())
    edge_values = {"wide", "small", "offset", "negative", "positive", "ties", "zero_rows", "mixed"}
    keep |= edge_values if ext.numerical_stability else set()
    distributions = tuple(d for d in base.distributions if d in keep) or ("native",)
    if distributions != base.distributions:
        overrides["distributions"] = distributions
    if not ext.strict_sandbox:
        overrides.update(static_checks=False, audit_guard=False)
    if ext.metamorphic != base.metamorphic:
        overrides["metamorphic"] = ext.metamorphic
    if not ext.calibrated_timing and base.timing:
        overrides["timing"] = False  # no timing stage at all: no speedup, no speed reward, faster verdicts
    if ext.calibrated_timing and not timing_available(base.device):
        log.warning("calibrated_timing: timing is unavailable on device=%s (it needs a GPU); no speed reward.",
                    base.device)  # fmt: skip
    return dataclasses.replace(base, **overrides)


def check_client_config(ext: ExtensionConfig, client_cfg: VerifyConfig) -> VerifyConfig:
    """The VerifyConfig the flags mean on top of a given client's; raises ConfigError when the client verifies with
    something else (it would silently ignore the flags). Build clients with `to_verify_config(ext, base)`."""
    wanted = to_verify_config(ext, client_cfg)
    if wanted != client_cfg:
        diff = {f.name: (getattr(client_cfg, f.name), getattr(wanted, f.name)) for f in dataclasses.fields(wanted)
                if getattr(client_cfg, f.name) != getattr(wanted, f.name)}  # fmt: skip
        raise ConfigError(f"the VerifierClient's config disagrees with the extensions (field: (client, wanted)): "
                          f"{diff}. Build the client with to_verify_config(ext, base).")  # fmt: skip
    return wanted


def reward_kinds(ext: ExtensionConfig, device: str) -> tuple[str, ...]:
    """The `rewards.trl_adapter` kinds to build: "reward" (the RewardConfig kind: binary, or staged with
    staged_reward) always, "speed" only with calibrated timing on a GPU."""
    return ("reward", "speed") if ext.calibrated_timing and timing_available(device) else ("reward",)


def to_reward_config(ext: ExtensionConfig):  # noqa: ANN201 (RewardConfig: imported lazily, owned by rewards/)
    """The RewardConfig the flags mean: staged partial credit with staged_reward, binary correctness otherwise.
    (The speed term is a separate reward function, see `reward_kinds`; HRD's alpha is `ext.hrd_alpha`.)"""
    from tritonrl.rewards.reward import RewardConfig

    return RewardConfig(kind="staged" if ext.staged_reward else "binary")


def describe(ext: ExtensionConfig, device: str) -> list[str]:
    """One line per extension: on/off and what it does on this device (the CLI prints these)."""
    lines = []
    for name in EXTENSIONS:
        state = "on" if getattr(ext, name) else "off"
        note = ""
        if name == "calibrated_timing" and ext.calibrated_timing and not timing_available(device):
            note = f" (timing unavailable on {device}: needs a GPU; speed reward left out)"
        lines.append(f"{name}: {state}{note}")
    return lines


@dataclasses.dataclass
class LoraSettings:
    r: int = field(default=16, metadata={"help": "LoRA rank (the seeds use 16)."})
    alpha: int = field(default=32, metadata={"help": "LoRA alpha (the seeds use 32)."})
    dropout: float = field(default=0.05, metadata={"help": "LoRA dropout."})
    target_modules: str | list[str] = field(
        default="all-linear", metadata={"help": "'all-linear' (every Linear except the output layer) or names."}
    )

    def __post_init__(self) -> None:
        if self.r < 1 or self.alpha < 1:
            raise ConfigError(f"lora r={self.r}, alpha={self.alpha}: both must be >= 1 (e.g. r=16, alpha=32).")
        if not 0.0 <= self.dropout < 1.0:
            raise ConfigError(f"lora dropout={self.dropout}: must be in [0, 1).")

    def to_peft(self):  # noqa: ANN201 (peft.LoraConfig, imported lazily)
        from peft import LoraConfig

        return LoraConfig(r=self.r, lora_alpha=self.alpha, lora_dropout=self.dropout,
                          target_modules=self.target_modules, task_type="CAUSAL_LM")  # fmt: skip


ROLLOUTS = ("policy", "scripted")


@dataclasses.dataclass
class TrainSettings:
    model: str | None = field(default=None, metadata={"help": "Local model directory (never downloaded)."})
    output_dir: str = field(default="runs/train", metadata={"help": "Where adapters, logs and stats go."})
    suite: str = field(default="builtin", metadata={"help": "Task suite (see data/suites.py)."})
    steps: int = field(default=10, metadata={"help": "Optimizer steps (SFT and GRPO; per round for best-of-N)."})
    learning_rate: float | None = field(
        default=None, metadata={"help": "None: 2e-4 for SFT, 1e-5 for GRPO (TRL's LoRA guidance)."}
    )
    batch_size: int | None = field(
        default=None,
        metadata={"help": "Per-device batch: examples (SFT, best-of-N; None: 2) or completions (GRPO; a multiple of "
                          "num_generations; None: one group)."},
    )  # fmt: skip
    grad_accum: int = field(default=1, metadata={"help": "Gradient accumulation steps."})
    num_generations: int = field(default=4, metadata={"help": "GRPO group size."})
    max_completion_length: int = field(default=1024, metadata={"help": "Generated tokens per completion."})
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
        for name in ("steps", "grad_accum", "num_generations", "max_completion_length", "max_length",
                     "workers", "rounds", "n", "k", "logging_steps"):  # fmt: skip
            if getattr(self, name) < 1:
                raise ConfigError(f"train.{name}={getattr(self, name)}: must be >= 1.")
        if self.num_generations < 2:
            raise ConfigError(f"train.num_generations={self.num_generations}: GRPO needs groups of >= 2.")
        if self.k > self.n:
            raise ConfigError(f"train.k={self.k} > train.n={self.n}: cannot keep more completions than sampled.")
        if self.learning_rate is not None and self.learning_rate <= 0:
            raise ConfigError(f"train.learning_rate={self.learning_rate}: must be positive (e.g. 2e-4 for SFT).")


@dataclasses.dataclass
class RunConfig:
    """Everything one `tritonrl train` run needs."""

    preset: str
    ext: ExtensionConfig
    train: TrainSettings
    lora: LoraSettings

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def load_config(path: str | Path | None, preset_name: str | None = None) -> RunConfig:
    """Read a YAML recipe on top of a preset.

    The YAML may hold `preset:` (used when `preset_name` is None), `extensions:` (ExtensionConfig fields),
    `train:` (TrainSettings fields) and `lora:` (LoraSettings fields); each given value overrides the preset.
    Unknown sections or fields raise ConfigError naming the valid ones.
    """
    data: dict[str, Any] = {}
    if path is not None:
        import yaml

        text = Path(path).read_text()
        data = yaml.safe_load(text) or {}
        if not isinstance(data, dict):
            raise ConfigError(f"{path}: expected a mapping with sections extensions/train/lora.")
    sections = {"preset", "extensions", "train", "lora"}
    if unknown := sorted(set(data) - sections):
        raise ConfigError(f"{path}: unknown section(s) {unknown}; valid: {sorted(sections)}.")
    name = preset_name or data.get("preset") or "baseline"
    base = preset(name)
    ext = _build(ExtensionConfig, {**dataclasses.asdict(base), **(data.get("extensions") or {})}, "extensions")
    train = _build(TrainSettings, data.get("train") or {}, "train")
    lora = _build(LoraSettings, data.get("lora") or {}, "lora")
    return RunConfig(preset=name, ext=ext, train=train, lora=lora)


def _build(cls: type, values: dict[str, Any], where: str):  # noqa: ANN202
    if not isinstance(values, dict):
        raise ConfigError(f"{where}: expected a mapping of field -> value, got {type(values).__name__}.")
    names = {f.name for f in dataclasses.fields(cls)}
    if unknown := sorted(set(values) - names):
        raise ConfigError(f"{where}: unknown field(s) {unknown}; valid: {sorted(names)}.")
    return cls(**values)
