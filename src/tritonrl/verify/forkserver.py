"""Start workers by forking a warm, trusted process instead of starting an interpreter each time (the `Verifier`'s
default; `fork_server=False` spawns an interpreter per worker).

`ForkServer` runs `verify/worker/zygote.py`, which imports torch, triton and the worker modules once and forks one
fresh worker per `spawn`: the child gets its own session, environment, directory, stdout/stderr files and the three
pipe ends the parent hands over (SCM_RIGHTS), then runs the worker's ordinary `main`. It is still one process per
candidate, started from a process that never ran candidate code; what is saved is the import (docs/benchmarks.md
9b: 73% of the workers' busy CPU on an H100 was interpreter start-up). The child initialises CUDA itself.

`ForkedWorker` is the subset of `subprocess.Popen` that `sandbox.WorkerProcess` uses (pid, stdin, poll, wait,
returncode); exit statuses come from the fork server, which reaps its children.
"""

from __future__ import annotations

import atexit
import json
import logging
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from tritonrl.errors import SandboxError
from tritonrl.verify.protocol import ZYGOTE_FD_ENV, interpreter_argv

log = logging.getLogger(__name__)

START_TIMEOUT_S = 180.0


class ForkedWorker:
    """A worker forked by the fork server, seen through the Popen methods the sandbox uses."""

    def __init__(self, pid: int, stdin_w: int) -> None:
        self.pid = pid
        self.stdin = os.fdopen(stdin_w, "wb", buffering=0)
        self.returncode: int | None = None
        self._ended = threading.Event()

    def _exited(self, status: int) -> None:
        self.returncode = os.waitstatus_to_exitcode(status)  # negative: the signal, as Popen reports it
        self._ended.set()

    def poll(self) -> int | None:
        return self.returncode

    def wait(self, timeout: float | None = None) -> int:
        if not self._ended.wait(timeout):
            raise subprocess.TimeoutExpired(f"worker {self.pid}", timeout or 0.0)
        return self.returncode  # type: ignore[return-value]


class ForkServer:
    """One warm zygote process; `spawn` forks a worker from it. Thread-safe; `close` ends the zygote (its workers
    are killed by their owners, each in its own session)."""

    def __init__(self, base_env: dict[str, str]) -> None:
        self._lock = threading.Lock()  # one request in flight: the reply after it is its pid
        self._children: dict[int, ForkedWorker] = {}
        self._statuses: dict[int, int] = {}  # exits that arrived before their pid was registered
        self._pids: list[int] = []
        self._pid_ready = threading.Condition()
        self._ready = threading.Event()
        self._dead = False
        parent_sock, child_sock = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        self._dir = tempfile.mkdtemp()
        env = {**base_env, ZYGOTE_FD_ENV: str(child_sock.fileno()), "HOME": self._dir, "TMPDIR": self._dir}
        self._log = Path(self._dir) / "stderr"  # a file, not a pipe nobody reads once it runs (a full pipe blocks it)
        try:
            with open(self._log, "wb") as stderr:
                self.proc = subprocess.Popen(
                    interpreter_argv("tritonrl.verify.worker.zygote"),
                    stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=stderr, cwd=self._dir, env=env,
                    pass_fds=(child_sock.fileno(),), start_new_session=True,
                )  # fmt: skip
        except OSError as exc:
            raise SandboxError(f"could not start the fork server {sys.executable}: {exc}") from exc
        finally:
            child_sock.close()
        self.sock = parent_sock
        threading.Thread(target=self._reader, daemon=True, name="forkserver-reader").start()
        if not self._ready.wait(START_TIMEOUT_S) or self._dead:
            why = self._log.read_bytes()[-2000:].decode(errors="replace")
            self.close()
            raise SandboxError(f"the fork server did not start: {why}")

    def _reader(self) -> None:
        buffer = b""
        while True:
            try:
                data = self.sock.recv(1 << 16)
            except OSError:
                data = b""
            if not data:
                break
            buffer += data
            while b"\n" in buffer:
                line, buffer = buffer.split(b"\n", 1)
                self._handle(json.loads(line))
        self._dead = True
        self._ready.set()
        with self._pid_ready:
            self._pid_ready.notify_all()
        for child in list(self._children.values()):  # their statuses will never come: report them as lost
            if child.returncode is None:
                child._exited(255 << 8)

    def _handle(self, msg: dict) -> None:
        if msg.get("ready"):
            self._ready.set()
        elif "pid" in msg:
            with self._pid_ready:
                self._pids.append(int(msg["pid"]))
                self._pid_ready.notify_all()
        elif "exit" in msg:
            pid, status = int(msg["exit"]), int(msg["status"])
            with self._pid_ready:
                child = self._children.pop(pid, None)
                if child is None:
                    self._statuses[pid] = status
            if child is not None:
                child._exited(status)

    def spawn(self, env: dict[str, str], cwd: str, stdout: str, stderr: str) -> tuple[ForkedWorker, int, int]:
        """Fork a worker. Returns (the worker, the parent's read end of its result pipe, the write end of its control
        pipe); the child's ends are sent to the fork server and closed here."""
        stdin_r, stdin_w = os.pipe()
        result_r, result_w = os.pipe()
        control_r, control_w = os.pipe()
        request = json.dumps({"env": env, "cwd": cwd, "stdout": stdout, "stderr": stderr}).encode() + b"\n"
        try:
            with self._lock:
                if self._dead:
                    raise SandboxError("the fork server has ended")
                socket.send_fds(self.sock, [request], [stdin_r, result_w, control_r])
                with self._pid_ready:
                    deadline = time.monotonic() + START_TIMEOUT_S
                    while not self._pids and not self._dead and time.monotonic() < deadline:
                        self._pid_ready.wait(1.0)
                    if not self._pids:
                        self._dead = True  # a fork server that does not answer is not asked again
                        raise SandboxError("the fork server did not fork a worker (ended, or no answer)")
                    pid = self._pids.pop(0)
                    child = ForkedWorker(pid, stdin_w)
                    if pid in self._statuses:
                        child._exited(self._statuses.pop(pid))
                    else:
                        self._children[pid] = child
        except BaseException:
            for fd in (stdin_w, result_r, control_w):
                os.close(fd)
            raise
        finally:
            for fd in (stdin_r, result_w, control_r):
                os.close(fd)
        return child, result_r, control_w

    def close(self) -> None:
        """End the fork server: it exits on its own once the socket closes (its workers, each in its own session,
        are their owners' to end)."""
        try:  # shutdown first: a close alone leaves the socket open while the reader thread is blocked in recv
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.sock.close()
        try:
            self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        shutil.rmtree(self._dir, ignore_errors=True)


_SERVERS: dict[tuple, ForkServer] = {}
_SERVERS_LOCK = threading.Lock()


@atexit.register
def _close_servers() -> None:
    with _SERVERS_LOCK:
        servers = list(_SERVERS.values())
        _SERVERS.clear()
    for server in servers:
        server.close()


def server_pids() -> list[int]:
    """The pids of this process's live fork servers (for accounting: forked workers are their children, not ours)."""
    with _SERVERS_LOCK:
        return [server.proc.pid for server in _SERVERS.values()]


def shared_server(base_env: dict[str, str]) -> ForkServer:
    """The process-wide fork server for this environment (started on first use, restarted if it died)."""
    key = tuple(sorted(base_env.items()))
    with _SERVERS_LOCK:
        server = _SERVERS.get(key)
        if server is None or server._dead or server.proc.poll() is not None:
            server = _SERVERS[key] = ForkServer(base_env)
            log.info("fork server started (pid %d)", server.proc.pid)
        return server
