"""`tritonrl tasks check`: can every task of a suite be verified? Loads each reference (AST only), plans its CPU-scale
base shape and shape family (running the reference on each), and reports per task what fails and why."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Iterable

from tritonrl.errors import TaskError
from tritonrl.tasks.schema import Task
from tritonrl.tasks.shapes import plan_shapes

# Tasks without size constants (all literal dims < 16, no named extents) cannot have a shape family; the verifier checks
# them at their one shape (every value distribution), so they pass the check with this note.
NO_SIZES_NOTE = "single shape: no size constants to vary (weak: a shape-specialised kernel passes)"


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

    @property
    def reason(self) -> str:
        """`error` on one line, without the repeated "task <id>: " prefixes (for one-line reports)."""
        text = " ".join(self.error.replace(f"task {self.task_id}: ", "").split())
        return text[:1].upper() + text[1:]


def check_task(task: Task, *, device: str = "cpu", n_variants: int = 2) -> TaskCheck:
    """Plan one task; a broken reference becomes ok=False with the reason (never an exception)."""
    t0 = time.perf_counter()
    try:
        plan = plan_shapes(task, device=device, n_variants=n_variants)
    except TaskError as exc:
        return TaskCheck(task.task_id, task.level, False, {}, 0, (), str(exc), time.perf_counter() - t0)
    notes = tuple(plan.notes)
    if not task.free_size_constants:  # nothing to vary (KernelBook's torch.rand([4, 4]) inputs): one shape, honestly
        ok, error = True, ""
        notes += (NO_SIZES_NOTE,)
    else:
        ok = len(plan.variants) >= min(1, n_variants)
        error = "" if ok else "no shape-family variant survived validation"
    return TaskCheck(task.task_id, task.level, ok, dict(plan.base), len(plan.variants), notes, error,
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
