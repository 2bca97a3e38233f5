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
extern_kernels skip the strict run (it cannot pass). Verdicts go through a `VerdictCache`.
"""

from __future__ import annotations

import dataclasses
import enum
import logging
import re
import time
from collections.abc import Callable, Iterable

from tritonrl.data.suites import SuiteTask
from tritonrl.types import FailureKind, Verdict
from tritonrl.verify.cache import VerdictCache
from tritonrl.verify.config import VerifyConfig

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
    seconds: float  # wall time spent verifying (0 on a cache hit)

    @property
    def usable(self) -> bool:
        """The solution can go into training data (under `policy`)."""
        return self.status in (Status.VERIFIED, Status.PARTIAL_PORT)


def curate(
    entries: Iterable[SuiteTask],
    cfg: VerifyConfig | None = None,
    cache: VerdictCache | None = None,
    on_result: Callable[[Curated], None] | None = None,
) -> list[Curated]:
    """Curate each entry (see the module docstring). `cfg.policy` is ignored: both policies are used as needed."""
    cfg = cfg or VerifyConfig()
    cache = cache if cache is not None else VerdictCache()
    results = []
    for item in entries:
        t0 = time.perf_counter()
        result = curate_one(item, cfg, cache)
        result = dataclasses.replace(result, seconds=round(time.perf_counter() - t0, 2))
        results.append(result)
        if on_result:
            on_result(result)
    return results


def curate_one(item: SuiteTask, cfg: VerifyConfig, cache: VerdictCache) -> Curated:
    """Curate one entry."""

    def made(status: Status, reason: str, verdict: Verdict | None = None, policy: str = "") -> Curated:
        stage = verdict.stage.value if verdict else ""
        failure = verdict.failure.value if verdict and verdict.failure else ""
        return Curated(item.task_id, status, policy, stage, failure, reason, 0.0)

    if item.label == "blocked":
        return made(Status.BLOCKED, item.note or "the port has a blocker")
    if item.solution is None:
        return made(Status.NO_SOLUTION, item.note or "no solution to verify")
    if not cfg.is_cuda and re.search(r"\blibdevice\.", item.solution):
        calls = sorted(set(re.findall(r"\blibdevice\.(\w+)", item.solution)))
        return made(Status.NEEDS_GPU, f"calls libdevice.{', libdevice.'.join(calls)}: the CPU Triton interpreter "
                                      "does not run libdevice; curate on a GPU")  # fmt: skip
    strict = dataclasses.replace(cfg, policy="strict")
    partial = dataclasses.replace(cfg, policy="partial")
    if item.label != "partial_port":
        verdict = cache.verify(item.task, item.solution, strict)
        if verdict.passed:
            return made(Status.VERIFIED, "passes under the strict policy", verdict, "strict")
        if verdict.failure is not FailureKind.TORCH_COMPUTE:
            return _failed(item, verdict, made)
    verdict = cache.verify(item.task, item.solution, partial)
    if verdict.passed:
        why = item.note or "torch computes part of forward"
        return made(Status.PARTIAL_PORT, f"passes only under the partial policy ({why})", verdict, "partial")
    return _failed(item, verdict, made)


def _failed(item: SuiteTask, verdict: Verdict, made: Callable) -> Curated:
    base_ok = [c.passed for c in verdict.checks if c.case.startswith("base/")]
    variant_bad = [c for c in verdict.checks if not c.passed and not c.case.startswith("base/")]
    where = f"{verdict.stage.value}/{verdict.failure.value if verdict.failure else '?'}"
    if base_ok and all(base_ok) and variant_bad:
        sizes = ", ".join(f"{k}={v}" for k, v in variant_bad[0].sizes.items())
        return made(Status.SHAPE_SPECIALISED, f"{where}: correct at the base shape, wrong at {variant_bad[0].case} "
                                              f"({sizes})", verdict)  # fmt: skip
    first_line = verdict.message.splitlines()[0][:200] if verdict.message else ""
    return made(Status.REJECTED, f"{where}: {first_line}", verdict)
