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


def test_warm_mode_forks_its_workers_unless_told_to_spawn(monkeypatch, capsys):
    import json

    import pytest

    from tritonrl.verify import verifier

    items = bench.batch()[:1]  # one passing relu: the modes' plumbing, not their timing
    monkeypatch.setattr(bench, "batch", lambda: items)
    seen: list[bool] = []
    real_init = verifier.Verifier.__init__

    def init(self, *args, **kwargs):  # noqa: ANN001, ANN202 - records the choice, then the real Verifier runs
        seen.append(kwargs["fork_server"])
        real_init(self, *args, **kwargs)

    monkeypatch.setattr(verifier.Verifier, "__init__", init)
    for flags, forked in (([], True), (["--spawn"], False)):
        assert bench.main(["--mode", "warm", "--jobs", "1", *flags]) == 0
        line = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
        assert line["fork_server"] is forked and line["stages"] == ["passed"]
    assert seen == [True, False]
    with pytest.raises(SystemExit):
        bench.main(["--mode", "warm", "--spawn", "--fork-server"])
