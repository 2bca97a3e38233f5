"""`tritonrl tasks check`: can every task of a suite be verified? Loads each reference (AST only), plans its CPU-scale
base shape and shape family (running the reference on each), and reports per task what fails and why."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Iterable

from tritonrl.errors import TaskError
from tritonrl.tasks.schema import Task
from tritonrl.tasks.shapes import plan_shapes


@dataclasses.dataclass(frozen=True, slots=True)
class TaskCheck:
    task_id: str
    level: int | None
    ok: bool
    base: dict[str, int]
    n_variants: int
    notes: tuple[str, ...]
    error: str
    seconds: float


def check_task(task: Task, *, device: str = "cpu", n_variants: int = 2) -> TaskCheck:
    """Plan one task; a broken reference becomes ok=False with the reason (never an exception)."""
    t0 = time.perf_counter()
    try:
        plan = plan_shapes(task, device=device, n_variants=n_variants)
    except TaskError as exc:
        return TaskCheck(task.task_id, task.level, False, {}, 0, (), str(exc), time.perf_counter() - t0)
    ok = len(plan.variants) >= min(1, n_variants)
    error = "" if ok else "no shape-family variant survived validation"
    return TaskCheck(task.task_id, task.level, ok, dict(plan.base), len(plan.variants), tuple(plan.notes), error,
                     time.perf_counter() - t0)  # fmt: skip


def check_tasks(
    tasks: Iterable[Task], *, device: str = "cpu", n_variants: int = 2, on_result: Callable | None = None
) -> list[TaskCheck]:
    results = []
    for task in tasks:
        result = check_task(task, device=device, n_variants=n_variants)
        results.append(result)
        if on_result:
            on_result(result)
    return results
