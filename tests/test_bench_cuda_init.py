"""benchmarks/bench_cuda_init.py on the CPU: children forked together start together and report their step's wall and
CPU time; a step that fails (no CUDA here) is counted, not hidden. The CUDA numbers come from the device."""

from __future__ import annotations

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import bench_cuda_init as bench  # noqa: E402 - a script of benchmarks/


def test_children_released_together_overlap_and_report_wall_and_cpu_time():
    row = bench.trial("sleep", 4)
    assert row["ok"] == 4 and not row["errors"]
    assert 0.19 <= row["init_min_s"] <= row["init_median_s"] <= row["init_max_s"] < 1.0
    assert row["wall_s"] < 4 * 0.2  # released at once, not one after another
    assert row["cpu_per_child_s"] < 0.1  # a sleep burns no CPU: the rusage is the step's own


def test_a_failing_step_is_reported_and_fails_the_run(tmp_path, capsys):
    out = tmp_path / "rows.json"
    rc = bench.main(["--modes", "driver", "sleep", "--counts", "2", "--out", str(out)])
    rows = json.loads(out.read_text())
    assert rc == 1  # libcuda is not on this machine: the driver children fail
    driver, sleep = rows
    assert driver["ok"] == 0 and len(driver["errors"]) == 2 and "libcuda" in driver["errors"][0]
    assert sleep["ok"] == 2
    assert len(capsys.readouterr().out.splitlines()) == 2
