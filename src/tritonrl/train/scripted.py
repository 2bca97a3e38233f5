"""Scripted rollouts (`tritonrl train grpo|best-of-n --rollouts scripted`): a plumbing check without a capable model.

Instead of sampling from the policy, every group is answered alternately with the task's bundled solution and a
wrong answer. Everything after generation is real: the verifier (on its configured device, with every layer the
extensions switch on) judges both, the rewards differ, so GRPO's advantages are +/- and the LoRA weights move, and
best-of-N keeps and fine-tunes on the verified solution. A random tiny model never writes a kernel, so with
policy rollouts the verifier only ever sees extraction failures and nothing trains; this mode exercises the rest.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from tritonrl.errors import ConfigError
from tritonrl.tasks.prompts import build_messages
from tritonrl.tasks.schema import Task
from tritonrl.train.data import solution_completion

WRONG_ANSWER = "Plan: none. I cannot write this kernel, so no code follows."


def _answers(tasks: Sequence[Task]) -> dict[str, str]:
    answers = {t.task_id: c for t in tasks if (c := solution_completion(t)) is not None}
    if missing := sorted(t.task_id for t in tasks if t.task_id not in answers):
        raise ConfigError(f"--rollouts scripted answers with bundled solutions; tasks without one: {missing[:5]}. "
                          "Use a suite whose tasks ship solutions (builtin), or --rollouts policy.")  # fmt: skip
    return answers


def scripted_texts(solution: str, k: int) -> list[str]:
    """k answers alternating solution, wrong answer, solution, ...

    >>> scripted_texts("S", 3)
    ['S', 'Plan: none. I cannot write this kernel, so no code follows.', 'S']
    """
    return [solution if i % 2 == 0 else WRONG_ANSWER for i in range(k)]


def scripted_rollout(tasks: Sequence[Task]) -> Callable[[list, Any], dict[str, list]]:
    """A TRL `rollout_func`: the i-th prompt of a generation batch (groups are consecutive copies of one prompt) is
    answered with the solution when i is even, the wrong answer when odd, followed by EOS."""
    answers = _answers(tasks)
    by_prompt = {build_messages(t)[-1]["content"]: answers[t.task_id] for t in tasks}  # keyed by the user turn

    def rollout(prompts: list, trainer: Any) -> dict[str, list]:
        tok = trainer.processing_class
        prompt_ids, completion_ids = [], []
        for i, prompt in enumerate(prompts):
            key = prompt[-1].get("content") if isinstance(prompt, list) and prompt else None
            if key not in by_prompt:
                raise ConfigError("--rollouts scripted: a prompt that is not a task prompt of this suite reached the "
                                  "rollout function.")  # fmt: skip
            text = tok.apply_chat_template(prompt, add_generation_prompt=True, tokenize=False)
            prompt_ids.append(tok(text, add_special_tokens=False)["input_ids"])
            answer = by_prompt[key] if i % 2 == 0 else WRONG_ANSWER
            completion_ids.append(tok(answer, add_special_tokens=False)["input_ids"] + [tok.eos_token_id])
        return {"prompt_ids": prompt_ids, "completion_ids": completion_ids, "logprobs": None}

    return rollout


class ScriptedGenerator:
    """A best-of-N `Generator`: k answers per task, alternating solution and wrong answer."""

    name = "scripted"

    def __init__(self, tasks: Sequence[Task]) -> None:
        self.answers = _answers(tasks)

    def generate(self, task: Task, k: int) -> list[str]:
        return scripted_texts(self.answers[task.task_id], k)
