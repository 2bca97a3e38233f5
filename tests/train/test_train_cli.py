"""`tritonrl train`: configuration resolution, errors and exit codes, and one real SFT run."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tritonrl.cli.train import train_main


def test_dry_run_resolves_preset_yaml_and_flags(tmp_path, capsys):
    recipe = tmp_path / "r.yaml"
    recipe.write_text("preset: easy_combo\ntrain: {steps: 5, model: /yaml/model}\nlora: {r: 8}\n")
    rc = train_main(["grpo", "--config", str(recipe), "--steps", "7", "--device", "cpu", "--dry-run"])
    assert rc == 0
    out = json.loads(capsys.readouterr().out)
    assert out["preset"] == "easy_combo" and out["ext"]["curriculum"] and not out["ext"]["hrd"]
    assert (out["train"]["steps"], out["train"]["model"], out["lora"]["r"]) == (7, "/yaml/model", 8)


def test_dry_run_says_timing_is_unavailable_on_cpu(capsys):
    assert train_main(["grpo", "--preset", "calibrated_timing_only", "--device", "cpu", "--dry-run"]) == 0
    notes = json.loads(capsys.readouterr().out)["extension_notes"]
    assert any(n.startswith("calibrated_timing: on (timing unavailable on cpu") for n in notes)


def test_dry_run_metamorphic_preset_turns_the_verifier_layer_on(capsys):
    assert train_main(["grpo", "--preset", "metamorphic_only", "--device", "cpu", "--dry-run"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["ext"]["metamorphic"] and "metamorphic: on" in out["extension_notes"]


def test_dry_run_takes_the_new_flags(capsys):
    argv = ["best-of-n", "--device", "cuda:1", "--rollouts", "scripted", "--temperature", "0.5", "--grad-accum", "2",
            "--max-length", "1024", "--logging-steps", "5", "--dry-run"]  # fmt: skip
    assert train_main(argv) == 0
    train = json.loads(capsys.readouterr().out)["train"]
    assert (train["device"], train["rollouts"], train["temperature"]) == ("cuda:1", "scripted", 0.5)
    assert (train["grad_accum"], train["max_length"], train["logging_steps"]) == (2, 1024, 5)


def test_dry_run_default_preset_keeps_every_defence(capsys):
    assert train_main(["grpo", "--device", "cpu", "--dry-run"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["preset"] == "hardened" and out["defences_off"] == []


def test_dry_run_takes_the_grpo_loss_and_model_flags(capsys):
    argv = ["grpo", "--loss-type", "dr_grpo", "--scale-rewards", "none", "--mask-truncated-completions",
            "--reward-weights", "1", "0.5", "--num-generations", "2", "--max-completion-length", "64", "--no-lora",
            "--steps-per-generation", "2", "--merge", "--merge-input-adapter", "--device", "cpu",
            "--dry-run"]  # fmt: skip
    assert train_main(argv) == 0
    out = json.loads(capsys.readouterr().out)
    t = out["train"]
    assert (t["loss_type"], t["scale_rewards"], t["mask_truncated_completions"]) == ("dr_grpo", "none", True)
    assert (t["reward_weights"], t["num_generations"], t["max_completion_length"]) == ([1.0, 0.5], 2, 64)
    assert t["merge"] and t["merge_input_adapter"] and out["lora"]["enabled"] is False
    assert t["steps_per_generation"] == 2


def test_bad_loss_type_is_a_usage_error(capsys):
    assert train_main(["grpo", "--loss-type", "ppo", "--dry-run"]) == 2
    assert "loss_type='ppo'" in capsys.readouterr().err


def test_baseline_preset_says_which_defences_it_turns_off(tmp_path, capsys):
    # The warning comes before any work (here the missing model then stops the run).
    assert train_main(["grpo", "--preset", "baseline", "--model", str(tmp_path / "none"), "--device", "cpu",
                       "--out", str(tmp_path / "out")]) == 2  # fmt: skip
    out = capsys.readouterr().out
    assert "warning: preset baseline turns off verifier defences" in out
    assert "static checks" in out and "shape variants" in out and "identity relu" in out


@pytest.mark.parametrize("command", ["grpo", "best-of-n"])
def test_an_adapter_without_its_base_fails_before_any_work(command, tmp_path, capsys):
    adapter = tmp_path / "sft"
    adapter.mkdir()
    (adapter / "adapter_config.json").write_text(json.dumps({"base_model_name_or_path": "/moved/tiny"}))
    rc = train_main([command, "--model", str(adapter), "--device", "cpu", "--out", str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert rc == 2 and "'/moved/tiny'" in err and "base_model_name_or_path" in err
    assert not (tmp_path / "out").exists()  # nothing was written, sampled or verified


def test_bad_device_is_a_usage_error(capsys):
    assert train_main(["grpo", "--device", "gpu", "--dry-run"]) == 2
    assert "cuda:N" in capsys.readouterr().err


def test_tiny_model_command_writes_a_loadable_model(tmp_path, capsys):
    pytest.importorskip("transformers")
    from transformers import AutoConfig, AutoTokenizer

    assert train_main(["tiny-model", "--out", str(tmp_path / "m")]) == 0
    assert f"done: {tmp_path / 'm'}" in capsys.readouterr().out
    assert AutoConfig.from_pretrained(tmp_path / "m").num_hidden_layers == 2
    assert AutoTokenizer.from_pretrained(tmp_path / "m").chat_template
    assert train_main(["tiny-model"]) == 2 and "--out" in capsys.readouterr().err


def test_missing_model_is_a_usage_error(tmp_path, capsys):
    assert train_main(["sft", "--device", "cpu", "--out", str(tmp_path)]) == 2
    assert "--model" in capsys.readouterr().err


def test_non_local_model_is_a_usage_error(tmp_path, capsys):
    assert train_main(["sft", "--model", "Qwen/Qwen3-8B", "--device", "cpu", "--out", str(tmp_path)]) == 2
    assert "not a local model directory" in capsys.readouterr().err


def test_bad_yaml_is_a_usage_error(tmp_path, capsys):
    recipe = tmp_path / "r.yaml"
    recipe.write_text("train: {steps: -1}\n")
    assert train_main(["sft", "--config", str(recipe), "--dry-run"]) == 2
    assert "steps" in capsys.readouterr().err


@pytest.mark.slow
def test_sft_through_the_cli(tiny_model_dir, tmp_path, capsys):
    pytest.importorskip("trl")
    out = tmp_path / "run"
    rc = train_main(["sft", "--model", tiny_model_dir, "--suite", "builtin", "--out", str(out), "--steps", "1",
                     "--device", "cpu", "--log-level", "WARNING"])  # fmt: skip
    assert rc == 0
    assert (out / "adapter_config.json").is_file()
    assert json.loads((out / "run_config.json").read_text())["command"] == "sft"
    assert f"done: {out}" in capsys.readouterr().out
    assert Path(out / "train_log.json").is_file()


@pytest.mark.slow
def test_the_readme_chain_sft_grpo_best_of_n_eval_on_one_model_folder(tmp_path, capsys):
    """tiny-model -> sft -> grpo --model <sft out> -> best-of-n --model <grpo out> -> eval --model <bon model>."""
    pytest.importorskip("trl")
    from tritonrl.cli.main import main

    w = tmp_path
    common = ["--device", "cpu", "--workers", "2", "--log-level", "WARNING"]
    assert main(["train", "tiny-model", "--out", str(w / "tiny")]) == 0
    assert main(["train", "sft", "--model", str(w / "tiny"), "--out", str(w / "sft"), "--steps", "1", *common]) == 0
    assert main(["train", "grpo", "--model", str(w / "sft"), "--out", str(w / "grpo"), "--steps", "1",
                 "--num-generations", "2", "--max-completion-length", "16", "--rollouts", "scripted",
                 *common]) == 0  # fmt: skip
    assert json.loads((w / "grpo" / "train_log.json").read_text())["mode"] == "continue adapter"
    assert main(["train", "best-of-n", "--model", str(w / "grpo"), "--out", str(w / "bon"), "--n", "2", "--k", "1",
                 "--steps", "1", "--rollouts", "scripted", *common]) == 0  # fmt: skip
    assert f"done: {w / 'bon'} (model: {w / 'bon' / 'model'})" in capsys.readouterr().out
    assert main(["eval", "--suite", "builtin", "--tasks", "relu", "--model", str(w / "bon" / "model"), "--k", "2",
                 "--max-new-tokens", "8", "--device", "cpu", "--run", str(w / "eval"), "--json"]) == 0  # fmt: skip
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1])["overall"]["n_samples"] == 2


@pytest.mark.slow
def test_grpo_through_the_cli(tiny_model_dir, tmp_path):
    pytest.importorskip("trl")
    out = tmp_path / "run"
    rc = train_main(["grpo", "--preset", "easy_combo", "--model", tiny_model_dir, "--out", str(out), "--steps", "1",
                     "--num-generations", "2", "--max-completion-length", "8", "--device", "cpu", "--workers", "1",
                     "--log-level", "WARNING"])  # fmt: skip
    assert rc == 0
    log = json.loads((out / "train_log.json").read_text())
    assert log["extensions"]["curriculum"] and log["verify"]["n_variants"] > 0  # easy_combo: multi-input on
    assert "rewards/kernel_staged/mean" in log["log_history"][0]  # easy_combo: staged reward
    assert (out / "sampler_state.json").is_file()


def test_dry_run_takes_checkpoint_and_logging_flags(capsys):
    argv = ["sft", "--device", "cpu", "--save-steps", "5", "--resume", "--report-to", "tensorboard", "--dry-run"]
    assert train_main(argv) == 0
    train = json.loads(capsys.readouterr().out)["train"]
    assert (train["save_steps"], train["resume"], train["report_to"]) == (5, True, "tensorboard")
