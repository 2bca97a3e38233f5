"""rewards/reward.py on hand-built Verdicts: every kind, clipping, gating, None without timing, rank rewards, the
beta schedule and RewardConfig validation. Nothing is verified here."""

from __future__ import annotations

import doctest
import math

import pytest

from tritonrl.errors import ConfigError
from tritonrl.rewards import reward as reward_module
from tritonrl.rewards.reward import (
    DEFAULT_STAGE_CREDIT,
    KINDS,
    RewardConfig,
    binary,
    kevin,
    mixed,
    rank_speed_rewards,
    reward,
    speedup_reward,
    staged,
)
from tritonrl.types import FailureKind, Stage, Verdict

FAIL_KIND = {
    Stage.EXTRACT: FailureKind.NO_CODE,
    Stage.PARSE: FailureKind.SYNTAX_ERROR,
    Stage.STATIC: FailureKind.NO_TRITON_KERNEL,
    Stage.LOAD: FailureKind.IMPORT_ERROR,
    Stage.PROVENANCE: FailureKind.TORCH_COMPUTE,
    Stage.CORRECTNESS: FailureKind.WRONG_VALUES,
    Stage.TIMING: FailureKind.TIMEOUT,
}


def verdict(stage: Stage = Stage.DONE, speedup: float | str | None = None) -> Verdict:
    passed = stage is Stage.DONE
    return Verdict("t", passed, stage, None if passed else FAIL_KIND[stage], "", speedup=speedup)  # type: ignore[arg-type]


def test_doctests() -> None:
    result = doctest.testmod(reward_module, optionflags=doctest.ELLIPSIS)
    assert result.attempted >= 10 and result.failed == 0


# --- per-verdict kinds ----------------------------------------------------------------------------------------------


def test_binary_is_one_only_for_a_pass() -> None:
    assert binary(verdict()) == 1.0
    assert [binary(verdict(s)) for s in FAIL_KIND] == [0.0] * len(FAIL_KIND)


def test_staged_default_credit_follows_the_funnel() -> None:
    got = {s.value: staged(verdict(s)) for s in [*FAIL_KIND, Stage.DONE]}
    assert got == {
        "extract": 0.0, "parse": 0.0, "static": 0.0, "load": 0.3, "provenance": 0.3,
        "correctness": 0.5, "timing": 0.7, "done": 1.0,
    }  # fmt: skip


def test_staged_custom_credit_overrides_only_given_stages() -> None:
    cfg = RewardConfig(kind="staged", stage_credit={"load": 0.1, "done": 2.0})
    assert cfg.stage_credit["load"] == 0.1 and cfg.stage_credit["correctness"] == 0.5
    assert reward(verdict(Stage.LOAD), cfg) == 0.1
    assert reward(verdict(), cfg) == 2.0


def test_speedup_is_clipped_on_both_sides() -> None:
    assert speedup_reward(verdict(speedup=1.5), clip=2.0) == 1.5
    assert speedup_reward(verdict(speedup=50.0), clip=2.0) == 2.0
    assert speedup_reward(verdict(speedup=0.25), clip=2.0) == 0.25


def test_speedup_is_gated_on_passing() -> None:
    failed_but_fast = Verdict("t", False, Stage.CORRECTNESS, FailureKind.WRONG_VALUES, "", speedup=5.0)
    assert speedup_reward(failed_but_fast) == 0.0
    assert kevin(failed_but_fast) == 0.0
    assert mixed(failed_but_fast, 0.5) == 0.0


@pytest.mark.parametrize("speedup", [None, float("nan"), float("inf"), 0.0, -1.0, "inf"])
def test_speed_kinds_return_none_for_a_pass_without_a_measured_speedup(speedup: object) -> None:
    v = verdict(speedup=speedup)  # type: ignore[arg-type]
    assert speedup_reward(v) is None
    assert kevin(v) is None
    assert mixed(v, 0.3) is None
    assert reward(v, RewardConfig(kind="speedup")) is None


def test_mixed_without_speed_weight_needs_no_timing() -> None:
    assert mixed(verdict(), 0.0) == 1.0


def test_kevin_is_bonus_plus_clipped_speedup() -> None:
    assert kevin(verdict(speedup=1.5)) == pytest.approx(1.8)
    assert kevin(verdict(speedup=30.0), clip=10.0) == pytest.approx(10.3)
    assert reward(verdict(speedup=30.0), RewardConfig(kind="kevin", speedup_clip=2.0)) == pytest.approx(2.3)


def test_mixed_weights_correctness_and_normalised_speed() -> None:
    assert mixed(verdict(speedup=2.0), 0.25, clip=2.0) == pytest.approx(1.0)
    assert mixed(verdict(speedup=1.0), 0.25, clip=2.0) == pytest.approx(0.75 + 0.25 * 0.5)


def test_reward_dispatches_every_kind() -> None:
    v = verdict(speedup=1.2)
    expected = {"binary": 1.0, "staged": 1.0, "speedup": 1.2, "kevin": 1.5, "mixed": 0.7 + 0.3 * 0.6}
    assert set(expected) == set(KINDS)
    for kind, value in expected.items():
        assert reward(v, RewardConfig(kind=kind)) == pytest.approx(value), kind


def test_binary_and_staged_never_return_none() -> None:
    for kind in ("binary", "staged"):
        assert reward(verdict(), RewardConfig(kind=kind)) is not None


