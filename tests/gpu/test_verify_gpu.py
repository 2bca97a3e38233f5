"""The CPU fixtures and reference solutions, verified on a CUDA GPU (marker `gpu`; skipped without CUDA).

Same files, same expected verdicts: the sandbox (network namespace, audit guard, limits), the provenance recorder
and the comparison must behave the same with CUDA kernels as with the Triton interpreter. Run on the device with
`python3 -m pytest -m gpu tests/gpu -n 4`.
"""

from __future__ import annotations

import functools
from pathlib import Path

import pytest

from tritonrl.tasks.loader import builtin_task, builtin_tasks
from tritonrl.tasks.schema import Task
from tritonrl.verify.config import VerifyConfig
from tritonrl.verify.expect import parse_expectation
from tritonrl.verify.funnel import verify

pytestmark = pytest.mark.gpu

ROOT = Path(__file__).resolve().parents[2]
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


# Fixtures whose GPU verdict legitimately differs, with the reason (a property of the candidate, not the verifier).
GPU_DIFFERS = {
    "softmax/redteam_honest_helpers_static_range.py": "fully unrolls 3 x dim/256 = 192 blocks at the default dim "
    "16384, so Triton's compile alone outlasts the time limit on the GPU (it is verified on the CPU at scaled sizes)",
    "relu/missing_tail_mask.py": "its grid is n // BLOCK: at the GPU's size-1 coverage variant that is zero programs, "
    "so it is rejected as no_triton_launch before any output is compared (unwritten_output on the CPU's sizes)",
}


@pytest.mark.parametrize("path", FIXTURES, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_fixture_verdict_on_cuda(path: Path):
    if (reason := GPU_DIFFERS.get(f"{path.parent.name}/{path.name}")) is not None:
        pytest.skip(reason)
    text = path.read_text()
    expect = parse_expectation(text)
    verdict = verify(_task(path.parent.name), text, expect.config(device="cuda", compile_baseline=False))
    assert expect.met_by(verdict), f"expected {expect.label}, got {verdict.stage}/{verdict.failure}: {verdict.message}"


@pytest.mark.parametrize("task_id", TASK_IDS)
def test_reference_solution_passes_on_cuda(task_id: str):
    task = _task(task_id)
    verdict = verify(task, Path(task.solution_path).read_text(), VerifyConfig(device="cuda", compile_baseline=False))
    assert verdict.passed, f"{verdict.stage}/{verdict.failure}: {verdict.message}"
    assert verdict.extra["sandbox"]["network"] in ("netns", "audit-hook")


@pytest.mark.parametrize("task_id", TASK_IDS)
def test_reference_solution_satisfies_the_metamorphic_relations_on_cuda(task_id: str):
    """cuBLAS/cuDNN references and Triton's tl.dot must keep the permute/scale/swap laws exact (or the parent drops a
    law): every relation kept on the GPU holds for the bundled solution."""
    from tritonrl.verify.config import VerifyConfig

    task = _task(task_id)
    verdict = verify(
        task, Path(task.solution_path).read_text(), VerifyConfig(device="cuda", metamorphic=True, timing=False)
    )
    assert verdict.passed, f"{verdict.stage}/{verdict.failure}: {verdict.message}"
    kept = [n for n in verdict.extra["notes"] if n.startswith("metamorphic")]
    assert kept and all(c.passed for c in verdict.checks if c.case.endswith(":relation")), kept
