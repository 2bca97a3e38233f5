"""Extension presets, YAML recipes, and proof that a disabled flag really disables its layer."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from tritonrl.errors import ConfigError
from tritonrl.tasks.loader import builtin_task
from tritonrl.train.config import (
    DEFAULT_PRESET,
    EXTENSIONS,
    PRESETS,
    ExtensionConfig,
    describe,
    load_config,
    preset,
    reward_kinds,
    to_reward_config,
    to_verify_config,
    weakened_defences,
)
from tritonrl.train.settings import TrainSettings, default_learning_rate
from tritonrl.verify.config import DISTRIBUTIONS, VerifyConfig
from tritonrl.verify.funnel import verify

FIXTURES = Path(__file__).parents[1] / "fixtures" / "candidates" / "relu"

EXPECTED_FLAGS = {
    "hardened": {"multi_input", "numerical_stability", "strict_sandbox", "calibrated_timing"},
    "baseline": set(),
    "multi_input_only": {"multi_input"},
    "curriculum_only": {"curriculum"},
    "staged_eval_only": {"staged_reward"},
    "calibrated_timing_only": {"calibrated_timing"},
    "sandbox_only": {"strict_sandbox"},
    "fusion_data_only": {"fusion_data"},
    "metamorphic_only": {"metamorphic"},
    "easy_combo": {"multi_input", "curriculum", "staged_reward"},
    "all_extensions": set(EXTENSIONS),
}


@pytest.mark.parametrize("name", sorted(EXPECTED_FLAGS))
def test_preset_flags(name):
    assert set(preset(name).enabled) == EXPECTED_FLAGS[name]


def test_presets_are_exactly_the_named_ones():
    assert set(PRESETS) == set(EXPECTED_FLAGS)


def test_unknown_preset_names_the_valid_ones():
    with pytest.raises(ConfigError, match="baseline"):
        preset("everything")


def test_multi_input_off_checks_base_shape_native_values_only():
    base, multi = to_verify_config(preset("baseline")), to_verify_config(preset("multi_input_only"))
    assert (base.n_variants, base.distributions) == (0, ("native",))
    assert (multi.n_variants, multi.distributions) == (VerifyConfig().n_variants, ("native", "normal"))
    assert base != multi


def test_numerical_stability_adds_the_extreme_distributions():
    stable = to_verify_config(preset("baseline", numerical_stability=True))
    assert stable.distributions == tuple(d for d in DISTRIBUTIONS if d != "normal") and stable.n_variants == 0
    assert to_verify_config(preset("all_extensions")).distributions == DISTRIBUTIONS


def test_strict_sandbox_switches_static_checks_and_audit_guard():
    base, sandbox = to_verify_config(preset("baseline")), to_verify_config(preset("sandbox_only"))
    assert (base.static_checks, base.audit_guard) == (False, False)
    assert (sandbox.static_checks, sandbox.audit_guard) == (True, True)


def test_verify_config_keeps_the_base_device():
    assert to_verify_config(preset("all_extensions"), VerifyConfig(device="cuda")).device == "cuda"


@pytest.mark.parametrize("device", ["cpu", "cuda"])
def test_the_default_preset_verifies_rewards_as_eval_does(device):
    ext = load_config(None).ext
    assert load_config(None).preset == DEFAULT_PRESET == "hardened"
    rewards = VerifyConfig.for_rewards(device)  # the training base: eval's hardened config minus the compile baseline
    assert to_verify_config(ext, rewards) == rewards
    assert weakened_defences(ext, VerifyConfig(device=device)) == []


def test_with_the_default_preset_an_identity_relu_earns_nothing():
    """The baseline preset's verifier passes a relu that copies its input (the task's native inputs are >= 0)."""
    from tritonrl.rewards.reward import reward

    relu, code = builtin_task("relu"), (FIXTURES / "identity_on_negatives.py").read_text()
    ext = load_config(None).ext
    verdict = verify(relu, code, to_verify_config(ext, VerifyConfig.for_rewards("cpu")))
    assert not verdict.passed and verdict.failure.value == "wrong_values"
    assert reward(verdict, to_reward_config(ext)) == 0.0
    assert verify(relu, code, to_verify_config(preset("baseline"), VerifyConfig.for_rewards("cpu"))).passed


def test_weakened_defences_names_what_a_preset_turns_off():
    off = weakened_defences(preset("baseline"), VerifyConfig(device="cuda"))
    assert off[0] == "shape variants (n_variants 3 -> 0)" and off[1].startswith("value distributions normal, wide")
    assert off[2:] == ["static checks", "audit guard", "the timing stage (implausible-speedup checks)"]
    assert "the timing stage (implausible-speedup checks)" not in weakened_defences(preset("baseline"))  # cpu: none
    assert weakened_defences(preset("sandbox_only"))[:1] == ["shape variants (n_variants 3 -> 0)"]
    assert weakened_defences(preset("all_extensions"), VerifyConfig(device="cuda")) == []


def test_multi_input_catches_identity_on_negatives():
    """Copying x is right on the task's native rand [0, 1) inputs and wrong on any negative value."""
    relu, code = builtin_task("relu"), (FIXTURES / "identity_on_negatives.py").read_text()
    assert verify(relu, code, to_verify_config(preset("baseline"))).passed
    verdict = verify(relu, code, to_verify_config(preset("multi_input_only")))
    assert (verdict.passed, verdict.stage.value, verdict.failure.value) == (False, "correctness", "wrong_values")


