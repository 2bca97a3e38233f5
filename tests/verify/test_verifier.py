"""verify/verifier.py: the one executor. Real sandboxed verifications on the CPU: warm workers are reused across
calls, verdicts equal the one-shot funnel's, futures and batches share the path, task errors raise, close is final."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tritonrl.errors import TaskError
from tritonrl.tasks.loader import builtin_task, load_task
from tritonrl.verify.config import VerifyConfig
from tritonrl.verify.funnel import verify
from tritonrl.verify.verifier import Verifier

RELU = builtin_task("relu")
GOOD = Path(RELU.solution_path).read_text()
FIX = Path(__file__).resolve().parents[1] / "fixtures/candidates/relu"
CPU = VerifyConfig(device="cpu", timing=False, compile_baseline=False)


def test_verdicts_match_the_one_shot_funnel_and_workers_stay_warm():
    bad = (FIX / "aten_direct.py").read_text()
    with Verifier(CPU, jobs=2) as verifier:
        first = verifier.verify(RELU, GOOD)
        batch = verifier.verify_many([(RELU, bad), (RELU, GOOD), (RELU, "no code")])
        future = verifier.submit(RELU, GOOD)
        assert future.result().passed
        pools = dict(verifier._pools)
    assert first.passed and [v.passed for v in batch] == [False, True, False]
    one_shot = verify(RELU, bad, CPU)
    assert (batch[0].stage, batch[0].failure) == (one_shot.stage, one_shot.failure)
    assert list(pools) == ["cpu"] and verifier.stats.verified == 5  # one pool for every call: warm workers reused


def test_a_task_error_raises_from_the_future_not_a_verdict():
    broken = load_task("import torch\nclass Model(torch.nn.Module):\n    def forward(self, x):\n"
                       "        return x.view(3, -1)\ndef get_inputs():\n    return [torch.randn(4, 4)]\n"
                       "def get_init_inputs():\n    return []\n", task_id="broken")  # fmt: skip
    with Verifier(CPU, jobs=1, prestart=0) as verifier, pytest.raises(TaskError):
        verifier.submit(broken, GOOD).result()


def test_closed_verifier_refuses_work_and_leaves_no_worker():
    verifier = Verifier(CPU, jobs=2)
    verifier.verify(RELU, "no code")  # parse-stage rejection: no worker needed, but the pool is up after a real one
    verifier.verify(RELU, GOOD)
    workers = [p.proc.pid for pool in verifier._pools.values() for p in pool._idle if p.proc]
    verifier.close()
    with pytest.raises(RuntimeError, match="closed"):
        verifier.submit(RELU, GOOD)
    for pid in workers:  # the idle warm workers were killed with it
        assert subprocess.run(["kill", "-0", str(pid)], capture_output=True).returncode != 0


def test_public_api_is_lazy():
    code = ("import sys, tritonrl; assert 'torch' not in sys.modules; "
            "from tritonrl import Verifier, VerifyConfig, load_task, Verdict, verify_many; "
            "import tritonrl.verify as v; assert v.Verifier is Verifier and callable(v.verify)")  # fmt: skip
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True).returncode == 0


@pytest.mark.parametrize(("keep_warm", "started"), [(False, 3), (True, 4)])
def test_a_batch_starts_no_worker_after_its_last_candidate(keep_warm, started, monkeypatch):
    """keep_warm=False (batches): exactly one worker per candidate; True (services): one more stays ready."""
    from tritonrl.verify.sandbox import WorkerProcess

    starts = []
    real_start = WorkerProcess.start

    def counting_start(self):  # noqa: ANN001, ANN202
        starts.append(1)
        return real_start(self)

    monkeypatch.setattr(WorkerProcess, "start", counting_start)
    with Verifier(CPU, jobs=1, keep_warm=keep_warm) as verifier:
        assert all(v.passed for v in verifier.verify_many([(RELU, GOOD)] * 3))
        idle = sum(len(pool._idle) for pool in verifier._pools.values())
    assert len(starts) == started and idle == started - 3


def test_host_side_rejections_start_no_worker(monkeypatch):
    """Answers without a code block (most of an untrained model's) are judged in the parent: no worker for them."""
    from tritonrl.verify.sandbox import WorkerProcess

    monkeypatch.setattr(WorkerProcess, "start", lambda self: (_ for _ in ()).throw(AssertionError("a worker")))
    with Verifier(CPU, jobs=2, keep_warm=False) as verifier:
        verdicts = verifier.verify_many([(RELU, "no code here")] * 3)
    assert [v.stage.value for v in verdicts] == ["extract"] * 3  # and WorkerProcess.start was never called


def _killing_start(monkeypatch, kills: int) -> list[int]:
    """Make the first `kills` workers die right after they start (before they are ready: no candidate code ran)."""
    from tritonrl.verify.sandbox import WorkerProcess

    killed: list[int] = []
    real_start = WorkerProcess.start

    def start(self):  # noqa: ANN001, ANN202
        real_start(self)
        if len(killed) < kills:
            killed.append(self.proc.pid)
            self.kill()

    monkeypatch.setattr(WorkerProcess, "start", start)
    return killed


def test_a_worker_lost_before_it_was_ready_is_replaced_once(monkeypatch):
    killed = _killing_start(monkeypatch, kills=1)
    with Verifier(CPU, jobs=1, prestart=0, keep_warm=False) as verifier:
        verdicts = verifier.verify_many([(RELU, GOOD)])
        assert verifier.stats.retried == 1
    assert len(killed) == 1 and verdicts[0].passed


def test_a_one_shot_verify_replaces_a_lost_worker_too_and_keeps_its_draws(monkeypatch):
    from tritonrl.verify import funnel

    killed = _killing_start(monkeypatch, kills=1)
    draws: list[int] = []
    real_draw = funnel.draw_cases
    monkeypatch.setattr(funnel, "draw_cases", lambda *a, **k: draws.append(1) or real_draw(*a, **k))
    verdict = verify(RELU, GOOD, CPU)
    assert len(killed) == 1 and verdict.passed and verdict.extra["workers_lost"] == 1
    assert draws == [1]  # the fresh worker got the same request: nothing drawn or referenced again


def test_a_second_lost_worker_is_the_batchs_error(monkeypatch):
    from tritonrl.errors import WorkerLostError

    _killing_start(monkeypatch, kills=2)
    with Verifier(CPU, jobs=1, prestart=0, keep_warm=False) as verifier, pytest.raises(WorkerLostError):
        verifier.verify_many([(RELU, GOOD)])
