"""Run verification over many samples into a result store, on a local pool or on Ray, resumably.

Samples are registered in the store before anything is verified; `pending()` then lists exactly the (task,
candidate) pairs without a verdict under this verifier config and device, so a run that was interrupted (Ctrl-C,
kill -9, a lost node) continues where it stopped and never verifies or records anything twice. The store has one
writer, the driver; pool threads and Ray actors only return verdicts.

Local: one `Verifier` (warm workers, `jobs` verifications at a time per device, every visible GPU on 'cuda', the
per-GPU lock keeping each timing alone on its GPU). Ray: `jobs` actors per GPU of the cluster (`num_gpus=1/jobs`;
Ray gives each its GPU as 'cuda') or `jobs` CPU actors, each with its own one-slot `Verifier`, so verdicts are
identical. A task whose reference cannot run on the device is skipped, its samples left unscored (`RunStats`).
"""

from __future__ import annotations

import concurrent.futures as cf
import dataclasses
import logging
from collections.abc import Callable, Iterable
from typing import Any

from tritonrl.errors import ConfigError, TaskError
from tritonrl.eval.records import Record
from tritonrl.eval.store import ResultStore
from tritonrl.tasks.schema import Task
from tritonrl.types import Verdict, candidate_sha256
from tritonrl.verify.config import VerifyConfig

log = logging.getLogger(__name__)

Progress = Callable[[Record], None]
TASK_ERROR = "task_error"  # the key of a verification result that is a task error, not a verdict


def device_label(cfg: VerifyConfig) -> str:
    """What the store keys verdicts on: 'cpu' or the GPU's name (results on two H100s are interchangeable)."""
    if not cfg.is_cuda:
        return "cpu"
    import torch

    return torch.cuda.get_device_name(cfg.gpu_index or 0)


def _verdict_or_task_error(future: cf.Future[Verdict]) -> dict[str, Any]:
    """A finished verification as the driver records it: the verdict, or the task error that stopped it."""
    try:
        return future.result().to_dict()
    except TaskError as exc:  # the task's fault (its reference cannot run here): the run goes on without it
        return {TASK_ERROR: str(exc)}


def _records_for(job: tuple[str, int, int | None, str, str], verdict: Verdict, cfg_hash: str, device: str) -> Record:
    task_id, sample, level, sha, _ = job
    return Record(task_id, sample, level, sha, cfg_hash, device, verdict)


@dataclasses.dataclass
class RunStats:
    done: int = 0
    passed: int = 0
    interrupted: bool = False
    # tasks that cannot be verified on this device (their reference fails to build or run): task id -> why. Their
    # samples stay pending, unscored: no sample of such a task counts for or against a model.
    skipped: dict[str, str] = dataclasses.field(default_factory=dict)


def run_local(
    store: ResultStore,
    tasks: dict[str, Task],
    cfg: VerifyConfig,
    *,
    jobs: int = 2,
    progress: Progress | None = None,
) -> RunStats:
    """Verify every pending sample through one warm `Verifier`. Ctrl-C cancels what has not started,
    lets running verifications finish and keeps everything recorded so far."""
    from tritonrl.verify.verifier import Verifier

    device = device_label(cfg)
    cfg_hash = cfg.config_hash()
    stats = RunStats()
    queue = list(store.pending(cfg_hash, device))
    jobs = max(1, jobs)
    # The whole queue is submitted at once: the Verifier then knows when no work is left, and starts no worker
    # after the last candidate (keep_warm=False). Ctrl-C cancels what has not started.
    with Verifier(cfg, jobs=jobs, prestart=min(jobs, len(queue)), keep_warm=False) as verifier:
        running = {verifier.submit(tasks[job[0]], job[4]): job for job in queue}
        recorded: set[cf.Future] = set()
        try:
            for fut in cf.as_completed(running):
                recorded.add(fut)
                if fut.cancelled():
                    continue
                job = running[fut]
                if _record(store, job, _verdict_or_task_error(fut), cfg_hash, device, stats, progress):
                    for other, other_job in running.items():  # each would fail the same way
                        if other_job[0] == job[0]:
                            other.cancel()
        except KeyboardInterrupt:
            stats.interrupted = True
            cancelled = sum(f.cancel() for f in running if f not in recorded)
            log.warning("interrupted: finishing the running verifications, %d left pending", cancelled)
            for fut, job in running.items():
                if fut not in recorded and not fut.cancelled():  # result() waits for a running one
                    _record(store, job, _verdict_or_task_error(fut), cfg_hash, device, stats, progress)
    return stats


