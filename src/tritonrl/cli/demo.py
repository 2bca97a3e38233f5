"""The bundled demo: verify every built-in task's reference Triton solution (all must pass) and the bundled bad
candidates in `tasks/builtin/examples/` (each must be rejected at the stage and with the kind its header names)."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from tritonrl.tasks.loader import builtin_task, builtin_tasks
from tritonrl.types import Verdict
from tritonrl.verify.config import VerifyConfig
from tritonrl.verify.expect import parse_expectation
from tritonrl.verify.funnel import verify

EXAMPLES = Path(__file__).parents[1] / "tasks" / "builtin" / "examples"


@dataclasses.dataclass(frozen=True, slots=True)
class DemoRow:
    name: str
    expected: str  # "pass" or "<stage>/<failure>"
    verdict: Verdict

    @property
    def outcome(self) -> str:
        v = self.verdict
        return "pass" if v.passed else f"{v.stage.value}/{v.failure.value if v.failure else '?'}"

    @property
    def as_expected(self) -> bool:
        return self.outcome == self.expected


def demo_cases() -> list[tuple[str, str, str, str]]:
    """(name, task_id, candidate text, expected outcome) for every demo candidate."""
    cases = []
    for task in builtin_tasks():
        if task.solution_path:
            cases.append(
                (f"{task.task_id}: reference solution", task.task_id, Path(task.solution_path).read_text(), "pass")
            )
    for path in sorted(EXAMPLES.glob("*/*.py")):
        text = path.read_text()
        cases.append((f"{path.parent.name}: {path.stem}", path.parent.name, text, parse_expectation(text).label))
    return cases


def run_demo(cfg: VerifyConfig, *, jobs: int = 2, on_result: Callable[[DemoRow], None] | None = None) -> list[DemoRow]:
    cases = demo_cases()

    def one(case: tuple[str, str, str, str]) -> DemoRow:
        name, task_id, text, expected = case
        row = DemoRow(name, expected, verify(builtin_task(task_id), text, cfg))
        if on_result:
            on_result(row)
        return row

    with ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
        return list(pool.map(one, cases))


def export_candidates(folder: Path) -> int:
    """Write the demo's candidates as an eval folder (`<task_id>/<name>.py`) so `tritonrl eval` can run them."""
    count = 0
    for name, task_id, text, _ in demo_cases():
        stem = "solution" if name.endswith("reference solution") else name.split(": ", 1)[1]
        target = folder / task_id / f"{stem}.py"
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text)
        count += 1
    return count
