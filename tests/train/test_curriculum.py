"""The adaptive curriculum's schedule and the learning-zone sampler: pure, seeded, checkpointable."""

from __future__ import annotations

import random
from collections import Counter

import pytest

from tritonrl.tasks.loader import builtin_task
from tritonrl.train.config import preset
from tritonrl.train.curriculum import AdaptiveCurriculum, LearningZoneSampler, TaskSampler


def test_curriculum_starts_at_ten_percent():
    assert AdaptiveCurriculum().l2_fraction == 0.10
    assert AdaptiveCurriculum.from_extensions(preset("curriculum_only")).l2_fraction == 0.10


def test_curriculum_waits_for_a_full_window():
    c = AdaptiveCurriculum()
    for _ in range(4):
        assert not c.record(1.0)  # four perfect steps: no moving average over 5 steps yet
    assert c.moving_average is None and c.l2_fraction == 0.10
    assert c.record(1.0) and c.l2_fraction == pytest.approx(0.15)


def test_curriculum_promotes_by_005_once_the_moving_average_reaches_04():
    c = AdaptiveCurriculum()
    for _ in range(5):
        assert not c.record(0.3)  # moving average 0.3
    assert c.record(0.8) and c.moving_average == pytest.approx(0.4)  # (.3, .3, .3, .3, .8): the threshold promotes
    assert c.l2_fraction == pytest.approx(0.15)
    assert not c.record(0.0) and c.moving_average == pytest.approx(0.34)  # fell below: no promotion
    assert c.l2_fraction == pytest.approx(0.15)


def test_curriculum_is_capped_at_fifty_percent():
    c = AdaptiveCurriculum()
    fractions = []
    for _ in range(30):
        c.record(1.0)
        fractions.append(c.l2_fraction)
    assert fractions[4:13] == pytest.approx([0.15, 0.20, 0.25, 0.30, 0.35, 0.40, 0.45, 0.50, 0.50])
    assert c.l2_fraction == 0.5 and c.n_promotions == 8


def test_curriculum_state_round_trips():
    a = AdaptiveCurriculum()
    for x in (0.5, 0.6, 0.7, 0.8, 0.9, 0.2):
        a.record(x)
    b = AdaptiveCurriculum()
    b.load_state_dict(a.state_dict())
    assert b.state_dict() == a.state_dict()
    assert a.record(0.9) == b.record(0.9) and a.l2_fraction == b.l2_fraction


def test_learning_zone_prefers_pass_rate_near_half():
    zone = LearningZoneSampler(["never", "half", "always"])
    for _ in range(5):
        zone.record("never", [0.0] * 8)
        zone.record("half", [1.0, 0.0] * 4)
        zone.record("always", [1.0] * 8)
    assert zone.pass_rate("half") == pytest.approx(0.5)
    assert zone.weight("half") == 1.0 and zone.weight("half") > zone.weight("never") == zone.weight("always")
    counts = Counter(zone.choose(random.Random(0), ["never", "half", "always"]) for _ in range(2000))
    assert counts["half"] > 5 * counts["never"] and counts["half"] > 5 * counts["always"]


def test_learning_zone_explores_unseen_tasks_first():
    zone = LearningZoneSampler(["seen", "new"])
    zone.record("seen", [1.0] * 8)
    assert zone.pass_rate("new") == 0.5 and zone.weight("new") > zone.weight("seen")


def test_learning_zone_floor_keeps_solved_tasks_reachable():
    zone = LearningZoneSampler(["solved"], floor=0.05)
    zone.record("solved", [1.0] * 1000)
    assert zone.weight("solved") == 0.05


def test_learning_zone_forgets_old_outcomes():
    zone = LearningZoneSampler(["t"], decay=0.5)
    for _ in range(10):
        zone.record("t", [0.0] * 4)
    for _ in range(10):
        zone.record("t", [1.0] * 4)
    assert zone.pass_rate("t") > 0.75  # the recent passes dominate despite 40 old failures


def test_all_equal_groups_bench_the_task_for_skip_draws_draws():
    zone = LearningZoneSampler(["solved", "open"], skip_after=2, skip_draws=5)
    zone.record("solved", [1.0] * 4)
    assert not zone.skipped("solved")  # one all-pass group is not yet a pattern
    zone.record("solved", [1.0] * 4)
    rng = random.Random(0)
    assert [zone.choose(rng, ["solved", "open"]) for _ in range(5)] == ["open"] * 5
    assert not zone.skipped("solved")  # back after 5 draws
    assert "solved" in {zone.choose(rng, ["solved", "open"]) for _ in range(200)}
    assert (zone.n_constant_groups, zone.n_groups, zone.n_skips) == (2, 2, 1)


