"""GRPO with LoRA on the tiny offline model, every reward a real verdict from the sandboxed CPU verifier.

With max_completion_length=16 a random model cannot write a kernel, so every sampled completion fails and the group
advantage is 0 (no update). The update tests therefore script the rollouts through TRL's `rollout_func`: each group
holds the bundled relu solution and a garbage answer, the verifier passes one and rejects the other, and the
resulting +/- advantages must move every LoRA parameter.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

pytest.importorskip("trl")
pytest.importorskip("peft")

import torch  # noqa: E402

from tritonrl.errors import ConfigError  # noqa: E402
from tritonrl.rewards.client import VerifierClient  # noqa: E402
from tritonrl.tasks.loader import builtin_task  # noqa: E402
from tritonrl.train.config import preset, to_verify_config  # noqa: E402
from tritonrl.train.data import solution_completion  # noqa: E402
from tritonrl.train.grpo import decode_with_offsets, group_advantages, run_grpo  # noqa: E402
from tritonrl.train.settings import LoraSettings, TrainSettings  # noqa: E402
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


def _train(steps: int, lr: float = 1e-5, **more) -> TrainSettings:
    """The tests' GRPO settings: groups of 2, 16-token completions."""
    return TrainSettings(steps=steps, learning_rate=lr, num_generations=2, max_completion_length=16, **more)


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
        tiny_model_dir, [relu], tmp_path / "grpo", preset("baseline", hrd=hrd), _train(steps=2, lr=1e-2),
        lora=LORA, client=relu_client, callbacks=[lora_snapshot], rollout_func=rollout,
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


def _completion_logprob(model_dir: str, task, text: str) -> float:
    """Mean per-token log-probability of `text` as the answer to `task`'s GRPO prompt (the rollout's tokenisation)."""
    from tritonrl.models import load_causal_lm, load_tokenizer
    from tritonrl.train.data import rl_row

    tok, model = load_tokenizer(model_dir), load_causal_lm(model_dir, dtype=torch.float32)
    prompt = tok(tok.apply_chat_template(rl_row(task)["prompt"], add_generation_prompt=True, tokenize=False),
                 add_special_tokens=False)["input_ids"]  # fmt: skip
    answer = tok(text, add_special_tokens=False)["input_ids"] + [tok.eos_token_id]
    ids = torch.tensor([prompt + answer])
    with torch.no_grad():
        logits = model(ids).logits[0, len(prompt) - 1 : -1].float()
    return logits.log_softmax(-1).gather(1, torch.tensor(answer)[:, None]).mean().item()


@pytest.mark.parametrize("hrd", [False, True], ids=["plain", "hrd"])
def test_grpo_raises_the_rewarded_answer_against_the_unrewarded_one(tiny_model_dir, tmp_path, relu_client, hrd):
    """The sign of the whole path (verdict -> reward -> advantage -> loss -> update): each group holds the verified
    solution (reward 1) and a wrong answer (reward 0), so the solution's likelihood must rise relative to the wrong
    one's. A flipped advantage, or HRD token weights of the wrong sign, would make RL unlearn what the verifier
    accepts, and every other test here would still pass."""
    relu = builtin_task("relu")
    solution = solution_completion(relu)
    before = {t: _completion_logprob(tiny_model_dir, relu, t) for t in (solution, GARBAGE)}
    result = run_grpo(
        tiny_model_dir, [relu], tmp_path / "grpo", preset("baseline", hrd=hrd), _train(steps=3, lr=1e-3),
        lora=LORA, client=relu_client, rollout_func=scripted_rollout([solution, GARBAGE]),
        merged_dir=tmp_path / "merged",
    )  # fmt: skip
    assert _metric(result.log_history, "rewards/kernel_binary/mean") == [0.5, 0.5, 0.5]
    after = {t: _completion_logprob(str(tmp_path / "merged"), relu, t) for t in (solution, GARBAGE)}
    gained = {t: after[t] - before[t] for t in after}
    assert gained[solution] > 0 and gained[solution] > gained[GARBAGE], (before, after)


