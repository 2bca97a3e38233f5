"""VerifierClient: verification for a trainer, run in a pool of spawned processes, with a verdict cache.

The trainer's process (TRL's reward call, a verl RewardLoopWorker) only submits (task, completion) pairs and reads
back `Verdict.to_dict()`: the reference runs, the shape planning and the sandboxed worker all live in the pool's
processes, so the trainer never imports candidate code, never runs a reference and never initialises CUDA. The
pool uses the `spawn` start method (a forked child of a process holding CUDA cannot use it). As with any spawn
pool, a training script must keep its entry point under `if __name__ == "__main__":`.

Verdicts are cached by (task_id, sha256(completion), VerifyConfig.config_hash()), in flight included, so several
reward functions scoring the same batch (TRL calls each one separately, concurrently when async) run each kernel
once. The cache is an LRU bounded by `cache_size`; it is per client and in memory. `store` (or the environment
variable TRITONRL_VERDICT_STORE) adds a persistent one below it: an SQLite verdict store
(`verify.verdict_store.SQLiteVerdictStore`) that every pool process reads before verifying and writes after, so a
completion seen in an earlier run, by another rank or by another client is not verified again. A pickled client
carries its tasks and settings only: the copy starts its own pool.

Devices: on 'cuda' the completions spread over every GPU the pool processes see, round-robin ('cuda:(k mod G)' for
the k-th submission, `verify.gpu_lock.slot_device`; the count happens in the pool processes, not the trainer's), with
one exclusive timing slot per GPU machine-wide (`gpu_lock.py`), so the clients of several training ranks share the
GPUs safely. `gpus` (or the environment variable TRITONRL_VERIFY_GPUS) gives the pool processes their own
CUDA_VISIBLE_DEVICES, e.g. '6,7': verification on GPUs the trainer does not use.
"""

from __future__ import annotations

import asyncio
import atexit
import concurrent.futures as cf
import dataclasses
import logging
import multiprocessing
import os
import threading
from collections import OrderedDict
from collections.abc import Iterable, Mapping, Sequence
from concurrent.futures.process import BrokenProcessPool
from typing import Any

from tritonrl.errors import ConfigError, SandboxError, TaskError
from tritonrl.tasks.schema import Task
from tritonrl.types import Verdict, candidate_sha256
from tritonrl.verify.config import VerifyConfig

log = logging.getLogger(__name__)

_Key = tuple[str, str, str]  # (task_id, sha256 of the completion, verify config hash)
GPUS_ENV = "TRITONRL_VERIFY_GPUS"  # physical GPU ids for the verifier's pool processes, e.g. "6,7"
STORE_ENV = "TRITONRL_VERDICT_STORE"  # an SQLite verdict store shared by the pool processes, e.g. "verdicts.sqlite"


_VERIFIERS: dict[tuple[str, str, str | None], Any] = {}  # per pool process: a warm Verifier per (config, device, store)
_STORES: dict[str, Any] = {}  # per pool process: one open SQLite verdict store per path


def _verify_to_dict(
    task: Task, completion: str, cfg: VerifyConfig, slot: int = 0, store: str | None = None
) -> dict[str, Any]:
    """Runs in a pool process: the whole funnel on the `slot`-th device of `cfg.device`, returning JSON-safe data.
    The process keeps a `Verifier` per device, so the next completion's worker is started while this one runs (a
    cold worker costs ~4 s on an H100: torch and CUDA start-up)."""
    from tritonrl.verify.gpu_lock import slot_device
    from tritonrl.verify.verdict_store import SQLiteVerdictStore
    from tritonrl.verify.verifier import Verifier  # imported in the pool process only

    if cfg.device == "cuda":
        cfg = dataclasses.replace(cfg, device=slot_device(cfg.device, slot))
    if store is not None and store not in _STORES:
        _STORES[store] = SQLiteVerdictStore(store)
        atexit.register(_STORES[store].close)
    key = (cfg.config_hash(), cfg.device, store)
    verifier = _VERIFIERS.get(key)
    if verifier is None:
        verifier = _VERIFIERS[key] = Verifier(cfg, jobs=1, cache=_STORES.get(store) if store else None)
        atexit.register(verifier.close)  # the idle warm worker goes with the pool process (before the store)
    return verifier.verify(task, completion).to_dict()


def _pin_gpus(gpus: str) -> None:
    """Pool-process initializer: see only `gpus` (before anything in this process initialises CUDA)."""
    os.environ["CUDA_VISIBLE_DEVICES"] = gpus