def test_numerical_stability_catches_the_unstable_softmax():
    """exp without the max shift is fine for randn inputs and overflows for the x100 `wide` values."""
    softmax = builtin_task("softmax")
    code = (Path(softmax.path).parent / "examples" / "softmax" / "unstable_no_max.py").read_text()
    assert verify(softmax, code, to_verify_config(preset("multi_input_only"))).passed
    verdict = verify(softmax, code, to_verify_config(preset("baseline", numerical_stability=True)))
    assert (verdict.passed, verdict.failure.value) == (False, "nonfinite_mismatch")


def test_metamorphic_flag_sets_the_verifier_layer():
    assert not to_verify_config(preset("baseline")).metamorphic
    assert to_verify_config(preset("metamorphic_only")).metamorphic
    assert to_verify_config(preset("all_extensions")).metamorphic
    assert not to_verify_config(preset("baseline"), VerifyConfig(metamorphic=True)).metamorphic  # off means off


def test_metamorphic_catches_a_fingerprint_memo():
    """Memoising on (max, min) of the input passes fresh-input cases; a row permutation gets the stale output."""
    relu, code = builtin_task("relu"), (FIXTURES / "metamorphic_memo_by_fingerprint.py").read_text()
    assert verify(relu, code, to_verify_config(preset("baseline"))).passed
    verdict = verify(relu, code, to_verify_config(preset("metamorphic_only")))
    assert (verdict.passed, verdict.failure.value) == (False, "wrong_values")
    assert "relation permute_rows violated" in verdict.message


def test_strict_sandbox_off_really_lets_a_file_read_through():
    relu, code = builtin_task("relu"), (FIXTURES / "runtime_open_file.py").read_text()
    assert verify(relu, code, to_verify_config(preset("baseline"))).passed
    verdict = verify(relu, code, to_verify_config(preset("sandbox_only")))
    assert (verdict.passed, verdict.failure.value) == (False, "file_access")


def test_staged_reward_selects_staged_kind():
    pytest.importorskip("tritonrl.rewards.reward")
    assert to_reward_config(preset("baseline")).kind == "binary"
    assert to_reward_config(preset("staged_eval_only")).kind == "staged"


def test_calibrated_timing_on_cpu_says_timing_is_unavailable(caplog):
    ext = preset("calibrated_timing_only")
    assert reward_kinds(ext, "cpu") == ("reward",)
    assert reward_kinds(ext, "cuda") == ("reward", "speed")
    assert reward_kinds(preset("baseline"), "cuda") == ("reward",)
    with caplog.at_level(logging.INFO, logger="tritonrl.train.config"):
        to_verify_config(ext, VerifyConfig(device="cpu"))
    assert "timing is unavailable" in caplog.text
    (line,) = [x for x in describe(ext, "cpu") if x.startswith("calibrated_timing")]
    assert "unavailable" in line
    assert "unavailable" not in " ".join(describe(ext, "cuda"))


@pytest.mark.parametrize(
    "overrides",
    [
        {"curriculum_start": 0.6, "curriculum_max": 0.5},
        {"curriculum_step": 0.0},
        {"curriculum_window": 0},
        {"hrd_alpha": -0.1},
        {"learning_zone_target": 1.0},
        {"multi_input": "yes"},
    ],
)
def test_extension_config_rejects_bad_values(overrides):
    with pytest.raises(ConfigError):
        ExtensionConfig(**overrides)