def test_reward_reads_a_verdict_back_from_json() -> None:
    v = Verdict.from_dict(verdict(speedup=float("inf")).to_dict())  # JSON stores inf as the text "inf"
    assert speedup_reward(v) is None


# --- beta schedule ------------------------------------------------------------------------------------------------


def test_linear_beta_schedule_ramps_then_holds() -> None:
    cfg = RewardConfig(kind="mixed", beta_schedule="linear", beta_start=0.1, beta_end=0.5, beta_warmup_steps=4)
    assert [cfg.beta_at(s) for s in (0, 1, 2, 4, 100)] == pytest.approx([0.1, 0.2, 0.3, 0.5, 0.5])
    assert cfg.beta_at(-3) == pytest.approx(0.1)


def test_mixed_reward_follows_the_schedule() -> None:
    cfg = RewardConfig(kind="mixed", beta_schedule="linear", beta_start=0.0, beta_end=1.0, beta_warmup_steps=10)
    v = verdict(speedup=0.5)  # speed term 0.5/2 = 0.25
    assert reward(v, cfg, step=0) == pytest.approx(1.0)
    assert reward(v, cfg, step=5) == pytest.approx(0.5 + 0.5 * 0.25)
    assert reward(v, cfg, step=10) == pytest.approx(0.25)


def test_constant_schedule_ignores_the_step() -> None:
    cfg = RewardConfig(kind="mixed", beta=0.4)
    assert cfg.beta_at(0) == cfg.beta_at(10_000) == 0.4


def test_needs_timing() -> None:
    assert not RewardConfig(kind="staged").needs_timing
    assert RewardConfig(kind="speedup").needs_timing
    assert not RewardConfig(kind="mixed", beta=0.0).needs_timing
    assert RewardConfig(kind="mixed", beta_schedule="linear", beta_start=0.0, beta_end=0.2).needs_timing


# --- config validation ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "kwargs, words",
    [
        ({"kind": "fast"}, "kind='fast'"),
        ({"stage_credit": {"compile": 0.3}}, "unknown stages ['compile']"),
        ({"stage_credit": {"done": 0.5}}, "must exceed every failure credit"),
        ({"stage_credit": {"load": float("nan")}}, "finite"),
        ({"speedup_clip": 0.0}, "speedup_clip=0.0"),
        ({"correct_bonus": -1.0}, "correct_bonus=-1.0"),
        ({"beta": 1.5}, "beta=1.5"),
        ({"beta_schedule": "cosine"}, "beta_schedule='cosine'"),
        ({"beta_schedule": "linear", "beta_warmup_steps": 0}, "beta_warmup_steps=0"),
    ],
)
def test_config_rejects_bad_values_with_value_and_rule(kwargs: dict, words: str) -> None:
    with pytest.raises(ConfigError, match="must") as info:
        RewardConfig(**kwargs)
    assert words in str(info.value)


def test_default_credit_is_not_shared_between_configs() -> None:
    a = RewardConfig()
    a.stage_credit["load"] = 0.9  # frozen dataclass, mutable dict: must not leak into the defaults
    assert RewardConfig().stage_credit["load"] == DEFAULT_STAGE_CREDIT["load"] == 0.3


# --- rank-based speed reward ----------------------------------------------------------------------------------------


def test_rank_incorrect_samples_get_zero() -> None:
    assert rank_speed_rewards([None, None]) == [0.0, 0.0]
    assert rank_speed_rewards([]) == []


def test_rank_plain_ranks_without_winsorization() -> None:
    assert rank_speed_rewards([3.0, 1.0, 2.0], winsor=(0.0, 1.0)) == [1.0, 0.0, 0.5]


def test_rank_ties_share_the_average_rank() -> None:
    assert rank_speed_rewards([2.0, 1.0, 2.0, 2.0], winsor=(0.0, 1.0)) == pytest.approx([2 / 3, 0.0, 2 / 3, 2 / 3])
    assert rank_speed_rewards([1.0, 1.0, 1.0]) == [0.5, 0.5, 0.5]


def test_rank_is_invariant_to_the_size_of_the_speedup() -> None:
    assert rank_speed_rewards([1.0, 1.1, 1.2]) == rank_speed_rewards([1.0, 1.1, 1e9])


def test_rank_winsorization_saturates_the_extremes() -> None:
    speedups = [float(i) for i in range(11)]  # q = 0, 0.1, ..., 1
    got = rank_speed_rewards(speedups, winsor=(0.2, 0.8))
    assert got[:3] == [0.0, 0.0, 0.0] and got[-3:] == [1.0, 1.0, 1.0]
    assert got[5] == pytest.approx(0.5)
    assert all(a <= b for a, b in zip(got, got[1:], strict=False))


def test_rank_single_correct_sample_is_neutral() -> None:
    assert rank_speed_rewards([None, 4.0, None]) == [0.0, 0.5, 0.0]


@pytest.mark.parametrize("winsor", [(0.5, 0.5), (-0.1, 0.9), (0.1, 1.1), (0.9, 0.1)])
def test_rank_rejects_bad_winsor(winsor: tuple[float, float]) -> None:
    with pytest.raises(ValueError, match="winsor"):
        rank_speed_rewards([1.0, 2.0], winsor=winsor)


def test_rank_rejects_nonfinite_speedups() -> None:
    with pytest.raises(ValueError, match="finite"):
        rank_speed_rewards([1.0, math.nan])
