"""scripts/gpu_train_smoke.sh on the CPU: the same `tritonrl train` commands the GPU smoke runs, with --device cpu.

The script builds the tiny model, runs sft, grpo (policy and scripted rollouts) and best-of-n (policy and scripted)
on the built-in tasks, and its summary step fails unless every run trained as it must. ~3 min on 2 CPU cores.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_gpu_smoke_script_runs_on_cpu(tmp_path):
    pytest.importorskip("trl")
    pytest.importorskip("peft")
    env = {**os.environ, "DEVICE": "cpu", "STEPS": "2", "WORKERS": "2", "PY": sys.executable,
           "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), os.environ.get("PYTHONPATH", "")])}  # fmt: skip
    proc = subprocess.run(["bash", str(ROOT / "scripts" / "gpu_train_smoke.sh"), str(tmp_path)], env=env,
                          capture_output=True, text=True, timeout=900)  # fmt: skip
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "smoke passed" in proc.stdout
    assert "grpo_scripted steps=2 lora_B_moved=14/14" in proc.stdout
    log = json.loads((tmp_path / "grpo_scripted" / "train_log.json").read_text())
    assert log["verify"]["metamorphic"] and log["extensions"]["hrd"]  # the all_extensions preset reached the run
    assert any(h.get("kernel/correct_frac") == 0.5 for h in log["log_history"])
