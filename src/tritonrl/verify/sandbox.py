"""Spawn and police the sandboxed worker process (parent side). Never imports candidate code.

The contract:
- Candidate code runs only in a fresh interpreter (`python -P -E -s -u -B -c <bootstrap>`, fork+exec, its own process
  group) whose cwd, HOME, TMPDIR and TRITON_CACHE_DIR are a fresh private directory, with a scrubbed environment
  (an allowlist of machine facts: PATH, CUDA and library paths) and stdin replaced by the request pipe.
- Results come back as HMAC-authenticated frames on a dedicated pipe (`protocol.py`); stdout and stderr go to files
  the parent reads back truncated to `max_output_bytes`.
- Limits: wall-clock timeout then SIGKILL of the whole process group and a reap; a resident-memory watchdog
  (RLIMIT_AS breaks CUDA, notes/training.md 4.4, so it is set on the CPU only, as a backstop); RLIMIT_FSIZE;
  RLIMIT_CORE=0; RLIMIT_NPROC for non-root users; one intra-op thread; a private network namespace when the
  platform allows it (root), and in every case the worker's audit guard (`guard.py`) refusing sockets, process
  creation, file access by candidate code and writes outside the directory.
Not covered here: a kernel-level sandbox (seccomp, namespaces for mounts/pids). Run untrusted workloads at scale in
a container as well; the layers here are what a pip-installed verifier can do on its own, GPU included.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import os
import queue
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

from tritonrl.errors import SandboxError
from tritonrl.verify.config import VerifyConfig
from tritonrl.verify.messages import Frame, GpuGo, MalformedFrame, Request, TimingGo, Warm, decode
from tritonrl.verify.protocol import (
    CONTROL_FD_ENV,
    DEVICE_ENV,
    RESULT_FD_ENV,
    ProtocolError,
    encode,
    interpreter_argv,
    read_frame,
    write_frame,
)

log = logging.getLogger(__name__)

ENV_PASSTHROUGH = (
    "PATH",
    # what an ordinary user process has (the candidate must not be able to tell a verifier from a user's script)
    "LANG",
    "LC_ALL",
    "LC_CTYPE",
    "TERM",
    "USER",
    "LOGNAME",
    "SHELL",
    "TZ",
    "OPENBLAS_CORETYPE",  # machine facts: some OpenBLAS builds compute wrong results without them
    "OPENBLAS_L2_SIZE",
    "LD_LIBRARY_PATH",
    "CUDA_HOME",
    "CUDA_PATH",
    "CUDA_VISIBLE_DEVICES",
    "TRITON_PTXAS_PATH",
    "TRITON_LIBCUDA_PATH",
    "NCCL_NVLS_ENABLE",
    "TORCH_SYMM_MEM_DISABLE_MULTICAST",
    "NVSHMEM_DISABLE_NVLS",
)
# The candidate file's name, hence its module name: what people call the file that holds their kernel.
MODULE_NAMES = ("model_new", "solution", "kernel", "triton_kernel", "model", "main", "submission", "fused_kernel")
POLL_S = 0.05
STARTUP_TIMEOUT_S = 180.0  # fresh interpreter + torch + triton (+ CUDA init): ~1 s idle CPU, ~5 s H100, more if loaded


@dataclasses.dataclass(frozen=True, slots=True)
class ExitInfo:
    """How the worker ended."""

    returncode: int | None
    timed_out: bool = False
    memory_exceeded: bool = False
    protocol_error: str | None = None
    peak_rss_mb: float = 0.0

    @property
    def signal_name(self) -> str | None:
        if self.returncode is not None and self.returncode < 0:
            try:
                return signal.Signals(-self.returncode).name
            except ValueError:
                return f"signal {-self.returncode}"
        return None


def _rss_mb(pid: int) -> float:
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def base_env() -> dict[str, str]:
    """What every worker's environment starts from: the pass-through variables of an ordinary user process."""
    env = {k: os.environ[k] for k in ENV_PASSTHROUGH if k in os.environ}
    env.setdefault("PATH", "/usr/local/bin:/usr/bin:/bin")
    return env


