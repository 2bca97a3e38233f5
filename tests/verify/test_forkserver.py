"""verify/forkserver.py and verify/worker/zygote.py: workers forked from a warm process behave as started ones.

The worker side is the ordinary worker (`worker/main.py`), so the fixtures decide: the sandbox fixtures (processes,
files, the result channel, limits) and a sample of the rest must get the verdict their header declares when every
worker is forked. The full sweep is `-m slow`.
"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import pytest

from tritonrl.tasks.loader import builtin_task
from tritonrl.types import Stage
from tritonrl.verify.config import VerifyConfig
from tritonrl.verify.expect import parse_expectation
from tritonrl.verify.forkserver import shared_server
from tritonrl.verify.funnel import verify
from tritonrl.verify.pool import WorkerPool
from tritonrl.verify.sandbox import base_env

ROOT = Path(__file__).resolve().parents[2]
FIXTURES = sorted((ROOT / "tests/fixtures/candidates").glob("*/*.py"))
# Everything the sandbox itself decides (runtime_*: processes, files, channel, exits, limits) and a sample across
# stages; the rest runs under -m slow.
FAST = [p for p in FIXTURES if p.stem.startswith(("runtime_", "wave2_"))] + FIXTURES[::15]
SLOW = [p for p in FIXTURES if p not in FAST]


@pytest.fixture(scope="module")
def pool():
    with WorkerPool(VerifyConfig(), size=0, fork_server=True) as p:
        yield p


def _check(path: Path, pool: WorkerPool) -> None:
    text = path.read_text()
    expect = parse_expectation(text)
    verdict = verify(builtin_task(path.parent.name), text, expect.config(), pool=pool)
    if expect.passed:
        assert verdict.passed, f"{verdict.stage.value}/{verdict.failure}: {verdict.message}"
        return
    got = (verdict.stage, verdict.failure)
    assert got == (expect.stage, expect.failure), f"got {got}: {verdict.message}\nstderr: {verdict.stderr[-2000:]}"


@pytest.mark.parametrize("path", FAST, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_forked_worker_gives_the_declared_verdict(path: Path, pool: WorkerPool):
    _check(path, pool)


@pytest.mark.slow
@pytest.mark.parametrize("path", SLOW, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_forked_worker_gives_the_declared_verdict_all(path: Path, pool: WorkerPool):
    _check(path, pool)


def test_builtin_solution_passes_through_a_verifier_with_a_fork_server():
    from tritonrl.verify.verifier import verify_many

    task = builtin_task("softmax")  # triton.language's own @jit helpers (tl.max) must be interpreted ones
    verdicts = verify_many([(task, Path(task.solution_path).read_text())] * 2, jobs=2, fork_server=True)
    assert [(v.passed, v.stage) for v in verdicts] == [(True, Stage.DONE)] * 2


def _fork(tmp_path: Path):
    server = shared_server(base_env() | {"TRITON_INTERPRET": "1"})
    work = tmp_path / "work"
    work.mkdir(exist_ok=True)
    env = base_env() | {"HOME": str(work), "TMPDIR": str(work), "TRITONRL_WORKER_DEVICE": "cpu"}
    child, result_r, control_w = server.spawn(env, str(work), str(tmp_path / "out"), str(tmp_path / "err"))
    return child, result_r, control_w


def test_child_holds_nothing_of_the_fork_server(tmp_path: Path):
    """While the forked worker waits for its key, its descriptors are its pipes and files, never a socket: candidate
    code must not be able to ask the fork server for anything."""
    child, result_r, control_w = _fork(tmp_path)
    try:
        time.sleep(0.5)
        targets = [os.readlink(f"/proc/{child.pid}/fd/{fd}") for fd in os.listdir(f"/proc/{child.pid}/fd")]
        assert not [t for t in targets if t.startswith("socket:")], targets
        assert os.getpgid(child.pid) == child.pid  # its own session, so the sandbox's killpg reaches it alone
    finally:
        os.killpg(child.pid, signal.SIGKILL)
        child.wait(30)
        os.close(result_r)
        os.close(control_w)


def test_exit_status_comes_back(tmp_path: Path):
    child, result_r, control_w = _fork(tmp_path)
    try:
        child.stdin.write(b"k" * 32)  # the key, then no request: the worker exits 3 (worker/main.py)
        child.stdin.close()
        assert child.wait(60) == 3
    finally:
        os.close(result_r)
        os.close(control_w)
    killed, result_r, control_w = _fork(tmp_path)
    try:
        os.killpg(killed.pid, signal.SIGKILL)
        assert killed.wait(30) == -signal.SIGKILL
    finally:
        os.close(result_r)
        os.close(control_w)


def test_a_dead_fork_server_is_replaced(tmp_path: Path):
    """Killed from outside, the fork server fails no verification: the next worker comes from a new one."""
    env = base_env() | {"TRITON_INTERPRET": "1"}
    first = shared_server(env)
    first.proc.kill()
    first.proc.wait()
    deadline = time.monotonic() + 10
    while not first._dead and time.monotonic() < deadline:  # its reader sees the socket close
        time.sleep(0.05)
    assert shared_server(env) is not first
    child, result_r, control_w = _fork(tmp_path)
    try:
        os.killpg(child.pid, signal.SIGKILL)
        assert child.wait(30) == -signal.SIGKILL
    finally:
        os.close(result_r)
        os.close(control_w)


PREBUILD = """
import os, sys
os.environ.pop("TRITON_INTERPRET", None)
from tritonrl.verify.worker import zygote
zygote._prebuild_cuda_helpers()
import torch
from triton.runtime.cache import triton_key
print("key cached:", triton_key.cache_info().currsize, "cuda initialised:", torch.cuda.is_initialized())
"""


def test_the_zygote_prebuilds_what_no_candidate_influences_without_initialising_cuda():
    """Triton's cache key is computed once in the zygote (every forked worker inherits it); CUDA is never initialised
    there (a forked child could not use the GPU). Without a GPU the CUDA helper cannot be built: that is said on
    stderr, and the zygote goes on."""
    import subprocess
    import sys

    out = subprocess.run([sys.executable, "-c", PREBUILD], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert "key cached: 1 cuda initialised: False" in out.stdout
    if not Path("/dev/nvidiactl").exists():
        assert "CUDA helpers not prebuilt" in out.stderr
