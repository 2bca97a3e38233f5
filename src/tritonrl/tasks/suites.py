"""Resolve a suite specification to tasks: the built-in tasks, a KernelBench checkout, or a folder of task files.

builtin                       the bundled tasks
kernelbench:PATH[:1,2]        KernelBench/level{N}/*.py of a checkout (all levels found when none are given)
PATH                          a KernelBench checkout (has level1/ or KernelBench/level1/) or a folder of *.py
"""

from __future__ import annotations

from pathlib import Path

from tritonrl.errors import TaskError
from tritonrl.tasks.loader import builtin_tasks, load_task_dir
from tritonrl.tasks.schema import Task


def _kernelbench_root(path: Path) -> Path | None:
    for root in (path / "KernelBench", path):
        if any(root.glob("level[0-9]")):
            return root
    return None


def resolve_suite(spec: str) -> list[Task]:
    """Tasks of a suite specification (see the module docstring). Raises TaskError with the accepted forms."""
    if spec == "builtin":
        return builtin_tasks()
    levels: list[int] | None = None
    if spec.startswith("kernelbench:"):
        rest = spec.removeprefix("kernelbench:")
        path_text, _, level_text = rest.partition(":") if not Path(rest).exists() else (rest, "", "")
        levels = [int(x) for x in level_text.split(",") if x.strip()] or None
        path = Path(path_text)
    else:
        path = Path(spec)
    if not path.is_dir():
        raise TaskError(f"suite {spec!r}: expected 'builtin', 'kernelbench:PATH[:1,2]' or a folder of task files.")
    root = _kernelbench_root(path)
    if root is None:
        return load_task_dir(path)
    found = sorted(int(p.name.removeprefix("level")) for p in root.glob("level[0-9]"))
    tasks = []
    for level in levels or found:
        folder = root / f"level{level}"
        if not folder.is_dir():
            raise TaskError(f"suite {spec!r}: no folder {folder}; levels present: {found}.")
        tasks += [_with_level_prefix(t, level) for t in load_task_dir(folder, level=level)]
    return tasks


def _with_level_prefix(task: Task, level: int) -> Task:
    """KernelBench file names repeat across levels (1_..., 2_...): ids become 'L1/19_ReLU'."""
    import dataclasses

    return dataclasses.replace(task, task_id=f"L{level}/{task.task_id}")
