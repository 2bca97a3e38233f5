"""verl `compute_score` over a VerifierClient (shared/notes/training.md 3.1).

Point verl's reward loop at this file; `reward_kwargs` reach every call as keyword arguments:

    reward:
      num_workers: 8
      custom_reward_function:
        path: /abs/path/to/tritonrl/rewards/verl_adapter.py
        name: compute_score            # or compute_score_async (verl awaits it; no executor thread)
        reward_kwargs: {suite: builtin, device: cpu, workers: 2, reward_kind: staged}

A dataset row's `reward_model.ground_truth` is a task id of `suite` ("builtin", "kernelbench:PATH[:1,2]" or a
folder; see data/suites.py) or the text of a KernelBench reference file; its `extra_info` may override `suite`,
`device` and `reward_kind`. `reward_config` (a dict of RewardConfig fields) and `workers` come from reward_kwargs.
The result is {"score", "passed", "stage", "failure", "speedup", "timed", "step"}; verl logs the extra keys,
averaging the numeric ones (speedup is NaN when not timed, so an untimed run shows NaN, not 0).

The training step (mixed's beta schedule) is `extra_info["step"]`, else `extra_info["global_steps"]` (verl's name
for it in `meta_info`, which a reward manager can copy into extra_info), else counted: with reward_kwargs
`samples_per_step` (the compute_score calls one worker process makes per training step, i.e. train_batch_size *
rollout.n / reward.num_workers), step = calls so far in this process // samples_per_step. A linear beta schedule
with neither is refused (ConfigError): its beta would stay at beta_start for the whole run.

Each process keeps one VerifierClient per VerifyConfig (normally one), created on first use, so a RewardLoopWorker
reuses its pool and cache across calls. Ray gives reward workers no GPU (CUDA_VISIBLE_DEVICES=""): device=cuda
needs workers that can see one. A speed kind on device=cpu is refused (ConfigError): nothing would be timed. If a
passing verdict on a GPU still has no speedup, the speed kind's score is 0.0 with "timed": False, because verl needs
a number.
"""

from __future__ import annotations

import functools
import itertools
import math
import threading
from typing import Any

from tritonrl.errors import ConfigError, TaskError
from tritonrl.rewards.client import VerifierClient
from tritonrl.rewards.reward import RewardConfig, reward
from tritonrl.tasks.schema import Task
from tritonrl.types import Verdict
from tritonrl.verify.config import VerifyConfig

_CLIENTS: dict[tuple[VerifyConfig, int], VerifierClient] = {}
_LOCK = threading.Lock()
_CALLS = itertools.count()  # compute_score calls of this process that counted a step (next() is atomic in CPython)


def compute_score(
    data_source: str, solution_str: str, ground_truth: str, extra_info: dict | None = None, **kwargs: Any
) -> dict[str, Any]:
    """Verify one response and score it (verl's `custom_reward_function` contract).

    Args:
        data_source: the row's data source (only echoed in errors).
        solution_str: the decoded response.
        ground_truth: a task id of the suite, or a KernelBench reference source (any text with a newline).
        extra_info: per-row options: suite, device, reward_kind, step.
        **kwargs: reward_kwargs: suite, device, workers, reward_kind, reward_config.
    """
    client, task, cfg, step = _prepare(data_source, ground_truth, extra_info, kwargs)
    return _result(client.verdicts([task.task_id], [solution_str])[0], cfg, step)


async def compute_score_async(
    data_source: str, solution_str: str, ground_truth: str, extra_info: dict | None = None, **kwargs: Any
) -> dict[str, Any]:
    """`compute_score` for verl's event loop (verl awaits async reward functions)."""
    client, task, cfg, step = _prepare(data_source, ground_truth, extra_info, kwargs)
    return _result((await client.averdicts([task.task_id], [solution_str]))[0], cfg, step)


def close_clients() -> None:
    """Shut down this process's pools (tests; a worker that is done)."""
    with _LOCK:
        clients = list(_CLIENTS.values())
        _CLIENTS.clear()
    for client in clients:
        client.close()


