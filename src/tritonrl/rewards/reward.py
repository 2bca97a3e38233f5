"""Rewards as pure functions of a Verdict: binary, staged credit, clipped speedup, Kevin's and a correctness/speed mix.

`reward(verdict, cfg, step)` dispatches on `RewardConfig.kind`; `rank_speed_rewards` ranks a GRPO group by speed
(TritonRL's hierarchical reward decomposition, per-token, is `rewards/hrd.py`). Nothing here verifies, imports torch
or knows about a trainer: the adapters (`trl_adapter.py`, `verl_adapter.py`) feed these functions verdicts.

A speed term needs a measured speedup. A verdict without one (the CPU interpreter never times) makes every speed
reward of a *passing* verdict `None`, never 0: 0 would read as "infinitely slow" and 1 as "as fast as PyTorch".
"""

from __future__ import annotations

import bisect
import dataclasses
import math
from collections.abc import Mapping, Sequence
from dataclasses import field

from tritonrl.errors import ConfigError
from tritonrl.types import Stage, Verdict

KINDS = ("binary", "staged", "speedup", "kevin", "mixed")
SPEED_KINDS = frozenset({"speedup", "kevin", "mixed"})  # kinds whose value needs a measured speedup
BETA_SCHEDULES = ("constant", "linear")

# Reward for a verdict that STOPPED at each stage (failed there); "done" is the reward for a passing verdict.
# From the seeds' staged-evaluation table (shared/seeds/final_presentation.md, "Reward on Fail": AST 0.0,
# compile 0.3, tiny run 0.5, full run 0.7, timing 1.0), mapped onto our funnel: extract/parse/static are the AST
# check (0.0); load is "compile" (0.3); provenance (ran, but the work was not done by its own Triton kernels) earns
# no more than a kernel that did not load (0.3), so a torch fallback never beats an honest compile; correctness
# covers the tiny and the full run (0.5); timing is ours: correct on every case but the timing stage failed (0.7),
# below a verified pass because a failed timing can be a flagged implausible speedup.
DEFAULT_STAGE_CREDIT: dict[str, float] = {
    Stage.EXTRACT.value: 0.0,
    Stage.PARSE.value: 0.0,
    Stage.STATIC.value: 0.0,
    Stage.LOAD.value: 0.3,
    Stage.PROVENANCE.value: 0.3,
    Stage.CORRECTNESS.value: 0.5,
    Stage.TIMING.value: 0.7,
    Stage.DONE.value: 1.0,
}


