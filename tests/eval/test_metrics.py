"""eval.metrics: pass@k against hand values and brute force, fast_p definitions, geomean, splits and counts.

Verdicts are built by hand; nothing is verified.
"""

from __future__ import annotations

import itertools
import json
import math
from fractions import Fraction

import pytest

from tritonrl.eval.metrics import (
    fast_p,
    geomean_speedup,
    mean_pass_at_k,
    pass_at_k,
    summarize,
)
from tritonrl.eval.records import Record
from tritonrl.types import FailureKind, Stage, TimingReport, Verdict

FAIL_KIND = {
    Stage.EXTRACT: FailureKind.NO_CODE,
    Stage.PARSE: FailureKind.SYNTAX_ERROR,
    Stage.STATIC: FailureKind.NO_TRITON_KERNEL,
    Stage.LOAD: FailureKind.IMPORT_ERROR,
    Stage.PROVENANCE: FailureKind.TORCH_COMPUTE,
    Stage.CORRECTNESS: FailureKind.WRONG_VALUES,
    Stage.TIMING: FailureKind.TIMEOUT,
}


def verdict(
    task: str = "t", stage: Stage = Stage.DONE, speedup: float | None = None, speedup_compile: float | None = None
) -> Verdict:
    passed = stage is Stage.DONE
    timing = TimingReport("events", speedup=speedup, speedup_compile=speedup_compile) if speedup_compile else None
    return Verdict(
        task_id=task,
        passed=passed,
        stage=stage,
        failure=None if passed else FAIL_KIND[stage],
        message="",
        candidate_sha256=f"sha-{task}",
        speedup=speedup,
        timing=timing,
    )


def rec(task: str, sample: int, v: Verdict | None = None, level: int | None = 1, sha: str | None = None) -> Record:
    v = v or verdict(task)
    return Record(task, sample, level, sha or v.candidate_sha256 or f"sha-{task}", "cfg", "cpu", v)


def ok(task: str, sample: int, speedup: float | None = None, level: int | None = 1) -> Record:
    return rec(task, sample, verdict(task, Stage.DONE, speedup), level)


def bad(task: str, sample: int, stage: Stage = Stage.CORRECTNESS, level: int | None = 1) -> Record:
    return rec(task, sample, verdict(task, stage), level)


# --- pass@k -------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("n", "c", "k", "expected"),
    [(5, 2, 1, 0.4), (5, 2, 2, 0.7), (10, 0, 1, 0.0), (10, 0, 10, 0.0), (10, 10, 1, 1.0), (7, 7, 7, 1.0),
     (3, 1, 3, 1.0), (4, 1, 2, 0.5), (10, 3, 5, 11 / 12)],
)  # fmt: skip
def test_pass_at_k_hand_values(n, c, k, expected):
    assert pass_at_k(n, c, k) == pytest.approx(expected, abs=1e-15)


def test_pass_at_k_reads_exact_decimals():
    assert pass_at_k(5, 2, 1) == 0.4  # a float product gives 0.3999999999999999
    assert pass_at_k(5, 2, 2) == 0.7


def test_pass_at_k_equals_brute_force_over_all_k_subsets():
    for n in range(1, 8):
        for c in range(n + 1):
            outcomes = [True] * c + [False] * (n - c)
            for k in range(1, n + 1):
                subsets = list(itertools.combinations(outcomes, k))
                exact = Fraction(sum(any(s) for s in subsets), len(subsets))
                assert pass_at_k(n, c, k) == float(exact), (n, c, k)


def test_pass_at_k_stable_for_large_n():
    assert pass_at_k(1000, 1, 1) == 0.001
    assert pass_at_k(1000, 999, 1) == 0.999
    assert 0.0 < pass_at_k(1000, 1, 500) <= 1.0


@pytest.mark.parametrize(("n", "c", "k"), [(5, 2, 6), (5, 2, 0), (5, 6, 1), (0, 0, 1), (5, -1, 1), (5, 2, 1.0)])
def test_pass_at_k_rejects_invalid_counts(n, c, k):
    with pytest.raises(ValueError, match="must|need"):
        pass_at_k(n, c, k)


def test_mean_pass_at_k_is_mean_over_tasks():
    assert mean_pass_at_k({"a": (5, 2), "b": (5, 0), "c": (5, 5)}, 2) == pytest.approx((0.7 + 0.0 + 1.0) / 3)


