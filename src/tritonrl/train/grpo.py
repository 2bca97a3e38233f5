"""GRPO with execution-verified rewards: TRL's GRPOTrainer over a VerifierClient.

`run_grpo` maps the extension flags to a VerifyConfig and a RewardConfig, builds the reward functions of
`rewards/trl_adapter.py` (every reward is a real verdict from the sandboxed verifier, cached per completion), and
trains a new LoRA adapter, continues the adapter it was given, or trains every weight (`train/model_io.py`). With
`curriculum` or `learning_zone` on, the training set is a live `TaskSampler` stream and the verdicts of each step are
fed back into it (pass rates, and skipping tasks whose groups are all-equal). With `hrd` on, `HRDGRPOTrainer` gives
plan and code tokens separate advantages. Generation is transformers `generate`, or vLLM when requested and installed.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import logging
from collections import defaultdict
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch
import trl
from packaging.version import Version
from transformers import TrainerCallback
from trl import GRPOConfig, GRPOTrainer
from trl.trainer.utils import nanstd

from tritonrl.errors import ConfigError
from tritonrl.models import load_tokenizer, resolve_model
from tritonrl.rewards.client import VerifierClient
from tritonrl.rewards.hrd import hrd_token_advantages, token_roles
from tritonrl.rewards.trl_adapter import completion_text, make_reward_funcs
from tritonrl.tasks.schema import Task
from tritonrl.train.config import (
    ExtensionConfig,
    check_client_config,
    reward_kinds,
    to_reward_config,
    to_verify_config,
    weakened_defences,
)
from tritonrl.train.curriculum import AdaptiveCurriculum, LearningZoneSampler, TaskSampler
from tritonrl.train.data import rl_dataset, rl_row
from tritonrl.train.guards import NonFiniteGradGuard, NoSignalWatch
from tritonrl.train.model_io import RunOutputs, StartModel, precision_kwargs, save_trained, start_model, write_log
from tritonrl.train.settings import LoraSettings, TrainSettings, default_learning_rate
from tritonrl.verify.config import VerifyConfig

log = logging.getLogger(__name__)

# HRDGRPOTrainer relies on three TRL internals: `_calculate_rewards` returns the gathered (N, n_funcs) rewards,
# `_generate_and_score_completions` returns the batch dict with "advantages", "completion_ids" and "completion_mask",
# and `_compute_loss` unsqueezes only 1-D advantages, so a (B, T) tensor is used per token. Read in 1.16.0; the
# (B, T) branch exists since 1.9.0.
HRD_TRL_MIN, HRD_TRL_TESTED = Version("1.9.0"), Version("1.16.0")


@dataclasses.dataclass(frozen=True)
class GRPOResult:
    out_dir: str  # adapter (or model), tokenizer, train_log.json (+ sampler_state.json with a curriculum)
    log_history: list[dict[str, Any]]  # the trainer's logged metrics, one dict per logging step
    n_verified: int  # verifications the client ran (cache misses)
    n_cached: int  # reward requests answered from the verdict cache
    sampler_state: dict[str, Any] | None  # TaskSampler.state_dict() at the end, when one was used


def check_trl_for_hrd() -> None:
    """Raise ConfigError unless the installed TRL has the internals HRDGRPOTrainer overrides."""
    version = Version(trl.__version__)
    if not HRD_TRL_MIN <= version < Version("2"):
        raise ConfigError(f"hrd: needs TRL >= {HRD_TRL_MIN}, < 2 (read against {HRD_TRL_TESTED}); found {version}. "
                          "Install trl==1.16.* or turn hrd off.")  # fmt: skip
    missing = [m for m in ("_calculate_rewards", "_generate_and_score_completions", "_compute_loss")
               if not hasattr(GRPOTrainer, m)]  # fmt: skip
    if missing:
        raise ConfigError(f"hrd: TRL {version} lacks GRPOTrainer.{missing}; pin trl==1.16.* or turn hrd off.")
    if version.release[:2] > HRD_TRL_TESTED.release[:2]:
        log.warning("hrd: TRL %s is newer than %s, the version HRDGRPOTrainer was read against", version,
                    HRD_TRL_TESTED)  # fmt: skip


def decode_with_offsets(tokenizer: Any, ids: Sequence[int]) -> tuple[str, list[tuple[int, int]]]:
    """The decoded completion and each token's [start, end) character span in it (special tokens are empty).

    Per-token decoding is exact for most tokens; when the pieces do not add up to the whole (a multi-byte character
    split across tokens), spans come from decoding growing prefixes instead (quadratic, but only then)."""
    text = tokenizer.decode(list(ids), skip_special_tokens=True)
    pieces = [tokenizer.decode([i], skip_special_tokens=True) for i in ids]
    offsets, pos = [], 0
    if "".join(pieces) == text:
        for piece in pieces:
            offsets.append((pos, pos + len(piece)))
            pos += len(piece)
        return text, offsets
    for j in range(len(ids)):
        end = max(pos, len(tokenizer.decode(list(ids[: j + 1]), skip_special_tokens=True)))
        offsets.append((pos, end))
        pos = end
    return text, offsets


def group_advantages(rewards: torch.Tensor, group_size: int, scale: str) -> torch.Tensor:
    """GRPO advantages of one reward column, as TRL computes them: reward minus its group mean, divided by the group
    (or batch) std unless scale == "none"; NaN (not applicable) gives 0."""
    grouped = rewards.view(-1, group_size)
    adv = (grouped - torch.nanmean(grouped, dim=1, keepdim=True)).view(-1)
    if scale == "group":
        adv = adv / (nanstd(grouped, dim=1).repeat_interleave(group_size) + 1e-4)
    elif scale == "batch":
        adv = adv / (nanstd(rewards) + 1e-4)
    return torch.nan_to_num(adv, nan=0.0)


class HRDGRPOTrainer(GRPOTrainer):
    """GRPOTrainer with TritonRL's hierarchical reward decomposition (per-token advantages).

    What changes, and nothing else: after TRL generates and scores a batch, the sequence advantage (B,) is replaced
    by a (B, T) tensor (`rewards.hrd.hrd_token_advantages`). Tokens inside the extracted code span
    (`rewards.hrd.token_roles`) get the group advantage of the code reward function; plan tokens get `alpha` times
    that of the plan reward function (speed), or the code advantage when there is none (every cpu run); an answer with
    no code gets a negative advantage on every token. TRL's loss, clipping, logging and the logged sequence advantages
    are untouched.
    """

    def __init__(self, *args: Any, code_reward: str, plan_reward: str | None, alpha: float, no_code_penalty: float,
                 **kwargs: Any) -> None:  # fmt: skip
        check_trl_for_hrd()
        super().__init__(*args, **kwargs)
        names = list(self.reward_func_names)
        if code_reward not in names or (plan_reward is not None and plan_reward not in names):
            raise ConfigError(f"hrd: reward functions {names} lack {code_reward!r} / {plan_reward!r}.")
        self._code_col = names.index(code_reward)
        self._plan_col = names.index(plan_reward) if plan_reward else None
        self._alpha, self._no_code_penalty = alpha, no_code_penalty
        self._rewards_per_func: torch.Tensor | None = None

    def _calculate_rewards(self, inputs, prompts, completions, completion_ids_list):  # noqa: ANN001, ANN202
        self._rewards_per_func = super()._calculate_rewards(inputs, prompts, completions, completion_ids_list)
        return self._rewards_per_func

    def _generate_and_score_completions(self, inputs):  # noqa: ANN001, ANN202
        out = super()._generate_and_score_completions(inputs)
        out["advantages"] = self._token_advantages(out["completion_ids"], out["completion_mask"])
        return out

    def _token_advantages(self, completion_ids: torch.Tensor, completion_mask: torch.Tensor) -> torch.Tensor:
        mode = "train" if self.model.training else "eval"
        group = self.num_generations if mode == "train" else self.num_generations_eval
        rewards = self._rewards_per_func  # gathered over processes: (N_global, n_funcs)
        code = group_advantages(rewards[:, self._code_col], group, self.scale_rewards)
        b = completion_ids.size(0)
        local = slice(self.accelerator.process_index * b, (self.accelerator.process_index + 1) * b)
        code = code[local].tolist()
        plan: list[float | None] = [None] * b  # no speed reward: plan tokens take the code advantage
        if self._plan_col is not None:
            plan = group_advantages(rewards[:, self._plan_col], group, self.scale_rewards)[local].tolist()
        adv = torch.zeros(completion_mask.shape, dtype=torch.float32, device=completion_mask.device)
        n_code = n_tokens = 0
        for i in range(b):
            n = int(completion_mask[i].sum())
            text, offsets = decode_with_offsets(self.processing_class, completion_ids[i, :n].tolist())
            roles = token_roles(text, offsets)
            adv[i, :n] = torch.tensor(hrd_token_advantages(code[i], plan[i], roles, self._alpha,
                                                            no_code_penalty=self._no_code_penalty))  # fmt: skip
            n_code, n_tokens = n_code + sum(roles), n_tokens + n
        self._metrics[mode]["hrd/code_token_frac"].append(n_code / max(n_tokens, 1))
        return adv


class FeedbackReward:
    """A reward function that also feeds the verdicts it scored (cache hits) to the TaskSampler, one record per group
    (same task and prompt). A callable instance, so it pickles like the functions it wraps."""

    def __init__(self, func: Callable, client: VerifierClient, sampler: TaskSampler) -> None:
        self.func, self.client, self.sampler = func, client, sampler
        self.__name__ = self.__qualname__ = func.__name__

    async def __call__(self, *, prompts: list, completions: list, task_id: list[str] | None = None,
                       log_metric: Callable | None = None, **kwargs: Any) -> list[float | None]:  # fmt: skip
        values = await self.func(prompts=prompts, completions=completions, task_id=task_id, log_metric=log_metric,
                                 **kwargs)  # fmt: skip
        verdicts = await self.client.averdicts(list(task_id or []), [completion_text(c) for c in completions])
        groups: dict[tuple[str, str], list[tuple[float, float]]] = defaultdict(list)
        for t, p, v, value in zip(task_id or [], prompts, verdicts, values, strict=True):
            groups[(t, repr(p))].append((1.0 if v.passed else 0.0, 0.0 if value is None else float(value)))
        for (t, _), scored in groups.items():
            # Groups whose rewards are all equal (no advantage) bench their task (LearningZoneSampler).
            self.sampler.record(t, [outcome for outcome, _ in scored], [value for _, value in scored])
        if log_metric is not None and self.sampler.zone is not None:
            log_metric("learning_zone/skipped_tasks", float(sum(map(self.sampler.zone.skipped, self.sampler.tasks))))
        if log_metric is not None and self.sampler.curriculum is not None:
            log_metric("curriculum/l2_fraction", self.sampler.curriculum.l2_fraction)
        return values


class SamplerCallback(TrainerCallback):
    """Closes each step for the TaskSampler (curriculum promotion) and saves its state with the run."""

    def __init__(self, sampler: TaskSampler, out_dir: str | Path) -> None:
        self.sampler, self.out_dir = sampler, Path(out_dir)

    def on_step_end(self, args, state, control, **kwargs):  # noqa: ANN001, ANN201
        if self.sampler.end_step() and self.sampler.curriculum is not None:
            log.info("curriculum: step %d, L2 fraction -> %.2f", state.global_step, self.sampler.curriculum.l2_fraction)

    def on_train_end(self, args, state, control, **kwargs):  # noqa: ANN001, ANN201
        write_log(self.out_dir, "sampler_state.json", self.sampler.state_dict())


def _sampler(tasks: Sequence[Task], ext: ExtensionConfig, seed: int) -> TaskSampler | None:
    if not (ext.curriculum or ext.learning_zone):
        return None
    curriculum = AdaptiveCurriculum.from_extensions(ext) if ext.curriculum else None
    zone = LearningZoneSampler.from_extensions([t.task_id for t in tasks], ext) if ext.learning_zone else None
    return TaskSampler(tasks, curriculum=curriculum, zone=zone, seed=seed)


def _use_vllm(requested: bool) -> bool:
    if requested and importlib.util.find_spec("vllm") is None:
        log.warning("use_vllm requested but vllm is not installed; generating with transformers instead.")
        return False
    return requested


def run_grpo(
    model_path: str,
    tasks: Sequence[Task],
    out_dir: str | Path,
    ext: ExtensionConfig,
    train: TrainSettings | None = None,
    *,
    lora: LoraSettings | None = None,
    verify_cfg: VerifyConfig | None = None,
    client: VerifierClient | None = None,
    callbacks: list | None = None,
    rollout_func: Callable | None = None,
    merged_dir: str | Path | None = None,
) -> GRPOResult:
    """Train with GRPO on verified rewards; the adapter (or model) and logs go to `out_dir`.

    Args:
        model_path: local model folder: a full model, or a LoRA adapter (continued unless
            `train.merge_input_adapter`).
        ext: extension flags (verifier layers, reward kind, curriculum / learning zone, HRD).
        train: the run's settings, the same object `tritonrl train grpo` fills from YAML and flags (`steps` is
            TRL's `max_steps`; `loss_type`, `scale_rewards`, `mask_truncated_completions`, `num_generations`,
            `max_completion_length` and `temperature` go to GRPOConfig as they are; `reward_weights` has one weight
            per reward function, `reward_kinds(ext, device)`; `batch_size` counts completions, a multiple of
            `num_generations`, default one group; `save_steps`, `resume` and `report_to` are the checkpoints and
            logs, the curriculum's sampler state being written by its callback, not restored on resume; the
            learning rate defaults to TRL's guidance for LoRA or all weights). Default: `TrainSettings()`.
        lora: the adapter to train (default `LoraSettings()`); `enabled=False` trains every weight.
        verify_cfg: the base verifier settings that `ext` switches layers of (default: cpu, hardened).
        client: a VerifierClient to use (and leave open), built with `to_verify_config(ext, base)`; by default one is
            made (`train.workers` processes) and closed here.
        rollout_func: TRL's experimental custom-rollout hook, passed through (tests script completions with it).
        merged_dir: also write a trained adapter merged into its base here, as a full model folder.
    """
    train = train or TrainSettings()
    lora = lora or LoraSettings()
    outputs = RunOutputs.of(train)
    resolve_model(model_path)  # a wrong folder fails here, before the verifier pool starts
    batch_size = train.batch_size or train.num_generations
    if batch_size % train.num_generations:
        raise ConfigError(f"batch_size={batch_size} is not a multiple of num_generations={train.num_generations}; "
                          "GRPO needs whole groups per step (e.g. batch_size=num_generations).")  # fmt: skip
    per_round = batch_size // train.num_generations * train.grad_accum * (train.steps_per_generation or 1)
    if not (ext.curriculum or ext.learning_zone) and len(tasks) < per_round:  # the streams repeat; a list does not
        raise ConfigError(f"{len(tasks)} task(s) for a generation round of {per_round} prompts (batch_size "
                          f"{batch_size} / num_generations {train.num_generations} x grad_accum {train.grad_accum} x "
                          f"steps_per_generation {train.steps_per_generation or 1}): TRL would train 0 steps; give "
                          "more tasks or a smaller batch_size / steps_per_generation.")  # fmt: skip
    if client is not None:
        verify_cfg = check_client_config(ext, client.verify_cfg)
    else:
        verify_cfg = to_verify_config(ext, verify_cfg)
    if off := weakened_defences(ext, VerifyConfig(device=verify_cfg.device)):
        log.warning("rewards verify without %s: they accept kernels `tritonrl eval` rejects", "; ".join(off))
    reward_cfg = to_reward_config(ext)
    kinds = reward_kinds(ext, verify_cfg.device)  # kernel_binary or kernel_staged (+ kernel_speed when timed)
    reward_weights = train.reward_weights
    if reward_weights is not None and len(reward_weights) != len(kinds):
        raise ConfigError(f"reward_weights={list(reward_weights)}: {len(reward_weights)} weight(s) for {len(kinds)} "
                          f"reward function(s) {list(kinds)} (the speed reward exists only with calibrated_timing on "
                          "a GPU); give one weight per function or none.")  # fmt: skip
    own_client = client is None
    client = client or VerifierClient({t.task_id: t for t in tasks}, verify_cfg, workers=train.workers)
    if not own_client:
        client.add_tasks(tasks)
    sampler = _sampler(tasks, ext, train.seed)
    try:
        funcs = make_reward_funcs(client, reward_cfg, kinds=kinds)
        if sampler is not None:
            funcs[0] = FeedbackReward(funcs[0], client, sampler)
        lr = train.learning_rate or default_learning_rate("grpo", lora.enabled)
        args = _grpo_config(out_dir, train, lr=lr, batch_size=batch_size, shuffle=sampler is None, outputs=outputs)
        start = start_model(model_path, lora, merge_input_adapter=train.merge_input_adapter)
        trainer = _grpo_trainer(start, tasks, out_dir, ext, funcs, args, sampler, callbacks=callbacks,
                                rollout_func=rollout_func)  # fmt: skip
        log.info("GRPO: %d tasks, %d steps, groups of %d, rewards %s, extensions %s, %s", len(tasks), train.steps,
                 train.num_generations, [f.__name__ for f in funcs], list(ext.enabled) or "none",
                 start.mode)  # fmt: skip
        return _train_and_save(
            trainer, start, out_dir, ext, verify_cfg, client, sampler, merged_dir=merged_dir, outputs=outputs
        )
    finally:
        if own_client:
            client.close()


def _grpo_config(
    out_dir: str | Path, train: TrainSettings, *, lr: float, batch_size: int, shuffle: bool, outputs: RunOutputs
) -> GRPOConfig:
    """TRL's GRPOConfig for `run_grpo`, from the run's settings: no KL term (beta=0), checkpoints and logs as
    `outputs` say, precision from the hardware."""
    _, precision = precision_kwargs()
    return GRPOConfig(
        output_dir=str(out_dir),
        max_steps=train.steps,
        learning_rate=lr,
        per_device_train_batch_size=batch_size,
        gradient_accumulation_steps=train.grad_accum,
        num_generations=train.num_generations,
        max_completion_length=train.max_completion_length,
        # TRL counts micro-batches (its default, grad_accum of them, is one optimizer step); ours counts optimizer steps
        steps_per_generation=train.steps_per_generation * train.grad_accum if train.steps_per_generation else None,
        temperature=train.temperature,
        beta=0.0,
        loss_type=train.loss_type,
        scale_rewards=train.scale_rewards,
        mask_truncated_completions=train.mask_truncated_completions,
        reward_weights=list(train.reward_weights) if train.reward_weights is not None else None,
        logging_steps=train.logging_steps,
        seed=train.seed,
        use_vllm=_use_vllm(train.use_vllm),
        shuffle_dataset=shuffle,
        remove_unused_columns=False,
        **precision,
        **outputs.trainer_kwargs(),
    )


def _grpo_trainer(
    start: StartModel,
    tasks: Sequence[Task],
    out_dir: str | Path,
    ext: ExtensionConfig,
    funcs: list[Callable],
    args: GRPOConfig,
    sampler: TaskSampler | None,
    *,
    callbacks: list | None,
    rollout_func: Callable | None,
) -> GRPOTrainer:
    """The trainer (HRDGRPOTrainer with `ext.hrd`) over the task prompts, or the sampler's live stream."""
    train_dataset = sampler.iterable_dataset(rl_row) if sampler is not None else rl_dataset(tasks)
    trainer_cls: type[GRPOTrainer] = GRPOTrainer
    extra: dict[str, Any] = {}
    if ext.hrd:
        trainer_cls = HRDGRPOTrainer
        extra = {"code_reward": funcs[0].__name__, "plan_reward": funcs[1].__name__ if len(funcs) > 1 else None,
                 "alpha": ext.hrd_alpha, "no_code_penalty": ext.hrd_no_code_penalty}  # fmt: skip
    all_callbacks = [*(callbacks or []), *([SamplerCallback(sampler, out_dir)] if sampler else []),
                     NonFiniteGradGuard(), NoSignalWatch()]  # fmt: skip
    return trainer_cls(
        model=start.model, reward_funcs=funcs, args=args, train_dataset=train_dataset,
        processing_class=load_tokenizer(start.source, padding_side="left"), peft_config=start.peft_config,
        callbacks=all_callbacks, rollout_func=rollout_func, **extra,
    )  # fmt: skip


