"""One rule for which GPU verifies what (`verify/gpu_lock.py` batch_devices / slot_device), used by the `Verifier`,
`tritonrl eval`'s slots and the reward client: 'cuda' means every visible GPU, round-robin, each with its own timing
lock. N fake GPUs on the CPU: torch.cuda.device_count is patched, nothing touches CUDA."""

from __future__ import annotations

import collections
import contextlib
import pickle
import threading
import time

import pytest
import torch

from tritonrl.rewards import client as client_mod
from tritonrl.tasks.loader import builtin_task
from tritonrl.types import Stage, Verdict
from tritonrl.verify import funnel, verifier
from tritonrl.verify.config import VerifyConfig
from tritonrl.verify.gpu_lock import GpuLock, batch_devices, gpu_key, slot_device
from tritonrl.verify.sandbox import WorkerProcess


@pytest.fixture
def gpus(monkeypatch):
    """Pretend this process sees `n` GPUs."""

    def set_count(n: int) -> None:
        monkeypatch.setattr(torch.cuda, "device_count", lambda: n)

    return set_count


def test_cuda_means_every_visible_gpu(gpus):
    gpus(4)
    assert batch_devices("cuda") == ["cuda:0", "cuda:1", "cuda:2", "cuda:3"]
    assert batch_devices("cuda:2") == ["cuda:2"]
    assert batch_devices("cpu") == ["cpu"]


def test_one_gpu_is_cuda_0(gpus):
    gpus(1)
    assert batch_devices("cuda") == ["cuda:0"]
    assert [slot_device("cuda", i) for i in range(3)] == ["cuda:0"] * 3


def test_items_go_round_robin(gpus):
    gpus(3)
    assert [slot_device("cuda", i) for i in range(7)] == [f"cuda:{i % 3}" for i in range(7)]
    assert [slot_device("cpu", i) for i in range(3)] == ["cpu"] * 3


def test_each_gpu_has_its_own_timing_lock_keyed_on_the_physical_gpu(gpus, monkeypatch, tmp_path):
    gpus(4)
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "3,5,6,7")
    devices = batch_devices("cuda")
    locks = {GpuLock(d, tmp_path).rw_path for d in devices}
    assert len(locks) == 4
    seen_all = gpu_key("cuda:1")
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "5")  # a process that sees only GPU 5 (a Ray actor, a pinned pool)
    assert gpu_key("cuda:0") == gpu_key("cuda") == seen_all


def test_a_worker_sees_only_its_slots_gpu(gpus, monkeypatch):
    gpus(4)
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "3,5,6,7")
    for i, physical in enumerate(["3", "5", "6", "7", "3"]):
        proc = WorkerProcess(None, VerifyConfig(device=slot_device("cuda", i)))
        try:
            assert proc._env()["CUDA_VISIBLE_DEVICES"] == physical
        finally:
            proc.close()


def _verdict(task, cfg: VerifyConfig) -> Verdict:  # noqa: ANN001
    return Verdict(task_id=task.task_id, passed=True, stage=Stage.DONE, failure=None, message="", device=cfg.device)


class _FakePool:
    made: list[str] = []

    def __init__(self, cfg: VerifyConfig, size: int = 2, want_more=None, *, fork_server: bool = False) -> None:  # noqa: ANN001
        self.cfg, self.size = cfg, size
        _FakePool.made.append(cfg.device)

    def __enter__(self) -> _FakePool:
        return self

    def __exit__(self, *exc: object) -> None:
        pass

    def close(self) -> None:
        pass


def _fake_sandbox(monkeypatch, calls: list, seconds: float = 0.0) -> None:  # noqa: ANN001
    """Every candidate passes the host-side stages; the sandbox stage records its device and the pool's."""
    lock = threading.Lock()

    def sandboxed(screened, *, pool=None, replay=None, cfg=None):  # noqa: ANN001, ANN202
        with lock:
            calls.append((screened.code, cfg.device, pool.cfg.device))
        time.sleep(seconds)
        return _verdict(screened.task, cfg)

    monkeypatch.setattr(funnel, "screen", lambda task, code, cfg: funnel.Screened(task, code, cfg, None, {}, ()))
    monkeypatch.setattr(funnel, "sandboxed", sandboxed)