class WorkerProcess:
    """One sandboxed worker. Use as a context manager; `messages()` yields typed frames until the worker ends."""

    def __init__(self, candidate_code: str | None, cfg: VerifyConfig, *, fork_server: bool = False) -> None:
        """`candidate_code=None` makes a pre-started worker (`verify/pool.py`): `assign()` code before the request.
        `fork_server`: fork the worker from a warm process that has torch and triton imported (`forkserver.py`)
        instead of starting an interpreter."""
        self.cfg = cfg
        self.fork_server = fork_server
        self.key = secrets.token_bytes(32)
        self.root = Path(tempfile.mkdtemp())  # ordinary names throughout: nothing here says "verifier"
        self.workdir = self.root / "work"
        self.workdir.mkdir()
        (self.workdir / ".triton").mkdir()  # per-process Triton cache: a shared cache races between workers
        self.candidate_path = self.root / f"{secrets.choice(MODULE_NAMES)}.py"
        if candidate_code is not None:
            self.assign(candidate_code)
        self.logs = Path(tempfile.mkdtemp())  # outside the worker's writable dir
        self.proc: subprocess.Popen[bytes] | None = None
        self.exit: ExitInfo | None = None
        self._frames: queue.Queue[Frame | ProtocolError | None] = queue.Queue()  # None: end of stream
        self._control_fd: int | None = None
        self.started = 0.0
        self.requested = 0.0  # when the request was sent (a pre-started worker may idle before that)
        self.ready_at = 0.0  # when the worker's first frame arrived
        self.deadline = math.inf

    def assign(self, candidate_code: str) -> None:
        self.candidate_path.write_bytes(candidate_code.encode("utf-8", "surrogatepass"))  # lone surrogates too

    def __enter__(self) -> WorkerProcess:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _env(self) -> dict[str, str]:
        env = base_env()
        work = str(self.workdir)
        env.update(HOME=work, TMPDIR=work, TRITON_CACHE_DIR=str(self.workdir / ".triton"), TRITON_HOME=work)
        if self.cfg.device == "cpu":
            env["TRITON_INTERPRET"] = "1"
        elif (index := self.cfg.gpu_index) is not None:  # 'cuda:N': the worker sees exactly that GPU, as 'cuda'
            visible = [d for d in os.environ.get("CUDA_VISIBLE_DEVICES", "").split(",") if d.strip()]
            env["CUDA_VISIBLE_DEVICES"] = visible[index] if index < len(visible) else str(index)
        return env

    def start(self) -> None:
        if self.fork_server:
            return self._fork()
        read_fd, write_fd = os.pipe()
        control_r, control_w = os.pipe()  # parent -> worker after the request: "time now" (or not)
        env = self._env()
        env[RESULT_FD_ENV] = str(write_fd)
        env[CONTROL_FD_ENV] = str(control_r)
        env[DEVICE_ENV] = "cuda" if self.cfg.is_cuda else "cpu"  # CUDA is initialised before the request arrives
        self._stdout = open(self.logs / "stdout", "wb")  # noqa: SIM115 - closed in close()
        self._stderr = open(self.logs / "stderr", "wb")  # noqa: SIM115
        try:
            self.proc = subprocess.Popen(
                interpreter_argv("tritonrl.verify.worker.main"),
                stdin=subprocess.PIPE,
                stdout=self._stdout,
                stderr=self._stderr,
                cwd=self.workdir,
                env=env,
                pass_fds=(write_fd, control_r),
                start_new_session=True,
            )
        except OSError as exc:
            os.close(control_w)
            raise SandboxError(f"could not start the worker interpreter {sys.executable}: {exc}") from exc
        finally:
            os.close(write_fd)
            os.close(control_r)
        self._control_fd, self._read_fd = control_w, read_fd
        self._started()

    def _fork(self) -> None:
        from tritonrl.verify.forkserver import shared_server

        env = self._env()
        env[DEVICE_ENV] = "cuda" if self.cfg.is_cuda else "cpu"
        # triton.language's own @jit functions are built at import, interpreted or compiled by TRITON_INTERPRET then:
        # CPU workers fork from a fork server that imported triton under the interpreter, GPU workers from another
        server = shared_server(base_env() | ({"TRITON_INTERPRET": "1"} if self.cfg.device == "cpu" else {}))
        self.proc, self._read_fd, self._control_fd = server.spawn(
            env, str(self.workdir), str(self.logs / "stdout"), str(self.logs / "stderr")
        )
        self._started()

    def _started(self) -> None:
        """Either way a worker starts: the key now (the worker answers "warm" when started up; the request follows
        when the parent is ready for it), and a reader of its result pipe."""
        self.started = time.monotonic()
        try:
            self.proc.stdin.write(self.key)
            self.proc.stdin.flush()
        except (BrokenPipeError, OSError):
            pass  # died at start: the exit status says why
        threading.Thread(target=self._reader, daemon=True).start()

    def wait_warm(self) -> bool:
        """Block until the worker has imported torch/triton (and initialised CUDA). False if it died or did not
        get there within STARTUP_TIMEOUT_S (then `messages()` reports why)."""
        deadline = self.started + STARTUP_TIMEOUT_S
        while time.monotonic() < deadline:
            try:
                item = self._frames.get(timeout=POLL_S)
            except queue.Empty:
                if self.proc is None or self.proc.poll() is not None:
                    return False
                continue
            if isinstance(item, Warm):
                return True
            self._frames.put(item)  # EOF or an error: leave it for messages()
            return False
        return False

    def send_request(self, request: Request) -> None:
        self.requested = time.monotonic()
        data = encode(request.to_wire(), self.key)
        proc = self.proc
        assert proc is not None and proc.stdin is not None

        def _write() -> None:
            try:
                proc.stdin.write(data)
                proc.stdin.close()
            except (BrokenPipeError, OSError):
                pass  # the worker died before reading; its exit status tells why

        threading.Thread(target=_write, daemon=True).start()

    def send_control(self, message: TimingGo | GpuGo) -> None:
        """A frame on the control pipe (read by the worker between phases). A dead worker is not an error here."""
        try:
            write_frame(self._control_fd, message.to_wire(), self.key)
        except (BrokenPipeError, OSError):
            pass

    def pause_clock(self, seconds: float) -> None:
        """Give the candidate back time it spent waiting on us (e.g. for exclusive use of the GPU)."""
        self.deadline += seconds

    def _reader(self) -> None:
        try:
            while (wire := read_frame(self._read_fd, self.key)) is not None:
                self._frames.put(decode(wire))  # typed here, at once: nothing downstream sees the worker's raw data
        except ProtocolError as exc:
            self._frames.put(exc)
        except MalformedFrame as exc:  # authenticated, but not a frame the worker sends: fail closed
            self._frames.put(ProtocolError(f"malformed frame: {exc}"))
        except Exception as exc:  # noqa: BLE001 - a malformed payload is the candidate's doing
            self._frames.put(ProtocolError(f"undecodable frame: {type(exc).__name__}: {exc}"))
        finally:
            os.close(self._read_fd)
            self._frames.put(None)

    def messages(self) -> Iterator[Frame]:
        """Typed frames in order (`messages.py`; `Warm` is consumed here). Ends at EOF, on timeout, memory excess or
        a protocol error (a malformed frame included); then `self.exit` is set.

        The candidate's time limit starts at the worker's first frame ("ready": interpreter, torch, triton and CUDA
        are up, no candidate code has run), so a loaded machine's slow start never counts against a candidate; the
        start itself gets STARTUP_TIMEOUT_S, and missing it is an infrastructure error, not a verdict."""
        self.deadline = (self.requested or self.started) + STARTUP_TIMEOUT_S
        peak, protocol_error, timed_out, memory = 0.0, None, False, False
        while True:
            try:
                item = self._frames.get(timeout=POLL_S)
            except queue.Empty:
                item = ...
            if item is None:
                break
            if isinstance(item, ProtocolError):
                protocol_error = str(item)
                break
            if isinstance(item, Warm):
                continue  # start-up done (see wait_warm); the candidate's clock starts at "ready"
            if item is not ...:
                if not self.ready_at:
                    self.ready_at = time.monotonic()
                    self.deadline = self.ready_at + self.cfg.timeout_s
                yield item
                continue
            rss = _rss_mb(self.proc.pid)
            peak = max(peak, rss)
            if rss > self.cfg.memory_limit_mb:
                memory = True
                break
            if time.monotonic() > self.deadline:
                timed_out = True
                break
        if protocol_error or timed_out or memory:
            self.kill()
        returncode = self._reap()
        self.exit = ExitInfo(returncode, timed_out, memory, protocol_error, peak)

    def kill(self) -> None:
        if self.proc and self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass

    def _reap(self) -> int | None:
        if self.proc is None:
            return None
        try:
            return self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.kill()
            return self.proc.wait()

    def output(self, name: str) -> str:
        """Candidate stdout or stderr, truncated to max_output_bytes (the tail is kept: errors come last)."""
        path = self.logs / name
        try:
            size = path.stat().st_size
            with open(path, "rb") as f:
                if size > self.cfg.max_output_bytes:
                    f.seek(size - self.cfg.max_output_bytes)
                data = f.read(self.cfg.max_output_bytes)
        except OSError:
            return ""
        text = data.decode("utf-8", errors="replace")
        return f"[{size - len(data)} bytes truncated]\n{text}" if size > len(data) else text

    def close(self) -> None:
        self.kill()
        self._reap()
        if self._control_fd is not None:
            os.close(self._control_fd)
            self._control_fd = None
        for f in (getattr(self, "_stdout", None), getattr(self, "_stderr", None)):
            if f:
                f.close()
        shutil.rmtree(self.root, ignore_errors=True)
        shutil.rmtree(self.logs, ignore_errors=True)
