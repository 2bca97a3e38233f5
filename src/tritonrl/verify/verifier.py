"""`Verifier`: the one way to verify many candidates. Warm workers on every device, one executor, one cache hook.

Every batch path goes through it: `tritonrl verify` with several candidates, `tritonrl eval` (local slots and each
Ray actor), `tasks export` / `tasks curate`, and each process of the reward client (`rewards/client.py`), hence
GRPO and best-of-N. What it adds to `funnel.verify`:

- warm workers: per device, `jobs` workers started ahead (`pool.WorkerPool`), so a candidate never waits for a
  fresh `import torch` + CUDA init (~4 s on an H100, docs/benchmarks.md) once the pool is up;
- device slots: on 'cuda' every visible GPU (`gpu_lock.batch_devices`), the k-th submission on 'cuda:(k mod G)',
  `jobs` verifications at once per GPU; the per-GPU lock keeps each timing alone on its GPU;
- one executor: a thread pool of `jobs` x devices threads; `submit` returns a future, so callers that record as
  they go (the eval store, the rewards cache) and callers that want a list (`verify_many`) share one path;
- a cache hook: any `VerdictStore` (`cache.VerdictCache`: a JSONL file or memory; `verdict_store.SQLiteVerdictStore`:
  an SQLite file several processes can share; `verdict_store.open_verdict_store(path)` picks one by suffix). A hit
  is returned at once and never reaches a worker.

Infrastructure errors (a task whose reference cannot run, a worker that cannot start) raise from the future, as
`funnel.verify` raises them; they are never turned into a verdict about the candidate.
"""

from __future__ import annotations

import concurrent.futures as cf
import dataclasses
import itertools
import logging
import threading
from collections.abc import Callable, Iterable, Mapping
from typing import Protocol

from tritonrl.tasks.schema import Task
from tritonrl.types import Verdict
from tritonrl.verify import funnel
from tritonrl.verify.config import VerifyConfig
from tritonrl.verify.gpu_lock import batch_devices
from tritonrl.verify.pool import WorkerPool

log = logging.getLogger(__name__)


def _resolved(verdict: Verdict) -> cf.Future[Verdict]:
    future: cf.Future[Verdict] = cf.Future()
    future.set_result(verdict)
    return future


class VerdictStore(Protocol):
    """Where verdicts are kept between verifications: keyed by (task, candidate, verifier config)."""

    def get(self, task: Task, candidate: str, cfg: VerifyConfig) -> Verdict | None: ...

    def put(self, task: Task, candidate: str, cfg: VerifyConfig, verdict: Verdict) -> None: ...


@dataclasses.dataclass
class VerifierStats:
    """What a Verifier did so far (read them for logs; they are not synchronised beyond the GIL)."""

    verified: int = 0  # verdicts computed by a worker
    hits: int = 0  # verdicts answered by the cache
    retried: int = 0  # verifications run again because their worker ended before it was ready


