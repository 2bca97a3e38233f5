"""verify/funnel.py end to end on the CPU: every candidate fixture fails at its declared (stage, kind), and every
built-in task's reference solution passes every check.

Each fixture's first line declares what the funnel must report:
`# expect: stage=<stage> failure=<kind> [static=off] [policy=partial] [timeout=N]  -- why` or `# expect: pass`.
The fixture's directory name is the built-in task id. Kernels run in the Triton interpreter inside the worker.
"""

from __future__ import annotations

import functools
from pathlib import Path

import pytest

from tritonrl.tasks.loader import builtin_task, builtin_tasks
from tritonrl.tasks.schema import Task
from tritonrl.types import FailureKind, Stage
from tritonrl.verify.config import VerifyConfig
from tritonrl.verify.expect import parse_expectation
from tritonrl.verify.funnel import verify

ROOT = Path(__file__).resolve().parents[2]
# The demo's bundled bad examples are fixtures too (kept once, in the package, so `tritonrl demo` ships them).
FIXTURES = sorted(
    p
    for r in (ROOT / "tests/fixtures/candidates", ROOT / "src/tritonrl/tasks/builtin/examples")
    for p in r.glob("*/*")
    if p.suffix in (".py", ".txt")
)
TASK_IDS = sorted(t.task_id for t in builtin_tasks())


@functools.cache
def _task(task_id: str) -> Task:
    return builtin_task(task_id)


@pytest.fixture(scope="module")
def task_cache():
    """Tasks loaded once per module (per xdist worker); `verify` caches their shape plans in-process by Task."""
    return _task


def _fixture_id(path: Path) -> str:
    return f"{path.parent.name}/{path.name}"


def test_every_fixture_directory_is_a_builtin_task():
    assert {p.parent.name for p in FIXTURES} <= set(TASK_IDS)


@pytest.mark.parametrize("path", FIXTURES, ids=_fixture_id)
def test_fixture_header_parses(path: Path):
    parse_expectation(path.read_text())


@pytest.mark.parametrize("path", FIXTURES, ids=_fixture_id)
def test_fixture_verdict_matches_header(path: Path, task_cache):
    text = path.read_text()
    expect = parse_expectation(text)
    verdict = verify(task_cache(path.parent.name), text, expect.config())
    if expect.passed:
        assert verdict.passed, f"{verdict.stage.value}/{verdict.failure}: {verdict.message}"
        assert verdict.stage is Stage.DONE
        return
    got = (verdict.stage, verdict.failure)
    assert got == (expect.stage, expect.failure), f"got {got}: {verdict.message}\nstderr: {verdict.stderr[-2000:]}"
    assert not verdict.passed


@pytest.mark.parametrize("task_id", TASK_IDS)
def test_reference_solution_passes_every_check(task_id: str, task_cache):
    task = task_cache(task_id)
    assert task.solution_path is not None, f"builtin task {task_id} ships no solution"
    verdict = verify(task, Path(task.solution_path).read_text(), VerifyConfig())
    assert verdict.passed and verdict.stage is Stage.DONE, f"{verdict.stage.value}/{verdict.failure}: {verdict.message}"
    assert len(verdict.checks) >= 9  # 4 shapes (base + the coverage rule's 3) x >= 3 value distributions
    assert verdict.extra["coverage"]["not_covered"] == {}, verdict.extra["coverage"]  # tasks/coverage.py's rule
    assert all(c.passed for c in verdict.checks), [c.case for c in verdict.checks if not c.passed]
    assert verdict.provenance is not None and verdict.provenance.candidate_kernels
    assert verdict.provenance.ghost_replay_changed_output is True


# --- known bypasses of the runtime layers (static checks off, as in the runtime_* fixtures) ----------------------

_SOLUTION = Path(builtin_task("relu").solution_path).read_text()


def _relu_solution_with(imports: str, forward_prologue: str) -> str:
    """The relu reference solution with extra imports and statements at the start of forward (a correct answer)."""
    body = "".join(f"        {line}\n" for line in forward_prologue.strip().splitlines())
    src = _SOLUTION.replace("import torch\n", f"import torch\n{imports}", 1)
    return src.replace("        x = x.contiguous()\n", body + "        x = x.contiguous()\n", 1)


RAW_THREAD_READ = _relu_solution_with(
    "import _thread\n",
    """
box, lock = [], _thread.allocate_lock()
lock.acquire()
def peek():
    try:
        box.append(open("/etc/hostname").read())
    finally:
        lock.release()
_thread.start_new_thread(peek, ())
lock.acquire()
""",
)
IMPORTLIB_READ = _relu_solution_with(
    "import importlib.machinery\n",
    'importlib.machinery.SourceFileLoader("x", "/etc/hostname").get_data("/etc/hostname")',
)
RAW_THREAD_LEFT_RUNNING = _relu_solution_with(
    "import _thread\nimport time\n", "_thread.start_new_thread(time.sleep, (30,))"
)


SIGNAL_HANDLER = _relu_solution_with("import signal\n", "signal.signal(signal.SIGUSR1, lambda *a: None)")


def test_a_signal_handler_installed_by_the_candidate_is_tampering(task_cache):
    """A Python signal handler runs candidate code whenever its signal arrives: outside recording windows, between GPU
    steps, during another candidate's timing. No audit event sees it installed; the integrity snapshot does."""
    verdict = verify(task_cache("relu"), SIGNAL_HANDLER, VerifyConfig(static_checks=False))
    assert (verdict.stage, verdict.failure) == (Stage.PROVENANCE, FailureKind.TAMPERING), verdict.message
    assert "signal handler SIGUSR1" in verdict.message


def test_raw_thread_started_by_the_candidate_is_refused(task_cache):
    """Starting the thread is refused before its body can read anything (dispatch modes are per thread, so work in
    a thread would escape the Recorder as well as the guard's origin attribution)."""
    verdict = verify(task_cache("relu"), RAW_THREAD_READ, VerifyConfig(static_checks=False))
    assert (verdict.stage, verdict.failure) == (Stage.PROVENANCE, FailureKind.PROCESS_SPAWN), verdict.message


def test_file_read_through_importlib_get_data_is_file_access(task_cache):
    verdict = verify(task_cache("relu"), IMPORTLIB_READ, VerifyConfig(static_checks=False))
    assert (verdict.stage, verdict.failure) == (Stage.PROVENANCE, FailureKind.FILE_ACCESS), verdict.message


def test_raw_thread_left_running_is_process_spawn(task_cache):
    verdict = verify(task_cache("relu"), RAW_THREAD_LEFT_RUNNING, VerifyConfig(static_checks=False))
    assert (verdict.stage, verdict.failure) == (Stage.PROVENANCE, FailureKind.PROCESS_SPAWN), verdict.message