@dataclasses.dataclass(frozen=True)
class RewardConfig:
    kind: str = field(
        default="binary",
        metadata={
            "help": f"One of {KINDS}. binary: 1 if the verdict passed (TritonRL R_correct; the default, because "
            "partial credit flattened the landscape in the seeds' run). staged: stage_credit. speedup: "
            "clip(speedup, 0, speedup_clip) if passed (TritonRL R_speedup). kevin: correct_bonus*correct + "
            "clipped speedup*correct (Kevin-32B). mixed: (1-beta)*correct + beta*clipped speedup/speedup_clip."
        },
    )
    stage_credit: dict[str, float] = field(
        default_factory=lambda: dict(DEFAULT_STAGE_CREDIT),
        metadata={
            "help": "kind=staged: the reward of a verdict that stopped (failed) at each stage, keyed by stage name "
            "(extract, parse, static, load, provenance, correctness, timing); 'done' is the reward of a passing "
            "verdict and must be the largest. Stages left out keep their defaults "
            f"{DEFAULT_STAGE_CREDIT}."
        },
    )
    speedup_clip: float = field(
        default=2.0,
        metadata={
            "help": "Upper clip of the speedup in every speed term (TritonRL uses 2.0, Dr.Kernel 3.0). Clipping "
            "bounds what a timing exploit can earn."
        },
    )
    correct_bonus: float = field(default=0.3, metadata={"help": "kind=kevin: reward for correctness (Kevin: 0.3)."})
    beta: float = field(
        default=0.3, metadata={"help": "kind=mixed, beta_schedule=constant: weight of speed vs correctness, in [0, 1]."}
    )
    beta_schedule: str = field(
        default="constant",
        metadata={
            "help": f"One of {BETA_SCHEDULES}. linear: beta goes from beta_start to beta_end over "
            "beta_warmup_steps training steps, then stays at beta_end (learn correctness first, then speed)."
        },
    )
    beta_start: float = field(default=0.0, metadata={"help": "beta_schedule=linear: beta at step 0."})
    beta_end: float = field(default=0.3, metadata={"help": "beta_schedule=linear: beta from beta_warmup_steps on."})
    beta_warmup_steps: int = field(default=100, metadata={"help": "beta_schedule=linear: length of the ramp."})

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ConfigError(f"kind={self.kind!r}: must be one of {KINDS}.")
        credit = dict(self.stage_credit or {})
        unknown = sorted(set(credit) - set(DEFAULT_STAGE_CREDIT))
        if unknown:
            raise ConfigError(
                f"stage_credit has unknown stages {unknown}: keys must be stage names {list(DEFAULT_STAGE_CREDIT)}."
            )
        credit = {**DEFAULT_STAGE_CREDIT, **{k: float(v) for k, v in credit.items()}}
        if not all(math.isfinite(v) for v in credit.values()):
            raise ConfigError(f"stage_credit={credit}: every credit must be a finite number.")
        failing = max(v for k, v in credit.items() if k != Stage.DONE.value)
        if credit[Stage.DONE.value] <= failing:
            raise ConfigError(
                f"stage_credit['done']={credit['done']} must exceed every failure credit (max {failing}); "
                "otherwise failing pays as much as passing. Raise 'done' or lower the others."
            )
        object.__setattr__(self, "stage_credit", credit)
        if not (math.isfinite(self.speedup_clip) and self.speedup_clip > 0):
            raise ConfigError(f"speedup_clip={self.speedup_clip}: must be a positive finite number; try 2.0.")
        if not (math.isfinite(self.correct_bonus) and self.correct_bonus >= 0):
            raise ConfigError(f"correct_bonus={self.correct_bonus}: must be >= 0; Kevin uses 0.3.")
        for name in ("beta", "beta_start", "beta_end"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ConfigError(f"{name}={value}: must be in [0, 1] (the weight of speed vs correctness).")
        if self.beta_schedule not in BETA_SCHEDULES:
            raise ConfigError(f"beta_schedule={self.beta_schedule!r}: must be one of {BETA_SCHEDULES}.")
        if self.beta_schedule == "linear" and self.beta_warmup_steps < 1:
            raise ConfigError(
                f"beta_warmup_steps={self.beta_warmup_steps}: must be >= 1 with beta_schedule='linear'; "
                "use beta_schedule='constant' for no ramp."
            )

    @property
    def needs_timing(self) -> bool:
        """Whether this kind can return None for a passing verdict without a measured speedup."""
        return self.kind in SPEED_KINDS and not (self.kind == "mixed" and self._max_beta() == 0.0)

    def _max_beta(self) -> float:
        return self.beta if self.beta_schedule == "constant" else max(self.beta_start, self.beta_end)

    def beta_at(self, step: int) -> float:
        """The speed weight of kind=mixed at a training step.

        >>> cfg = RewardConfig(kind="mixed", beta_schedule="linear", beta_start=0.0, beta_end=0.5, beta_warmup_steps=10)
        >>> [cfg.beta_at(s) for s in (0, 5, 10, 50)]
        [0.0, 0.25, 0.5, 0.5]
        >>> RewardConfig(kind="mixed", beta=0.2).beta_at(1000)
        0.2
        """
        if self.beta_schedule == "constant":
            return self.beta
        frac = min(max(step, 0), self.beta_warmup_steps) / self.beta_warmup_steps
        return self.beta_start + (self.beta_end - self.beta_start) * frac


# --- per-verdict rewards ------------------------------------------------------------------------------------------


def binary(v: Verdict) -> float:
    """TritonRL's correctness reward: 1.0 if the verdict passed (correct and legitimate), else 0.0.

    >>> from tritonrl.types import FailureKind
    >>> binary(Verdict("relu", True, Stage.DONE, None, "ok")), binary(
    ...     Verdict("relu", False, Stage.PROVENANCE, FailureKind.TORCH_COMPUTE, "torch.relu"))
    (1.0, 0.0)
    """
    return 1.0 if v.passed else 0.0


def staged(v: Verdict, credit: Mapping[str, float] | None = None) -> float:
    """Staged credit: the reward of the stage the verdict stopped at (`credit["done"]` when it passed).

    Args:
        v: the verdict.
        credit: stage name -> reward; missing stages use DEFAULT_STAGE_CREDIT (normally `RewardConfig.stage_credit`).

    >>> from tritonrl.types import FailureKind
    >>> staged(Verdict("relu", False, Stage.PARSE, FailureKind.SYNTAX_ERROR, "line 3"))
    0.0
    >>> staged(Verdict("relu", False, Stage.CORRECTNESS, FailureKind.WRONG_VALUES, "max err 1.0"))
    0.5
    >>> staged(Verdict("relu", True, Stage.DONE, None, "ok"), {"done": 2.0})
    2.0
    """
    table = {**DEFAULT_STAGE_CREDIT, **(credit or {})}
    return float(table[Stage.DONE.value] if v.passed else table[Stage(v.stage).value])


def speedup_reward(v: Verdict, clip: float = 2.0) -> float | None:
    """TritonRL's speed reward: clip(speedup, 0, clip) for a passing verdict, 0.0 for a failing one.

    A passing verdict without a measured speedup (CPU, or timing skipped) gives None: "not applicable" (TRL drops
    None from the reward), because 0.0 would say "slow" and punish correct kernels for where they were verified.
    A non-finite or non-positive speedup counts as not measured (`Verdict.speedup_of`).

    >>> speedup_reward(Verdict("relu", True, Stage.DONE, None, "ok", speedup=1.4))
    1.4
    >>> speedup_reward(Verdict("relu", True, Stage.DONE, None, "ok", speedup=9.0), clip=2.0)
    2.0
    >>> speedup_reward(Verdict("relu", True, Stage.DONE, None, "ok")) is None  # CPU: not timed
    True
    >>> speedup_reward(Verdict("relu", False, Stage.CORRECTNESS, None, "wrong", speedup=5.0))  # gated
    0.0
    """
    if not v.passed:
        return 0.0
    s = v.speedup_of()
    return None if s is None else min(max(s, 0.0), clip)


def kevin(v: Verdict, *, bonus: float = 0.3, clip: float | None = None) -> float | None:
    """Kevin-32B's reward: bonus*correct + speedup*correct (speedup clipped to `clip` when given).

    None for a passing verdict without a measured speedup (see `speedup_reward`).

    >>> kevin(Verdict("relu", True, Stage.DONE, None, "ok", speedup=1.5))
    1.8
    >>> kevin(Verdict("relu", True, Stage.DONE, None, "ok", speedup=12.0), clip=10.0)
    10.3
    >>> kevin(Verdict("relu", False, Stage.LOAD, None, "ImportError"))
    0.0
    """
    if not v.passed:
        return 0.0
    s = speedup_reward(v, math.inf if clip is None else clip)
    return None if s is None else round(bonus + s, 12)


def mixed(v: Verdict, beta: float, *, clip: float = 2.0) -> float | None:
    """(1 - beta)*correct + beta*speed, where speed = clip(speedup, 0, clip)/clip lies in [0, 1].

    beta = 0 needs no timing. With beta > 0, a passing verdict without a measured speedup gives None.

    >>> v = Verdict("relu", True, Stage.DONE, None, "ok", speedup=1.0)
    >>> mixed(v, 0.5)  # 0.5*1 + 0.5*(1.0/2.0)
    0.75
    >>> untimed = Verdict("relu", True, Stage.DONE, None, "ok")
    >>> mixed(untimed, 0.0), mixed(untimed, 0.2)
    (1.0, None)
    """
    if not v.passed:
        return 0.0
    if beta == 0.0:
        return 1.0
    s = speedup_reward(v, clip)
    return None if s is None else round((1.0 - beta) + beta * s / clip, 12)


def reward(v: Verdict, cfg: RewardConfig, step: int = 0) -> float | None:
    """The configured reward of one verdict at a training step (the step only matters for mixed's beta schedule).

    Returns None only for speed kinds on a passing verdict without a measured speedup; binary and staged never do.

    >>> from tritonrl.types import FailureKind
    >>> v = Verdict("relu", False, Stage.LOAD, FailureKind.IMPORT_ERROR, "no module named foo")
    >>> [reward(v, RewardConfig(kind=k)) for k in ("binary", "staged", "speedup", "kevin", "mixed")]
    [0.0, 0.3, 0.0, 0.0, 0.0]
    >>> reward(Verdict("relu", True, Stage.DONE, None, "ok", speedup=3.0), RewardConfig(kind="speedup"))
    2.0
    """
    if cfg.kind == "binary":
        return binary(v)
    if cfg.kind == "staged":
        return staged(v, cfg.stage_credit)
    if cfg.kind == "speedup":
        return speedup_reward(v, cfg.speedup_clip)
    if cfg.kind == "kevin":
        return kevin(v, bonus=cfg.correct_bonus, clip=cfg.speedup_clip)
    return mixed(v, cfg.beta_at(step), clip=cfg.speedup_clip)


# --- group rewards --------------------------------------------------------------------------------------------------


def rank_speed_rewards(speedups: Sequence[float | None], *, winsor: tuple[float, float] = (0.1, 0.9)) -> list[float]:
    """Rank-based speed reward within one GRPO group (one prompt's samples).

    `speedups[i]` is the measured speedup of a correct sample, or None for a sample that is not correct (the
    caller maps incorrect samples to None). With n correct samples and r_i the 1-based rank of sample i among them
    (ties share their average rank), the normalised rank is q_i = (r_i - 1)/(n - 1) (q = 0.5 when n = 1: all tied).
    Winsorizing at (lo, hi) clips q to [lo, hi] and rescales: reward_i = (clip(q_i, lo, hi) - lo)/(hi - lo), so the
    fastest (1 - hi) fraction all get 1, the slowest lo fraction all get 0, and timing noise among them earns
    nothing. Incorrect samples get 0. The reward depends on order only, never on the size of a (possibly forged or
    noisy) speedup. It is a speed term: combine it with a correctness reward, since the slowest correct sample
    also gets 0.

    >>> rank_speed_rewards([1.0, None, 2.0, 3.0], winsor=(0.0, 1.0))
    [0.0, 0.0, 0.5, 1.0]
    >>> rank_speed_rewards([1.0, 1.0, 2.0], winsor=(0.0, 1.0))  # the tie shares ranks 1 and 2
    [0.25, 0.25, 1.0]
    >>> rank_speed_rewards([0.5, 0.9, 1.1, 1.2, 1.3, 1.4, 1.5, 1.6, 1.7, 100.0, 1e6])  # q = 0, .1, ..., 1
    [0.0, 0.0, 0.125, 0.25, 0.375, 0.5, 0.625, 0.75, 0.875, 1.0, 1.0]
    >>> rank_speed_rewards([None, 1.3])  # one correct sample: nothing to rank against
    [0.0, 0.5]
    """
    lo, hi = winsor
    if not 0.0 <= lo < hi <= 1.0:
        raise ValueError(f"winsor={winsor}: need 0 <= lo < hi <= 1, e.g. (0.1, 0.9); (0.0, 1.0) disables it.")
    values = [s for s in speedups if s is not None]
    if any(not math.isfinite(s) for s in values):
        raise ValueError(f"speedups={list(speedups)}: correct samples need finite speedups; pass None for the rest.")
    n = len(values)
    ordered = sorted(values)
    out: list[float] = []
    for s in speedups:
        if s is None:
            out.append(0.0)
            continue
        first, last = bisect.bisect_left(ordered, s), bisect.bisect_right(ordered, s)  # 0-based tie range
        q = 0.5 if n == 1 else ((first + last - 1) / 2) / (n - 1)
        out.append(round((min(max(q, lo), hi) - lo) / (hi - lo), 12))
    return out
