"""KernelBench as tasks: a checkout (`KernelBench/level{N}/*.py`) or the Hugging Face form (rows with `code`,
`level`, `name`, `problem_id`), read from a local parquet/JSONL export or, online, a hub name.

Files are loaded unchanged (AST only). Ids are "L<level>/<file stem>" in both forms, so results line up. Levels 1-3
(100/100/50 problems) are the benchmark; level 4 (20 Hugging Face models) builds its reference with
`transformers.AutoModelForCausalLM.from_pretrained` at import time, i.e. it needs `transformers` and the model
weights from the Hub, so it is loaded only when asked for.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from pathlib import Path

from tritonrl.data.sources.rows import read_rows
from tritonrl.errors import TaskError
from tritonrl.tasks.loader import load_task, load_task_dir
from tritonrl.tasks.schema import Task

DEFAULT_LEVELS = (1, 2, 3)
HF_FIELDS = ("code", "level", "name", "problem_id")
HF_NAME = "ScalingIntelligence/KernelBench"


def checkout_root(path: Path) -> Path | None:
    """The folder holding level1/, level2/, ... of a KernelBench checkout (the repo root or its KernelBench/)."""
    for root in (path / "KernelBench", path):
        if any(root.glob("level[0-9]")):
            return root
    return None


def load_checkout(path: str | Path, levels: Sequence[int] | None = None, *, spec: str = "") -> list[Task]:
    """The problems of a checkout, levels 1-3 unless `levels` names others. Raises TaskError for a missing level."""
    path = Path(path)
    root = checkout_root(path)
    if root is None:
        raise TaskError(f"{spec or path}: no level1/ (or KernelBench/level1/) folder; pass a KernelBench checkout.")
    found = sorted(int(p.name.removeprefix("level")) for p in root.glob("level[0-9]"))
    wanted = list(levels) if levels else [lv for lv in DEFAULT_LEVELS if lv in found]
    tasks = []
    for level in wanted:
        folder = root / f"level{level}"
        if not folder.is_dir():
            raise TaskError(f"suite {spec or path!r}: no folder {folder}; levels present: {found}.")
        tasks += [dataclasses.replace(t, task_id=f"L{level}/{t.task_id}") for t in load_task_dir(folder, level=level)]
    return tasks


def load_hf(source: str | Path, levels: Sequence[int] | None = None) -> list[Task]:
    """Problems from KernelBench's HF rows (a local parquet/JSONL file or folder, or a hub name when online)."""
    rows = read_rows(source, required=HF_FIELDS)
    wanted = set(levels or DEFAULT_LEVELS)
    tasks = []
    seen: set[str] = set()
    for row in sorted(rows, key=lambda r: (int(r["level"]), int(r["problem_id"]))):
        level = int(row["level"])
        if level not in wanted:
            continue
        stem = str(row["name"]).removesuffix(".py")
        if not stem.startswith(f"{row['problem_id']}_"):
            stem = f"{row['problem_id']}_{stem}"
        task_id = f"L{level}/{stem}"
        if task_id in seen:  # the hub form can list a problem in two splits
            continue
        seen.add(task_id)
        tasks.append(load_task(str(row["code"]) + ("" if str(row["code"]).endswith("\n") else "\n"),
                               task_id=task_id, level=level))  # fmt: skip
    if not tasks:
        raise TaskError(f"{source}: no KernelBench rows at levels {sorted(wanted)}.")
    return tasks
