"""The one prompt format used by SFT, RL and evaluation (TritonRL style).

The user turn gives the instruction, the one-shot example (a reference and its Triton port) unless the style is
zero-shot, and the task's PyTorch reference; the model is asked to reason first (a short plan, or a `<think>` block
for reasoning models) and then write exactly one fenced code block that defines `ModelNew`. `verify/extract.py` reads
answers in this format. Chat formatting goes through the tokenizer's own chat template when one is given.

The style is an argument of every function here; left out, it is the run's default, which the CLI sets once from
`--prompt` (`set_default_style`) so that every place that builds prompts in that run (SFT and GRPO datasets,
scripted rollouts, evaluation's generators) asks the same question.
"""

from __future__ import annotations

import enum
import functools
from pathlib import Path
from typing import Any

from tritonrl.errors import ConfigError
from tritonrl.tasks.schema import Task


class PromptStyle(enum.StrEnum):
    ONE_SHOT = "one-shot"  # instruction, a worked example (vector_add and its solution), then the task
    ZERO_SHOT = "zero-shot"  # instruction, then the task: ~1.8k characters shorter (a built-in task: ~3.4k -> ~1.5k)


_default_style = PromptStyle.ONE_SHOT


def prompt_style(value: PromptStyle | str | None = None) -> PromptStyle:
    """The style named by `value` (None: the run's default). Raises ConfigError naming the accepted values."""
    if value is None:
        return _default_style
    try:
        return PromptStyle(value)
    except ValueError:
        choices = ", ".join(s.value for s in PromptStyle)
        raise ConfigError(f"prompt style {value!r}: must be one of {choices} (e.g. --prompt zero-shot).") from None


def set_default_style(value: PromptStyle | str) -> PromptStyle:
    """Set the run's default style (the CLI calls this once, before anything builds a prompt); returns it."""
    global _default_style
    _default_style = prompt_style(value)
    return _default_style


SYSTEM = (
    "You are an expert GPU kernel engineer. You port PyTorch modules to Triton kernels that are correct for every "
    "input shape and value and as fast as possible."
)

INSTRUCTION = """\
Write a Triton implementation of the PyTorch module below.

Rules:
- Define `class ModelNew(torch.nn.Module)` with the same constructor arguments as `Model` and the same parameter \
names, and a `forward` with the same inputs and outputs.
- All computation in `forward` must happen in Triton kernels (`@triton.jit`) that you define. PyTorch may only \
allocate outputs, reshape/view, and make tensors contiguous; do not call torch operators, `torch.nn.functional` or \
the reference module.
- It must be correct for any input size (mask the tails) and any values (negative, large, tiny).
- Import only torch, triton, triton.language and math. No files, network, processes or threads.

First write a short plan: which kernels, how the work is tiled, where the memory traffic goes. Then give the \
complete code in a single ```python block."""

EXAMPLE_TASK = "vector_add"


@functools.lru_cache(maxsize=1)
def _example() -> tuple[str, str]:
    from tritonrl.tasks.loader import builtin_task

    task = builtin_task(EXAMPLE_TASK)
    return task.source.strip(), Path(task.solution_path).read_text().strip() if task.solution_path else ""


def user_prompt(task: Task, *, style: PromptStyle | str | None = None) -> str:
    """The user turn for a task (the example task itself gets no example: it would give its own answer away)."""
    parts = [INSTRUCTION]
    if prompt_style(style) is PromptStyle.ONE_SHOT and task.task_id != EXAMPLE_TASK:
        ref, sol = _example()
        parts.append(
            f"Example. For this reference:\n```python\n{ref}\n```\na correct answer is:\n```python\n{sol}\n```"
        )
    parts.append(f"Now the module to port:\n```python\n{task.source.strip()}\n```")
    return "\n\n".join(parts)


def build_messages(
    task: Task, *, style: PromptStyle | str | None = None, system: str | None = SYSTEM
) -> list[dict[str, str]]:
    """Chat messages (system + user) for a task."""
    messages = [{"role": "system", "content": system}] if system else []
    messages.append({"role": "user", "content": user_prompt(task, style=style)})
    return messages


def render_prompt(task: Task, tokenizer: Any | None = None, *, style: PromptStyle | str | None = None) -> str:
    """The prompt as text: through the tokenizer's chat template (with the generation prompt) when it has one,
    otherwise the system and user turns joined by a blank line."""
    messages = build_messages(task, style=style)
    if tokenizer is not None and getattr(tokenizer, "chat_template", None):
        return tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    return "\n\n".join(m["content"] for m in messages)
