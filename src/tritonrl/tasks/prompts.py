"""The one prompt format used by SFT, RL and evaluation (TritonRL style).

The user turn gives the instruction, an optional one-shot example (a reference and its Triton port), and the task's
PyTorch reference; the model is asked to reason first (a short plan, or a `<think>` block for reasoning models) and
then write exactly one fenced code block that defines `ModelNew`. `verify/extract.py` reads answers in this format.
Chat formatting goes through the tokenizer's own chat template when one is given.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

from tritonrl.tasks.schema import Task

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


def user_prompt(task: Task, *, one_shot: bool = True) -> str:
    """The user turn for a task."""
    parts = [INSTRUCTION]
    if one_shot and task.task_id != EXAMPLE_TASK:
        ref, sol = _example()
        parts.append(
            f"Example. For this reference:\n```python\n{ref}\n```\na correct answer is:\n```python\n{sol}\n```"
        )
    parts.append(f"Now the module to port:\n```python\n{task.source.strip()}\n```")
    return "\n\n".join(parts)


def build_messages(task: Task, *, one_shot: bool = True, system: str | None = SYSTEM) -> list[dict[str, str]]:
    """Chat messages (system + user) for a task."""
    messages = [{"role": "system", "content": system}] if system else []
    messages.append({"role": "user", "content": user_prompt(task, one_shot=one_shot)})
    return messages


def render_prompt(task: Task, tokenizer: Any | None = None, *, one_shot: bool = True) -> str:
    """The prompt as text: through the tokenizer's chat template (with the generation prompt) when it has one,
    otherwise the plain user turn."""
    messages = build_messages(task, one_shot=one_shot)
    if tokenizer is not None and getattr(tokenizer, "chat_template", None):
        return tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    return "\n\n".join(m["content"] for m in messages)
