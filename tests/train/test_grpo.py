"""GRPO with LoRA on the tiny offline model, every reward a real verdict from the sandboxed CPU verifier.

With max_completion_length=16 a random model cannot write a kernel, so every sampled completion fails and the group
advantage is 0 (no update). The update tests therefore script the rollouts through TRL's `rollout_func`: each group
holds the bundled relu solution and a garbage answer, the verifier passes one and rejects the other, and the
resulting +/- advantages must move every LoRA parameter.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

pytest.importorskip("trl")
pytest.importorskip("peft")

from tritonrl.errors import ConfigError  # noqa: E402
from tritonrl.rewards.client import VerifierClient  # noqa: E402
from tritonrl.tasks.loader import builtin_task  # noqa: E402
from tritonrl.train.config import LoraSettings, preset, to_verify_config  # noqa: E402
from tritonrl.train.data import solution_completion  # noqa: E402
from tritonrl.train.grpo import decode_with_offsets, group_advantages, run_grpo  # noqa: E402
from tritonrl.verify.config import VerifyConfig  # noqa: E402

GARBAGE = "I would write a kernel here, but no code follows."
LORA = LoraSettings(r=4, alpha=8, dropout=0.0)


def scripted_rollout(texts: list[str]):
    """A TRL rollout_func answering the i-th prompt of a batch with texts[i % len(texts)]."""

    def rollout(prompts, trainer):
        tok = trainer.processing_class
        prompt_ids = [tok(tok.apply_chat_template(p, add_generation_prompt=True, tokenize=False),
                          add_special_tokens=False)["input_ids"] for p in prompts]  # fmt: skip
        completion_ids = [tok(texts[i % len(texts)], add_special_tokens=False)["input_ids"] + [tok.eos_token_id]
                          for i in range(len(prompts))]  # fmt: skip
        return {"prompt_ids": prompt_ids, "completion_ids": completion_ids, "logprobs": None}

    return rollout


def _metric(history: list[dict], name: str) -> list[float]:
    return [h[name] for h in history if name in h]


def client_for(tasks, ext, device="cpu", workers=2) -> VerifierClient:
    """A verifier client that verifies the way the extensions say (run_grpo checks this)."""
    return VerifierClient({t.task_id: t for t in tasks}, to_verify_config(ext, VerifyConfig(device=device)),
                          workers=workers)  # fmt: skip


@pytest.fixture
def relu_client():
    with client_for([builtin_task("relu")], preset("baseline")) as client:
        yield client


@pytest.mark.parametrize("hrd", [False, True], ids=["plain", "hrd"])
def test_grpo_real_verdicts_move_every_lora_parameter(tiny_model_dir, tmp_path, lora_snapshot, relu_client, hrd):
    relu = builtin_task("relu")
    rollout = scripted_rollout([solution_completion(relu), GARBAGE])
    result = run_grpo(
        tiny_model_dir, [relu], tmp_path / "grpo", preset("baseline", hrd=hrd), steps=2, num_generations=2,
        max_completion_length=16, lr=1e-2, lora=LORA, client=relu_client, callbacks=[lora_snapshot],
        rollout_func=rollout,
    )  # fmt: skip
    assert lora_snapshot.before and lora_snapshot.unchanged() == []
    # Two distinct completions were verified for real, once each; the second step was answered by the cache.
    assert relu_client.n_submitted == 2 and relu_client.n_cached >= 2
    assert _metric(result.log_history, "rewards/kernel_binary/mean") == [0.5, 0.5]
    assert _metric(result.log_history, "kernel/correct_frac") == [0.5, 0.5]
    if hrd:
        frac = _metric(result.log_history, "hrd/code_token_frac")
        assert frac and all(0.0 < f < 1.0 for f in frac)  # the solution has plan and code tokens
    assert (Path(result.out_dir) / "adapter_config.json").is_file()


def test_grpo_sampled_completions_are_verified(tiny_model_dir, tmp_path, relu_client):
    relu = builtin_task("relu")
    result = run_grpo(tiny_model_dir, [relu], tmp_path / "grpo", preset("baseline"), steps=2, num_generations=2,
                      max_completion_length=16, lora=LORA, client=relu_client)  # fmt: skip
    assert relu_client.n_submitted + relu_client.n_cached >= 4  # 2 steps x 2 completions reached the verifier
    # 16 random tokens never hold a kernel: the real verdicts all fail and the logged reward says so.
    assert _metric(result.log_history, "rewards/kernel_binary/mean") == [0.0, 0.0]
    assert _metric(result.log_history, "kernel/stage/done_frac") == [0.0, 0.0]
    log = json.loads((Path(result.out_dir) / "train_log.json").read_text())
    assert log["verify"]["n_variants"] == 0  # baseline switched multi_input off


@pytest.mark.slow
def test_grpo_curriculum_stream_gets_feedback(tiny_model_dir, tmp_path):
    tasks = [builtin_task("relu"), builtin_task("linear_bias_relu")]
    ext = preset("baseline", curriculum=True, learning_zone=True)
    with client_for(tasks, ext) as client:
        result = run_grpo(tiny_model_dir, tasks, tmp_path / "grpo", ext, steps=2, num_generations=2,
                          max_completion_length=16, lora=LORA, client=client,
                          rollout_func=scripted_rollout([solution_completion(tasks[0]), GARBAGE]))  # fmt: skip
    state = result.sampler_state
    assert state is not None and sum(state["n_drawn"].values()) >= 2
    assert sum(state["zone"]["trials"].values()) > 0  # verdicts reached the learning-zone estimates
    assert _metric(result.log_history, "curriculum/l2_fraction") == pytest.approx([0.1, 0.1])
    assert (Path(result.out_dir) / "sampler_state.json").is_file()


def test_a_client_that_ignores_the_extensions_is_refused(tiny_model_dir, tmp_path):
    relu = builtin_task("relu")
    with VerifierClient({"relu": relu}, VerifyConfig(device="cpu")) as hardened:  # multi-input and sandbox on
        with pytest.raises(ConfigError, match="n_variants"):
            run_grpo(tiny_model_dir, [relu], tmp_path, preset("baseline"), steps=1, num_generations=2, client=hardened)


def test_group_advantages_match_grpo():
    import torch

    adv = group_advantages(torch.tensor([1.0, 0.0, 0.5, 0.5]), 2, "none")
    assert adv.tolist() == [0.5, -0.5, 0.0, 0.0]
    assert group_advantages(torch.tensor([1.0, float("nan")]), 2, "group").tolist() == [0.0, 0.0]


def test_decode_with_offsets_covers_the_text(tiny_model_dir):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    text = "Plan: mask.\n```python\nx = 1\n```"
    ids = tok(text, add_special_tokens=False)["input_ids"] + [tok.eos_token_id]
    decoded, offsets = decode_with_offsets(tok, ids)
    assert decoded == text and offsets[-1][0] == offsets[-1][1] == len(text)
    assert "".join(decoded[s:e] for s, e in offsets) == text


def test_hrd_token_advantages_split_code_and_plan(tiny_model_dir):
    """Code tokens get the code reward's group advantage, plan tokens alpha x the plan (speed) reward's."""
    from collections import defaultdict
    from types import SimpleNamespace

    import torch
    from transformers import AutoTokenizer

    from tritonrl.train.grpo import HRDGRPOTrainer

    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    texts = ["Plan: one block.\n```python\nclass ModelNew:\n    pass\n```", "no code at all"]
    rows = [tok(t, add_special_tokens=False)["input_ids"] + [tok.eos_token_id] for t in texts]
    width = max(map(len, rows)) + 2
    ids = torch.tensor([r + [tok.pad_token_id] * (width - len(r)) for r in rows])
    mask = torch.tensor([[1] * len(r) + [0] * (width - len(r)) for r in rows])
    trainer = SimpleNamespace(
        model=SimpleNamespace(training=True), num_generations=2, num_generations_eval=2, scale_rewards="none",
        _rewards_per_func=torch.tensor([[1.0, 2.0], [0.0, 0.0]]), _code_col=0, _plan_col=1, _alpha=0.1,
        accelerator=SimpleNamespace(process_index=0), processing_class=tok, _metrics={"train": defaultdict(list)},
    )  # fmt: skip
    adv = HRDGRPOTrainer._token_advantages(trainer, ids, mask)  # code adv (+.5, -.5), plan adv (+1, -1)
    first = adv[0, : len(rows[0])].tolist()
    assert {round(x, 6) for x in first} == {0.5, 0.1} and first[0] == pytest.approx(0.1)  # starts with plan
    assert adv[1, : len(rows[1])].tolist() == pytest.approx([-0.1] * len(rows[1]))  # no code: all plan
    assert adv[:, -2:].abs().sum() == 0  # padding
    assert 0 < trainer._metrics["train"]["hrd/code_token_frac"][0] < 1


@pytest.mark.gpu
def test_grpo_on_gpu_with_cuda_verifier_and_all_grpo_extensions(tiny_model_dir, tmp_path, lora_snapshot):
    """bf16 training next to a CUDA verifier pool (spawned), with HRD, multi-input, sandbox and the speed reward."""
    relu = builtin_task("relu")
    ext = preset("baseline", multi_input=True, strict_sandbox=True, calibrated_timing=True, hrd=True)
    with client_for([relu], ext, device="cuda", workers=1) as client:
        result = run_grpo(
            tiny_model_dir, [relu], tmp_path / "grpo", ext, steps=2, num_generations=2, max_completion_length=16,
            lr=1e-2, lora=LORA, client=client, callbacks=[lora_snapshot],
            rollout_func=scripted_rollout([solution_completion(relu), GARBAGE]),
        )  # fmt: skip
        assert client.verify_cfg.is_cuda and client.n_submitted == 2
    assert lora_snapshot.unchanged() == []
    assert _metric(result.log_history, "kernel/correct_frac") == [0.5, 0.5]
    assert "rewards/kernel_speed/mean" in result.log_history[0]  # the speed reward function ran on cuda
    assert _metric(result.log_history, "hrd/code_token_frac")
