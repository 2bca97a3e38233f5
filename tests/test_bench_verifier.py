"""benchmarks/bench_verifier.py: its batch exists and mixes passing solutions with rejected fixtures; the timing
itself is a benchmark (docs/benchmarks.md section 8), not a test."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

PATH = Path(__file__).resolve().parents[1] / "benchmarks/bench_verifier.py"
spec = importlib.util.spec_from_file_location("bench_verifier", PATH)
bench = importlib.util.module_from_spec(spec)
sys.modules.setdefault("bench_verifier", bench)
spec.loader.exec_module(bench)


def test_batch_is_solutions_then_rejected_fixtures():
    items = bench.batch()
    assert len(items) == len(bench.SOLVED) + len(bench.REJECTED) == 10
    assert [t.task_id for t, _ in items[: len(bench.SOLVED)]] == list(bench.SOLVED)
    assert all("ModelNew" in code for _, code in items)
