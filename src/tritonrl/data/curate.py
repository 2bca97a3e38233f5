"""Curate a suite's solutions with the real verifier: which can be trained on, and why the others cannot.

For each entry with a solution (KernelBook ports, generated fusion solutions, bundled ones, inherited by variants):
- `verified`: passes under policy='strict' (every computation in the candidate's Triton kernels);
- `partial_port`: passes only under policy='partial' (a torch GEMM/conv from Inductor's `extern_kernels`, or torch
  modules left in forward): usable for training under the partial policy, labelled so;
- `shape_specialised`: correct at the base shape, wrong at a shape-family variant (Inductor code hard-codes sizes);
- `rejected`: any other verdict (stage and failure kind in the reason);
- `needs_gpu`: calls `libdevice`, which the CPU Triton interpreter does not run (curate on a GPU);
- `blocked`: the port has a blocker (an Inductor helper with no rewrite); `no_solution`: nothing to verify.
Strict is tried first; a strict rejection for torch compute is retried under partial. Ports known to call
extern_kernels skip the strict run (it cannot pass). Verdicts go through a `Verifier` with a verdict cache (the JSONL
`VerdictCache` or an `SQLiteVerdictStore`), whose misses are verified `jobs` at a time in pre-started workers: a
strict round, then a partial round.
"""

from __future__ import annotations

import dataclasses
import enum
import logging
import re
import threading
from collections.abc import Callable, Iterable

from tritonrl.data.suites import SuiteTask
from tritonrl.types import FailureKind, Verdict
from tritonrl.verify.cache import VerdictCache
from tritonrl.verify.config import VerifyConfig
from tritonrl.verify.verdict_store import SQLiteVerdictStore
from tritonrl.verify.verifier import Verifier

log = logging.getLogger(__name__)


class Status(enum.StrEnum):
    VERIFIED = "verified"
    PARTIAL_PORT = "partial_port"
    SHAPE_SPECIALISED = "shape_specialised"
    REJECTED = "rejected"
    NEEDS_GPU = "needs_gpu"
    BLOCKED = "blocked"
    NO_SOLUTION = "no_solution"


@dataclasses.dataclass(frozen=True, slots=True)
class Curated:
    """The curation result of one entry."""

    task_id: str
    status: Status
    policy: str  # the policy the solution passed under ("strict" / "partial"), "" when it passed none
    stage: str  # where the deciding verification stopped ("done" when it passed, "" when none ran)
    failure: str  # its FailureKind value, "" when it passed or none ran
    reason: str  # one line for reports
    seconds: float  # the verifier's wall time on it (0 on a cache hit); parallel verifications overlap

    @property
    def usable(self) -> bool:
        """The solution can go into training data (under `policy`)."""
        return self.status in (Status.VERIFIED, Status.PARTIAL_PORT)


def curate(
    entries: Iterable[SuiteTask],
    cfg: VerifyConfig | None = None,
    cache: VerdictCache | SQLiteVerdictStore | None = None,
    on_result: Callable[[Curated], None] | None = None,
    *,
    jobs: int = 1,
) -> list[Curated]:
    """Curate each entry (see the module docstring); results in input order. `cfg.policy` is ignored: both
    policies are used as needed. Verification runs `jobs` at a time in pre-started workers, in two rounds (strict,
    then partial for the entries that need it); `on_result` is called as each entry's result is final."""
    cfg = cfg or VerifyConfig()
    cache = cache if cache is not None else VerdictCache()
    items = list(entries)
    results: dict[int, Curated] = {}
    lock = threading.Lock()  # verdicts arrive on the verification threads; on_result sees one result at a time

    def final(i: int, result: Curated) -> None:
        with lock:
            results[i] = result
            if on_result:
                on_result(result)

    for i, item in enumerate(items):
        if (result := _without_verifying(item, cfg)) is not None:
            final(i, result)
    retry: list[int] = []
    spent: dict[int, float] = {}

    def strict_done(i: int, verdict: Verdict, fresh: bool) -> None:
        spent[i] = _seconds(verdict) if fresh else 0.0
        if verdict.passed:
            final(i, _made(items[i], Status.VERIFIED, "passes under the strict policy", verdict, "strict", spent[i]))
        elif verdict.failure is FailureKind.TORCH_COMPUTE:
            retry.append(i)  # torch computes part of forward: a partial port, maybe
        else:
            final(i, _failed(items[i], verdict, spent[i]))

    def partial_done(i: int, verdict: Verdict, fresh: bool) -> None:
        seconds = spent.get(i, 0.0) + (_seconds(verdict) if fresh else 0.0)
        if verdict.passed:
            why = items[i].note or "torch computes part of forward"
            final(i, _made(items[i], Status.PARTIAL_PORT, f"passes only under the partial policy ({why})", verdict,
                           "partial", seconds))  # fmt: skip
        else:
            final(i, _failed(items[i], verdict, seconds))

    strict = [i for i in range(len(items)) if i not in results and items[i].label != "partial_port"]
    _verify(items, strict, dataclasses.replace(cfg, policy="strict"), cache, jobs, strict_done)
    # ports known to call extern_kernels skip the strict run: it cannot pass them
    known_partial = [i for i in range(len(items)) if i not in results and items[i].label == "partial_port"]
    partial = sorted(retry + known_partial)
    _verify(items, partial, dataclasses.replace(cfg, policy="partial"), cache, jobs, partial_done)
    return [results[i] for i in range(len(items))]


