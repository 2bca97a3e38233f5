"""Evaluation metrics over Records: funnel rates, fast_p, unbiased pass@k and fast_p@k, speedup geomean.

Pure functions; no I/O. `summarize(records)` builds the tables that reports render. Definitions (per sample):
valid = got past STATIC; compiled = ran a forward (got past LOAD); correct = `verdict.passed`; speedup = the
verdict's speedup over the chosen baseline ("eager": `verdict.speedup`, "compile": `verdict.timing.speedup_compile`),
None when not timed. fast_p (KernelBench `score.py::fastp`) = #(correct and speedup > p) / #all samples.
"""

from __future__ import annotations

import dataclasses
import math
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence
from fractions import Fraction
from typing import Any

from tritonrl.eval.records import Record
from tritonrl.types import FailureKind, Stage


def pass_at_k(n: int, c: int, k: int) -> float:
    """Unbiased pass@k estimator 1 - C(n-c, k) / C(n, k) (Chen et al. 2021), in the paper's stable product form.

    Args:
        n: samples drawn for the task (>= 1).
        c: how many of them are correct (0..n).
        k: the k of pass@k (1..n).
    Raises:
        ValueError: on invalid counts, including k > n: the estimator is undefined there, and a report must
            show no number rather than a wrong one (`summarize` only reports k <= the fewest samples of a task).

    >>> pass_at_k(5, 2, 1), pass_at_k(5, 2, 2)
    (0.4, 0.7)
    """
    return float(_pass_at_k_exact(n, c, k))


def _pass_at_k_exact(n: int, c: int, k: int) -> Fraction:
    for name, value in (("n", n), ("c", c), ("k", k)):
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValueError(f"{name}={value!r}: must be an int.")
    if n < 1 or not 0 <= c <= n:
        raise ValueError(f"n={n}, c={c}: need n >= 1 samples and 0 <= c <= n correct ones.")
    if not 1 <= k <= n:
        raise ValueError(
            f"k={k} with n={n} samples: pass@k needs 1 <= k <= n. Draw at least {k} samples per task or drop k={k}."
        )
    if n - c < k:
        return Fraction(1)
    # C(n-c, k) / C(n, k) = prod_{i=n-c+1}^{n} (1 - k/i), evaluated in exact rationals and rounded once by the
    # caller: the float product gives 0.3999999999999999 for (5, 2, 1), and published tables must read 0.4.
    return 1 - math.prod(Fraction(i - k, i) for i in range(n - c + 1, n + 1))


def mean_pass_at_k(counts: Mapping[str, tuple[int, int]], k: int) -> float:
    """Task-level pass@k: the mean over tasks of pass_at_k(n_task, c_task, k) (exact, rounded once).

    Args:
        counts: task id -> (n samples, c hits).
        k: the k of pass@k; must be <= every task's n.
    """
    if not counts:
        raise ValueError("counts is empty: pass@k needs at least one task.")
    return float(sum(_pass_at_k_exact(n, c, k) for n, c in counts.values()) / len(counts))


@dataclasses.dataclass(frozen=True, slots=True)
class _Flags:
    """What metrics need from one sample."""

    task_id: str
    level: int | None
    stage: str  # where it stopped; "done" when it passed
    failure: str | None
    valid: bool
    compiled: bool
    correct: bool
    speedup: float | None  # over the chosen baseline; None when not timed


def _flags(record: Record, baseline: str) -> _Flags:
    v = record.verdict
    return _Flags(
        task_id=record.task_id,
        level=record.level,
        stage=Stage.DONE.value if v.passed else v.stage.value,
        failure=v.failure.value if v.failure is not None else None,
        valid=v.is_valid,
        compiled=v.is_compiled,
        correct=v.passed,
        speedup=v.speedup_of(baseline),
    )


def _timing_complete(flags: Sequence[_Flags]) -> bool:
    """fast_p (p > 0) is exact only when something was timed and every correct sample has a speedup; otherwise it
    would be a lower bound, which a table would present as the number."""
    return any(f.speedup is not None for f in flags) and all(f.speedup is not None for f in flags if f.correct)