def test_all_fail_groups_bench_too_and_a_mixed_group_resets_the_run():
    zone = LearningZoneSampler(["hopeless", "mixed"], skip_after=2, skip_draws=5)
    zone.record("mixed", [0.0, 0.0])
    zone.record("mixed", [1.0, 0.0])  # signal: the run of all-equal groups starts over
    zone.record("mixed", [0.0, 0.0])
    zone.record("hopeless", [0.0, 0.0])
    zone.record("hopeless", [0.0, 0.0])
    assert zone.skipped("hopeless") and not zone.skipped("mixed")
    assert zone.n_constant_groups == 4 and zone.n_groups == 5


def test_all_fail_groups_with_different_staged_rewards_still_carry_signal():
    zone = LearningZoneSampler(["t"], skip_after=1)
    zone.record("t", [0.0, 0.0], rewards=[0.3, 0.0])  # both failed, one compiled: staged credit differs
    assert not zone.skipped("t") and zone.n_constant_groups == 0
    zone.record("t", [0.0, 0.0], rewards=[0.3, 0.3])
    assert zone.skipped("t")


def test_a_single_sample_is_not_an_all_equal_group():
    zone = LearningZoneSampler(["t"], skip_after=1)
    zone.record("t", [1.0])
    assert not zone.skipped("t") and zone.n_constant_groups == 0


def test_when_every_task_is_benched_the_whole_pool_is_drawn():
    zone = LearningZoneSampler(["a"], skip_after=1, skip_draws=10)
    zone.record("a", [0.0, 0.0])
    assert zone.skipped("a") and zone.choose(random.Random(0), ["a"]) == "a"


def test_skip_draws_zero_only_down_weights():
    zone = LearningZoneSampler(["a", "b"], skip_after=1, skip_draws=0)
    zone.record("a", [1.0, 1.0])
    assert not zone.skipped("a") and zone.n_skips == 0


def test_task_sampler_skips_a_task_whose_groups_carry_no_signal():
    ext = preset("baseline", learning_zone=True, learning_zone_skip_after=1, learning_zone_skip_draws=20)
    zone = LearningZoneSampler.from_extensions([t.task_id for t in _tasks()], ext)
    sampler = TaskSampler(_tasks(), zone=zone, seed=0)
    sampler.record("relu", [1.0, 1.0, 1.0, 1.0])
    assert "relu" not in {sampler.next_task().task_id for _ in range(20)}
    assert "relu" in {sampler.next_task().task_id for _ in range(200)}


def _tasks():
    return [builtin_task("relu"), builtin_task("softmax"), builtin_task("linear_bias_relu")]


def test_sampler_follows_the_curriculum_mix():
    sampler = TaskSampler(_tasks(), curriculum=AdaptiveCurriculum(), seed=0)
    draws = [sampler.next_task().task_id for _ in range(4000)]
    assert draws.count("linear_bias_relu") / len(draws) == pytest.approx(0.10, abs=0.02)
    sampler.curriculum.l2_fraction = 0.5
    draws = [sampler.next_task().task_id for _ in range(4000)]
    assert draws.count("linear_bias_relu") / len(draws) == pytest.approx(0.50, abs=0.03)


def test_sampler_feeds_l1_correctness_per_step():
    sampler = TaskSampler(_tasks(), curriculum=AdaptiveCurriculum(window=1), seed=0)
    sampler.record("linear_bias_relu", [0.0, 0.0])  # L2 outcomes do not count as L1 correctness
    sampler.record("relu", [1.0, 0.0])
    sampler.record("softmax", [0.0, 0.0])
    assert not sampler.end_step()  # L1 correctness 1/4
    sampler.record("relu", [1.0, 1.0])
    assert sampler.end_step() and sampler.curriculum.l2_fraction == pytest.approx(0.15)
    assert not sampler.end_step()  # a step with no L1 outcomes records nothing


def test_sampler_is_deterministic_and_resumable():
    def make():
        return TaskSampler(_tasks(), curriculum=AdaptiveCurriculum(),
                           zone=LearningZoneSampler([t.task_id for t in _tasks()]), seed=7)  # fmt: skip

    a, b = make(), make()
    assert [a.next_task().task_id for _ in range(50)] == [b.next_task().task_id for _ in range(50)]
    a.record("relu", [1.0, 0.0])
    a.record("softmax", [0.0, 0.0])
    a.record("softmax", [0.0, 0.0])  # benched: the skip state must round-trip too
    assert a.zone.skipped("softmax")
    c = make()
    c.load_state_dict(a.state_dict())
    assert [a.next_task().task_id for _ in range(50)] == [c.next_task().task_id for _ in range(50)]


def test_sampler_stream_is_a_lazy_iterable_dataset():
    pytest.importorskip("datasets")
    sampler = TaskSampler(_tasks(), curriculum=AdaptiveCurriculum(), seed=0)
    rows = iter(sampler.iterable_dataset(lambda t: {"task_id": t.task_id, "level": t.level or 1}))
    first = [next(rows) for _ in range(3)]
    assert all(r["task_id"] in {"relu", "softmax", "linear_bias_relu"} for r in first)
    assert sum(sampler.n_drawn.values()) == 3  # drawn on demand, so the live mix applies to later rows
