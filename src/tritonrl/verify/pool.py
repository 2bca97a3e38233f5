"""Warm workers and batch verification on one device, or on every visible GPU.

Every candidate still gets a fresh worker process (an illegal memory access poisons a CUDA context for good, and a
hostile candidate may leave anything behind, so a worker serves exactly one candidate and is never reused: recycling
after every task). What the pool removes is the wait: a fresh `import torch` + CUDA init costs ~4.4 s on an H100
(docs/benchmarks.md), so the pool keeps `size` workers started ahead, fully initialised and blocked on their request
pipe; taking one starts its replacement. Each worker has its own Triton cache directory.

`verify_many` runs several verifications at once with threads of this process, `jobs` per device. They share a GPU
for correctness, and take it exclusively for timing (`gpu_lock.py`): timing is never shared with other work on that
GPU, while other candidates' worker start-up, parsing and static checks go on in parallel on the host CPUs. On
device 'cuda' the batch spreads over every visible GPU (`gpu_lock.batch_devices`): item i goes to 'cuda:(i mod G)',
with one pool of pre-started workers per GPU (a worker sees only its GPU, fixed when it starts).
"""

from __future__ import annotations

import collections
import concurrent.futures
import contextlib
import dataclasses
import logging
import math
import threading
from collections.abc import Callable, Iterable, Sequence

from tritonrl.errors import SandboxError
from tritonrl.tasks.schema import Task
from tritonrl.types import Verdict
from tritonrl.verify.config import VerifyConfig
from tritonrl.verify.gpu_lock import batch_devices, slot_device
from tritonrl.verify.sandbox import WorkerProcess

log = logging.getLogger(__name__)


class WorkerPool:
    """Pre-started one-shot workers for one device. Thread-safe. Use as a context manager (kills idle workers)."""

    def __init__(self, cfg: VerifyConfig, size: int = 2) -> None:
        if size < 0:
            raise ValueError(f"size={size}: must be >= 0 (0 disables pre-starting)")
        self.cfg = cfg
        self.size = size
        self._idle: collections.deque[WorkerProcess] = collections.deque()
        self._lock = threading.Lock()
        self._closed = False
        for _ in range(size):
            self._spawn()

    def _spawn(self) -> None:
        proc = WorkerProcess(None, self.cfg)
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
            if not self._closed:
                threading.Thread(target=self._spawn_quietly, daemon=True).start()
        if proc is None:
            proc = WorkerProcess(code, cfg)
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


def verify_many(
    items: Iterable[tuple[Task, str]],
    cfg: VerifyConfig | None = None,
    *,
    jobs: int = 4,
    prestart: int | None = None,
    on_verdict: Callable[[int, Verdict], None] | None = None,
) -> list[Verdict]:
    """Verify (task, candidate) pairs, `jobs` at a time per device, with pre-started workers.

    On 'cuda' every visible GPU is used: item i is verified on 'cuda:(i mod G)' (`gpu_lock.slot_device`), so G GPUs
    run G * `jobs` verifications at once, each GPU with its own exclusive timing slot. `prestart`: workers started
    ahead per device (default `jobs`). Verdicts come back in input order; `on_verdict(index, verdict)` is called as
    each finishes (progress, storage). An infrastructure error (a task that cannot be planned, a worker that cannot
    start) raises, as `verify` does.
    """
    from tritonrl.verify.funnel import verify

    cfg = cfg or VerifyConfig()
    if jobs < 1:
        raise ValueError(f"jobs={jobs}: must be >= 1")
    pairs: Sequence[tuple[Task, str]] = list(items)
    results: list[Verdict | None] = [None] * len(pairs)
    devices = batch_devices(cfg.device)
    # a worker pre-started beyond the batch would only be killed unused
    per_device = min(jobs if prestart is None else prestart, math.ceil(len(pairs) / len(devices)))
    configs = {d: cfg if d == cfg.device else dataclasses.replace(cfg, device=d) for d in devices}
    with contextlib.ExitStack() as stack:
        pools = {d: stack.enter_context(WorkerPool(c, size=per_device)) for d, c in configs.items()}

        def one(index: int) -> None:
            task, code = pairs[index]
            device = slot_device(cfg.device, index, devices)
            verdict = verify(task, code, configs[device], pool=pools[device])
            results[index] = verdict
            if on_verdict is not None:
                on_verdict(index, verdict)

        with concurrent.futures.ThreadPoolExecutor(max_workers=jobs * len(devices)) as ex:
            for future in [ex.submit(one, i) for i in range(len(pairs))]:
                future.result()
    return [r for r in results if r is not None]