def _is_fast(f: _Flags, p: float) -> bool:
    # p == 0: every measured speedup is > 0, so fast_0 is the correct rate whether or not it was timed.
    return f.correct and (p == 0 or (f.speedup is not None and f.speedup > p))


def _check_p(p: float) -> None:
    if not p >= 0:
        raise ValueError(f"p={p!r}: fast_p thresholds must be >= 0 (fast_0 is the correct rate).")


def fast_p(records: Iterable[Record], p: float, baseline: str = "eager") -> float | None:
    """Fraction of ALL samples that are correct and have speedup > p (strictly).

    Returns None for p > 0 when timing is missing (nothing timed, or a correct sample lacks a speedup).
    """
    _check_p(p)
    flags = [_flags(r, baseline) for r in records]
    if not flags:
        raise ValueError("records is empty: fast_p needs at least one sample.")
    if p > 0 and not _timing_complete(flags):
        return None
    return sum(_is_fast(f, p) for f in flags) / len(flags)


def geomean_speedup(records: Iterable[Record], baseline: str = "eager") -> float | None:
    """Geometric mean speedup over the samples that are correct and timed; None if there are none."""
    speedups = [f.speedup for f in (_flags(r, baseline) for r in records) if f.correct and f.speedup is not None]
    return _geomean(speedups)


def _geomean(values: Sequence[float]) -> float | None:
    return math.exp(math.fsum(math.log(v) for v in values) / len(values)) if values else None


@dataclasses.dataclass(frozen=True, slots=True)
class RateTable:
    """Rates over one set of samples (all of them, or one level's)."""

    n_tasks: int
    n_samples: int
    valid: float  # fraction of samples past STATIC
    compiled: float  # fraction of samples that ran a forward
    correct: float  # fraction of samples that passed
    fast: dict[str, float | None]  # p -> fast_p over all samples ("0" = correct); None: not (fully) timed
    pass_at_k: dict[int, float]  # k -> mean over tasks of unbiased pass@k; only k <= min samples per task
    fast_at_k: dict[str, dict[int, float]]  # p -> k -> fast_p@k; only the p whose fast_p is measured
    geomean_speedup: float | None  # over correct and timed samples
    n_timed: int  # correct and timed samples (the geomean's count)
    # Fraction the CPU interpreter could not decide (`inconclusive_on_cpu`): counted as not correct, reported apart
    # so a table shows how much of the "incorrect" is the interpreter's limit, not the model's.
    inconclusive: float = 0.0


@dataclasses.dataclass(frozen=True, slots=True)
class Summary:
    """Everything a report shows about one run."""

    run: str  # run name (e.g. the run directory)
    baseline: str  # "eager" or "compile": what speedups are relative to
    overall: RateTable
    per_level: dict[str, RateTable]  # "L1", "L2", ... and "unknown" (tasks without a level)
    stage_counts: dict[str, int]  # samples stopped at each stage ("done" for passed), funnel order
    failure_counts: dict[str, int]  # failure kind -> samples, most frequent first
    speedups: tuple[float, ...]  # correct & timed samples' speedups, ascending (for the distribution plot)

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["speedups"] = list(self.speedups)
        return d


def p_key(p: float) -> str:
    """The table key of threshold p: 0.0 -> "0", 1.2 -> "1.2"."""
    return f"{p:g}"


def _rate_table(flags: Sequence[_Flags], ks: Sequence[int], ps: Sequence[float], timed: bool) -> RateTable:
    n = len(flags)
    by_task: dict[str, list[_Flags]] = defaultdict(list)
    for f in flags:
        by_task[f.task_id].append(f)
    min_n = min(len(v) for v in by_task.values())
    ks_ok = [k for k in ks if k <= min_n]

    def at_k(hit: Any) -> dict[int, float]:
        counts = {t: (len(v), sum(hit(f) for f in v)) for t, v in by_task.items()}
        return {k: mean_pass_at_k(counts, k) for k in ks_ok}

    fast: dict[str, float | None] = {}
    fast_at_k: dict[str, dict[int, float]] = {}
    for p in ps:
        if p > 0 and not timed:
            fast[p_key(p)] = None
            continue
        fast[p_key(p)] = sum(_is_fast(f, p) for f in flags) / n
        fast_at_k[p_key(p)] = at_k(lambda f, p=p: _is_fast(f, p))
    timed_speedups = [f.speedup for f in flags if f.correct and f.speedup is not None]
    return RateTable(
        n_tasks=len(by_task),
        n_samples=n,
        valid=sum(f.valid for f in flags) / n,
        compiled=sum(f.compiled for f in flags) / n,
        inconclusive=sum(f.failure == FailureKind.INCONCLUSIVE_ON_CPU.value for f in flags) / n,
        correct=sum(f.correct for f in flags) / n,
        fast=fast,
        pass_at_k=at_k(lambda f: f.correct),
        fast_at_k=fast_at_k,
        geomean_speedup=_geomean(timed_speedups),
        n_timed=len(timed_speedups),
    )


