"""benchmarks/bench_kernelbench.py on the CPU, against a fake KernelBench checkout: the eval module loads without
its package's __init__, its imports are reported, and the runner turns a hang, a crash, an exception and a
`None` return into rejections with workers replaced. KernelBench's real eval needs CUDA; that run is a benchmark."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[1] / "benchmarks"

FAKE_EVAL = """
import os, time
from . import timing


class Result:
    def __init__(self, correct):
        self.compiled, self.correctness, self.runtime, self.ref_runtime = True, correct, 1.0, 2.0
        self.metadata = {} if correct else {"correctness_issue": "Output mismatch"}


def eval_kernel_against_ref(original_model_src, custom_model_src, seed_num=42, num_correct_trials=1,
                            num_perf_trials=10, measure_performance=False, verbose=False, build_dir=None,
                            device=None, backend="cuda"):
    assert backend == "triton" and num_correct_trials == 5
    print("noise on stdout")
    if "IMPORT" in custom_model_src:
        import not_a_module_anywhere_xyz  # noqa: F401
    if "HANG" in custom_model_src:
        time.sleep(600)
    if "CRASH" in custom_model_src:
        os._exit(3)
    if "RAISE" in custom_model_src:
        raise TypeError("ModelNew() takes no arguments")
    if "NONE" in custom_model_src:
        return None
    return Result("GOOD" in custom_model_src)
"""


@pytest.fixture
def kb(monkeypatch):
    monkeypatch.syspath_prepend(str(BENCH))  # the spawned workers import the module by name
    import bench_kernelbench

    yield bench_kernelbench
    for name in [m for m in sys.modules if m == "kernelbench" or m.startswith("kernelbench.")]:
        del sys.modules[name]  # each test's fake checkout is loaded afresh


def fake_checkout(root: Path, body: str) -> Path:
    pkg = root / "src/kernelbench"
    pkg.mkdir(parents=True)
    (pkg / "__init__.py").write_text("raise ImportError('the package __init__ must not run')\n")
    (pkg / "timing.py").write_text("import json\n")
    (pkg / "eval.py").write_text(body)
    return root


def test_import_report_names_call_time_imports_and_missing_modules(kb, tmp_path):
    report = kb.import_report(fake_checkout(tmp_path, FAKE_EVAL))
    assert report["eval_module"] == "src/kernelbench/eval.py"
    assert report["third_party_imports"]["eval.py at call"] == ["not_a_module_anywhere_xyz"]
    assert report["missing"] == ["not_a_module_anywhere_xyz"]


def test_runner_rejects_hang_crash_exception_and_none(kb, tmp_path):
    root = fake_checkout(tmp_path, FAKE_EVAL)
    names = ["a GOOD", "b GOOD HANG", "c CRASH", "d RAISE", "e NONE", "f GOOD", "g bad", "h GOOD"]
    batch = [kb.Candidate(n.split()[0], "GOOD" in n, "ref", n) for n in names]
    batch[6] = kb.Candidate("g", False, "ref", "g GOOD")  # a known-bad candidate that the harness accepts
    # 20 s: the hang costs exactly this, and a spawned worker's start took over 5 s on 2 loaded cores (a false timeout)
    out = kb.run(root, batch, procs=2, opts=kb.Options(timeout_s=20), progress=lambda m: None)
    assert out["accepted_good"] == 3 and out["good"] == 4
    assert out["accepted_bad"] == ["g"]
    assert out["timeouts"] == 1
    errors = {e["name"]: e["error"] for e in out["errors"]}
    assert errors["c"].startswith("worker process died (exit code 3)")
    assert errors["d"].startswith("raised TypeError")
    assert "returned None" in errors["e"]
    assert out["worker_starts"] >= 3  # two slots, and a new worker after the crash (the hung one: if used again)
    rows = {r["name"]: r for r in out["per_candidate"]}
    assert rows["a"]["speedup"] == 2.0 and "log_tail" not in rows["a"]
    assert "noise on stdout" in rows["d"]["log_tail"]


def test_a_checkout_without_an_eval_module_is_an_infrastructure_error(kb, tmp_path):
    with pytest.raises(kb.KernelBenchUnavailable, match="pass a KernelBench checkout"):
        kb.locate(tmp_path)


def test_dry_run_binds_the_call_and_lists_absent_optional_parameters(kb, tmp_path):
    batch = [kb.Candidate("relu#0", True, "class Model: pass\ndef get_inputs(): pass\n", "class ModelNew: pass\n")]
    plan = kb.dry_run(fake_checkout(tmp_path, FAKE_EVAL), batch, kb.Options())
    assert plan["bound_kwargs"]["backend"] == "triton" and plan["bound_kwargs"]["device"] == "cuda:0"
    assert plan["optional_params_absent"] == ["timing_method", "precision"]
    assert plan["sources_lacking"] == ["relu#0 reference: no get_init_inputs"]
