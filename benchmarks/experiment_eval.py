"""Held-out evaluation for the training experiment (`train_experiment.py`, `train_ablation.py`): which tasks are
scored (`verifiable`: decided once, before any model), how (`eval_config`: the hardened verifier, correctness only),
and pass@1 / pass@k of a model folder with bootstrap intervals over tasks (`held_out_eval`); whether the reference
answers fit the generation limit at all (`answer_tokens`).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import random
import time
from pathlib import Path
from typing import Any

log = logging.getLogger("train_experiment")


def bootstrap_ci(per_task: list[float], *, draws: int = 2000, seed: int = 0) -> tuple[float, float, float]:
    """Mean over tasks and its 95% percentile-bootstrap interval (tasks resampled with replacement)."""
    if not per_task:
        return 0.0, 0.0, 0.0
    rng = random.Random(seed)
    n = len(per_task)
    means = sorted(sum(rng.choices(per_task, k=n)) / n for _ in range(draws))
    return sum(per_task) / n, means[int(0.025 * draws)], means[int(0.975 * draws) - 1]


def eval_config(args: argparse.Namespace) -> Any:
    """The held-out evaluation's verifier: hardened, correctness only. Its timeout bounds a sampled kernel that
    never ends (the SFT model wrote some: with the default 60 s they took 113 s of a 178 s evaluation on the H100)."""
    from tritonrl.verify.config import VerifyConfig

    return VerifyConfig(device=args.device, timing=False, compile_baseline=False, timeout_s=args.eval_timeout_s)


def verifiable(tasks: list, n: int, cfg: Any) -> tuple[list, dict[str, str]]:
    """The first `n` of `tasks` whose every reference case builds on the verifier's device, and why the others were
    skipped. Decided once, before any model is evaluated, so every model is scored on the same tasks: a reference
    that fails on this device (a shape its backend refuses) is a task defect, never a model's failure."""
    from tritonrl.errors import TaskError
    from tritonrl.tasks.shapes import plan_shapes_cached
    from tritonrl.verify.cases import build_cases

    kept: list = []
    excluded: dict[str, str] = {}
    for task in tasks:
        if len(kept) == n:
            break
        try:
            plan = plan_shapes_cached(task, device=cfg.device, n_variants=cfg.n_variants, max_numel=cfg.max_numel)
            build_cases(task, plan, cfg)
        except TaskError as exc:
            excluded[task.task_id] = str(exc)[:500]
            log.warning("held-out task %s skipped: its reference does not run on %s: %s", task.task_id, cfg.device,
                        exc)  # fmt: skip
            continue
        kept.append(task)
    return kept, excluded