def _train_and_save(
    trainer: GRPOTrainer,
    start: StartModel,
    out_dir: str | Path,
    ext: ExtensionConfig,
    verify_cfg: VerifyConfig,
    client: VerifierClient,
    sampler: TaskSampler | None,
    *,
    merged_dir: str | Path | None,
    outputs: RunOutputs,
) -> GRPOResult:
    """Train, save the model and tokenizer to `out_dir` (`save_trained`), and write `train_log.json`."""
    trainer.train(resume_from_checkpoint=outputs.resume_from(out_dir))
    save_trained(trainer, trainer.processing_class, out_dir, start, merged_dir=merged_dir)
    history = list(trainer.state.log_history)
    guard = next(c for c in trainer.callback_handler.callbacks if isinstance(c, NonFiniteGradGuard))
    watch = next(c for c in trainer.callback_handler.callbacks if isinstance(c, NoSignalWatch))
    meta = {"model": start.source.path, "base_model": start.source.base_path, "mode": start.mode,
            "extensions": dataclasses.asdict(ext), "verify": dataclasses.asdict(verify_cfg),
            "skipped_nonfinite_steps": guard.skipped, "rounds": watch.rounds,
            "rounds_without_signal": watch.silent}  # fmt: skip
    write_log(out_dir, "train_log.json", {**meta, "log_history": history})
    return GRPOResult(str(out_dir), history, client.n_submitted, client.n_cached,
                      sampler.state_dict() if sampler else None)  # fmt: skip
