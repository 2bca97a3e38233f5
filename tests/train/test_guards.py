"""A step with NaN/inf gradients is skipped (weights and optimizer state as before), counted, and a run of them
stops training; wired into SFT (and GRPO, which builds its trainer with the same guard)."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import pytest

pytest.importorskip("trl")

import torch  # noqa: E402
from transformers import TrainerControl  # noqa: E402

from tritonrl.models import load_causal_lm  # noqa: E402
from tritonrl.tasks.loader import builtin_task  # noqa: E402
from tritonrl.train.guards import NonFiniteGradGuard, NoSignalWatch, grads_finite  # noqa: E402
from tritonrl.train.settings import LoraSettings, TrainSettings  # noqa: E402
from tritonrl.train.sft import run_sft  # noqa: E402


def _step(guard: NonFiniteGradGuard, model: torch.nn.Module, opt: torch.optim.Optimizer, bad: bool) -> TrainerControl:
    opt.zero_grad()
    model(torch.ones(1, 4)).sum().backward()
    if bad:
        model.weight.grad[0, 0] = float("nan")
    control = guard.on_pre_optimizer_step(None, SimpleNamespace(global_step=0), TrainerControl(), model=model,
                                          optimizer=opt)  # fmt: skip
    opt.step()
    return control


def test_a_nan_gradient_leaves_weights_and_moments_as_they_were():
    model = torch.nn.Linear(4, 3)
    opt = torch.optim.AdamW(model.parameters(), lr=0.1)
    guard = NonFiniteGradGuard()
    _step(guard, model, opt, bad=False)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    moments = opt.state[model.weight]["exp_avg"].clone()
    control = _step(guard, model, opt, bad=True)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert torch.equal(opt.state[model.weight]["exp_avg"], moments)
    assert guard.skipped == 1 and not control.should_training_stop
    _step(guard, model, opt, bad=False)  # a good step applies and resets the run
    assert guard.in_a_row == 0 and not torch.equal(before["weight"], model.weight)


def test_consecutive_bad_steps_stop_training():
    model = torch.nn.Linear(4, 3)
    guard = NonFiniteGradGuard(max_consecutive=2)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    assert not _step(guard, model, opt, bad=True).should_training_stop
    assert _step(guard, model, opt, bad=True).should_training_stop
    assert torch.isfinite(model.weight).all()
    with pytest.raises(ValueError, match="max_consecutive"):
        NonFiniteGradGuard(max_consecutive=0)


def test_grads_finite_sees_inf_and_ignores_missing_grads():
    a, b = torch.nn.Parameter(torch.ones(2)), torch.nn.Parameter(torch.ones(2))
    assert grads_finite([a, b])
    a.grad = torch.tensor([1.0, float("inf")])
    assert not grads_finite([a, b])


def test_sft_with_nan_gradients_saves_the_untouched_finite_model(tiny_model_dir, tmp_path, poison_grads):
    settings = TrainSettings(steps=2, learning_rate=1e-2, batch_size=1)
    out = Path(run_sft(tiny_model_dir, [builtin_task("relu")], tmp_path / "sft", settings,
                       lora=LoraSettings(enabled=False), callbacks=[poison_grads]))  # fmt: skip
    assert json.loads((out / "train_log.json").read_text())["skipped_nonfinite_steps"] == 2
    trained, start = load_causal_lm(str(out)), load_causal_lm(tiny_model_dir)
    start_weights = dict(start.named_parameters())
    for name, p in trained.named_parameters():
        assert torch.isfinite(p).all(), name
        assert torch.equal(p, start_weights[name]), name


def test_rounds_whose_groups_all_scored_the_same_are_counted_and_the_first_is_warned(caplog):
    watch = NoSignalWatch()
    state = SimpleNamespace(global_step=1)
    for logs in ({"loss": 0.1}, {"frac_reward_zero_std": 1.0, "reward": 0.0}, {"frac_reward_zero_std": 0.5},
                 {"frac_reward_zero_std": 1.0, "reward": 0.0}):  # fmt: skip
        watch.on_log(None, state, TrainerControl(), logs=logs)
    assert (watch.rounds, watch.silent) == (3, 2)  # a log entry without the spread is not a generation round
    assert caplog.text.count("every group of this generation round scored the same") == 1
    watch.on_train_end(None, state, TrainerControl())
    assert "2 of 3 generation rounds had no learning signal" in caplog.text
