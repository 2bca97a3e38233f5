"""Warm workers for one device: `WorkerPool`, pre-started one-shot workers (batches: `verifier.Verifier`).

Every candidate still gets a fresh worker process (an illegal memory access poisons a CUDA context for good, and a
hostile candidate may leave anything behind, so a worker serves exactly one candidate and is never reused: recycling
after every task). What the pool removes is the wait: a fresh `import torch` + CUDA init costs ~4.4 s on an H100
(docs/benchmarks.md), so the pool keeps `size` workers started ahead, fully initialised and blocked on their request
pipe; taking one starts its replacement. Each worker has its own Triton cache directory.

A `Verifier` keeps one pool per device (a worker sees only its GPU, fixed when it starts) and runs several
verifications at once; they share a GPU for correctness and take it exclusively for timing (`gpu_lock.py`).
"""

from __future__ import annotations

import collections
import logging
import threading
from collections.abc import Callable

from tritonrl.errors import SandboxError
from tritonrl.verify.config import VerifyConfig
from tritonrl.verify.sandbox import WorkerProcess

log = logging.getLogger(__name__)


class WorkerPool:
    """Pre-started one-shot workers for one device. Thread-safe. Use as a context manager (kills idle workers)."""

    def __init__(
        self,
        cfg: VerifyConfig,
        size: int = 2,
        want_more: Callable[[], bool] | None = None,
        *,
        fork_server: bool = False,
    ) -> None:
        """`want_more()`: asked at each take whether a replacement is worth starting (None: always). A batch that
        knows no work is left says no, so no worker is started only to be killed (on a 2-core machine one such
        worker cost a 10-candidate batch ~9% more wall time, docs/benchmarks.md section 8). `fork_server`: workers
        are forked from a warm process (`forkserver.py`) instead of started as interpreters."""
        if size < 0:
            raise ValueError(f"size={size}: must be >= 0 (0 disables pre-starting)")
        self.cfg = cfg
        self.size = size
        self.want_more = want_more
        self.fork_server = fork_server
        self._idle: collections.deque[WorkerProcess] = collections.deque()
        self._lock = threading.Lock()
        self._closed = False
        for _ in range(size):
            self._spawn()

    def _spawn(self) -> None:
        proc = WorkerProcess(None, self.cfg, fork_server=self.fork_server)
        try:
            proc.start()
        except SandboxError:
            proc.close()
            raise
        with self._lock:
            if self._closed:
                proc.close()
                return
            self._idle.append(proc)

    def take(self, code: str, cfg: VerifyConfig) -> WorkerProcess:
        """A started worker holding `code`; its replacement starts in the background. Falls back to a fresh start
        when none is idle or the config's device differs from the pool's."""
        proc = None
        if cfg.device == self.cfg.device:
            with self._lock:
                while self._idle and proc is None:
                    candidate = self._idle.popleft()
                    if candidate.proc is not None and candidate.proc.poll() is None:
                        proc = candidate
                    else:  # died while idle (killed from outside): discard
                        candidate.close()
            if not self._closed and (self.want_more is None or self.want_more()):
                threading.Thread(target=self._spawn_quietly, daemon=True).start()
        if proc is None:
            proc = WorkerProcess(code, cfg, fork_server=self.fork_server)
            proc.start()
            return proc
        proc.cfg = cfg
        proc.assign(code)
        return proc

    def _spawn_quietly(self) -> None:
        try:
            self._spawn()
        except SandboxError as exc:  # the next take() starts a fresh worker and raises there if it must
            log.warning("could not pre-start a worker: %s", exc)

    def close(self) -> None:
        with self._lock:
            self._closed = True
            idle, self._idle = list(self._idle), collections.deque()
        for proc in idle:
            proc.close()

    def __enter__(self) -> WorkerPool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