def _record(
    store: ResultStore, job: tuple, result: dict[str, Any], cfg_hash: str, device: str, stats: RunStats,
    progress: Progress | None,
) -> str | None:  # fmt: skip
    """Store one verification's verdict; for a task error, note the task as skipped and return the reason."""
    if TASK_ERROR in result:
        if job[0] not in stats.skipped:
            log.warning("task %s skipped: it cannot be verified here (%s); its samples stay unscored", job[0],
                        result[TASK_ERROR])  # fmt: skip
        stats.skipped[job[0]] = result[TASK_ERROR]
        return result[TASK_ERROR]
    verdict = Verdict.from_dict(result)
    record = _records_for(job, verdict, cfg_hash, device)
    store.put(record)
    stats.done += 1
    stats.passed += verdict.passed
    if progress:
        progress(record)
    return None


def run_ray(
    store: ResultStore,
    tasks: dict[str, Task],
    cfg: VerifyConfig,
    *,
    jobs: int = 2,
    progress: Progress | None = None,
    address: str | None = None,
) -> RunStats:
    """The same as `run_local`, with verifications in Ray actors (`ray.init(address)`; None starts a local one)."""
    import ray

    if not ray.is_initialized():
        ray.init(address=address, num_cpus=None if address else max(1, jobs), include_dashboard=False,
                 log_to_driver=False)  # fmt: skip
    cfg_hash = cfg.config_hash()
    jobs = max(1, jobs)
    # `jobs` actors share each GPU (num_gpus=1/jobs), as `jobs` local slots do: the per-GPU lock of the actors' host
    # keeps each timing alone on its GPU. Ray gives every actor its GPU as CUDA_VISIBLE_DEVICES, so it verifies on
    # 'cuda', i.e. 'cuda:0' of what it sees.
    resources = {"num_gpus": 1 / jobs} if cfg.is_cuda else {"num_cpus": 1}
    n_actors = int(ray.cluster_resources().get("GPU", 0)) * jobs if cfg.is_cuda else jobs
    if cfg.is_cuda and n_actors == 0:
        raise ConfigError("--backend ray --device cuda: the Ray cluster has no GPUs (ray.cluster_resources()); "
                           "start the nodes with GPUs, or verify with --device cpu.")  # fmt: skip
    actor_cls = ray.remote(**resources)(_VerifierActor)
    actors = [actor_cls.remote() for _ in range(n_actors)]
    # the store key is the GPU's name, asked of an actor: the driver (a head node) may have no GPU itself
    device = ray.get(actors[0].device_label.remote(cfg)) if cfg.is_cuda else device_label(cfg)
    queue, stats = list(store.pending(cfg_hash, device)), RunStats()
    running: dict[Any, tuple[tuple, Any]] = {}
    try:
        while queue or running:
            while queue and actors:
                job = queue.pop(0)
                actor = actors.pop()
                running[actor.verify.remote(tasks[job[0]], job[4], cfg)] = (job, actor)
            ready, _ = ray.wait(list(running), num_returns=1)
            for ref in ready:
                job, actor = running.pop(ref)
                actors.append(actor)
                if _record(store, job, ray.get(ref), cfg_hash, device, stats, progress) is not None:
                    queue = [other for other in queue if other[0] != job[0]]  # each would fail the same way
    except KeyboardInterrupt:
        stats.interrupted = True
        for ref, (job, _) in running.items():
            _record(store, job, ray.get(ref), cfg_hash, device, stats, progress)
    return stats


class _VerifierActor:
    """A Ray actor that verifies one candidate at a time, with a warm worker started ahead (`Verifier`, one slot)."""

    def __init__(self) -> None:
        self._verifiers: dict[str, Any] = {}  # by config hash: one warm Verifier per config this actor has seen

    def verify(self, task: Task, source: str, cfg: VerifyConfig) -> dict[str, Any]:
        from tritonrl.verify.verifier import Verifier

        local = self._local(cfg)
        verifier = self._verifiers.get(local.config_hash())
        if verifier is None:
            verifier = self._verifiers[local.config_hash()] = Verifier(local, jobs=1)
        return _verdict_or_task_error(verifier.submit(task, source))

    def device_label(self, cfg: VerifyConfig) -> str:
        return device_label(self._local(cfg))

    @staticmethod
    def _local(cfg: VerifyConfig) -> VerifyConfig:
        return dataclasses.replace(cfg, device="cuda:0") if cfg.is_cuda else cfg  # its one GPU, as local slots say


def register_samples(store: ResultStore, samples: Iterable[tuple[str, int, int | None, str]]) -> int:
    """Add (task_id, sample, level, source) rows to the store; returns how many were given."""
    rows = [(t, i, lvl, candidate_sha256(src), src) for t, i, lvl, src in samples]
    store.add_samples(rows)
    return len(rows)