def test_grpo_sampled_completions_are_verified(tiny_model_dir, tmp_path, relu_client):
    relu = builtin_task("relu")
    result = run_grpo(tiny_model_dir, [relu], tmp_path / "grpo", preset("baseline"), _train(steps=2), lora=LORA,
                      client=relu_client)  # fmt: skip
    assert relu_client.n_submitted + relu_client.n_cached >= 4  # 2 steps x 2 completions reached the verifier
    # 16 random tokens never hold a kernel: the real verdicts all fail and the logged reward says so.
    assert _metric(result.log_history, "rewards/kernel_binary/mean") == [0.0, 0.0]
    assert _metric(result.log_history, "kernel/stage/done_frac") == [0.0, 0.0]
    log = json.loads((Path(result.out_dir) / "train_log.json").read_text())
    assert log["verify"]["n_variants"] == 0  # baseline switched multi_input off
    assert log["rounds"] == 2 and log["rounds_without_signal"] == 2  # every group all 0: nothing to learn from


@pytest.mark.slow
def test_grpo_curriculum_stream_gets_feedback(tiny_model_dir, tmp_path):
    tasks = [builtin_task("relu"), builtin_task("linear_bias_relu")]
    ext = preset("baseline", curriculum=True, learning_zone=True)
    with client_for(tasks, ext) as client:
        result = run_grpo(tiny_model_dir, tasks, tmp_path / "grpo", ext, _train(steps=2), lora=LORA, client=client,
                          rollout_func=scripted_rollout([solution_completion(tasks[0]), GARBAGE]))  # fmt: skip
    state = result.sampler_state
    assert state is not None and sum(state["n_drawn"].values()) >= 2
    assert sum(state["zone"]["trials"].values()) > 0  # verdicts reached the learning-zone estimates
    assert _metric(result.log_history, "curriculum/l2_fraction") == pytest.approx([0.1, 0.1])
    assert (Path(result.out_dir) / "sampler_state.json").is_file()


def test_grpo_continues_an_sft_adapter(tiny_model_dir, tmp_path, lora_snapshot, relu_client):
    from tritonrl.models import resolve_model
    from tritonrl.train.sft import run_sft

    relu = builtin_task("relu")
    sft = run_sft(
        tiny_model_dir, [relu], tmp_path / "sft", TrainSettings(steps=1, learning_rate=1e-2, batch_size=1), lora=LORA
    )
    result = run_grpo(sft, [relu], tmp_path / "grpo", preset("baseline"), _train(steps=1, lr=1e-2), lora=LORA,
                      client=relu_client, callbacks=[lora_snapshot],
                      rollout_func=scripted_rollout([solution_completion(relu), GARBAGE]))  # fmt: skip
    log = json.loads((Path(result.out_dir) / "train_log.json").read_text())
    assert log["mode"] == "continue adapter" and log["base_model"] == str(Path(tiny_model_dir).resolve())
    assert lora_snapshot.before and lora_snapshot.unchanged() == []
    assert resolve_model(result.out_dir).base_path == str(Path(tiny_model_dir).resolve())


def test_grpo_config_carries_the_loss_settings(tmp_path):
    from tritonrl.train.grpo import _grpo_config
    from tritonrl.train.model_io import RunOutputs

    train = TrainSettings(steps=1, num_generations=4, max_completion_length=64, loss_type="dr_grpo",
                          scale_rewards="none", mask_truncated_completions=True, reward_weights=[1.0],
                          steps_per_generation=3)  # fmt: skip
    args = _grpo_config(tmp_path, train, lr=1e-5, batch_size=4, shuffle=True, outputs=RunOutputs(save_steps=5))
    assert (args.steps_per_generation, args.generation_batch_size) == (3, 12)  # one generate call for 3 steps
    accumulated = dataclasses.replace(train, grad_accum=2)
    args = _grpo_config(tmp_path, accumulated, lr=1e-5, batch_size=4, shuffle=True, outputs=RunOutputs(save_steps=5))
    assert (args.steps_per_generation, args.generation_batch_size) == (6, 24)  # TRL counts micro-batches
    assert (args.loss_type, args.scale_rewards, args.mask_truncated_completions) == ("dr_grpo", "none", True)
    assert (args.reward_weights, args.num_generations, args.max_completion_length) == ([1.0], 4, 64)
    assert (args.save_steps, args.report_to) == (5, [])


def test_one_reward_weight_per_reward_function(tiny_model_dir, tmp_path, relu_client):
    with pytest.raises(ConfigError, match=r"2 weight\(s\) for 1 reward function"):
        run_grpo(tiny_model_dir, [builtin_task("relu")], tmp_path, preset("baseline"),
                 _train(steps=1, reward_weights=[1.0, 0.5]), client=relu_client)  # fmt: skip


