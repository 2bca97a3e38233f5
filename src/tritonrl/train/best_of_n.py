"""Best-of-N expert iteration (the TritonRL baseline's RL stage) with real verification.

Each round samples N completions per task from the current model (several prompts per generate call), verifies
every one with the VerifierClient, keeps the top K *correct* ones per task (highest reward, then shortest; the same
code twice, up to comments and formatting, counts once), fine-tunes a LoRA adapter on them (SFT) and merges it into
the model the next round samples from (with LoRA off it fine-tunes every weight). The last round's model is
`out_dir/model`, earlier ones `round_<r>/model`. Per-round statistics go to `out_dir/best_of_n.json` and each round's
kept set to `round_<r>/kept.jsonl` (the verified-pairs format `train/data.py::load_pairs` reads).
"""

from __future__ import annotations

import dataclasses
import json
import logging
from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from tritonrl.data.dedup import normalized_source
from tritonrl.generate import Generator, HFGenerator, SamplingConfig, sample_tasks
from tritonrl.models import resolve_model
from tritonrl.rewards.client import VerifierClient
from tritonrl.tasks.schema import Task
from tritonrl.train.config import (
    ExtensionConfig,
    check_client_config,
    reward_kinds,
    to_reward_config,
    to_verify_config,
    weakened_defences,
)
from tritonrl.train.settings import LoraSettings, TrainSettings
from tritonrl.types import Verdict
from tritonrl.verify.config import VerifyConfig
from tritonrl.verify.extract import extract_code

log = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True, slots=True)
class Scored:
    """One sampled completion with its verdict."""

    task_id: str
    completion: str
    passed: bool  # the verdict passed (correct and legitimate)
    reward: float  # ranking score: the configured reward plus the speed reward when timed (None counts as 0)
    stage: str  # funnel stage reached
    failure: str | None  # failure kind, if any


def score(verdict: Verdict, completion: str, ext: ExtensionConfig, device: str) -> Scored:
    """Rank a verdict by the same rewards GRPO would use for these extensions."""
    from tritonrl.rewards.reward import reward, speedup_reward

    cfg = to_reward_config(ext)
    value = reward(verdict, cfg) or 0.0
    if "speed" in reward_kinds(ext, device):
        value += speedup_reward(verdict, cfg.speedup_clip) or 0.0
    failure = verdict.failure.value if verdict.failure else None
    return Scored(verdict.task_id, completion, verdict.passed, value, str(verdict.stage.value), failure)


def code_key(completion: str) -> str:
    """What makes two completions the same kernel: the extracted code without comments, docstrings or formatting
    (the whole text when no code can be extracted)."""
    code, _ = extract_code(completion)
    return normalized_source(code if code is not None else completion)


def top_k(scored: Sequence[Scored], k: int) -> list[Scored]:
    """The k best correct completions with distinct code: highest reward first, then the shorter one (stable on full
    ties); a completion whose code (`code_key`) an earlier pick already has is skipped, so k copies of one kernel
    never crowd out the others.

    >>> s = [Scored("t", "long answer", True, 1.0, "done", None), Scored("t", "bad", False, 0.0, "parse", "x"),
    ...      Scored("t", "short", True, 1.0, "done", None), Scored("t", "short  # same", True, 1.0, "done", None)]
    >>> [c.completion for c in top_k(s, 2)]
    ['short', 'long answer']
    """
    kept: list[Scored] = []
    seen: set[str] = set()
    for s in sorted((s for s in scored if s.passed), key=lambda s: (-s.reward, len(s.completion))):
        key = code_key(s.completion)
        if key not in seen and len(kept) < k:
            seen.add(key)
            kept.append(s)
    return kept


@dataclasses.dataclass(frozen=True)
class BestOfNResult:
    out_dir: str  # best_of_n.json, model/ (the last round's), round_<r>/{kept.jsonl, adapter/, model/}
    model_path: str  # the model after the last round that trained (the input model when none did)
    rounds: list[dict[str, Any]]  # per-round statistics, as written to best_of_n.json
    kept: list[Scored]  # the last round's kept set


def _round_stats(r: int, scored: dict[str, list[Scored]], kept: list[Scored]) -> dict[str, Any]:
    flat = [s for group in scored.values() for s in group]
    per_task = {
        t: {"n": len(g), "n_correct": sum(s.passed for s in g), "kept": sum(k.task_id == t for k in kept),
            "best_reward": max((s.reward for s in g), default=0.0)}
        for t, g in scored.items()
    }  # fmt: skip
    return {
        "round": r,
        "n_samples": len(flat),
        "correct_frac": sum(s.passed for s in flat) / max(len(flat), 1),
        "tasks_solved": sum(v["n_correct"] > 0 for v in per_task.values()),
        "n_kept": len(kept),
        "stages": dict(Counter(s.stage for s in flat)),
        "failures": dict(Counter(s.failure for s in flat if s.failure)),
        "per_task": per_task,
    }