def test_yaml_overrides_the_preset(tmp_path):
    path = tmp_path / "r.yaml"
    path.write_text(
        "preset: easy_combo\n"
        "extensions: {curriculum: false, hrd: true, hrd_alpha: 0.2}\n"
        "train: {model: /m, steps: 3, learning_rate: 1.0e-4, num_generations: 2}\n"
        "lora: {r: 8}\n"
    )
    cfg = load_config(path)
    assert cfg.preset == "easy_combo"
    assert set(cfg.ext.enabled) == {"multi_input", "staged_reward", "hrd"} and cfg.ext.hrd_alpha == 0.2
    assert (cfg.train.model, cfg.train.steps, cfg.train.learning_rate) == ("/m", 3, 1e-4)
    assert (cfg.lora.r, cfg.lora.alpha, cfg.lora.target_modules) == (8, 32, "all-linear")
    assert set(load_config(path, "baseline").ext.enabled) == {"hrd"}


def test_no_yaml_gives_the_preset_and_defaults():
    cfg = load_config(None, "sandbox_only")
    assert cfg.ext == preset("sandbox_only")
    assert (cfg.lora.r, cfg.lora.alpha) == (16, 32)
    assert (cfg.train.n, cfg.train.k) == (10, 3)


@pytest.mark.parametrize(
    "text, match",
    [
        ("extension: {}\n", "unknown section"),
        ("extensions: {multi_inputs: true}\n", "multi_inputs"),
        ("train: {steps: 0}\n", "steps"),
        ("train: {n: 2, k: 3}\n", "k=3"),
        ("lora: {r: 0}\n", "lora"),
        ("- a list\n", "mapping"),
    ],
)
def test_yaml_errors_name_the_problem(tmp_path, text, match):
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=match):
        load_config(path)


@pytest.mark.parametrize(
    "fields, match",
    [
        ({"loss_type": "ppo"}, r"loss_type='ppo': must be one of .*dapo"),
        ({"scale_rewards": "std"}, r"scale_rewards='std': must be one of \('group', 'batch', 'none'\)"),
        ({"reward_weights": []}, r"reward_weights=\[\]: must be a non-empty list"),
        ({"reward_weights": [1.0, "a"]}, "one per reward function"),
        ({"reward_weights": [float("nan")]}, "finite"),
        ({"steps_per_generation": 0}, r"steps_per_generation=0: must be >= 1 \(or null"),
        ({"temperature": 0.0}, r"temperature=0.0: GRPO and best-of-N sample several answers"),
    ],
)
def test_grpo_settings_errors_name_value_rule_and_fix(fields, match):
    with pytest.raises(ConfigError, match=match):
        TrainSettings(**fields)


def test_grpo_settings_from_yaml(tmp_path):
    path = tmp_path / "r.yaml"
    path.write_text("train: {loss_type: dr_grpo, scale_rewards: none, mask_truncated_completions: true, "
                    "reward_weights: [1, 0.5], merge: true}\nlora: {enabled: false}\n")  # fmt: skip
    cfg = load_config(path)
    t = cfg.train
    assert (t.loss_type, t.scale_rewards, t.mask_truncated_completions) == ("dr_grpo", "none", True)
    assert t.reward_weights == [1.0, 0.5] and t.merge and cfg.lora.enabled is False


def test_full_weight_training_takes_a_tenth_of_the_lora_learning_rate():
    assert (default_learning_rate("sft", True), default_learning_rate("best-of-n", True)) == (2e-4, 2e-4)
    assert (default_learning_rate("grpo", True), default_learning_rate("grpo", False)) == (1e-5, 1e-6)
    assert default_learning_rate("sft", False) == 2e-5


def test_bundled_yaml_configs_load():
    from pathlib import Path

    from tritonrl.eval.ablation import load_grid
    from tritonrl.train.config import load_config

    root = Path(__file__).resolve().parents[2] / "configs"
    grpo = load_config(root / "grpo.yaml")
    assert grpo.preset == "hardened" and weakened_defences(grpo.ext) == []
    assert grpo.ext.hrd and grpo.ext.learning_zone and grpo.train.num_generations == 8 and grpo.lora.r == 16
    assert (grpo.train.loss_type, grpo.train.scale_rewards, grpo.train.reward_weights) == ("dapo", "group", None)
    sft = load_config(root / "sft.yaml")
    assert sft.train.learning_rate == 2e-4 and sft.lora.enabled and not sft.train.merge
    assert set(load_grid(root / "ablation.yaml")) >= {"hardened", "single_input", "no_ghost_replay"}


def test_calibrated_timing_flag_switches_the_timing_stage():
    gpu = VerifyConfig(device="cuda")
    assert to_verify_config(preset("calibrated_timing_only"), gpu).times
    off = to_verify_config(preset("baseline"), gpu)
    assert not off.timing and not off.times
