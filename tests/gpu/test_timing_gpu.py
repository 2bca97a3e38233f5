"""The timing stage on a CUDA GPU (marker `gpu`): honest kernels get a speedup with its statistics, GPU-only cheats
are rejected at the stage and kind their `# expect:` header names, and batch verification with warm workers gives
the same verdicts. Run on the device: `python3 -m pytest -m gpu tests/gpu -n 4`.
"""

from __future__ import annotations

import functools
from pathlib import Path

import pytest

from tritonrl.tasks.loader import builtin_task, builtin_tasks
from tritonrl.tasks.schema import Task
from tritonrl.types import Stage
from tritonrl.verify.config import VerifyConfig
from tritonrl.verify.expect import parse_expectation
from tritonrl.verify.funnel import verify
from tritonrl.verify.verifier import verify_many

pytestmark = pytest.mark.gpu

ROOT = Path(__file__).resolve().parents[2]
GPU_FIXTURES = sorted((ROOT / "tests/fixtures/gpu_candidates").glob("*/*.py"))
TASK_IDS = sorted(t.task_id for t in builtin_tasks())


@functools.cache
def _task(task_id: str) -> Task:
    return builtin_task(task_id)


@pytest.mark.parametrize("task_id", TASK_IDS)
def test_solution_is_timed(task_id: str):
    task = _task(task_id)
    cfg = VerifyConfig(device="cuda", compile_baseline=task_id in ("relu", "matmul"))
    verdict = verify(task, Path(task.solution_path).read_text(), cfg)
    assert verdict.passed, f"{verdict.stage}/{verdict.failure}: {verdict.message}"
    timing = verdict.timing
    assert verdict.speedup is not None and verdict.speedup > 0
    lo, hi = timing.speedup_ci95
    assert lo <= verdict.speedup <= hi
    assert timing.gpu and timing.n_reps[0] >= 20 and timing.mode in ("events", "cuda_graph")
    roof = timing.roofline
    assert roof.floor_us <= timing.cand_us and 0 < roof.bandwidth_fraction + roof.flops_fraction
    if cfg.compile_baseline:
        assert timing.speedup_compile > 0 and verdict.speedup_of("compile") == timing.speedup_compile


@pytest.mark.parametrize("path", GPU_FIXTURES, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_gpu_cheat_rejected(path: Path):
    text = path.read_text()
    expect = parse_expectation(text)
    verdict = verify(_task(path.parent.name), text, expect.config(device="cuda", compile_baseline=False))
    assert expect.met_by(verdict), f"expected {expect.label}, got {verdict.stage}/{verdict.failure}: {verdict.message}"
    assert verdict.speedup is None


def test_timing_off_gives_no_speedup():
    task = _task("relu")
    verdict = verify(task, Path(task.solution_path).read_text(), VerifyConfig(device="cuda", timing=False))
    assert verdict.passed and verdict.speedup is None and verdict.timing is None
    assert verdict.stage is Stage.DONE


def test_verify_many_matches_verify():
    items = [(_task(t), Path(_task(t).solution_path).read_text()) for t in ("relu", "softmax", "matmul", "row_sum")]
    items += [(_task(p.parent.name), p.read_text()) for p in GPU_FIXTURES[:3]]
    cfg = VerifyConfig(device="cuda", compile_baseline=False)
    seen: list[int] = []
    verdicts = verify_many(items, cfg, jobs=4, on_verdict=lambda i, v: seen.append(i))
    assert sorted(seen) == list(range(len(items)))
    for (task, text), verdict in zip(items, verdicts, strict=True):
        assert verdict.task_id == task.task_id
        expected = verify(task, text, cfg)
        assert (verdict.passed, verdict.stage, verdict.failure) == (expected.passed, expected.stage, expected.failure)


def test_fork_server_matches_spawned_workers():
    """Workers forked from the warm zygote (CUDA initialised in each child, Triton's CUDA helpers prebuilt before the
    fork) give the verdicts that freshly spawned workers give."""
    items = [(_task(t), Path(_task(t).solution_path).read_text()) for t in ("relu", "softmax", "layernorm", "matmul")]
    items += [(_task(p.parent.name), p.read_text()) for p in GPU_FIXTURES[:4]]
    cfg = VerifyConfig(device="cuda", compile_baseline=False)
    forked = verify_many(items, cfg, jobs=4, fork_server=True)
    spawned = verify_many(items, cfg, jobs=4, fork_server=False)
    for a, b in zip(forked, spawned, strict=True):
        assert (a.passed, a.stage, a.failure) == (b.passed, b.stage, b.failure), a.message
    assert all(v.passed and v.speedup for v in forked[:4])