def run_best_of_n(
    model_path: str,
    tasks: Sequence[Task],
    out_dir: str | Path,
    ext: ExtensionConfig,
    train: TrainSettings | None = None,
    *,
    lora: LoraSettings | None = None,
    verify_cfg: VerifyConfig | None = None,
    sampling: SamplingConfig | None = None,
    generator_factory: Callable[[str], Generator] | None = None,
    client: VerifierClient | None = None,
    callbacks: list | None = None,
) -> BestOfNResult:
    """Expert iteration: R rounds of sample N -> verify -> keep top K correct per task -> SFT (LoRA) -> merge.

    Args:
        model_path: local model folder: a full model, or a LoRA adapter (sampled merged; round 0 continues training
            it unless `train.merge_input_adapter`).
        train: the run's settings, the object `tritonrl train best-of-n` fills from YAML and flags: `rounds`, `n`,
            `k`, `workers`, `seed`, and each round's SFT (`run_sft`: steps, learning rate, batch size, max length;
            round r uses seed + r; no checkpoints inside a round). Default: `TrainSettings()`.
        lora: the adapter each round trains (default `LoraSettings()`); `enabled=False` fine-tunes every weight.
        generator_factory: model path -> Generator (default: `HFGenerator(path, sampling)` on the current model).
        client: a VerifierClient to use (and leave open), built with `to_verify_config(ext, base)`; by default one is
            made and closed here.
        callbacks: passed to every round's SFTTrainer.
    """
    from tritonrl.train.model_io import write_log

    train = train or TrainSettings()
    resolve_model(model_path)  # a wrong folder fails now, not after sampling and verifying
    unused = [f for f in ("curriculum", "learning_zone", "hrd") if getattr(ext, f)]
    if unused:
        log.warning("best-of-N ignores %s (GRPO-only extensions)", unused)
    out = Path(out_dir)
    verify_cfg = check_client_config(ext, client.verify_cfg) if client else to_verify_config(ext, verify_cfg)
    if off := weakened_defences(ext, VerifyConfig(device=verify_cfg.device)):
        log.warning("best-of-N verifies without %s: it keeps kernels `tritonrl eval` rejects", "; ".join(off))
    sampling = sampling or SamplingConfig(seed=train.seed)
    factory = generator_factory or (lambda path: HFGenerator(path, sampling))
    own_client = client is None
    client = client or VerifierClient({t.task_id: t for t in tasks}, verify_cfg, workers=train.workers)
    if not own_client:
        client.add_tasks(tasks)
    current, stats, kept = model_path, [], []
    try:
        for r in range(train.rounds):
            round_dir = out / f"round_{r}"
            scored, kept, n_samples = _sample_and_keep(factory, current, tasks, client, ext, verify_cfg.device,
                                                       train.n, train.k, round_dir)  # fmt: skip
            row = _round_stats(r, scored, kept)
            if kept:
                model_dir = out / "model" if r == train.rounds - 1 else round_dir / "model"
                # each round's SFT: its own seed, no checkpoints (a round is minutes; the rounds are the unit)
                round_train = dataclasses.replace(train, seed=train.seed + r, save_steps=0, resume=False)
                current = _fine_tune(current, tasks, kept, round_dir, model_dir, round_train,
                                     lora=lora or LoraSettings(), callbacks=callbacks)  # fmt: skip
            else:
                log.warning("best-of-N round %d: no correct completion among %d samples; no fine-tuning", r, n_samples)
            stats.append({**row, "trained": bool(kept), "model": current})
            write_log(out, "best_of_n.json", {"base_model": model_path, "n": train.n, "k": train.k, "rounds": stats,
                                              "extensions": dataclasses.asdict(ext),
                                              "verify": dataclasses.asdict(verify_cfg)})  # fmt: skip
            log.info("best-of-N round %d: %.0f%% correct, %d kept", r, 100 * row["correct_frac"], len(kept))
    finally:
        if own_client:
            client.close()
    return BestOfNResult(str(out), current, stats, kept)


def _sample_and_keep(
    factory: Callable[[str], Generator],
    model: str,
    tasks: Sequence[Task],
    client: VerifierClient,
    ext: ExtensionConfig,
    device: str,
    n: int,
    k: int,
    round_dir: Path,
) -> tuple[dict[str, list[Scored]], list[Scored], int]:
    """Sample `n` completions per task from `model`, verify and score them, keep the top `k` correct per task and
    write the kept set to `round_dir/kept.jsonl`. Returns (scored per task, kept, number of samples)."""
    generator = factory(model)
    samples = {t.task_id: texts for t, texts in sample_tasks(generator, tasks, n)}
    del generator  # free the sampling model before fine-tuning
    ids = [t for t, texts in samples.items() for _ in texts]
    texts = [c for cs in samples.values() for c in cs]
    verdicts = client.verdicts(ids, texts)
    scored: dict[str, list[Scored]] = {t: [] for t in samples}
    for v, text in zip(verdicts, texts, strict=True):
        scored[v.task_id].append(score(v, text, ext, device))
    kept = [s for group in scored.values() for s in top_k(group, k)]
    round_dir.mkdir(parents=True, exist_ok=True)
    with open(round_dir / "kept.jsonl", "w") as f:
        for s in kept:
            f.write(json.dumps(dataclasses.asdict(s)) + "\n")
    return scored, kept, len(texts)


def _fine_tune(
    model: str,
    tasks: Sequence[Task],
    kept: list[Scored],
    round_dir: Path,
    model_dir: Path,
    train: TrainSettings,
    *,
    lora: LoraSettings,
    callbacks: list | None,
) -> str:
    """Fine-tune `model` on `kept` (`run_sft` with `train`) and return the folder of the result, a full model: a
    LoRA adapter in `round_dir/adapter` merged into `model_dir`, or with LoRA off every weight, in `model_dir`
    directly."""
    from tritonrl.train.sft import run_sft

    pairs = [(s.task_id, s.completion) for s in kept]
    if lora.enabled:
        run_sft(model, tasks, round_dir / "adapter", train, pairs=pairs, lora=lora, merged_dir=model_dir,
                callbacks=callbacks)  # fmt: skip
    else:
        run_sft(model, tasks, model_dir, train, pairs=pairs, lora=lora, callbacks=callbacks)
    return str(model_dir)