def _verify(
    items: list[SuiteTask],
    indices: list[int],
    cfg: VerifyConfig,
    cache: VerdictCache | SQLiteVerdictStore,
    jobs: int,
    done: Callable[[int, Verdict, bool], None],
) -> None:
    """Verify the solutions of `items[indices]` through the cache; `done(item index, verdict, fresh)` for each."""
    if not indices:
        return
    pairs = [(items[i].task, items[i].solution or "") for i in indices]
    cached = {i for i, (task, code) in zip(indices, pairs, strict=True) if cache.peek(task, code, cfg) is not None}
    with Verifier(
        cfg, jobs=jobs, cache=cache, prestart=min(jobs, len(pairs) - len(cached)), keep_warm=False
    ) as verifier:
        verifier.verify_many(pairs, on_verdict=lambda j, verdict: done(indices[j], verdict, indices[j] not in cached))


def _seconds(verdict: Verdict) -> float:
    """The verifier's wall time for a verdict: the funnel's stage laps are sequential; the `worker_*` and `gpu_wait`
    entries it records besides them are parts of those laps."""
    laps = [ms for name, ms in verdict.stage_times_ms.items() if not name.startswith("worker_") and name != "gpu_wait"]
    return round(sum(laps) / 1e3, 2)


def _without_verifying(item: SuiteTask, cfg: VerifyConfig) -> Curated | None:
    """The result of an entry that needs no verification (blocked, nothing to verify, libdevice on the CPU)."""
    if item.label == "blocked":
        return _made(item, Status.BLOCKED, item.note or "the port has a blocker")
    if item.solution is None:
        return _made(item, Status.NO_SOLUTION, item.note or "no solution to verify")
    if not cfg.is_cuda and re.search(r"\blibdevice\.", item.solution):
        calls = sorted(set(re.findall(r"\blibdevice\.(\w+)", item.solution)))
        return _made(item, Status.NEEDS_GPU, f"calls libdevice.{', libdevice.'.join(calls)}: the CPU Triton "
                                             "interpreter does not run libdevice; curate on a GPU")  # fmt: skip
    return None


def _made(
    item: SuiteTask, status: Status, reason: str, verdict: Verdict | None = None, policy: str = "", seconds: float = 0.0
) -> Curated:
    stage = verdict.stage.value if verdict else ""
    failure = verdict.failure.value if verdict and verdict.failure else ""
    return Curated(item.task_id, status, policy, stage, failure, reason, seconds)


def _failed(item: SuiteTask, verdict: Verdict, seconds: float) -> Curated:
    base_ok = [c.passed for c in verdict.checks if c.case.startswith("base/")]
    variant_bad = [c for c in verdict.checks if not c.passed and not c.case.startswith("base/")]
    where = f"{verdict.stage.value}/{verdict.failure.value if verdict.failure else '?'}"
    if base_ok and all(base_ok) and variant_bad:
        sizes = ", ".join(f"{k}={v}" for k, v in variant_bad[0].sizes.items())
        reason = f"{where}: correct at the base shape, wrong at {variant_bad[0].case} ({sizes})"
        return _made(item, Status.SHAPE_SPECIALISED, reason, verdict, "", seconds)
    first_line = verdict.message.splitlines()[0][:200] if verdict.message else ""
    return _made(item, Status.REJECTED, f"{where}: {first_line}", verdict, "", seconds)
