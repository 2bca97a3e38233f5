"""verl's compute_score on the builtin relu task (real verification through the module-level client)."""

from __future__ import annotations

import asyncio
import math
from pathlib import Path

import pytest

from tritonrl.errors import ConfigError, TaskError
from tritonrl.rewards import verl_adapter
from tritonrl.rewards.verl_adapter import compute_score, compute_score_async
from tritonrl.tasks.loader import BUILTIN_DIR, builtin_task
from tritonrl.verify.config import VerifyConfig

RELU = builtin_task("relu")
SOLUTION = Path(RELU.solution_path).read_text()
FALLBACK = (BUILTIN_DIR / "examples" / "relu" / "torch_fallback.py").read_text()
REWARD_KWARGS = {"suite": "builtin", "workers": 1}  # what reward.custom_reward_function.reward_kwargs would carry


@pytest.fixture(scope="module", autouse=True)
def _shutdown_pools():
    yield
    verl_adapter.close_clients()


def test_passing_solution_scores_one() -> None:
    out = compute_score("kernelbench", SOLUTION, "relu", {"index": 0, "split": "train"}, **REWARD_KWARGS)
    assert out["score"] == 1.0 and out["passed"] is True
    assert (out["stage"], out["failure"]) == ("done", "")
    assert math.isnan(out["speedup"]) and out["timed"] is False  # CPU: not timed, and not shown as 0


def test_reward_kind_from_extra_info() -> None:
    out = compute_score("kernelbench", FALLBACK, "relu", {"reward_kind": "staged"}, **REWARD_KWARGS)
    assert out["score"] == 0.3 and out["passed"] is False
    assert (out["stage"], out["failure"]) == ("provenance", "torch_compute")


def test_reward_config_from_reward_kwargs() -> None:
    kwargs = {**REWARD_KWARGS, "reward_config": {"kind": "staged", "stage_credit": {"provenance": 0.1}}}
    assert compute_score("kernelbench", FALLBACK, "relu", None, **kwargs)["score"] == 0.1


def test_one_client_per_process_is_reused() -> None:
    compute_score("kernelbench", SOLUTION, "relu", None, **REWARD_KWARGS)
    (client,) = verl_adapter._CLIENTS.values()
    submitted = client.n_submitted
    again = asyncio.run(compute_score_async("kernelbench", SOLUTION, "relu", None, **REWARD_KWARGS))
    assert again["score"] == 1.0
    assert client.n_submitted == submitted and len(verl_adapter._CLIENTS) == 1
    # rewards never pay for the torch.compile baseline (a reporting number; minutes per task on first use)
    assert client.verify_cfg == VerifyConfig.for_rewards("cpu") and not client.verify_cfg.compile_baseline


def test_ground_truth_may_be_the_reference_source() -> None:
    # relu's Model takes no constructor arguments: the signature check can only know that from the given source
    takes_two = "import torch.nn as nn\n\nclass ModelNew(nn.Module):\n    def __init__(self, a, b):\n        pass\n"
    out = compute_score("kernelbench", takes_two, RELU.source, None, reward_kind="staged", **REWARD_KWARGS)
    assert (out["score"], out["stage"], out["failure"]) == (0.0, "parse", "bad_signature")


def test_speed_kind_on_cpu_is_refused_before_verifying() -> None:
    with pytest.raises(ConfigError, match="needs timing"):
        compute_score("kernelbench", SOLUTION, "relu", {"reward_kind": "speedup"}, **REWARD_KWARGS)


def test_unknown_task_id_names_the_suite() -> None:
    with pytest.raises(TaskError, match="not a task of suite 'builtin'"):
        compute_score("kernelbench", SOLUTION, "no_such_task", None, **REWARD_KWARGS)


def test_step_comes_from_extra_info_first() -> None:
    assert verl_adapter.training_step({"step": 7, "global_steps": 3}, samples_per_step=2) == 7
    assert verl_adapter.training_step({"global_steps": 3}, samples_per_step=2) == 3  # verl's meta_info name
    assert verl_adapter.training_step({}, samples_per_step=None) is None


def test_step_is_counted_from_calls_without_step_information() -> None:
    first = verl_adapter.training_step(None, samples_per_step=1)
    steps = [verl_adapter.training_step(None, samples_per_step=1) for _ in range(3)]
    assert steps == [first + 1, first + 2, first + 3]  # one step per call; the schedule advances


def test_the_result_reports_an_advancing_step() -> None:
    kwargs = {**REWARD_KWARGS, "samples_per_step": 1}
    a = compute_score("kernelbench", SOLUTION, "relu", None, **kwargs)
    b = compute_score("kernelbench", SOLUTION, "relu", None, **kwargs)
    assert b["step"] == a["step"] + 1 and b["score"] == 1.0
    assert compute_score("kernelbench", SOLUTION, "relu", {"global_steps": 42}, **kwargs)["step"] == 42


def test_a_linear_beta_schedule_without_step_information_is_refused() -> None:
    # On cuda the speed kind is allowed; the schedule check comes before anything is verified.
    linear = {"kind": "mixed", "beta_schedule": "linear", "beta_start": 0.0, "beta_end": 0.3}
    with pytest.raises(ConfigError, match="samples_per_step"):
        compute_score("kernelbench", SOLUTION, "relu", None, suite="builtin", device="cuda", reward_config=linear)
