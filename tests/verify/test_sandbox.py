"""verify/sandbox.py: `WorkerProcess` on its own: scrubbed environment, output truncation, cleanup, timeout + reap.

Three tests start a real worker interpreter (~2 s each): in two the candidate never reaches forward, one verifies relu
through the CLI.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tritonrl.verify.config import VerifyConfig
from tritonrl.verify.messages import Loaded, Ready, Request
from tritonrl.verify.protocol import encode
from tritonrl.verify.sandbox import ENV_PASSTHROUGH, WorkerProcess

CANDIDATE = "import torch\n\n\nclass ModelNew(torch.nn.Module):\n    def forward(self, x):\n        return x\n"
HANGS_AT_IMPORT = "while True:\n    pass\n"
# What the worker sets itself, besides what it passes through from the parent.
WORKER_SET = {"HOME", "TMPDIR", "TRITON_CACHE_DIR", "TRITON_HOME", "TRITON_INTERPRET"}
# Variables that tell a verifier from a user's script: the worker's environment has none of them.
TELLTALE = {"OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "PYTHONHASHSEED"}


@pytest.fixture
def make_worker():
    made: list[WorkerProcess] = []

    def make(code: str = CANDIDATE, **cfg) -> WorkerProcess:
        made.append(WorkerProcess(code, VerifyConfig(**cfg)))
        return made[-1]

    yield make
    for w in made:
        w.close()


def test_env_drops_parent_only_variables(make_worker, monkeypatch):
    monkeypatch.setenv("SECRET_TOKEN", "hunter2")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "hunter3")
    env = make_worker()._env()
    assert "SECRET_TOKEN" not in env and "AWS_SECRET_ACCESS_KEY" not in env
    assert "hunter2" not in env.values() and "hunter3" not in env.values()


def test_env_holds_only_passthrough_and_worker_variables(make_worker):
    assert set(make_worker()._env()) <= set(ENV_PASSTHROUGH) | WORKER_SET


def test_env_looks_like_an_ordinary_process(make_worker, monkeypatch):
    monkeypatch.setenv("LANG", "en_GB.UTF-8")
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    worker = make_worker()
    env = worker._env()
    assert env["LANG"] == "en_GB.UTF-8" and not TELLTALE & set(env)
    assert "tritonrl" not in str(worker.root) and "candidate" not in worker.candidate_path.name


@pytest.mark.parametrize("name", ["HOME", "TMPDIR", "TRITON_CACHE_DIR"])
def test_env_dirs_are_inside_the_private_dir(make_worker, name):
    w = make_worker()
    assert Path(w._env()[name]).resolve().is_relative_to(w.workdir.resolve())


def test_env_overrides_the_parent_home(make_worker, monkeypatch):
    monkeypatch.setenv("HOME", "/root")
    w = make_worker()
    assert w._env()["HOME"] == str(w.workdir)


def test_env_sets_triton_interpret_on_cpu(make_worker):
    assert make_worker(device="cpu")._env()["TRITON_INTERPRET"] == "1"


def test_env_leaves_triton_interpret_unset_on_cuda(make_worker, monkeypatch):
    monkeypatch.setenv("TRITON_INTERPRET", "1")  # not a passthrough variable: the parent's value must not leak
    assert "TRITON_INTERPRET" not in make_worker(device="cuda")._env()


def test_output_under_the_limit_is_returned_whole(make_worker):
    w = make_worker(max_output_bytes=100)
    (w.logs / "stdout").write_bytes(b"hello\n")
    assert w.output("stdout") == "hello\n"


def test_output_over_the_limit_keeps_the_tail_and_counts_dropped_bytes(make_worker):
    w = make_worker(max_output_bytes=100)
    (w.logs / "stderr").write_bytes(b"a" * 150 + b"b" * 96 + b"TAIL")
    text = w.output("stderr")
    assert text == "[150 bytes truncated]\n" + "b" * 96 + "TAIL"


def test_missing_output_file_reads_empty(make_worker):
    assert make_worker().output("stdout") == ""


def test_close_removes_the_temp_dirs(make_worker):
    w = make_worker()
    root, logs = w.root, w.logs
    assert root.is_dir() and logs.is_dir() and w.candidate_path.read_text() == CANDIDATE
    w.close()
    assert not root.exists() and not logs.exists()


def _request(w: WorkerProcess) -> Request:
    """The request the funnel would send this worker for a candidate with no shapes to run."""
    from tritonrl.verify.funnel import _request as funnel_request

    return funnel_request(w, w.cfg, [], ghost=False, timing=None)


def test_worker_hanging_at_import_is_killed_and_reaped(tmp_path):
    w = WorkerProcess(HANGS_AT_IMPORT, VerifyConfig(timeout_s=3))
    try:
        w.start()
        w.send_request(_request(w))
        frames = list(w.messages())
        assert w.exit is not None and w.exit.timed_out
        assert w.proc.poll() is not None  # reaped: no zombie left behind
        assert w.exit.returncode == w.proc.returncode
        assert not any(isinstance(f, Loaded) for f in frames)
        with pytest.raises(ProcessLookupError):
            os.killpg(w.proc.pid, 0)  # the whole process group is gone
    finally:
        w.close()


def test_a_malformed_request_stops_the_worker_before_ready_naming_the_field():
    # The worker checks the whole request before using any of it: a wrong type is a loud start-up failure (the
    # funnel raises SandboxError with this stderr), never a half-read request.
    w = WorkerProcess(CANDIDATE, VerifyConfig(timeout_s=30))
    try:
        w.start()
        w.proc.stdin.write(encode({**_request(w).to_wire(), "limits": {"fsize_mb": "64", "as_mb": None}}, w.key))
        w.proc.stdin.close()
        frames = list(w.messages())
        assert frames == [] and w.exit.returncode == 1 and not w.exit.timed_out
        assert "MalformedFrame: request.limits.fsize_mb: expected int, got str" in w.output("stderr")
    finally:
        w.close()


def test_verify_works_under_an_address_space_hard_limit():
    # Clusters set `ulimit -v`: the worker must clamp its RLIMIT_AS to the hard limit, never try to raise it.
    import json
    import resource
    import subprocess
    import sys

    from tritonrl.tasks.loader import builtin_task

    limit = 12_000_000 * 1024  # `ulimit -v 12000000` (KiB)

    def hard_limit() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))

    solution = builtin_task("relu").solution_path
    run = subprocess.run(
        [sys.executable, "-m", "tritonrl.cli.main", "verify", "relu", str(solution), "--device", "cpu", "--json"],
        capture_output=True, text=True, timeout=600, preexec_fn=hard_limit,
    )  # fmt: skip
    verdict = json.loads(run.stdout)
    assert verdict["passed"], verdict.get("message") or run.stderr[-2000:]


def test_authenticated_frame_that_is_no_frame_becomes_a_protocol_error(make_worker):
    # The candidate shares the worker process: a frame it writes under the real key must still parse as a frame.
    from tritonrl.verify.protocol import ProtocolError, write_frame

    w = make_worker()
    r, wr = os.pipe()
    w._read_fd = r
    write_frame(wr, Ready(netns=False).to_wire(), w.key)
    write_frame(wr, {"t": "done", "verdict": "passed"}, w.key)
    os.close(wr)
    w._reader()  # closes r
    items = [w._frames.get_nowait() for _ in range(w._frames.qsize())]
    assert items[0] == Ready(netns=False) and items[-1] is None
    assert isinstance(items[1], ProtocolError) and "malformed frame" in str(items[1])