class Verifier:
    """Verify candidates with warm sandboxed workers on every device of `cfg.device`. Thread-safe; use as a
    context manager (or call `close`): it owns worker processes.

    Args:
        cfg: the verifier settings (default `VerifyConfig()`: CPU interpreter, hardened).
        jobs: verifications at once per device (and workers kept warm per device). On a GPU timing still runs
            alone (the GPU lock); correctness and host work of the others overlap it.
        cache: a `VerdictStore` consulted before and filled after each verification; None: no cache.
        prestart: workers started ahead per device (default `jobs`; 0: start each worker on demand).
        fork_server: fork workers from a warm process that has torch and triton imported (`forkserver.py`) instead
            of starting an interpreter per candidate (on an H100, 73% of the workers' busy CPU was that start-up; on
            2 CPU cores a 10-candidate batch took 0.48x the CPU and 0.63x the wall time, same verdicts; on an H100
            13.4 worker CPU-s per candidate against 19.8, all 60 verdicts right: docs/benchmarks.md 8, 9c). A
            worker lost before it was ready (once on an H100, under py-spy) is replaced once, inside the verification
            (`funnel`), so its draws and reference outputs are kept.
        keep_warm: replace every worker taken, so the next call finds one ready (a service: the reward client's
            processes, a Ray actor). False: replace one only while submitted work waits (a batch: nothing is
            started after its last candidate).
    """

    def __init__(
        self,
        cfg: VerifyConfig | None = None,
        *,
        jobs: int = 2,
        cache: VerdictStore | None = None,
        prestart: int | None = None,
        keep_warm: bool = True,
        fork_server: bool = True,
    ) -> None:
        if jobs < 1:
            raise ValueError(f"jobs={jobs}: must be >= 1 (verifications at once per device)")
        self.cfg = cfg or VerifyConfig()
        self.jobs = jobs
        self.cache = cache
        self.stats = VerifierStats()
        self.devices = batch_devices(self.cfg.device)
        self._prestart = jobs if prestart is None else prestart
        self.keep_warm = keep_warm
        self.fork_server = fork_server
        self._queued = 0  # submitted verifications not yet started
        self._configs = {d: self.cfg if d == self.cfg.device else dataclasses.replace(self.cfg, device=d)
                         for d in self.devices}  # fmt: skip
        self._pools: dict[str, WorkerPool] = {}
        self._busy = dict.fromkeys(self.devices, 0)  # verifications running per device
        self._turn = itertools.count()  # breaks ties between equally busy devices, round-robin
        self._lock = threading.Lock()
        self._executor: cf.ThreadPoolExecutor | None = None
        self._closed = False

    # --- the API -------------------------------------------------------------------------------------------------
    def verify(self, task: Task, candidate: str, *, replay: Mapping[str, Mapping[str, int]] | None = None) -> Verdict:
        """One verdict, in the calling thread (a warm worker of the least busy device)."""
        if (hit := self._cached(task, candidate)) is not None:
            return hit
        screened = funnel.screen(task, candidate, self.cfg)
        if isinstance(screened, Verdict):
            return self._done(task, candidate, screened)
        return self._run(screened, candidate, replay)

    def submit(self, task: Task, candidate: str) -> cf.Future[Verdict]:
        """A future verdict: a cache hit or a host-side rejection (extract, parse, static: milliseconds, screened in
        the calling thread) resolves at once; a candidate that needs the sandbox runs on the executor."""
        prepared = self._prepare(task, candidate)
        return prepared if isinstance(prepared, cf.Future) else self._enqueue(prepared, candidate)

    def verify_many(
        self,
        items: Iterable[tuple[Task, str]],
        *,
        on_verdict: Callable[[int, Verdict], None] | None = None,
    ) -> list[Verdict]:
        """Verdicts for (task, candidate) pairs, in input order. `on_verdict(index, verdict)` is called as each
        finishes (cache hits first), from the executor's threads. The first infrastructure error raises, after the
        running verifications finished; verdicts already made were passed to `on_verdict` (and the cache)."""
        pairs = list(items)
        prepared = [self._prepare(task, candidate) for task, candidate in pairs]
        # workers for the candidates that need the sandbox only: a worker started beyond them would be killed unused
        if need := sum(not isinstance(p, cf.Future) for p in prepared):
            self._warm(min(self._prestart, -(-need // len(self.devices))))
        futures = [p if isinstance(p, cf.Future) else self._enqueue(p, candidate)
                   for p, (_, candidate) in zip(prepared, pairs, strict=True)]  # fmt: skip
        if on_verdict is not None:
            index = {id(f): i for i, f in enumerate(futures)}
            for future in cf.as_completed(futures):
                if future.exception() is None:
                    on_verdict(index[id(future)], future.result())
        return [f.result() for f in futures]

    def close(self) -> None:
        """Wait for running verifications, then kill the idle warm workers."""
        with self._lock:
            self._closed = True
            executor, self._executor = self._executor, None
            pools, self._pools = list(self._pools.values()), {}
        if executor is not None:
            executor.shutdown(wait=True, cancel_futures=True)
        for pool in pools:
            pool.close()

    def __enter__(self) -> Verifier:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- internals -----------------------------------------------------------------------------------------------
    def _cached(self, task: Task, candidate: str) -> Verdict | None:
        if self.cache is None:
            return None
        verdict = self.cache.get(task, candidate, self.cfg)
        if verdict is not None:
            with self._lock:
                self.stats.hits += 1
        return verdict

    def _prepare(self, task: Task, candidate: str) -> cf.Future[Verdict] | funnel.Screened:
        """A resolved future (cache hit, host-side rejection), or the screened candidate the sandbox must judge."""
        if (hit := self._cached(task, candidate)) is not None:
            return _resolved(hit)
        screened = funnel.screen(task, candidate, self.cfg)
        return _resolved(self._done(task, candidate, screened)) if isinstance(screened, Verdict) else screened

    def _enqueue(self, screened: funnel.Screened, candidate: str) -> cf.Future[Verdict]:
        executor = self._pool_executor()
        with self._lock:
            self._queued += 1  # a worker will be taken for it: `_want_more` counts only these
        return executor.submit(self._queued_run, screened, candidate)

    def _queued_run(self, screened: funnel.Screened, candidate: str) -> Verdict:
        with self._lock:
            self._queued -= 1
        return self._run(screened, candidate, None)

    def _want_more(self) -> bool:
        return self.keep_warm or self._queued > 0

    def _run(
        self, screened: funnel.Screened, candidate: str, replay: Mapping[str, Mapping[str, int]] | None
    ) -> Verdict:
        device = self._claim()

        try:
            verdict = funnel.sandboxed(screened, pool=self._pool(device), replay=replay, cfg=self._configs[device])
        finally:
            with self._lock:
                self._busy[device] -= 1
        return self._done(screened.task, candidate, verdict)

    def _done(self, task: Task, candidate: str, verdict: Verdict) -> Verdict:
        with self._lock:  # verifications finish on several threads
            self.stats.verified += 1
            self.stats.retried += verdict.extra.get("workers_lost", 0)
        if self.cache is not None:
            self.cache.put(task, candidate, self.cfg, verdict)
        return verdict

    def _claim(self) -> str:
        """The least busy device (equal ones in turn): a fast GPU's slot is reused at once, never left idle while
        another GPU queues two candidates."""
        with self._lock:
            turn = next(self._turn)
            n = len(self.devices)
            device = min((self.devices[(turn + i) % n] for i in range(n)), key=self._busy.__getitem__)
            self._busy[device] += 1
            return device

    def _pool(self, device: str, size: int | None = None) -> WorkerPool:
        with self._lock:
            if self._closed:
                raise RuntimeError("this Verifier is closed")
            pool = self._pools.get(device)
            if pool is None:  # started outside the lock would let two threads start two pools
                pool = self._pools[device] = WorkerPool(self._configs[device], self._prestart if size is None else size,
                                                        self._want_more, fork_server=self.fork_server)  # fmt: skip
            return pool

    def _warm(self, size: int) -> None:
        """Start the device pools now, `size` workers each (a pool that exists keeps its size)."""
        for device in self.devices:
            self._pool(device, size)

    def _pool_executor(self) -> cf.ThreadPoolExecutor:
        with self._lock:
            if self._closed:
                raise RuntimeError("this Verifier is closed")
            if self._executor is None:
                self._executor = cf.ThreadPoolExecutor(self.jobs * len(self.devices), thread_name_prefix="verify")
            return self._executor


def verify_many(
    items: Iterable[tuple[Task, str]],
    cfg: VerifyConfig | None = None,
    *,
    jobs: int = 4,
    prestart: int | None = None,
    on_verdict: Callable[[int, Verdict], None] | None = None,
    fork_server: bool = True,
) -> list[Verdict]:
    """One batch through a short-lived `Verifier`: `jobs` at a time per device (every visible GPU on 'cuda'), warm
    workers, verdicts in input order, `on_verdict(index, verdict)` as each finishes. An infrastructure error (a task
    that cannot be planned, a worker that cannot start) raises, as `funnel.verify` does."""
    with Verifier(cfg, jobs=jobs, prestart=prestart, keep_warm=False, fork_server=fork_server) as verifier:
        return verifier.verify_many(items, on_verdict=on_verdict)
