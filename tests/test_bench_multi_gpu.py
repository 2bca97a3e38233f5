"""benchmarks/bench_multi_gpu.py on the CPU: the plan of GPU counts (N=1 included) and the mixed batch; nothing is
measured (that needs GPUs)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

PATH = Path(__file__).resolve().parents[1] / "benchmarks/bench_multi_gpu.py"
spec = importlib.util.spec_from_file_location("bench_multi_gpu", PATH)
bench = importlib.util.module_from_spec(spec)
sys.modules.setdefault("bench_multi_gpu", bench)  # dataclasses look their module up
spec.loader.exec_module(bench)


def test_default_counts_double_up_to_every_gpu():
    assert bench.gpu_counts(None, 1) == [1]
    assert bench.gpu_counts(None, 8) == [1, 2, 4, 8]
    assert bench.gpu_counts(None, 6) == [1, 2, 4, 6]
    assert bench.gpu_counts("2,1", 2) == [1, 2]
    with pytest.raises(SystemExit, match="1..2"):
        bench.gpu_counts("4", 2)


def test_plan_adds_training_only_with_a_model():
    assert bench.plan(bench.parse_args([]), 2) == [bench.Step("verify", 1), bench.Step("verify", 2)]
    steps = bench.plan(bench.parse_args(["--train-model", "m", "--gpus", "1"]), 2)
    assert steps == [bench.Step("verify", 1), bench.Step("train", 1)]


def test_mixed_batch_has_passing_and_known_bad_candidates():
    batch = bench.mixed_batch()
    headers = [f.read_text().startswith("# expect: stage=") for _, f in batch]
    assert any(headers) and not all(headers)
    assert not any(f.name.startswith(bench.SLOW) for _, f in batch)
