"""`verify/pool.py`: pre-started one-shot workers and batch verification give the same verdicts as `verify`."""

from __future__ import annotations

from pathlib import Path

from tritonrl.tasks.loader import builtin_task
from tritonrl.types import FailureKind, Stage
from tritonrl.verify.config import VerifyConfig
from tritonrl.verify.funnel import verify
from tritonrl.verify.pool import WorkerPool
from tritonrl.verify.verifier import verify_many

EXAMPLES = Path(__file__).resolve().parents[2] / "src/tritonrl/tasks/builtin/examples"


def test_verify_many_keeps_order_and_verdicts():
    relu, softmax = builtin_task("relu"), builtin_task("softmax")
    items = [
        (relu, Path(relu.solution_path).read_text()),
        (relu, (EXAMPLES / "relu/torch_fallback.py").read_text()),
        (softmax, Path(softmax.solution_path).read_text()),
        (relu, "no code here at all"),
    ]
    seen: list[int] = []
    verdicts = verify_many(items, VerifyConfig(), jobs=2, on_verdict=lambda i, v: seen.append(i))
    assert sorted(seen) == [0, 1, 2, 3]
    assert [v.task_id for v in verdicts] == ["relu", "relu", "softmax", "relu"]
    assert verdicts[0].passed and verdicts[2].passed
    assert (verdicts[1].stage, verdicts[1].failure) == (Stage.PROVENANCE, FailureKind.TORCH_COMPUTE)
    assert (verdicts[3].stage, verdicts[3].failure) == (Stage.EXTRACT, FailureKind.NO_CODE)


def test_pool_hands_out_prestarted_workers_once_each():
    cfg = VerifyConfig()
    relu = builtin_task("relu")
    code = Path(relu.solution_path).read_text()
    with WorkerPool(cfg, size=1) as pool:
        first = pool.take(code, cfg)
        assert first.proc is not None and first.wait_warm()  # started before it was asked for
        second = pool.take(code, cfg)
        assert second is not first
        first.close()
        second.close()
        verdict = verify(relu, code, cfg, pool=pool)  # a pooled worker verifies like a fresh one
    assert verdict.passed


def test_pool_discards_a_worker_that_died_while_idle():
    cfg = VerifyConfig()
    with WorkerPool(cfg, size=1) as pool:
        idle = pool._idle[0]
        idle.kill()
        idle.proc.wait(10)
        taken = pool.take("x = 1\n", cfg)
        assert taken is not idle and taken.proc.poll() is None
        taken.close()
