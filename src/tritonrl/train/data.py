"""Training data from tasks: SFT prompt-completion rows and GRPO prompt rows, in the shared prompt format.

SFT completions are "plan, then one ```python block", the answer shape `tasks/prompts.py` asks for and
`verify/extract.py` reads, written by `data/export.py::completion` (the text an export's SFT rows hold). They come
from verified pairs (a JSONL export of {task_id, completion}, or best-of-N's kept set), from the solutions a suite
carries (`suite_pairs`: bundled files and the fusion generator's templates), or from tasks' bundled solutions.
`select_tasks` applies the `fusion_data` extension to a suite. `export_dataset` reads a `tritonrl tasks export`
folder (its `sft/<split>.jsonl` rows are verified pairs). Nothing here verifies: pairs must already be verified.
Every builder takes the prompt style (`tasks/prompts.py`); None means the run's default.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from tritonrl.data.export import completion
from tritonrl.data.hf import rows_dataset
from tritonrl.data.suites import MANIFEST, Suite, SuiteTask
from tritonrl.errors import ConfigError
from tritonrl.tasks.prompts import PromptStyle, build_messages, render_prompt
from tritonrl.tasks.schema import Task

log = logging.getLogger(__name__)

FUSION_PREFIX = "fusion/"
# Suite origins whose solutions count as verified without a curation run: bundled files (the test suite verifies the
# built-in ones) and the fusion generator's templates (proven per op grammar by benchmarks/fusion_verify.py).
# KernelBook ports are unverified Inductor code: curate them with `tritonrl tasks export`, train on sft/<split>.jsonl.
TRUSTED_ORIGINS = ("builtin", "folder", "fusion")
Style = PromptStyle | str | None


def solution_completion(task: Task) -> str | None:
    """The assistant answer built from a task's bundled solution, or None when it ships none."""
    if not task.solution_path:
        return None
    solution = Path(task.solution_path).read_text()
    return completion(SuiteTask(task=task, origin="builtin", family=task.task_id, solution=solution), "strict")


def suite_pairs(suite: Suite) -> list[tuple[str, str]]:
    """(task_id, completion) pairs from the solutions a suite carries, for origins in TRUSTED_ORIGINS; solutions of
    other origins are left out with a warning that says how to curate them."""
    pairs = [(e.task_id, completion(e, "strict")) for e in suite.entries
             if e.solution is not None and e.origin in TRUSTED_ORIGINS]  # fmt: skip
    untrusted = sorted({e.origin for e in suite.entries if e.solution is not None and e.origin not in TRUSTED_ORIGINS})
    if untrusted:
        log.warning("suite %s: solutions of origin %s are unverified, so not SFT pairs; curate them with `tritonrl "
                    "tasks export` and pass --pairs OUT/sft/train.jsonl", suite.name, ", ".join(untrusted))  # fmt: skip
    return pairs


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


def _prompt(task: Task, tokenizer: Any | None, style: Style) -> list[dict[str, str]] | str:
    """Conversational messages, or plain text when the tokenizer has no chat template to apply them with."""
    if tokenizer is not None and not getattr(tokenizer, "chat_template", None):
        return render_prompt(task, tokenizer, style=style)
    return build_messages(task, style=style)


def sft_rows(
    tasks: Sequence[Task],
    tokenizer: Any | None = None,
    *,
    pairs: Iterable[tuple[str, str]] | None = None,
    style: Style = None,
) -> list[dict[str, Any]]:
    """Prompt-completion rows: one per pair when pairs are given, else one per task with a bundled solution."""
    by_id = {t.task_id: t for t in tasks}
    if pairs is None:
        pairs = [(t.task_id, c) for t in tasks if (c := solution_completion(t)) is not None]
    rows = []
    for task_id, answer_text in pairs:
        task = by_id.get(task_id)
        if task is None:
            log.warning("SFT pair for unknown task %r skipped (not in the suite).", task_id)
            continue
        prompt = _prompt(task, tokenizer, style)
        answer = answer_text if isinstance(prompt, str) else [{"role": "assistant", "content": answer_text}]
        rows.append({"prompt": prompt, "completion": answer, "task_id": task_id})
    return rows


def sft_dataset(  # noqa: ANN201 (datasets.Dataset, imported lazily)
    tasks: Sequence[Task],
    tokenizer: Any | None = None,
    *,
    pairs: Iterable[tuple[str, str]] | None = None,
    style: Style = None,
):
    """A `datasets.Dataset` of conversational prompt-completion rows (plain strings when `tokenizer` has no chat
    template), for SFTTrainer's completion-only loss. Raises ConfigError when no task has a verified completion."""
    rows = sft_rows(tasks, tokenizer, pairs=pairs, style=style)
    if not rows:
        raise ConfigError("no SFT data: none of the tasks ships a solution and no verified pairs were given "
                          "(--pairs, or a suite with solutions such as builtin or fusion:N).")  # fmt: skip
    return rows_dataset(rows)


def rl_row(task: Task, *, style: Style = None) -> dict[str, Any]:
    """One GRPO prompt row; `task_id` is what the reward functions verify against."""
    return {"prompt": build_messages(task, style=style), "task_id": task.task_id, "level": int(task.level or 1)}


def rl_dataset(tasks: Sequence[Task], *, style: Style = None):  # noqa: ANN201 (datasets.Dataset)
    """A `datasets.Dataset` of {prompt: messages, task_id, level}, one row per task."""
    if not tasks:
        raise ConfigError("no RL tasks: the suite is empty.")
    return rows_dataset([rl_row(t, style=style) for t in tasks])


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


def export_dataset(  # noqa: ANN201 (datasets.Dataset)
    path: str | Path, kind: str = "sft", split: str = "train", tokenizer: Any | None = None, *, style: Style = None
):
    """A trainer-ready `datasets.Dataset` from a `tritonrl tasks export` folder: the split's tasks (the folder is a
    suite, `PATH@split`) with its verified SFT pairs (`kind="sft"`) or as GRPO prompt rows (`kind="rl"`). The prompt
    style defaults to the one the export was written with (its manifest's `prompt`)."""
    from tritonrl.data.suites import resolve_suite

    if kind not in ("sft", "rl"):
        raise ConfigError(f"kind={kind!r}: must be 'sft' or 'rl'.")
    if style is None:
        style = json.loads((Path(path) / MANIFEST).read_text()).get("prompt")
    tasks = resolve_suite(f"{path}@{split}")
    if kind == "rl":
        return rl_dataset(tasks, style=style)
    return sft_dataset(tasks, tokenizer, pairs=load_pairs(Path(path) / "sft" / f"{split}.jsonl"), style=style)
