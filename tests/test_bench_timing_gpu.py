"""benchmarks/bench_timing_gpu.py on the CPU: the batch's order, a throughput run cut by a time limit keeps what it
measured (the verifier is replaced by a stand-in there; measuring needs a GPU), and the forked workers' CPU accounting
(a real Verifier with a fork server)."""

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


def test_forked_workers_cpu_is_counted_through_the_fork_server_not_rusage_children():
    """`zygote_cpu_s` (the worker CPU-s behind docs/benchmarks.md 9c's 13.4 vs 19.8): a forked worker is the fork
    server's child, so the parent's RUSAGE_CHILDREN never sees it; the server's /proc counters do."""
    import resource

    from tritonrl.tasks.loader import builtin_task
    from tritonrl.verify.config import VerifyConfig
    from tritonrl.verify.forkserver import server_pids
    from tritonrl.verify.verifier import Verifier

    relu = builtin_task("relu")
    cfg = VerifyConfig(device="cpu", timing=False, compile_baseline=False)
    with Verifier(cfg, jobs=1, prestart=0, keep_warm=False, fork_server=True) as verifier:
        good = Path(relu.solution_path).read_text()
        assert verifier.verify(relu, good).passed  # starts the fork server: its own start is not measured below
        pids = server_pids()
        before = bench.zygote_cpu_s(), resource.getrusage(resource.RUSAGE_CHILDREN)
        verdict = verifier.verify(relu, good + "\n# another candidate\n")
        after = bench.zygote_cpu_s(), resource.getrusage(resource.RUSAGE_CHILDREN)
    assert verdict.passed and pids and set(pids) <= set(server_pids())
    forked = after[0] - before[0]
    reaped_by_us = (after[1].ru_utime + after[1].ru_stime) - (before[1].ru_utime + before[1].ru_stime)
    assert forked >= 0.2  # the worker ran a Triton kernel under the interpreter: tenths of a second at least
    assert reaped_by_us < forked / 2  # what RUSAGE_CHILDREN would have reported: not the worker's CPU
