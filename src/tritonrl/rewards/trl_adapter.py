"""TRL 1.x reward functions over a VerifierClient: the only module that knows TRL's calling convention.

`make_reward_funcs(client, cfg, kinds=...)` returns async functions for `GRPOTrainer(reward_funcs=...)` (or RLOO).
TRL calls each with keyword arguments: prompts, completions, completion_ids, every dataset column (here `task_id`,
one entry per completion), trainer_state, log_extra and log_metric (shared/notes/training.md 1.3). They share the
client's verdict cache, so a batch's kernels are verified once however many functions score it. They are callable
instances, not closures, so they pickle (TRL's async GRPO sends them to its rollout process). The first function
also reports the verdicts: `log_metric("kernel/correct_frac", ...)` and friends, the seconds the batch took to
verify (`kernel/verify_s`), and the per-sample stage and failure as completions-table columns through `log_extra`
(only one function logs, since TRL appends every call's columns).

kinds (function name in TRL's logs, `rewards/<name>/mean`):
  correct     kernel_correct     1 if the verdict passed, else 0
  staged      kernel_staged      cfg.stage_credit of the stage reached
  speed       kernel_speed       clip(speedup, 0, cfg.speedup_clip) if passed; 0 if not; None if passed but untimed
  speed_rank  kernel_speed_rank  rank_speed_rewards within each group of the local batch (same task_id and prompt);
                                 None for a group's correct samples when any of them is untimed
  reward      kernel_<cfg.kind>  reward(verdict, cfg, trainer_state.global_step) (mixed follows the beta schedule)
Groups can be split across ranks when per_device_train_batch_size < num_generations; speed_rank then ranks within
the local part of the group.
"""

from __future__ import annotations

import logging
import math
import time
from collections import defaultdict
from collections.abc import Callable, Sequence
from typing import Any

from tritonrl.rewards.client import VerifierClient
from tritonrl.rewards.reward import RewardConfig, binary, rank_speed_rewards, reward, speedup_reward, staged
from tritonrl.types import Stage, Verdict

log = logging.getLogger(__name__)

KINDS = ("correct", "staged", "speed", "speed_rank", "reward")
RewardFunc = Callable[..., Any]  # async (prompts, completions, ..., **kwargs) -> list[float | None]


def completion_text(completion: str | list[dict[str, Any]]) -> str:
    """The text of a TRL completion: a str (standard format) or a list of messages (conversational), whose last
    message's content is either a str or a list of parts ({"type": "text", "text": ...})."""
    if isinstance(completion, str):
        return completion
    if not completion:
        return ""
    content = completion[-1].get("content", "")
    if isinstance(content, str):
        return content
    return "".join(part.get("text", "") for part in content if isinstance(part, dict))


def make_reward_funcs(
    client: VerifierClient, cfg: RewardConfig | None = None, *, kinds: Sequence[str] = ("correct", "speed")
) -> list[RewardFunc]:
    """TRL reward functions, one per kind (see the module docstring), in the order given.

    Args:
        client: verifies completions; its tasks must include every `task_id` of the dataset.
        cfg: shapes the staged, speed and reward kinds (default `RewardConfig()`).
        kinds: which functions to build; weigh them with `GRPOConfig.reward_weights`.
    """
    cfg = cfg or RewardConfig()
    if isinstance(kinds, str) or not kinds:
        raise ValueError(f"kinds={kinds!r}: pass a non-empty list of kinds from {KINDS}.")
    unknown = [k for k in kinds if k not in KINDS]
    if unknown:
        raise ValueError(f"kinds {unknown} are unknown; choose from {KINDS}.")
    names = [_name(k, cfg) for k in kinds]
    if len(set(names)) != len(names):
        raise ValueError(f"kinds={list(kinds)} give duplicate function names {names}; drop the duplicate.")
    if any(k in ("speed", "speed_rank") for k in kinds) and not client.verify_cfg.is_cuda:
        log.warning("speed rewards on device=%s: no timing, so correct samples get None", client.verify_cfg.device)
    return [
        KernelReward(kind, name, client, cfg, report=i == 0)
        for i, (kind, name) in enumerate(zip(kinds, names, strict=True))
    ]


def _name(kind: str, cfg: RewardConfig) -> str:
    return f"kernel_{cfg.kind}" if kind == "reward" else f"kernel_{kind}"