# --- per-sample flags ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("stage", "valid", "compiled"),
    [(Stage.EXTRACT, False, False), (Stage.PARSE, False, False), (Stage.STATIC, False, False),
     (Stage.LOAD, True, False), (Stage.PROVENANCE, True, True), (Stage.CORRECTNESS, True, True),
     (Stage.TIMING, True, True), (Stage.DONE, True, True)],
)  # fmt: skip
def test_valid_and_compiled_by_stage(stage, valid, compiled):
    v = verdict(stage=stage)
    assert (v.is_valid, v.is_compiled) == (valid, compiled)


def test_speedup_baselines():
    v = verdict(speedup=1.5, speedup_compile=0.8)
    assert v.speedup_of("eager") == 1.5
    assert v.speedup_of("compile") == 0.8
    assert verdict(speedup=1.5).speedup_of("compile") is None
    with pytest.raises(ValueError, match="baseline"):
        v.speedup_of("triton")


def test_nonfinite_speedup_after_json_round_trip_counts_as_untimed():
    v = Verdict.from_dict(json.loads(verdict(speedup=math.inf).to_json()))
    assert v.speedup == "inf"  # Verdict stores non-finite floats as text
    assert v.speedup_of() is None


# --- fast_p --------------------------------------------------------------------------------------------------


def test_fast_p_is_strictly_greater():
    records = [ok("a", 0, 1.0), ok("a", 1, 1.0000001)]
    assert fast_p(records, 1.0) == 0.5


def test_fast_p_denominator_is_all_samples():
    records = [ok("a", 0, 2.0), bad("a", 1), bad("b", 0, Stage.PARSE), bad("b", 1, Stage.LOAD)]
    assert fast_p(records, 1.0) == 0.25
    assert fast_p(records, 0.0) == 0.25


def test_fast_p_ignores_timed_but_incorrect_samples():
    timed_wrong = rec("a", 1, Verdict("a", False, Stage.TIMING, FailureKind.TIMEOUT, "", speedup=5.0))
    assert fast_p([ok("a", 0, 1.5), timed_wrong], 1.0) == 0.5


def test_fast_p_is_none_without_timing_but_fast_0_is_correct_rate():
    records = [ok("a", 0), ok("a", 1), bad("a", 2)]
    assert fast_p(records, 1.0) is None
    assert fast_p(records, 0.0) == pytest.approx(2 / 3)


def test_fast_p_is_none_when_a_correct_sample_is_untimed():
    assert fast_p([ok("a", 0, 3.0), ok("a", 1, None)], 1.0) is None  # 0.5 would be a lower bound, not the value


def test_fast_p_compile_baseline():
    records = [rec("a", 0, verdict("a", speedup=3.0, speedup_compile=0.9))]
    assert fast_p(records, 1.0, baseline="compile") == 0.0
    assert fast_p(records, 1.0, baseline="eager") == 1.0


# --- geomean -------------------------------------------------------------------------------------------------


def test_geomean_over_correct_and_timed_only():
    timed_wrong = rec("b", 0, Verdict("b", False, Stage.TIMING, FailureKind.TIMEOUT, "", speedup=100.0))
    records = [ok("a", 0, 2.0), ok("a", 1, 8.0), ok("a", 2, None), timed_wrong]
    assert geomean_speedup(records) == pytest.approx(4.0)


def test_geomean_is_none_without_timed_correct_samples():
    assert geomean_speedup([ok("a", 0), bad("a", 1)]) is None


# --- summarize -----------------------------------------------------------------------------------------------


def test_summary_rates_and_pass_at_k():
    records = [ok("a", 0, 2.0), bad("a", 1), ok("b", 0, 0.5), ok("b", 1, 1.1), bad("c", 0, Stage.PARSE), bad("c", 1)]
    t = summarize(records, ks=(1, 2, 5)).overall
    assert (t.n_tasks, t.n_samples, t.n_timed) == (3, 6, 3)
    assert (t.valid, t.compiled, t.correct) == (5 / 6, 5 / 6, 3 / 6)
    assert t.pass_at_k == {1: pytest.approx((0.5 + 1.0 + 0.0) / 3), 2: pytest.approx((1.0 + 1.0 + 0.0) / 3)}
    assert t.fast == {"0": 0.5, "1": 2 / 6, "1.2": 1 / 6, "2": 0.0}
    assert t.fast_at_k["1"] == {1: pytest.approx((0.5 + 0.5 + 0) / 3), 2: pytest.approx((1 + 1 + 0) / 3)}
    assert t.fast_at_k["0"] == t.pass_at_k
    assert t.geomean_speedup == pytest.approx((2.0 * 0.5 * 1.1) ** (1 / 3))