def test_feedback_reward_survives_pickling(relu_client):
    """TRL's async GRPO pickles reward functions into its rollout process: the copy must still score and feed back."""
    import asyncio
    import pickle

    from tritonrl.rewards.reward import RewardConfig
    from tritonrl.rewards.trl_adapter import make_reward_funcs
    from tritonrl.train.curriculum import LearningZoneSampler, TaskSampler
    from tritonrl.train.grpo import FeedbackReward

    relu = builtin_task("relu")
    sampler = TaskSampler([relu], zone=LearningZoneSampler(["relu"]), seed=0)
    (func,) = make_reward_funcs(relu_client, RewardConfig(), kinds=("reward",))
    restored = pickle.loads(pickle.dumps(FeedbackReward(func, relu_client, sampler)))
    try:
        assert restored.__name__ == "kernel_binary" and restored.client is not relu_client
        prompt = [{"role": "user", "content": "relu"}]
        values = asyncio.run(restored(prompts=[prompt, prompt], completions=[solution_completion(relu), GARBAGE],
                                      task_id=["relu", "relu"]))  # fmt: skip
        assert values == [1.0, 0.0]
        assert restored.sampler.zone.trials["relu"] == 2 and sampler.zone.trials["relu"] == 0  # the copy's sampler
    finally:
        restored.client.close()


def test_a_client_that_ignores_the_extensions_is_refused(tiny_model_dir, tmp_path):
    relu = builtin_task("relu")
    with VerifierClient({"relu": relu}, VerifyConfig(device="cpu")) as hardened:  # multi-input and sandbox on
        with pytest.raises(ConfigError, match="n_variants"):
            run_grpo(tiny_model_dir, [relu], tmp_path, preset("baseline"), _train(steps=1), client=hardened)


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


def _hrd_batch(tok):
    """Token ids and mask of a group of two: a plan + code answer, and an answer without code."""
    import torch

    texts = ["Plan: one block.\n```python\nclass ModelNew:\n    pass\n```", "no code at all"]
    rows = [tok(t, add_special_tokens=False)["input_ids"] + [tok.eos_token_id] for t in texts]
    width = max(map(len, rows)) + 2
    ids = torch.tensor([r + [tok.pad_token_id] * (width - len(r)) for r in rows])
    mask = torch.tensor([[1] * len(r) + [0] * (width - len(r)) for r in rows])
    return rows, ids, mask


def _hrd_trainer(tok, rewards, plan_col):
    """The attributes HRDGRPOTrainer._token_advantages reads, without building a trainer."""
    from collections import defaultdict
    from types import SimpleNamespace

    import torch

    return SimpleNamespace(
        model=SimpleNamespace(training=True), num_generations=2, num_generations_eval=2, scale_rewards="none",
        _rewards_per_func=torch.tensor(rewards), _code_col=0, _plan_col=plan_col, _alpha=0.1,
        _no_code_penalty=0.1, accelerator=SimpleNamespace(process_index=0), processing_class=tok,
        _metrics={"train": defaultdict(list)},
    )  # fmt: skip


def test_hrd_token_advantages_split_code_and_plan(tiny_model_dir):
    """Code tokens get the code reward's group advantage, plan tokens alpha x the plan (speed) reward's."""
    from transformers import AutoTokenizer

    from tritonrl.train.grpo import HRDGRPOTrainer

    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    rows, ids, mask = _hrd_batch(tok)
    trainer = _hrd_trainer(tok, [[1.0, 2.0], [0.0, 0.0]], plan_col=1)
    adv = HRDGRPOTrainer._token_advantages(trainer, ids, mask)  # code adv (+.5, -.5), plan adv (+1, -1)
    first = adv[0, : len(rows[0])].tolist()
    assert {round(x, 6) for x in first} == {0.5, 0.1} and first[0] == pytest.approx(0.1)  # starts with plan
    # No code: every token gets min(code adv, 0) - penalty = -0.6, not alpha x the speed advantage.
    assert adv[1, : len(rows[1])].tolist() == pytest.approx([-0.6] * len(rows[1]))
    assert adv[:, -2:].abs().sum() == 0  # padding
    assert 0 < trainer._metrics["train"]["hrd/code_token_frac"][0] < 1