class KernelReward:
    """One TRL reward function (an async callable instance, so it pickles for TRL's async GRPO rollout process; the
    client travels without its pool and cache and starts a fresh pool on first use)."""

    def __init__(self, kind: str, name: str, client: VerifierClient, cfg: RewardConfig, *, report: bool) -> None:
        self.kind, self.client, self.cfg, self.report = kind, client, cfg, report
        self.__name__ = self.__qualname__ = name  # TRL's get_callable_name reads __name__ (logs: rewards/<name>/mean)
        self.__doc__ = f"TRL reward function '{name}' (tritonrl.rewards.trl_adapter, kind={kind!r})."

    async def __call__(
        self,
        prompts: list,
        completions: list,
        completion_ids: list[list[int]] | None = None,
        task_id: list[str] | None = None,
        trainer_state: Any = None,
        log_metric: Callable[[str, float], None] | None = None,
        log_extra: Callable[[str, list], None] | None = None,
        **kwargs: Any,
    ) -> list[float | None]:
        name, cfg = self.__name__, self.cfg
        if task_id is None:
            raise ValueError(
                f"{name}: no task_id column reached the reward function; the dataset needs a 'task_id' column "
                "and GRPOConfig(remove_unused_columns=False)."
            )
        if len(task_id) != len(completions):
            raise ValueError(f"{name}: {len(task_id)} task ids for {len(completions)} completions.")
        t0 = time.perf_counter()
        verdicts = await self.client.averdicts(list(task_id), [completion_text(c) for c in completions])
        step = int(getattr(trainer_state, "global_step", 0) or 0)
        if self.report:
            _report(verdicts, log_metric, log_extra)
            if log_metric is not None:  # the verifier's share of a generation round (the rest: generate, updates)
                log_metric("kernel/verify_s", time.perf_counter() - t0)
        if log_metric is not None and self.kind == "reward" and cfg.kind == "mixed":
            log_metric("kernel/beta", cfg.beta_at(step))
        return _score(self.kind, verdicts, cfg, step, task_id, prompts)


def _score(
    kind: str, verdicts: list[Verdict], cfg: RewardConfig, step: int, task_ids: Sequence[str], prompts: Sequence
) -> list[float | None]:
    if kind == "correct":
        return [binary(v) for v in verdicts]
    if kind == "staged":
        return [staged(v, cfg.stage_credit) for v in verdicts]
    if kind == "speed":
        return [speedup_reward(v, cfg.speedup_clip) for v in verdicts]
    if kind == "speed_rank":
        return _group_ranks(verdicts, task_ids, prompts)
    return [reward(v, cfg, step) for v in verdicts]


def _group_ranks(verdicts: list[Verdict], task_ids: Sequence[str], prompts: Sequence) -> list[float | None]:
    groups: dict[tuple[str, str], list[int]] = defaultdict(list)
    for i, (task, prompt) in enumerate(zip(task_ids, prompts, strict=True)):
        groups[(task, repr(prompt))].append(i)
    out: list[float | None] = [0.0] * len(verdicts)
    for members in groups.values():
        speedups = [verdicts[i].speedup_of() if verdicts[i].passed else None for i in members]
        if any(verdicts[i].passed and s is None for i, s in zip(members, speedups, strict=True)):
            for i in members:  # a correct sample without timing: the group cannot be ranked
                out[i] = None if verdicts[i].passed else 0.0
            continue
        for i, r in zip(members, rank_speed_rewards(speedups), strict=True):
            out[i] = r
    return out


def _report(
    verdicts: list[Verdict],
    log_metric: Callable[[str, float], None] | None,
    log_extra: Callable[[str, list], None] | None,
) -> None:
    """Funnel fractions of this batch as metrics, per-sample stage/failure as completions-table columns."""
    n = len(verdicts)
    if log_metric is not None and n:
        log_metric("kernel/valid_frac", sum(v.is_valid for v in verdicts) / n)
        log_metric("kernel/compiled_frac", sum(v.is_compiled for v in verdicts) / n)
        log_metric("kernel/correct_frac", sum(v.passed for v in verdicts) / n)
        timed = [s for v in verdicts if v.passed and (s := v.speedup_of()) is not None]
        log_metric("kernel/timed_frac", len(timed) / n)
        if timed:
            log_metric("kernel/speedup_geomean", math.exp(sum(math.log(s) for s in timed) / len(timed)))
        for stage in Stage:  # every stage every time, so each metric is a continuous series
            log_metric(f"kernel/stage/{stage.value}_frac", sum(Stage(v.stage) is stage for v in verdicts) / n)
    if log_extra is not None:
        log_extra("kernel_stage", [Stage(v.stage).value for v in verdicts])
        log_extra("kernel_failure", [v.failure.value if v.failure else "" for v in verdicts])
