"""benchmarks/bench_timing_gpu.py on the CPU: the batch's order, and a throughput run cut by a time limit keeps
what it measured (the verifier is replaced by a stand-in; measuring needs a GPU)."""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import bench_timing_gpu as bench  # noqa: E402 - a script of benchmarks/


def test_the_batch_alternates_good_and_bad_candidates():
    batch = bench.mixed_batch(10, 1)
    assert [good for _, good, _, _ in batch] == [True, False] * 5


def test_a_throughput_run_cut_by_sigterm_writes_what_it_measured(tmp_path, monkeypatch):
    import tritonrl.verify.verifier as verifier

    class _Verdict:
        task_id, passed = "relu", True
        stage = type("S", (), {"value": "done"})()

    def cut_after_two(items, cfg, jobs, on_verdict, fork_server=None):  # noqa: ANN001, ANN202
        on_verdict(0, _Verdict())
        on_verdict(1, _Verdict())
        os.kill(os.getpid(), signal.SIGTERM)  # what `timeout` does
        time.sleep(5)
        raise AssertionError("the signal did not stop the run")

    monkeypatch.setattr(bench, "verify", lambda *a, **kw: None)
    monkeypatch.setattr(verifier, "verify_many", cut_after_two)
    out = tmp_path / "thr.json"
    args = argparse.Namespace(n=4, copies=1, jobs=2, out=out, spawn=False)
    before = signal.getsignal(signal.SIGTERM)
    with pytest.raises(KeyboardInterrupt):
        bench.throughput(args)
    partial = json.loads(out.read_text())
    assert partial["partial"] and partial["verdicts"] == 2 and partial["candidates"] == 4
    assert [r["name"] for r in partial["rows"]] == [bench.mixed_batch(4, 1)[i][0] for i in (0, 1)]
    assert partial["per_minute_so_far"] > 0 and "gpu_s" in partial["timeline"]
    assert signal.getsignal(signal.SIGTERM) is before  # restored for whatever runs next