def _check_records(records: Sequence[Record]) -> None:
    """One run, one sample set: each (task, sample) once, one (config, device), one level per task."""
    if not records:
        raise ValueError("no records to summarize: run `tritonrl eval` first, or check the config/device filters.")
    settings = sorted({(r.config_hash, r.device) for r in records})
    if len(settings) > 1:
        raise ValueError(
            f"records mix {len(settings)} (config_hash, device) settings {settings[:4]}: a table describes one "
            "setting. Filter them, e.g. ResultStore.records(config_hash=..., device=...)."
        )
    seen: set[tuple[str, int]] = set()
    levels: dict[str, int | None] = {}
    for r in records:
        if (r.task_id, r.sample) in seen:
            raise ValueError(f"sample ({r.task_id!r}, {r.sample}) appears twice: each sample must be counted once.")
        seen.add((r.task_id, r.sample))
        if levels.setdefault(r.task_id, r.level) != r.level:
            raise ValueError(
                f"task {r.task_id!r} has samples at levels {levels[r.task_id]} and {r.level}: a task has one level; "
                "fix the samples' level."
            )


def _level_key(level: int | None) -> str:
    return "unknown" if level is None else f"L{level}"


def summarize(
    records: Iterable[Record],
    *,
    ks: Sequence[int] = (1, 5, 10),
    ps: Sequence[float] = (0.0, 1.0, 1.2, 2.0),
    baseline: str = "eager",
    run: str = "",
) -> Summary:
    """Summarize one run's records (one per sample, a single config and device).

    fast_p for p > 0 is reported only when timing is complete over the whole run (something was timed and every
    correct sample has a speedup); otherwise it is None everywhere, and fast_at_k omits those p.

    Raises:
        ValueError: no records, a sample counted twice, mixed settings, or invalid ks/ps/baseline.
    """
    records = list(records)
    _check_records(records)
    bad_ks = [k for k in ks if isinstance(k, bool) or not isinstance(k, int) or k < 1]
    if bad_ks:
        raise ValueError(f"ks={tuple(ks)}: each k must be an int >= 1 (bad: {bad_ks}).")
    for p in ps:
        _check_p(p)
    ks, ps = sorted(set(ks)), sorted(set(ps))
    flags = [_flags(r, baseline) for r in records]
    timed = _timing_complete(flags)
    by_level: dict[int | None, list[_Flags]] = defaultdict(list)
    for f in flags:
        by_level[f.level].append(f)
    levels = sorted(by_level, key=lambda lv: (lv is None, lv or 0))
    stage_order = {s.value: i for i, s in enumerate(Stage)}
    stage_counts = Counter(f.stage for f in flags)
    failure_counts = Counter(f.failure for f in flags if f.failure is not None)
    return Summary(
        run=run,
        baseline=baseline,
        overall=_rate_table(flags, ks, ps, timed),
        per_level={_level_key(lv): _rate_table(by_level[lv], ks, ps, timed) for lv in levels},
        stage_counts=dict(sorted(stage_counts.items(), key=lambda kv: stage_order[kv[0]])),
        failure_counts=dict(sorted(failure_counts.items(), key=lambda kv: (-kv[1], kv[0]))),
        speedups=tuple(sorted(f.speedup for f in flags if f.correct and f.speedup is not None)),
    )
