"""The fork server's process: imports torch, triton and the worker's modules once, then forks one fresh worker per
request. Started by `verify/forkserver.py`; trusted code only, no candidate code ever runs in this process.

Why: on an H100 the workers' CPU was the bound of a verification batch, and 73% of it was interpreter start-up,
importing torch and triton (py-spy, docs/benchmarks.md 9b). A forked child starts with all of that imported; it still
initialises CUDA itself (this process never does: CUDA does not survive a fork), and it is still one process per
candidate, as the sandbox requires.

Protocol on the Unix socket inherited as fd $TRITONRL_ZYGOTE_FD (requests one at a time, each with three fds sent as
SCM_RIGHTS: the worker's stdin read end, its result-pipe write end, its control-pipe read end):
  parent -> zygote  {"env": {...}, "cwd": str, "stdout": path, "stderr": path}
  zygote -> parent  {"ready": true} once imported; {"pid": int} per request; {"exit": pid, "status": waitstatus}
                    for every child that ends (reaped here: the children are ours, not the parent's).
This process is single-threaded, so forking it is safe; SIGCHLD wakes the loop through a pipe.
"""

from __future__ import annotations

import json
import os
import select
import signal
import socket
import sys

from tritonrl.verify.protocol import CONTROL_FD_ENV, RESULT_FD_ENV, ZYGOTE_FD_ENV

MAX_MSG = 1 << 20


def _send(sock: socket.socket, msg: dict) -> None:
    sock.sendall(json.dumps(msg).encode() + b"\n")


def _child(sock: socket.socket, wake: tuple[int, int], sync: tuple[int, int], request: dict, fds: list[int]) -> None:
    """In the forked child: become the worker the parent asked for, then run the worker's main (never returns)."""
    try:
        sock.close()  # first: candidate code must never reach the fork server
        for fd in wake:
            os.close(fd)
        signal.set_wakeup_fd(-1)
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        os.setsid()
        os.close(sync[0])
        os.close(sync[1])  # the fork server answers with our pid only now: a killpg(pid) from then on reaches us
        stdin_r, result_w, control_r = fds
        os.dup2(stdin_r, 0)
        for target, path in ((1, request["stdout"]), (2, request["stderr"])):
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            os.dup2(fd, target)
            os.close(fd)
        os.close(stdin_r)
        keep = {0, 1, 2, result_w, control_r}
        for name in os.listdir("/proc/self/fd"):  # nothing of the fork server's but what the worker is given
            if int(name) not in keep:
                try:
                    os.close(int(name))
                except OSError:
                    pass
        os.chdir(request["cwd"])
        os.environ.clear()
        os.environ.update(request["env"])
        os.environ[RESULT_FD_ENV] = str(result_w)
        os.environ[CONTROL_FD_ENV] = str(control_r)
        import tempfile

        tempfile.tempdir = None  # re-read from TMPDIR (the worker's own directory) on first use
        from tritonrl.verify.worker.main import main

        main()
    finally:
        os._exit(70)


def _prebuild_cuda_helpers() -> None:
    """Build what Triton's CUDA backend builds once per process before its first launch, so that no forked worker
    repeats it: the `cuda_utils` C extension (a gcc run per worker otherwise: every worker has an empty private
    Triton cache), the `ldconfig -p` scan behind its library path and the platform key (`file -b python`). None of it
    depends on a candidate, and none of it initialises CUDA (no cuInit here: a forked child could not use the GPU)."""
    if os.environ.get("TRITON_INTERPRET") == "1":
        return
    try:
        import triton.compiler.compiler  # noqa: F401 - the compile path every worker's first launch imports
        from triton.backends.nvidia import compiler as _compiler  # noqa: F401
        from triton.backends.nvidia import driver as nvidia
        from triton.runtime import build
        from triton.runtime.cache import triton_key

        triton_key()  # hashes Triton's sources and libtriton (13% of forked workers' busy samples, py-spy on an H100)
        build.platform_key()
        nvidia.library_dirs()
        nvidia.CudaUtils()
    except Exception as exc:  # no CUDA toolchain here: each worker builds its own, as without a fork server
        sys.stderr.write(f"zygote: Triton's CUDA helpers not prebuilt: {exc!r}\n")
        return
    # CudaUtils is a singleton whose __init__ runs again on every call and would rebuild the extension in the
    # worker's empty cache: the instance built above is complete, so later calls keep it.
    nvidia.CudaUtils.__init__ = lambda self: None


def main() -> None:
    """Entry point (bootstrapped by the parent with `python -P -E -s -u -B -c ...`, like a worker)."""
    sys.path[:] = [p for p in sys.path if p not in ("", ".", os.getcwd())]
    sock = socket.socket(fileno=int(os.environ.pop(ZYGOTE_FD_ENV)))
    import torch  # noqa: F401 - what every worker imports first; no CUDA initialisation here
    import triton  # noqa: F401
    import triton.language  # noqa: F401

    import tritonrl.verify.worker.calls  # noqa: F401
    import tritonrl.verify.worker.compat  # noqa: F401
    import tritonrl.verify.worker.main  # noqa: F401
    import tritonrl.verify.worker.timing_phase  # noqa: F401

    _prebuild_cuda_helpers()

    wake_r, wake_w = os.pipe()
    os.set_blocking(wake_w, False)
    signal.set_wakeup_fd(wake_w)
    signal.signal(signal.SIGCHLD, lambda *_: None)  # a handler, so the wakeup fd is written
    _send(sock, {"ready": True})
    buffer, pending = b"", []  # a request may arrive in pieces; its three fds come with its first piece
    while True:
        readable, _, _ = select.select([sock, wake_r], [], [])
        if wake_r in readable:
            os.read(wake_r, 4096)
            _reap(sock)
        if sock in readable:
            data, fds, _, _ = socket.recv_fds(sock, MAX_MSG, 3)
            if not data:
                os._exit(0)  # the parent is gone: so are we (children run on, each in its own session)
            buffer, pending = buffer + data, pending + list(fds)
            while b"\n" in buffer:
                line, buffer = buffer.split(b"\n", 1)
                mine, pending = pending[:3], pending[3:]
                sync = os.pipe()
                pid = os.fork()
                if pid == 0:
                    _child(sock, (wake_r, wake_w), sync, json.loads(line), mine)
                os.close(sync[1])
                while os.read(sync[0], 1):  # EOF once the child has its own session (or has died)
                    pass
                os.close(sync[0])
                for fd in mine:
                    os.close(fd)
                _send(sock, {"pid": pid})


def _reap(sock: socket.socket) -> None:
    while True:
        try:
            pid, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return
        _send(sock, {"exit": pid, "status": status})


if __name__ == "__main__":
    main()
