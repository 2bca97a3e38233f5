"""Training data from tasks: SFT prompt-completion rows and GRPO prompt rows, in the shared prompt format.

SFT completions are "plan, then one ```python block", the answer shape `train/prompts.py` asks for and
`verify/extract.py` reads. They come from verified pairs (a JSONL export of {task_id, completion}, or best-of-N's
kept set) or, for tasks that ship one, the bundled known-correct solution with a plan taken from its docstring.
`select_tasks` applies the `fusion_data` extension to a suite. `export_dataset` reads a `tritonrl tasks export`
folder (its `sft/<split>.jsonl` rows are verified pairs). Nothing here verifies: pairs must already be verified.
"""

from __future__ import annotations

import ast
import json
import logging
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from tritonrl.errors import ConfigError
from tritonrl.tasks.prompts import build_messages, render_prompt
from tritonrl.tasks.schema import Task

log = logging.getLogger(__name__)

FUSION_PREFIX = "fusion/"


def plan_text(task_id: str, code: str) -> str:
    """A short plan for a known solution: its module docstring's description and the kernels it defines.

    >>> plan_text("relu", '\"\"\"Triton solution for `relu`: flat 1-D grid.\"\"\"\\n@triton.jit\\ndef k(x): pass')
    'Plan: flat 1-D grid. Kernels: `k`, launched from `ModelNew.forward`, which only allocates the output.'
    """
    try:
        tree = ast.parse(code)
    except SyntaxError:
        tree = None
    doc = (ast.get_docstring(tree) or "") if tree else ""
    description = doc.split(":", 1)[1].strip() if ":" in doc else doc.strip() or f"port `{task_id}` to Triton."
    kernels = [
        n.name
        for n in (tree.body if tree else [])
        if isinstance(n, ast.FunctionDef) and any("jit" in ast.unparse(d) or "autotune" in ast.unparse(d)
                                                    for d in n.decorator_list)
    ]  # fmt: skip
    names = ", ".join(f"`{k}`" for k in kernels) or "one Triton kernel"
    return f"Plan: {description} Kernels: {names}, launched from `ModelNew.forward`, which only allocates the output."


def solution_completion(task: Task) -> str | None:
    """The assistant answer built from a task's bundled solution, or None when it ships none."""
    if not task.solution_path:
        return None
    code = Path(task.solution_path).read_text().strip()
    return f"{plan_text(task.task_id, code)}\n\n```python\n{code}\n```"


def load_pairs(path: str | Path) -> list[tuple[str, str]]:
    """Verified (task_id, completion) pairs from a JSONL file, or every *.jsonl in a folder (sorted)."""
    p = Path(path)
    files = sorted(p.glob("*.jsonl")) if p.is_dir() else [p]
    if not files or not all(f.is_file() for f in files):
        raise ConfigError(f"pairs {path}: expected a JSONL file or a folder of *.jsonl with task_id/completion rows.")
    pairs = []
    for f in files:
        for n, line in enumerate(f.read_text().splitlines(), 1):
            if not line.strip():
                continue
            row = json.loads(line)
            if not isinstance(row.get("task_id"), str) or not isinstance(row.get("completion"), str):
                raise ConfigError(f"{f}:{n}: each row needs string fields task_id and completion.")
            pairs.append((row["task_id"], row["completion"]))
    return pairs


def _prompt(task: Task, tokenizer: Any | None) -> list[dict[str, str]] | str:
    """Conversational messages, or plain text when the tokenizer has no chat template to apply them with."""
    if tokenizer is not None and not getattr(tokenizer, "chat_template", None):
        return render_prompt(task, tokenizer)
    return build_messages(task)


def sft_rows(
    tasks: Sequence[Task], tokenizer: Any | None = None, *, pairs: Iterable[tuple[str, str]] | None = None
) -> list[dict[str, Any]]:
    """Prompt-completion rows: one per pair when pairs are given, else one per task with a bundled solution."""
    by_id = {t.task_id: t for t in tasks}
    if pairs is None:
        pairs = [(t.task_id, c) for t in tasks if (c := solution_completion(t)) is not None]
    rows = []
    for task_id, completion in pairs:
        task = by_id.get(task_id)
        if task is None:
            log.warning("SFT pair for unknown task %r skipped (not in the suite).", task_id)
            continue
        prompt = _prompt(task, tokenizer)
        answer = completion if isinstance(prompt, str) else [{"role": "assistant", "content": completion}]
        rows.append({"prompt": prompt, "completion": answer, "task_id": task_id})
    return rows


def sft_dataset(  # noqa: ANN201 (datasets.Dataset, imported lazily)
    tasks: Sequence[Task], tokenizer: Any | None = None, *, pairs: Iterable[tuple[str, str]] | None = None
):
    """A `datasets.Dataset` of conversational prompt-completion rows (plain strings when `tokenizer` has no chat
    template), for SFTTrainer's completion-only loss. Raises ConfigError when no task has a verified completion."""
    from datasets import Dataset

    rows = sft_rows(tasks, tokenizer, pairs=pairs)
    if not rows:
        raise ConfigError("no SFT data: none of the tasks ships a solution and no verified pairs were given "
                          "(train.pairs).")  # fmt: skip
    return Dataset.from_list(rows)


def rl_row(task: Task) -> dict[str, Any]:
    """One GRPO prompt row; `task_id` is what the reward functions verify against."""
    return {"prompt": build_messages(task), "task_id": task.task_id, "level": int(task.level or 1)}


def rl_dataset(tasks: Sequence[Task]):  # noqa: ANN201 (datasets.Dataset)
    """A `datasets.Dataset` of {prompt: messages, task_id, level}, one row per task."""
    from datasets import Dataset

    if not tasks:
        raise ConfigError("no RL tasks: the suite is empty.")
    return Dataset.from_list([rl_row(t) for t in tasks])


def select_tasks(tasks: Sequence[Task], *, fusion_data: bool, fusion_dir: str | None) -> list[Task]:
    """The suite, plus generated L2 fusion tasks (level 2, ids `fusion/<stem>`) when `fusion_data` is on and an
    export folder exists. With the flag off, an export is ignored; with it on and no export, the suite is kept."""
    import dataclasses

    from tritonrl.tasks.loader import load_task_dir

    out = list(tasks)
    if not fusion_data:
        return out
    if not fusion_dir or not Path(fusion_dir).is_dir():
        log.warning("fusion_data: no fusion export at %r; training on the suite's own tasks only.", fusion_dir)
        return out
    fused = [dataclasses.replace(t, task_id=FUSION_PREFIX + t.task_id) for t in load_task_dir(fusion_dir, level=2)]
    log.info("fusion_data: added %d L2 fusion tasks from %s", len(fused), fusion_dir)
    return out + fused


def export_dataset(path: str | Path, kind: str = "sft", split: str = "train", tokenizer: Any | None = None):  # noqa: ANN201
    """A trainer-ready `datasets.Dataset` from a `tritonrl tasks export` folder: the split's tasks (the folder is a
    suite, `PATH@split`) with its verified SFT pairs (`kind="sft"`) or as GRPO prompt rows (`kind="rl"`)."""
    from tritonrl.data.suites import resolve_suite

    if kind not in ("sft", "rl"):
        raise ConfigError(f"kind={kind!r}: must be 'sft' or 'rl'.")
    tasks = resolve_suite(f"{path}@{split}")
    if kind == "rl":
        return rl_dataset(tasks)
    return sft_dataset(tasks, tokenizer, pairs=load_pairs(Path(path) / "sft" / f"{split}.jsonl"))