def test_pass_at_k_only_for_k_up_to_fewest_samples_of_a_task():
    records = [ok("a", i) for i in range(10)] + [ok("b", i) for i in range(4)]
    assert set(summarize(records).overall.pass_at_k) == {1}  # ks=(1, 5, 10); task b has 4 samples


def test_summary_without_timing_reports_none_and_omits_fast_at_k():
    t = summarize([ok("a", 0), bad("a", 1)]).overall
    assert t.fast == {"0": 0.5, "1": None, "1.2": None, "2": None}
    assert set(t.fast_at_k) == {"0"}
    assert (t.geomean_speedup, t.n_timed) == (None, 0)


def test_duplicates_of_one_candidate_count_per_sample():
    shared = verdict("a", Stage.DONE)
    records = [rec("a", 0, shared), rec("a", 1, shared), bad("a", 2)]
    t = summarize(records, ks=(1, 2, 3)).overall
    assert t.n_samples == 3 and t.correct == pytest.approx(2 / 3)
    assert t.pass_at_k == {1: pytest.approx(2 / 3), 2: 1.0, 3: 1.0}


def test_per_level_split():
    records = [ok("a", 0, level=1), bad("a", 1, level=1), ok("b", 0, level=2), ok("b", 1, level=2)]
    records += [bad("c", 0, level=None), bad("c", 1, level=None)]
    s = summarize(records, ks=(1,))
    assert list(s.per_level) == ["L1", "L2", "unknown"]
    assert [(t.n_tasks, t.n_samples, t.correct) for t in s.per_level.values()] == [(1, 2, 0.5), (1, 2, 1.0), (1, 2, 0)]
    assert s.overall.correct == 0.5


def test_stage_and_failure_counts():
    records = [ok("a", 0), ok("a", 1), bad("a", 2, Stage.PARSE), bad("b", 0), bad("b", 1), bad("b", 2, Stage.LOAD)]
    s = summarize(records)
    assert s.stage_counts == {"parse": 1, "load": 1, "correctness": 2, "done": 2}
    assert list(s.stage_counts) == ["parse", "load", "correctness", "done"]  # funnel order
    assert s.failure_counts == {"wrong_values": 2, "import_error": 1, "syntax_error": 1}


def test_speedups_are_correct_and_timed_sorted():
    s = summarize([ok("a", 0, 3.0), ok("a", 1, 0.5), bad("a", 2), ok("a", 3)])
    assert s.speedups == (0.5, 3.0)


def test_summary_to_dict_is_json_serializable():
    s = summarize([ok("a", 0, 2.0), bad("a", 1)], run="r1", baseline="eager")
    d = json.loads(json.dumps(s.to_dict()))
    assert d["run"] == "r1" and d["overall"]["fast"]["1"] == 0.5 and d["per_level"]["L1"]["n_samples"] == 2


def test_summarize_rejects_a_sample_counted_twice():
    with pytest.raises(ValueError, match="appears twice"):
        summarize([ok("a", 0), ok("a", 0)])


def test_summarize_rejects_mixed_settings():
    other = Record("a", 1, 1, "sha-a", "other-cfg", "cpu", verdict("a"))
    with pytest.raises(ValueError, match="mix"):
        summarize([ok("a", 0), other])


def test_summarize_rejects_empty_and_bad_arguments():
    with pytest.raises(ValueError, match="no records"):
        summarize([])
    with pytest.raises(ValueError, match="k must"):
        summarize([ok("a", 0)], ks=(0,))
    with pytest.raises(ValueError, match="p="):
        summarize([ok("a", 0)], ps=(-1.0,))


def test_inconclusive_on_cpu_is_not_correct_and_is_counted_apart():
    from tritonrl.eval.metrics import summarize
    from tritonrl.eval.records import Record
    from tritonrl.types import FailureKind, Stage, Verdict

    def rec(i: int, failure: FailureKind | None) -> Record:
        v = Verdict("t", failure is None, Stage.DONE if failure is None else Stage.CORRECTNESS, failure, "")
        return Record(task_id="t", sample=i, level=1, candidate_sha256=str(i), config_hash="c", device="cpu", verdict=v)

    s = summarize([rec(0, None), rec(1, FailureKind.INCONCLUSIVE_ON_CPU), rec(2, FailureKind.WRONG_VALUES)])
    assert s.overall.correct == pytest.approx(1 / 3) and s.overall.inconclusive == pytest.approx(1 / 3)
    assert s.failure_counts["inconclusive_on_cpu"] == 1
