"""`tritonrl eval` interrupted for real: Ctrl-C (SIGINT) and `kill -9` in the middle of a run, then the same command
again. Nothing recorded is lost, nothing is recorded twice, and the rerun finishes the rest."""

from __future__ import annotations

import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SOL = ROOT / "src/tritonrl/tasks/builtin/solutions"
N = 4  # distinct candidates: relu and leaky_relu solutions, twice each with a comment to make them distinct


def _candidates(root: Path) -> Path:
    for task in ("relu", "leaky_relu"):
        (root / task).mkdir(parents=True)
        for i in range(N // 2):
            (root / task / f"{i}.py").write_text(f"# variant {i}\n" + (SOL / f"{task}.py").read_text())
    return root


def _eval(cands: Path, run: Path) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "tritonrl.cli.main", "eval", "--suite", "builtin", "--tasks", "relu,leaky_relu",
           "--candidates", str(cands), "--run", str(run), "--device", "cpu", "--jobs", "1", "--json"]  # fmt: skip
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=ROOT)


def _verdicts(run: Path) -> int:
    db = run / "results.sqlite"
    if not db.exists():
        return 0
    try:
        with sqlite3.connect(db, timeout=5) as conn:
            return conn.execute("SELECT COUNT(*) FROM verdicts").fetchone()[0]
    except sqlite3.OperationalError:
        return 0  # the table is not created yet


def _wait_for_first_verdict(proc: subprocess.Popen, run: Path, limit_s: float = 120) -> None:
    end = time.monotonic() + limit_s
    while _verdicts(run) < 1:
        assert proc.poll() is None, proc.stderr.read().decode()[-2000:]
        assert time.monotonic() < end, "no verdict recorded in time"
        time.sleep(0.2)


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGKILL], ids=["ctrl-c", "kill-9"])
def test_interrupted_eval_resumes_without_loss_or_duplicates(tmp_path, sig):
    cands, run = _candidates(tmp_path / "c"), tmp_path / "run"
    proc = _eval(cands, run)
    _wait_for_first_verdict(proc, run)
    os.kill(proc.pid, sig)
    code = proc.wait(timeout=120)
    done_before = _verdicts(run)
    if sig == signal.SIGINT:
        assert code in (130, 0)  # 0 only if the last verdict landed just as the signal came
    else:
        assert code == -signal.SIGKILL
    assert 1 <= done_before <= N
    again = _eval(cands, run)
    out, err = again.communicate(timeout=300)
    assert again.returncode == 0, err.decode()[-2000:]
    assert _verdicts(run) == N  # every candidate exactly once
    shutil.rmtree(tmp_path, ignore_errors=True)