def test_verify_many_spreads_items_over_every_gpu(gpus, monkeypatch):
    gpus(3)
    calls: list = []
    _fake_sandbox(monkeypatch, calls, seconds=0.2)
    monkeypatch.setattr(verifier, "WorkerPool", _FakePool)
    _FakePool.made = []
    relu = builtin_task("relu")
    verdicts = verifier.verify_many([(relu, str(i)) for i in range(7)], VerifyConfig(device="cuda"), jobs=2)
    assert sorted(_FakePool.made) == ["cuda:0", "cuda:1", "cuda:2"]  # one warm pool per GPU
    per_gpu = collections.Counter(v.device for v in verdicts)
    assert sorted(per_gpu) == ["cuda:0", "cuda:1", "cuda:2"] and sorted(per_gpu.values()) == [2, 2, 3]  # least busy
    assert all(device == pool_device for _, device, pool_device in calls)  # each item takes its GPU's workers


def test_verify_many_on_one_device_keeps_its_config(gpus, monkeypatch):
    gpus(2)
    calls: list = []
    _fake_sandbox(monkeypatch, calls)
    monkeypatch.setattr(verifier, "WorkerPool", _FakePool)
    _FakePool.made = []
    relu = builtin_task("relu")
    verifier.verify_many([(relu, "a"), (relu, "b")], VerifyConfig(device="cuda:1"), jobs=2)
    assert _FakePool.made == ["cuda:1"] and {d for _, d, _ in calls} == {"cuda:1"}


def test_eval_verifier_has_jobs_per_gpu(gpus):
    gpus(2)
    with verifier.Verifier(VerifyConfig(device="cuda"), jobs=2, prestart=0) as v:
        assert v.devices == ["cuda:0", "cuda:1"] and v._pool_executor()._max_workers == 4
    with verifier.Verifier(VerifyConfig(), jobs=3, prestart=0) as v:
        assert v.devices == ["cpu"] and v._pool_executor()._max_workers == 3


def test_reward_pool_process_resolves_its_slot(gpus, monkeypatch):
    gpus(4)

    calls: list = []
    _fake_sandbox(monkeypatch, calls)
    monkeypatch.setattr(verifier, "WorkerPool", _FakePool)
    monkeypatch.setattr(client_mod, "_VERIFIERS", {})
    relu = builtin_task("relu")
    for slot in (0, 5, 3, 4):
        client_mod._verify_to_dict(relu, "x", VerifyConfig(device="cuda"), slot)
    client_mod._verify_to_dict(relu, "x", VerifyConfig(device="cuda:2"), 1)
    assert [d for _, d, _ in calls] == ["cuda:0", "cuda:1", "cuda:3", "cuda:0", "cuda:2"]
    assert all(d == pool_device for _, d, pool_device in calls)  # each device's own warm workers
    assert len(client_mod._VERIFIERS) == 4  # one Verifier per device, kept for the process's next completions


class _RecordingExecutor:
    def __init__(self) -> None:
        self.slots: list[int] = []

    def submit(self, fn, *args):  # noqa: ANN001, ANN202
        import concurrent.futures as cf

        self.slots.append(args[3])  # _verify_to_dict(task, completion, cfg, slot, store)
        return cf.Future()

    def shutdown(self, **kw: object) -> None:
        pass


def test_reward_client_submits_round_robin_from_its_rank(monkeypatch):
    monkeypatch.setenv("LOCAL_RANK", "2")
    relu = builtin_task("relu")
    with contextlib.closing(client_mod.VerifierClient({"relu": relu}, VerifyConfig(device="cuda"))) as c:
        c._pool = executor = _RecordingExecutor()
        c._futures(["relu"] * 3, ["a", "b", "c"])
        assert executor.slots == [2, 3, 4]  # rank 2 starts on the third GPU


def test_reward_client_gpus_come_from_the_environment_and_survive_pickling(monkeypatch):
    monkeypatch.setenv(client_mod.GPUS_ENV, "6,7")
    relu = builtin_task("relu")
    c = client_mod.VerifierClient({"relu": relu}, VerifyConfig(device="cuda"))
    monkeypatch.delenv(client_mod.GPUS_ENV)
    copy = pickle.loads(pickle.dumps(c))
    assert c.gpus == copy.gpus == "6,7"
    assert client_mod.VerifierClient({"relu": relu}, gpus="1").gpus == "1"
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0,1,2,3,4,5")
    client_mod._pin_gpus("6,7")  # what each pool process runs first
    import os

    assert os.environ["CUDA_VISIBLE_DEVICES"] == "6,7"