class VerifierClient:
    """Verify completions against tasks in `workers` spawned processes; cache the verdicts.

    Args:
        tasks: task id -> Task; more can be added with `add_tasks`.
        verify_cfg: the verifier settings (default `VerifyConfig()`: CPU interpreter, hardened).
        workers: pool processes (verifications at once). On 'cuda' they spread over every GPU the pool sees, each
            GPU timing one candidate at a time (the GPU lock): use one or two per GPU.
        cache_size: verdicts kept (least recently used evicted); 0 disables the cache.
        max_tasks_per_child: recycle a pool process after this many verifications (None: never).
        gpus: CUDA_VISIBLE_DEVICES of the pool processes (physical ids, e.g. '6,7'), so verification runs on GPUs of
            its own; None: the TRITONRL_VERIFY_GPUS environment variable, else the trainer's own visible GPUs.
        store: an SQLite verdict store file (.sqlite/.sqlite3/.db) that the pool processes share, persisted across
            runs; None: the TRITONRL_VERDICT_STORE environment variable, else no persistent store.
    """

    def __init__(
        self,
        tasks: Mapping[str, Task],
        verify_cfg: VerifyConfig | None = None,
        *,
        workers: int = 2,
        cache_size: int = 4096,
        max_tasks_per_child: int | None = None,
        gpus: str | None = None,
        store: str | os.PathLike[str] | None = None,
    ) -> None:
        if workers < 1:
            raise ConfigError(f"workers={workers}: must be >= 1 (one per GPU on CUDA, ~CPU cores on the CPU).")
        if cache_size < 0:
            raise ConfigError(f"cache_size={cache_size}: must be >= 0.")
        if max_tasks_per_child is not None and max_tasks_per_child < 1:
            raise ConfigError(f"max_tasks_per_child={max_tasks_per_child}: must be >= 1, or None to never recycle.")
        self.verify_cfg = verify_cfg or VerifyConfig()
        self.workers = workers
        self.cache_size = cache_size
        self.max_tasks_per_child = max_tasks_per_child
        self.gpus = gpus if gpus is not None else (os.environ.get(GPUS_ENV) or None)
        self.store = _store_path(store if store is not None else (os.environ.get(STORE_ENV) or None))
        # round-robin over the GPUs, from this rank's own starting point: ranks of one host start on different GPUs
        self._slot = int(os.environ.get("LOCAL_RANK", "0") or 0)
        self._cfg_hash = self.verify_cfg.config_hash()
        self._tasks: dict[str, Task] = {}
        self._lock = threading.Lock()
        self._cache: OrderedDict[_Key, cf.Future] = OrderedDict()
        self._pool: cf.ProcessPoolExecutor | None = None
        self._closed = False
        self.n_submitted = 0  # verifications sent to the pool
        self.n_cached = 0  # requests answered by the cache (done or in flight)
        self.add_tasks(tasks.values())

    # --- public API -----------------------------------------------------------------------------------------------

    def add_tasks(self, tasks: Iterable[Task]) -> None:
        """Register tasks. Re-registering an id with a different source raises TaskError (the cache keys on ids)."""
        with self._lock:
            for task in tasks:
                known = self._tasks.get(task.task_id)
                if known is not None and known.source != task.source:
                    raise TaskError(
                        f"task id {task.task_id!r} is already registered with a different source; verdicts are "
                        "cached by task id, so give the new task another id (e.g. a suite prefix)."
                    )
                self._tasks[task.task_id] = task

    @property
    def task_ids(self) -> list[str]:
        return sorted(self._tasks)

    def verdicts(self, task_ids: Sequence[str], completions: Sequence[str]) -> list[Verdict]:
        """Verify completions[i] against task_ids[i], in parallel; blocks until all are done."""
        futures = self._futures(task_ids, completions)
        try:
            return [Verdict.from_dict(f.result()) for f in futures]
        except BrokenProcessPool as e:
            raise self._broken(e) from e

    async def averdicts(self, task_ids: Sequence[str], completions: Sequence[str]) -> list[Verdict]:
        """`verdicts` for an event loop: awaits the pool without blocking the loop."""
        futures = self._futures(task_ids, completions)
        try:
            results = await asyncio.gather(*(asyncio.wrap_future(f) for f in futures))
        except BrokenProcessPool as e:
            raise self._broken(e) from e
        return [Verdict.from_dict(r) for r in results]

    def close(self) -> None:
        """Stop the pool (pending verifications are cancelled). The client cannot be used afterwards."""
        with self._lock:
            self._closed = True
            pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=True, cancel_futures=True)

    def __getstate__(self) -> dict[str, Any]:
        """Pickle the settings and tasks only: a copy (TRL's async GRPO ships reward functions to its rollout
        process) starts its own pool on first use, with an empty cache and zero counters."""
        return {"tasks": dict(self._tasks), "verify_cfg": self.verify_cfg, "workers": self.workers,
                "cache_size": self.cache_size, "max_tasks_per_child": self.max_tasks_per_child,
                "gpus": self.gpus, "store": self.store}  # fmt: skip

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(state["tasks"], state["verify_cfg"], workers=state["workers"], cache_size=state["cache_size"],
                      max_tasks_per_child=state["max_tasks_per_child"], gpus=state.get("gpus"),
                      store=state.get("store"))  # fmt: skip

    def __enter__(self) -> VerifierClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- internals ------------------------------------------------------------------------------------------------

    def _futures(self, task_ids: Sequence[str], completions: Sequence[str]) -> list[cf.Future]:
        if isinstance(task_ids, str) or len(task_ids) != len(completions):
            raise ValueError(
                f"got {1 if isinstance(task_ids, str) else len(task_ids)} task ids for {len(completions)} "
                "completions: pass one task id per completion."
            )
        with self._lock:
            if self._closed:
                raise RuntimeError("VerifierClient is closed; create a new one.")
            return [self._future(task_id, text) for task_id, text in zip(task_ids, completions, strict=True)]

    def _future(self, task_id: str, completion: str) -> cf.Future:
        """The cached or newly submitted verification (call with the lock held)."""
        task = self._tasks.get(task_id)
        if task is None:
            known = ", ".join(sorted(self._tasks)[:20]) or "none"
            raise TaskError(f"unknown task id {task_id!r}; the client knows: {known}. Register it with add_tasks.")
        if not isinstance(completion, str):
            raise TypeError(f"completion for {task_id!r} is {type(completion).__name__}; expected the text (str).")
        key = (task_id, candidate_sha256(completion), self._cfg_hash)
        future = self._cache.get(key)
        if future is not None and not (future.done() and (future.cancelled() or future.exception() is not None)):
            self._cache.move_to_end(key)
            self.n_cached += 1
            return future
        future = self._submit(task, completion)
        self.n_submitted += 1
        self._cache[key] = future
        while len(self._cache) > self.cache_size:
            self._cache.popitem(last=False)  # a caller still holding an evicted in-flight future keeps it
        return future

    def _submit(self, task: Task, completion: str) -> cf.Future:
        if self._pool is None:
            self._pool = cf.ProcessPoolExecutor(
                max_workers=self.workers,
                mp_context=multiprocessing.get_context("spawn"),
                max_tasks_per_child=self.max_tasks_per_child,
                initializer=_pin_gpus if self.gpus else None,
                initargs=(self.gpus,) if self.gpus else (),
            )
        try:
            future = self._pool.submit(_verify_to_dict, task, completion, self.verify_cfg, self._slot, self.store)
            self._slot += 1
            return future
        except BrokenProcessPool:  # a process died since the last call: start a fresh pool once
            log.warning("verifier pool was broken; starting a new one")
            broken, self._pool = self._pool, None
            broken.shutdown(wait=False, cancel_futures=True)
            return self._submit(task, completion)

    def _broken(self, error: BrokenProcessPool) -> SandboxError:
        """Drop a pool whose process died (killed for memory, a crash in the reference) so the next call restarts."""
        with self._lock:
            pool, self._pool = self._pool, None
            for key in [k for k, f in self._cache.items() if f.done() and f.exception() is not None]:
                del self._cache[key]
        if pool is not None:
            pool.shutdown(wait=False, cancel_futures=True)
        return SandboxError(
            f"a verifier pool process died ({error}); the pool is restarted on the next call. If this repeats, "
            "lower workers or raise the machine's memory."
        )


def _store_path(path: str | os.PathLike[str] | None) -> str | None:
    """The absolute path of an SQLite verdict store (pool processes may start in another directory), or None."""
    if path is None:
        return None
    from tritonrl.verify.verdict_store import verdict_store_backend

    if verdict_store_backend(path) != "sqlite":  # raises ConfigError for an unknown suffix
        raise ConfigError(f"store={os.fspath(path)!r}: the pool's processes write at once, which the JSONL cache does "
                          "not support; use an SQLite file (e.g. verdicts.sqlite).")  # fmt: skip
    return os.path.abspath(path)