def test_hrd_without_a_speed_reward_gives_plan_tokens_the_correctness_advantage(tiny_model_dir):
    """Every CPU run: one reward function. Plan tokens used to get 0 and a no-code answer 0 on every token."""
    from transformers import AutoTokenizer

    from tritonrl.train.grpo import HRDGRPOTrainer

    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    rows, ids, mask = _hrd_batch(tok)
    adv = HRDGRPOTrainer._token_advantages(_hrd_trainer(tok, [[1.0], [0.0]], plan_col=None), ids, mask)
    assert adv[0, : len(rows[0])].tolist() == pytest.approx([0.5] * len(rows[0]))  # plan and code alike
    assert adv[1, : len(rows[1])].tolist() == pytest.approx([-0.6] * len(rows[1]))  # the format failure pays
    # A group where nobody wrote code: zero group advantage, and still a penalty on every token.
    adv = HRDGRPOTrainer._token_advantages(_hrd_trainer(tok, [[0.0], [0.0]], plan_col=None), ids, mask)
    assert adv[1, : len(rows[1])].tolist() == pytest.approx([-0.1] * len(rows[1]))


@pytest.mark.gpu
def test_grpo_on_gpu_with_cuda_verifier_and_all_grpo_extensions(tiny_model_dir, tmp_path, lora_snapshot):
    """bf16 training next to a CUDA verifier pool (spawned), with HRD, multi-input, sandbox and the speed reward."""
    relu = builtin_task("relu")
    ext = preset("baseline", multi_input=True, strict_sandbox=True, calibrated_timing=True, hrd=True)
    with client_for([relu], ext, device="cuda", workers=1) as client:
        result = run_grpo(
            tiny_model_dir, [relu], tmp_path / "grpo", ext, _train(steps=2, lr=1e-2), lora=LORA, client=client,
            callbacks=[lora_snapshot], rollout_func=scripted_rollout([solution_completion(relu), GARBAGE]),
        )  # fmt: skip
        assert client.verify_cfg.is_cuda and client.n_submitted == 2
    assert lora_snapshot.unchanged() == []
    assert _metric(result.log_history, "kernel/correct_frac") == [0.5, 0.5]
    assert "rewards/kernel_speed/mean" in result.log_history[0]  # the speed reward function ran on cuda
    assert _metric(result.log_history, "hrd/code_token_frac")


def test_grpo_skips_steps_whose_gradients_are_not_finite(
    tiny_model_dir, tmp_path, lora_snapshot, relu_client, poison_grads
):
    """The H100 run's failure (grad_norm nan at step 2, every weight NaN after it): now skipped and recorded."""
    relu = builtin_task("relu")
    result = run_grpo(tiny_model_dir, [relu], tmp_path / "grpo", preset("baseline"), _train(steps=2, lr=1e-2),
                      lora=LORA, client=relu_client, callbacks=[poison_grads, lora_snapshot],
                      rollout_func=scripted_rollout([solution_completion(relu), GARBAGE]))  # fmt: skip
    log = json.loads((Path(result.out_dir) / "train_log.json").read_text())
    assert log["skipped_nonfinite_steps"] == 2
    assert lora_snapshot.before and sorted(lora_snapshot.unchanged()) == sorted(lora_snapshot.before)


@pytest.mark.parametrize("curriculum", [False, True], ids=["shuffled", "curriculum"])
def test_one_generation_round_serves_steps_per_generation_steps(tiny_model_dir, tmp_path, curriculum):
    relu = builtin_task("relu")
    ext = preset("baseline", curriculum=curriculum)
    rollout = scripted_rollout([solution_completion(relu), GARBAGE])
    with client_for([relu], ext) as client:
        # relu twice: a generation round of 2 steps takes 2 prompts, and an epoch needs one whole round
        result = run_grpo(tiny_model_dir, [relu, relu], tmp_path / "grpo", ext,
                          _train(steps=4, lr=1e-3, steps_per_generation=2), lora=LORA, client=client,
                          rollout_func=rollout)  # fmt: skip
    assert max(h.get("step", 0) for h in result.log_history) == 4
    # Two generation rounds of two groups each for four steps; each distinct completion verified once.
    assert client.n_submitted == 2
    assert len(_metric(result.log_history, "kernel/verify_s")) == 2


def test_too_few_tasks_for_one_generation_round_is_refused_before_any_work(tiny_model_dir, tmp_path):
    relu = builtin_task("relu")
    with pytest.raises(ConfigError, match=r"1 task\(s\) for a generation round of 2 prompts.*0 steps"):
        run_grpo(tiny_model_dir, [relu], tmp_path / "grpo", preset("baseline"),
                 _train(steps=4, steps_per_generation=2), lora=LORA)  # fmt: skip
    assert not (tmp_path / "grpo").exists()
