"""The GPU-only cheat fixtures (`tests/fixtures/gpu_candidates/`, run on a GPU by tests/gpu/test_timing_gpu.py), on
the CPU: streams, graphs and timer patches are refused by the static layer already; the others behave honestly for
their first 40 calls, which is all a CPU verification makes (no timing stage there), so they pass here and are caught
only once timing starts on a GPU. This pins which layer is responsible for which cheat."""

from __future__ import annotations

from pathlib import Path

import pytest

from tritonrl.tasks.loader import builtin_task
from tritonrl.types import Stage
from tritonrl.verify.config import VerifyConfig
from tritonrl.verify.expect import parse_expectation
from tritonrl.verify.funnel import verify

GPU_FIXTURES = sorted((Path(__file__).resolve().parents[2] / "tests/fixtures/gpu_candidates").glob("*/*.py"))


def test_there_is_one_fixture_per_gpu_cheat_class():
    names = {p.stem for p in GPU_FIXTURES}
    for cheat in ("side_stream", "cache_by_address", "patch_event_timer", "uninitialised_output", "graph_replay",
                  "switch_to_cublas"):  # fmt: skip
        assert any(cheat in n for n in names), cheat


HONEST_ON_CPU = {"cache_by_address_after_warmup", "switch_to_cublas_after_warmup", "uninitialised_output_after_warmup"}


@pytest.mark.parametrize("path", GPU_FIXTURES, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_cpu_verdict_of_gpu_cheat(path: Path):
    text = path.read_text()
    assert not parse_expectation(text).passed
    verdict = verify(builtin_task(path.parent.name), text, VerifyConfig(device="cpu"))
    if path.stem in HONEST_ON_CPU:
        assert verdict.passed and verdict.speedup is None, verdict.message
    else:
        assert not verdict.passed and verdict.stage is Stage.STATIC, verdict.message
