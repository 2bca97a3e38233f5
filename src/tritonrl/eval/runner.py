"""Run verification over many samples into a result store, on a local pool or on Ray, resumably.

Samples are registered in the store before anything is verified; `pending()` then lists exactly the (task,
candidate) pairs without a verdict under this verifier config and device, so a run that was interrupted (Ctrl-C,
kill -9, a lost node) continues where it stopped and never verifies or records anything twice. The store has one
writer, the driver; pool threads and Ray actors only return verdicts.

Local pool: `jobs` verifications at a time, each in its own sandboxed worker process; with several visible GPUs the
slots are spread over them ('cuda:N'), one verification per GPU at a time so timing never shares a GPU. Ray: one
actor per slot (`num_gpus=1` on CUDA, `num_cpus=1` on the CPU) running the same `verify`, so results are identical.
"""

from __future__ import annotations

import concurrent.futures as cf
import dataclasses
import logging
from collections.abc import Callable, Iterable
from typing import Any

from tritonrl.eval.records import Record
from tritonrl.eval.store import ResultStore
from tritonrl.tasks.schema import Task
from tritonrl.types import Verdict, candidate_sha256
from tritonrl.verify.config import VerifyConfig

log = logging.getLogger(__name__)

Progress = Callable[[Record], None]


def device_label(cfg: VerifyConfig) -> str:
    """What the store keys verdicts on: 'cpu' or the GPU's name (results on two H100s are interchangeable)."""
    if not cfg.is_cuda:
        return "cpu"
    import torch

    return torch.cuda.get_device_name(cfg.gpu_index or 0)


def slot_devices(cfg: VerifyConfig, jobs: int) -> list[str]:
    """One device string per parallel slot: the CPU `jobs` times, or each visible GPU once (`jobs` ignored)."""
    if not cfg.is_cuda:
        return ["cpu"] * max(1, jobs)
    import torch

    n = torch.cuda.device_count()
    return [f"cuda:{i}" for i in range(max(1, n))]


def _verify_one(task: Task, source: str, cfg: VerifyConfig) -> dict[str, Any]:
    from tritonrl.verify.funnel import verify

    return verify(task, source, cfg).to_dict()


def _records_for(job: tuple[str, int, int | None, str, str], verdict: Verdict, cfg_hash: str, device: str) -> Record:
    task_id, sample, level, sha, _ = job
    return Record(task_id, sample, level, sha, cfg_hash, device, verdict)


@dataclasses.dataclass
class RunStats:
    done: int = 0
    passed: int = 0
    interrupted: bool = False


def run_local(
    store: ResultStore,
    tasks: dict[str, Task],
    cfg: VerifyConfig,
    *,
    jobs: int = 2,
    progress: Progress | None = None,
) -> RunStats:
    """Verify every pending sample with a thread pool of sandboxed verifications. Ctrl-C stops submitting,
    lets running verifications finish and keeps everything recorded so far."""
    device = device_label(cfg)
    cfg_hash = cfg.config_hash()
    pending = store.pending(cfg_hash, device)
    slots = slot_devices(cfg, jobs)
    stats = RunStats()
    free: list[str] = list(slots)
    with cf.ThreadPoolExecutor(max_workers=len(slots)) as pool:
        running: dict[cf.Future, tuple[tuple, str]] = {}
        queue = list(pending)
        try:
            while queue or running:
                while queue and free:
                    job = queue.pop(0)
                    slot = free.pop()
                    job_cfg = dataclasses.replace(cfg, device=slot) if cfg.is_cuda else cfg
                    running[pool.submit(_verify_one, tasks[job[0]], job[4], job_cfg)] = (job, slot)
                done, _ = cf.wait(running, return_when=cf.FIRST_COMPLETED)
                for fut in done:
                    job, slot = running.pop(fut)
                    free.append(slot)
                    _record(store, job, Verdict.from_dict(fut.result()), cfg_hash, device, stats, progress)
        except KeyboardInterrupt:
            stats.interrupted = True
            log.warning("interrupted: finishing %d running verifications, %d left pending", len(running), len(queue))
            for fut in cf.as_completed(running):
                job, _ = running[fut]
                _record(store, job, Verdict.from_dict(fut.result()), cfg_hash, device, stats, progress)
    return stats


def _record(
    store: ResultStore, job: tuple, verdict: Verdict, cfg_hash: str, device: str, stats: RunStats,
    progress: Progress | None,
) -> None:  # fmt: skip
    record = _records_for(job, verdict, cfg_hash, device)
    store.put(record)
    stats.done += 1
    stats.passed += verdict.passed
    if progress:
        progress(record)


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
    device = device_label(cfg)
    cfg_hash = cfg.config_hash()
    resources = {"num_gpus": 1} if cfg.is_cuda else {"num_cpus": 1}
    n_actors = int(ray.cluster_resources().get("GPU", 0)) if cfg.is_cuda else max(1, jobs)
    actor_cls = ray.remote(**resources)(_VerifierActor)
    actors = [actor_cls.remote() for _ in range(max(1, n_actors))]
    # Each actor sees its own GPU as 'cuda' (Ray sets CUDA_VISIBLE_DEVICES), so it verifies on 'cuda'.
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
                _record(store, job, Verdict.from_dict(ray.get(ref)), cfg_hash, device, stats, progress)
    except KeyboardInterrupt:
        stats.interrupted = True
        for ref, (job, _) in running.items():
            _record(store, job, Verdict.from_dict(ray.get(ref)), cfg_hash, device, stats, progress)
    return stats


class _VerifierActor:
    """A Ray actor that verifies one candidate at a time (each in its own sandboxed worker process)."""

    def verify(self, task: Task, source: str, cfg: VerifyConfig) -> dict[str, Any]:
        if cfg.is_cuda:
            cfg = dataclasses.replace(cfg, device="cuda")
        return _verify_one(task, source, cfg)


def register_samples(store: ResultStore, samples: Iterable[tuple[str, int, int | None, str]]) -> int:
    """Add (task_id, sample, level, source) rows to the store; returns how many were given."""
    rows = [(t, i, lvl, candidate_sha256(src), src) for t, i, lvl, src in samples]
    store.add_samples(rows)
    return len(rows)
