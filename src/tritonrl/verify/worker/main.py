"""The sandboxed worker: the only place candidate code is ever imported. Started by `verify/sandbox.py`.

Protocol (see `protocol.py`): read a 32-byte key and one request frame from stdin, then close stdin; set limits;
import the candidate from its file; for each shape construct `ModelNew(*init_args)` under the reference's seed and
load the reference's matching state-dict entries; run every input case under the provenance `Recorder`, and send
one authenticated frame per case (outputs, ops by origin, Triton launches, input mutation, integrity findings).
Case 0 is also run in ghost mode (candidate kernels skipped), repeated with the other poison value, and run once more
in a second environment profile (`Worker.other_profile`). On cuda each of these steps asks the parent for the GPU
first and frees it after (`Worker.gpu_step`). When the request asks for timing, the worker then says
"await_timing" and waits on the control pipe: the parent answers once it has judged every case correct and holds the
GPU exclusively; the worker times (`timing_phase.py`), sends the raw samples, and runs case 0 once more under the
recorder ("post_timing"), so a candidate that changes behaviour after many calls is caught. The worker never sees
reference outputs and never decides pass/fail: the parent does.
"""

from __future__ import annotations

import gc
import os
import sys

from tritonrl.verify.messages import Done, Limits, Ready, Request, Warm
from tritonrl.verify.protocol import CONTROL_FD_ENV, DEVICE_ENV, RESULT_FD_ENV

CLONE_NEWNET = 0x40000000


def _set_limits(limits: Limits) -> None:
    import resource

    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    fsize = limits.fsize_mb << 20
    resource.setrlimit(resource.RLIMIT_FSIZE, (fsize, fsize))
    if limits.as_mb:  # CPU only: CUDA reserves ~17 GiB of address space (notes/training.md 4.4)
        # Never above the hard limit we inherited (`ulimit -v` on clusters): raising it is refused, lowering is fine.
        hard = resource.getrlimit(resource.RLIMIT_AS)[1]
        as_bytes = limits.as_mb << 20
        if hard != resource.RLIM_INFINITY:
            as_bytes = min(as_bytes, hard)
        resource.setrlimit(resource.RLIMIT_AS, (as_bytes, hard))
    if os.geteuid() != 0:  # root ignores RLIMIT_NPROC; for others bound process creation
        soft, hard = resource.getrlimit(resource.RLIMIT_NPROC)
        resource.setrlimit(resource.RLIMIT_NPROC, (min(4096, hard) if hard != -1 else 4096, hard))


def _isolate_network() -> bool:
    """A private network namespace (no interfaces up). Needs CAP_SYS_ADMIN; False when unavailable."""
    import ctypes

    try:
        libc = ctypes.CDLL(None, use_errno=True)
        return libc.unshare(CLONE_NEWNET) == 0
    except OSError:
        return False


def _warm_up_dispatch() -> None:
    """Enter a dispatch mode once before any candidate code, while the parent is still computing references, so
    first-use imports of the dispatch machinery happen before the integrity snapshot and outside any timing."""
    import torch
    from torch.utils._python_dispatch import TorchDispatchMode

    class _Noop(TorchDispatchMode):
        @classmethod
        def _should_skip_dynamo(cls) -> bool:  # see Recorder._should_skip_dynamo
            return False

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):  # noqa: ANN001
            return func(*args, **(kwargs or {}))

    with _Noop():
        torch.empty(1)


def main() -> None:
    """Entry point (bootstrapped by the parent with `python -P -E -s -u -c ...`)."""
    sys.path[:] = [p for p in sys.path if p not in ("", ".", os.getcwd())]
    result_fd = int(os.environ.pop(RESULT_FD_ENV))
    control_fd = int(os.environ.pop(CONTROL_FD_ENV, "-1"))
    device = os.environ.pop(DEVICE_ENV, "cpu")
    import torch  # noqa: F401 - imported before any candidate code, while we are still trusted
    import triton  # noqa: F401
    import triton.language  # noqa: F401

    from tritonrl.verify.protocol import read_exact, read_frame

    if os.environ.get("TRITON_INTERPRET") == "1":
        from tritonrl.verify.worker.compat import patch_triton_interpreter

        patch_triton_interpreter()
    _warm_up_dispatch()
    if device == "cuda":  # before the request: a pre-started worker (verify/pool.py) is then fully warm
        torch.cuda.init()
        torch.empty(1, device="cuda")
    key = read_exact(0, 32)  # sent by the parent at spawn; the request follows once the parent is ready for it
    if key:
        from tritonrl.verify.protocol import write_frame

        write_frame(result_fd, Warm().to_wire(), key)  # imports and CUDA init done: the parent may take the GPU now
    wire = read_frame(0, key) if key else None
    devnull = os.open(os.devnull, os.O_RDONLY)
    os.dup2(devnull, 0)
    os.close(devnull)
    if wire is None:
        os._exit(3)
    # Checked whole before any of it is used: a malformed request raises here (MalformedFrame, naming the field), its
    # traceback on stderr, and the parent reports a worker that ended before it was ready.
    request = Request.from_wire(wire)
    _set_limits(request.limits)
    netns = _isolate_network()
    gc.disable()  # collections happen inside recording windows only (Worker.run_case)
    if request.device == "cuda":  # initialise CUDA before the integrity snapshot and before any candidate code
        torch.cuda.init()
        torch.empty(1, device="cuda")
    sys.argv = [request.candidate_path]  # as `python model_new.py` would have it
    from tritonrl.verify.worker.calls import Worker

    worker = Worker(request, key, result_fd, control_fd)
    worker.send(Ready(netns=netns))
    if request.timing is not None and request.device == "cuda":  # trusted setup, before the candidate is imported
        from tritonrl.verify.worker.timing_phase import prepare, to_gpu

        worker.timing_ctx = prepare(torch, request.timing, request.shapes[0].state_dict)
        with worker.gpu_step():
            to_gpu(torch, worker.timing_ctx)
    if request.guard:
        worker.guard.install()
    worker.run()
    worker.send(Done())
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)  # skip atexit handlers the candidate may have registered


if __name__ == "__main__":
    main()
