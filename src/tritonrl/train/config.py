"""Training configuration: one flag per extension, named presets, and the YAML recipe loader.

`ExtensionConfig` says which of the seed project's extensions are on; `to_verify_config` and `to_reward_config` turn
the flags into what actually runs (a flag that is off really switches its layer off, so ablations compare like with
like). The default preset, `hardened`, verifies rewards exactly as `tritonrl eval` does; `weakened_defences` names
what any other choice turns off. `load_config(path, preset)` reads a YAML recipe with `extensions:`, `train:` and
`lora:` sections on top of a preset (those two sections are `train/settings.py`). Nothing here imports torch,
transformers or TRL.
"""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import field
from pathlib import Path
from typing import Any

from tritonrl.errors import ConfigError
from tritonrl.train.settings import LoraSettings, TrainSettings
from tritonrl.verify.config import VerifyConfig
from tritonrl.verify.layers import apply_layers

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
        metadata={"help": "Difficulty-aware sampling: prefer tasks whose estimated pass rate is near 0.5, and skip "
                          "tasks whose recent groups were all-equal for a while (DAPO dynamic sampling)."},
    )  # fmt: skip
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
    learning_zone_skip_after: int = field(
        default=2,
        metadata={"help": "Dynamic sampling: a task whose last this-many groups were all-equal (all pass or all fail: "
                          "zero advantage) is left out of the draw for learning_zone_skip_draws draws."},
    )  # fmt: skip
    learning_zone_skip_draws: int = field(
        default=8, metadata={"help": "Draws a task with all-equal groups sits out (0: never skip, only down-weight)."}
    )
    hrd_alpha: float = field(
        default=0.1, metadata={"help": "HRD: weight of the speed advantage on plan tokens (with a speed reward)."}
    )
    hrd_no_code_penalty: float = field(
        default=0.1,
        metadata={"help": "HRD: extra negative advantage on every token of an answer with no code block, so a "
                          "format failure is penalised even in a group where every answer failed."},
    )  # fmt: skip

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
        if self.learning_zone_skip_after < 1 or self.learning_zone_skip_draws < 0:
            raise ConfigError(f"learning_zone_skip_after={self.learning_zone_skip_after}, learning_zone_skip_draws="
                              f"{self.learning_zone_skip_draws}: need skip_after >= 1 and skip_draws >= 0 (0 turns "
                              "skipping off); the defaults are 2 and 8.")  # fmt: skip
        if not 0.0 <= self.hrd_alpha <= 1.0:
            raise ConfigError(f"hrd_alpha={self.hrd_alpha}: must be in [0, 1]; TritonRL uses 0.1.")
        if not 0.0 <= self.hrd_no_code_penalty <= 1.0:
            raise ConfigError(f"hrd_no_code_penalty={self.hrd_no_code_penalty}: must be in [0, 1]; the default is 0.1.")

    @property
    def enabled(self) -> tuple[str, ...]:
        return tuple(name for name in EXTENSIONS if getattr(self, name))


_ALL = dict.fromkeys(EXTENSIONS, True)
# Every verifier layer `tritonrl eval` runs, so a reward never passes a kernel the evaluation rejects.
_HARDENED = {"multi_input": True, "numerical_stability": True, "strict_sandbox": True, "calibrated_timing": True}
DEFAULT_PRESET = "hardened"
PRESETS: dict[str, dict[str, bool]] = {
    "hardened": _HARDENED,
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

    Through the one table of verifier layers (`verify/layers.py`, which `tritonrl ablate` reads too): multi_input ->
    the `multi_input` layer (variants, normal values); numerical_stability -> `numerical_stability` (edge values;
    both off: native values only); strict_sandbox -> `static_checks` and `audit_guard`; metamorphic -> `metamorphic`
    (a layer the hardened base leaves off); calibrated_timing -> `timing` (on: the GPU timing stage, which cannot
    exist on cpu: it logs that). A flag that is on keeps the base's setting.
    """
    base = base or VerifyConfig()
    if ext.calibrated_timing and not timing_available(base.device):  # info: the default preset asks for it everywhere
        log.info("calibrated_timing: timing is unavailable on device=%s (it needs a GPU); no speed reward.",
                 base.device)  # fmt: skip
    return apply_layers(base, {
        "multi_input": ext.multi_input, "numerical_stability": ext.numerical_stability,
        "static_checks": ext.strict_sandbox, "audit_guard": ext.strict_sandbox,
        "metamorphic": ext.metamorphic, "timing": ext.calibrated_timing,
    })  # fmt: skip


def weakened_defences(ext: ExtensionConfig, base: VerifyConfig | None = None) -> list[str]:
    """The defences of the hardened verifier (`base`, by default `VerifyConfig()`: what `tritonrl eval` runs) that
    these flags turn off, one phrase each; empty for the hardened preset. Timing counts only where it runs (cuda)."""
    base = base or VerifyConfig()
    cfg = to_verify_config(ext, base)
    off = []
    if cfg.n_variants < base.n_variants:
        off.append(f"shape variants (n_variants {base.n_variants} -> {cfg.n_variants})")
    if dropped := [d for d in base.distributions if d not in cfg.distributions]:
        off.append(f"value distributions {', '.join(dropped)}")
    off += [f"{name.replace('_', ' ')}" for name in ("static_checks", "audit_guard")
            if getattr(base, name) and not getattr(cfg, name)]  # fmt: skip
    if base.times and not cfg.times:
        off.append("the timing stage (implausible-speedup checks)")
    return off


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
    name = preset_name or data.get("preset") or DEFAULT_PRESET
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