def answer_tokens(tokenizer_dir: str, args: argparse.Namespace, splits: list[tuple[str, list, list]]) -> dict:
    """How many tokens the reference answers of each (name, tasks scored, (task_id, answer) pairs) split take with
    the run's tokenizer, against --max-new-tokens and --max-length: an answer longer than the generation limit can
    only be cut off (a syntax error), whatever the model learned (runs A-C lost 5 of 16 held-out tasks this way)."""
    from tritonrl.models import load_tokenizer
    from tritonrl.tasks.prompts import render_prompt

    tok = load_tokenizer(tokenizer_dir)
    out: dict[str, dict[str, float]] = {}
    for name, tasks, pairs in splits:  # every answer of the split against the longest prompt of the tasks scored
        answers = sorted(len(tok(c, add_special_tokens=False)["input_ids"]) for _, c in pairs)
        if not answers:
            continue
        prompts = [len(tok(render_prompt(t, tok), add_special_tokens=False)["input_ids"]) for t in tasks]
        over = sum(a > args.max_new_tokens for a in answers)
        out[name] = {"median": answers[len(answers) // 2], "p95": answers[int(0.95 * (len(answers) - 1))],
                     "max": answers[-1], "over_max_new_tokens": over, "answers": len(answers),
                     "longest_prompt": max(prompts, default=0)}  # fmt: skip
        if over:
            log.warning("%s: %d of %d reference answers exceed --max-new-tokens %d (longest %d tokens)", name, over,
                        len(answers), args.max_new_tokens, answers[-1])  # fmt: skip
        if answers[-1] + out[name]["longest_prompt"] > args.max_length:
            log.warning("%s: the longest answer and prompt (%d + %d tokens) exceed --max-length %d: SFT cuts them",
                        name, answers[-1], out[name]["longest_prompt"], args.max_length)  # fmt: skip
    return out


def held_out_eval(
    name: str, model_dir: str, tasks: list, args: argparse.Namespace, samples: Path | None = None
) -> dict[str, Any]:
    """pass@1 and pass@k of `model_dir` on `tasks` (k samples each at --temperature), hardened verifier, intervals
    over tasks; with --greedy also greedy pass@1 (one sample per task, row["greedy"]). Every sample with its verdict
    goes to the JSONL file `samples` when given (what the outcome counts are made of)."""
    from tritonrl.generate import HFGenerator, SamplingConfig
    from tritonrl.verify.verifier import verify_many

    t0 = time.monotonic()
    sampled = SamplingConfig(max_new_tokens=args.max_new_tokens, temperature=args.temperature, seed=args.seed)
    gen = HFGenerator(model_dir, sampled, device=args.train_device)
    runs = [("sampled", args.k, sampled)]
    greedy = args.greedy and args.temperature > 0  # at temperature 0 the main pass is the greedy one
    if greedy:
        runs.append(("greedy", 1, dataclasses.replace(sampled, temperature=0.0)))
    texts: dict[str, list[str]] = {}
    lengths: dict[str, dict[str, float]] = {}
    for mode, k, sampling in runs:
        gen.sampling, t_mode, texts[mode], counts = sampling, time.monotonic(), [], []
        for i in range(0, len(tasks), args.gen_batch):
            texts[mode] += [t for group in gen.generate_batch(tasks[i : i + args.gen_batch], k) for t in group]
            counts += gen.last_lengths
        lengths[mode] = _lengths(counts, time.monotonic() - t_mode)
    del gen
    _free_gpu()
    t_gen = time.monotonic() - t0
    items = [(task, text) for mode, k, _ in runs for i, task in enumerate(tasks)
             for text in texts[mode][i * k : (i + 1) * k]]  # fmt: skip
    verdicts = verify_many(items, eval_config(args), jobs=args.jobs)
    if samples is not None:
        with samples.open("w") as f:
            for i, ((task, text), v) in enumerate(zip(items, verdicts, strict=True)):
                row = {"task_id": task.task_id, "mode": "sampled" if i < len(tasks) * args.k else "greedy",
                       "passed": v.passed, "stage": v.stage, "failure": v.failure, "message": v.message[:1000],
                       "text": text}  # fmt: skip
                f.write(json.dumps(row) + "\n")
    n_sampled = len(tasks) * args.k
    out = {"model": name, "tasks": len(tasks), "k": args.k, **_score(verdicts[:n_sampled], args.k, len(tasks)),
           "generation": lengths["sampled"], "generate_s": round(t_gen, 1),
           "verify_s": round(time.monotonic() - t0 - t_gen, 1)}  # fmt: skip
    if greedy:
        out["greedy"] = {**_score(verdicts[n_sampled:], 1, len(tasks)), "generation": lengths["greedy"]}
    log.info("eval %s: pass@1 %.3f [%.3f, %.3f]  %s%s", name, out["pass@1"], *out["pass@1_ci"], out["outcomes"],
             f"  greedy pass@1 {out['greedy']['pass@1']:.3f}" if greedy else "")  # fmt: skip
    return out


def _score(verdicts: list, k: int, n_tasks: int) -> dict[str, Any]:
    """pass@1 and pass@k over tasks (each task's k verdicts in a row) with bootstrap intervals, and the outcomes."""
    from tritonrl.eval.metrics import pass_at_k

    correct = [sum(v.passed for v in verdicts[i * k : (i + 1) * k]) for i in range(n_tasks)]
    stages: dict[str, int] = {}
    for v in verdicts:
        key = "passed" if v.passed else f"{v.stage}/{v.failure}"
        stages[key] = stages.get(key, 0) + 1
    p1, p1_lo, p1_hi = bootstrap_ci([pass_at_k(k, c, 1) for c in correct])
    pk, pk_lo, pk_hi = bootstrap_ci([pass_at_k(k, c, k) for c in correct])
    return {"pass@1": p1, "pass@1_ci": [p1_lo, p1_hi], f"pass@{k}": pk, f"pass@{k}_ci": [pk_lo, pk_hi],
            "outcomes": dict(sorted(stages.items()))}  # fmt: skip


def _lengths(counts: list[tuple[int, bool]], seconds: float) -> dict[str, float]:
    """How long the answers were (generated tokens) and how many ran into --max-new-tokens without ending: a model
    that never ends its answer makes every generate call run to the limit, and a cut answer cannot parse."""
    n, tokens = max(len(counts), 1), [c for c, _ in counts]
    return {
        "mean_tokens": round(sum(tokens) / n, 1),
        "max_tokens": max(tokens, default=0),
        "at_limit_frac": round(sum(not ended for _, ended in counts) / n, 3),
        "seconds": round(seconds, 1),
    }


def _free_gpu() -> None:
    import gc

    import torch

    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