def _prepare(
    data_source: str, ground_truth: str, extra_info: dict | None, kwargs: dict
) -> tuple[VerifierClient, Task, RewardConfig, int]:
    options = {**kwargs, **{k: v for k, v in (extra_info or {}).items() if k in ("suite", "device", "reward_kind")}}
    fields = dict(options.get("reward_config") or {})
    if options.get("reward_kind"):
        fields["kind"] = options["reward_kind"]
    cfg = RewardConfig(**fields)
    verify_cfg = VerifyConfig.for_rewards(str(options.get("device", "cpu")))
    if cfg.needs_timing and not verify_cfg.is_cuda:
        raise ConfigError(
            f"reward_kind={cfg.kind!r} needs timing, but device={verify_cfg.device!r} does not time kernels; "
            "use device=cuda on workers that see a GPU, or reward_kind binary/staged."
        )
    task = _task(str(ground_truth), str(options.get("suite", "builtin")), data_source)
    step = training_step(extra_info, options.get("samples_per_step"))
    if step is None and cfg.kind == "mixed" and cfg.beta_schedule == "linear":
        raise ConfigError(
            "reward_config beta_schedule='linear' needs the training step, and neither extra_info['step'] nor "
            "extra_info['global_steps'] came with the row: set reward_kwargs.samples_per_step to the compute_score "
            "calls one worker makes per step (train_batch_size * rollout.n / reward.num_workers), or use "
            "beta_schedule='constant'."
        )
    client = _client(verify_cfg, int(options.get("workers", 2)))
    client.add_tasks([task])
    return client, task, cfg, step or 0


def training_step(extra_info: dict | None, samples_per_step: int | None) -> int | None:
    """The training step of this call: extra_info's `step` or `global_steps`, else this process's call count //
    `samples_per_step`, else None (not known)."""
    for key in ("step", "global_steps"):
        value = (extra_info or {}).get(key)
        if value is not None:
            return int(value)
    if samples_per_step is None:
        return None
    if int(samples_per_step) < 1:
        raise ConfigError(f"samples_per_step={samples_per_step}: must be >= 1 (compute_score calls per step).")
    return next(_CALLS) // int(samples_per_step)


def _result(v: Verdict, cfg: RewardConfig, step: int) -> dict[str, Any]:
    score = reward(v, cfg, step)
    speedup = v.speedup if isinstance(v.speedup, int | float) and math.isfinite(v.speedup) else None
    return {
        "score": 0.0 if score is None else float(score),
        "passed": bool(v.passed),
        "stage": v.stage.value,
        "failure": v.failure.value if v.failure else "",
        "speedup": float("nan") if speedup is None else float(speedup),
        "timed": speedup is not None,
        "step": step,
    }


def _client(verify_cfg: VerifyConfig, workers: int) -> VerifierClient:
    with _LOCK:
        client = _CLIENTS.get((verify_cfg, workers))
        if client is None:
            client = _CLIENTS[(verify_cfg, workers)] = VerifierClient({}, verify_cfg, workers=workers)
        return client


def _task(ground_truth: str, suite: str, data_source: str) -> Task:
    if "\n" in ground_truth:
        return _inline_task(ground_truth)
    tasks = _suite(suite)
    if ground_truth not in tasks:
        known = ", ".join(sorted(tasks)[:10]) + (", ..." if len(tasks) > 10 else "")
        raise TaskError(
            f"ground_truth {ground_truth!r} (data_source {data_source!r}) is not a task of suite {suite!r} "
            f"({known}); set reward_model.ground_truth to a task id of the suite or to the reference source."
        )
    return tasks[ground_truth]


@functools.lru_cache(maxsize=8)
def _suite(spec: str) -> dict[str, Task]:
    from tritonrl.data.suites import resolve_suite

    return {t.task_id: t for t in resolve_suite(spec)}


@functools.lru_cache(maxsize=256)
def _inline_task(source: str) -> Task:
    from tritonrl.tasks.loader import load_task

    return load_task(source)
