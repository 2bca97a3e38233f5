"""Which task to train on next: the adaptive L1/L2 curriculum and difficulty-aware ("learning zone") sampling.

`AdaptiveCurriculum` is the seeds' schedule: start with 10% L2 tasks and add 0.05 each step on which the moving
average of L1 correctness over the last 5 steps is >= 0.4, up to 50%. `LearningZoneSampler` keeps a decayed
Beta(1, 1) pass-rate estimate per task and weights tasks by how close that estimate is to 0.5, where a GRPO group
carries the most signal (Bae et al., arXiv 2504.03380); it also does dynamic sampling (DAPO): a task whose recent
groups were all-equal (all pass or all fail, so zero advantage) sits out the next draws. `TaskSampler` combines the
two (level first, then the task within the level) and streams rows for TRL as an infinite `datasets.IterableDataset`
(so `max_steps` must be set). All three are pure Python, deterministic given a seed, and checkpointable through
`state_dict()`.
"""

from __future__ import annotations

import random
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import Any

from tritonrl.errors import ConfigError
from tritonrl.tasks.schema import Task


class AdaptiveCurriculum:
    """The fraction of L2 (fusion) tasks, raised as L1 correctness stabilises.

    >>> c = AdaptiveCurriculum()
    >>> [c.record(x) for x in (0.0, 0.0, 0.5, 0.5, 0.6)], round(c.l2_fraction, 2)
    ([False, False, False, False, False], 0.1)
    >>> c.record(1.0), round(c.l2_fraction, 2)  # window (0, .5, .5, .6, 1): mean 0.52 >= 0.4
    (True, 0.15)
    """

    def __init__(
        self, start: float = 0.10, step: float = 0.05, max_fraction: float = 0.50, threshold: float = 0.4,
        window: int = 5,
    ) -> None:  # fmt: skip
        if not (0.0 <= start <= max_fraction <= 1.0 and step > 0 and window >= 1):
            raise ConfigError(f"curriculum start={start}, step={step}, max={max_fraction}, window={window}: need "
                              "0 <= start <= max <= 1, step > 0 and window >= 1.")  # fmt: skip
        self.start, self.step, self.max_fraction = start, step, max_fraction
        self.threshold, self.window = threshold, window
        self.l2_fraction = start
        self.history: deque[float] = deque(maxlen=window)
        self.n_promotions = 0

    @classmethod
    def from_extensions(cls, ext: Any) -> AdaptiveCurriculum:
        return cls(ext.curriculum_start, ext.curriculum_step, ext.curriculum_max, ext.curriculum_threshold,
                   ext.curriculum_window)  # fmt: skip

    @property
    def moving_average(self) -> float | None:
        """Mean L1 correctness over the last `window` steps; None until that many steps were recorded."""
        return sum(self.history) / len(self.history) if len(self.history) == self.window else None

    def record(self, l1_correctness: float) -> bool:
        """Record one step's L1 correctness (fraction of L1 completions that passed). Returns True on promotion."""
        if not 0.0 <= l1_correctness <= 1.0:
            raise ValueError(f"l1_correctness={l1_correctness}: a fraction in [0, 1]")
        self.history.append(float(l1_correctness))
        avg = self.moving_average
        if avg is None or avg < self.threshold or self.l2_fraction >= self.max_fraction:
            return False
        # Rounded so 0.1 + 8 * 0.05 lands on 0.5 exactly instead of 0.49999999999999994.
        self.l2_fraction = round(min(self.l2_fraction + self.step, self.max_fraction), 10)
        self.n_promotions += 1
        return True

    def state_dict(self) -> dict[str, Any]:
        return {"l2_fraction": self.l2_fraction, "history": list(self.history), "n_promotions": self.n_promotions}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.l2_fraction = float(state["l2_fraction"])
        self.history = deque((float(x) for x in state["history"]), maxlen=self.window)
        self.n_promotions = int(state["n_promotions"])


class LearningZoneSampler:
    """Per-task pass-rate estimates from rewards recorded during training; samples near the target pass rate.

    The estimate is the mean of a Beta(1, 1) posterior over decayed pass/fail counts, so an unseen task starts at
    0.5 (sampled first) and old outcomes fade as the policy improves. The weight is 1 - ((p - t) / max(t, 1 - t))^2,
    which for t = 0.5 is 4 p (1 - p), the normalised variance of a Bernoulli, floored at `floor`.

    Dynamic sampling: a group whose outcomes are all equal has zero advantage everywhere and only costs compute. When
    a task's last `skip_after` groups were all equal, it is left out of the next `skip_draws` draws (unless every
    task of the pool is out; then the whole pool is used), after which its estimate decides again.

    >>> z = LearningZoneSampler(["easy", "hard"])
    >>> z.record("easy", [1, 1, 1, 1]); z.record("hard", [0, 0, 1, 0])
    >>> round(z.pass_rate("easy"), 2), round(z.pass_rate("hard"), 2), z.weight("easy") < z.weight("hard")
    (0.83, 0.33, True)
    >>> z.record("easy", [1, 1, 1, 1]); z.skipped("easy"), z.n_constant_groups, z.n_groups  # 2 all-pass groups
    (True, 2, 3)
    """

    def __init__(
        self, task_ids: Iterable[str], *, target: float = 0.5, floor: float = 0.05, decay: float = 0.9,
        skip_after: int = 2, skip_draws: int = 8,
    ) -> None:  # fmt: skip
        if not 0.0 < target < 1.0 or not 0.0 <= floor <= 1.0 or not 0.0 < decay <= 1.0:
            raise ConfigError(f"learning zone target={target}, floor={floor}, decay={decay}: need 0 < target < 1, "
                              "0 <= floor <= 1 and 0 < decay <= 1.")  # fmt: skip
        if skip_after < 1 or skip_draws < 0:
            raise ConfigError(f"learning zone skip_after={skip_after}, skip_draws={skip_draws}: need skip_after >= 1 "
                              "and skip_draws >= 0 (0: never skip).")  # fmt: skip
        self.target, self.floor, self.decay = target, floor, decay
        self.skip_after, self.skip_draws = skip_after, skip_draws
        self.passes: dict[str, float] = dict.fromkeys(task_ids, 0.0)
        self.trials: dict[str, float] = dict.fromkeys(self.passes, 0.0)
        self.constant_run: dict[str, int] = {}  # consecutive all-equal groups per task
        self.skip_until: dict[str, int] = {}  # task -> the draw count from which it may be drawn again
        self.n_draws = 0
        self.n_constant_groups = 0
        self.n_groups = 0
        self.n_skips = 0  # times a task was benched

    @classmethod
    def from_extensions(cls, task_ids: Iterable[str], ext: Any) -> LearningZoneSampler:
        return cls(task_ids, target=ext.learning_zone_target, floor=ext.learning_zone_floor,
                   decay=ext.learning_zone_decay, skip_after=ext.learning_zone_skip_after,
                   skip_draws=ext.learning_zone_skip_draws)  # fmt: skip

    def record(self, task_id: str, outcomes: Sequence[float], rewards: Sequence[float] | None = None) -> None:
        """Add one group's outcomes (1 pass, 0 fail; fractions allowed) for a task; bench the task after
        `skip_after` groups in a row whose `rewards` (the trained reward, e.g. staged credit; default: the outcomes)
        were all equal."""
        self.passes[task_id] = self.decay * self.passes.get(task_id, 0.0) + float(sum(outcomes))
        self.trials[task_id] = self.decay * self.trials.get(task_id, 0.0) + len(outcomes)
        self.n_groups += 1
        signal = outcomes if rewards is None else rewards
        if len(signal) < 2 or max(signal) != min(signal):
            self.constant_run[task_id] = 0
            return
        self.n_constant_groups += 1
        self.constant_run[task_id] = self.constant_run.get(task_id, 0) + 1
        if self.skip_draws and self.constant_run[task_id] >= self.skip_after:
            self.skip_until[task_id] = self.n_draws + self.skip_draws
            self.constant_run[task_id] = 0
            self.n_skips += 1

    def pass_rate(self, task_id: str) -> float:
        return (self.passes.get(task_id, 0.0) + 1.0) / (self.trials.get(task_id, 0.0) + 2.0)

    def weight(self, task_id: str) -> float:
        t = self.target
        z = (self.pass_rate(task_id) - t) / max(t, 1.0 - t)
        return max(self.floor, 1.0 - z * z)

    def skipped(self, task_id: str) -> bool:
        """Whether the task sits out the next draw (its recent groups were all equal)."""
        return self.skip_until.get(task_id, 0) > self.n_draws

    def choose(self, rng: random.Random, task_ids: Sequence[str]) -> str:
        pool = [t for t in task_ids if not self.skipped(t)] or list(task_ids)
        self.n_draws += 1
        return rng.choices(pool, weights=[self.weight(t) for t in pool], k=1)[0]

    def state_dict(self) -> dict[str, Any]:
        return {"passes": dict(self.passes), "trials": dict(self.trials), "constant_run": dict(self.constant_run),
                "skip_until": dict(self.skip_until), "n_draws": self.n_draws, "n_skips": self.n_skips,
                "n_constant_groups": self.n_constant_groups, "n_groups": self.n_groups}  # fmt: skip

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.passes = {k: float(v) for k, v in state["passes"].items()}
        self.trials = {k: float(v) for k, v in state["trials"].items()}
        self.constant_run = {k: int(v) for k, v in state["constant_run"].items()}
        self.skip_until = {k: int(v) for k, v in state["skip_until"].items()}
        self.n_draws, self.n_skips = int(state["n_draws"]), int(state["n_skips"])
        self.n_constant_groups = int(state["n_constant_groups"])
        self.n_groups = int(state["n_groups"])


class TaskSampler:
    """Draws training tasks: the level by the curriculum (when given and both levels exist), then a task within the
    level by the learning zone (when given) or uniformly. Fed back through `record()` and `end_step()`."""

    def __init__(
        self, tasks: Sequence[Task], *, curriculum: AdaptiveCurriculum | None = None,
        zone: LearningZoneSampler | None = None, seed: int = 0,
    ) -> None:  # fmt: skip
        if not tasks:
            raise ConfigError("no training tasks: the suite (and fusion export) gave none.")
        self.tasks = {t.task_id: t for t in tasks}
        self.l1 = [t.task_id for t in tasks if (t.level or 1) < 2]
        self.l2 = [t.task_id for t in tasks if (t.level or 1) >= 2]
        self.curriculum, self.zone = curriculum, zone
        self.rng = random.Random(seed)
        self._step_l1: list[float] = []
        self.n_drawn = {"l1": 0, "l2": 0}

    def next_task(self) -> Task:
        pool = self.l1 + self.l2
        if self.curriculum is not None and self.l1 and self.l2:
            pool = self.l2 if self.rng.random() < self.curriculum.l2_fraction else self.l1
        task_id = self.zone.choose(self.rng, pool) if self.zone is not None else self.rng.choice(pool)
        self.n_drawn["l2" if task_id in self.l2 else "l1"] += 1
        return self.tasks[task_id]

    def record(self, task_id: str, outcomes: Sequence[float], rewards: Sequence[float] | None = None) -> None:
        """Outcomes (1 pass, 0 fail) of one task's group during the current step, and the rewards it was trained
        on (which decide whether the group carried any signal; default: the outcomes)."""
        if self.zone is not None:
            self.zone.record(task_id, outcomes, rewards)
        task = self.tasks.get(task_id)
        if task is not None and (task.level or 1) < 2:
            self._step_l1.extend(float(x) for x in outcomes)

    def end_step(self) -> bool:
        """Close a training step: feed its L1 correctness to the curriculum. True when the L2 share went up."""
        outcomes, self._step_l1 = self._step_l1, []
        if self.curriculum is None or not outcomes:
            return False
        return self.curriculum.record(sum(outcomes) / len(outcomes))

    def rows(self, row: Callable[[Task], dict[str, Any]]) -> Iterator[dict[str, Any]]:
        """Infinite stream of `row(task)` for the tasks drawn, reading the live mix at every draw."""
        while True:
            yield row(self.next_task())

    def iterable_dataset(self, row: Callable[[Task], dict[str, Any]]):  # noqa: ANN201 (datasets.IterableDataset)
        """An infinite `datasets.IterableDataset` of `row(task)` for TRL (set `max_steps`, and `shuffle_dataset=False`
        so TRL's buffered shuffle does not read a thousand rows ahead of the curriculum)."""
        from datasets import IterableDataset

        return IterableDataset.from_generator(_Rows(self, row))

    def state_dict(self) -> dict[str, Any]:
        version, internal, gauss = self.rng.getstate()
        return {
            "rng": [version, list(internal), gauss],
            "n_drawn": dict(self.n_drawn),
            "curriculum": self.curriculum.state_dict() if self.curriculum else None,
            "zone": self.zone.state_dict() if self.zone else None,
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        version, internal, gauss = state["rng"]
        self.rng.setstate((version, tuple(internal), gauss))
        self.n_drawn = dict(state["n_drawn"])
        if self.curriculum is not None and state.get("curriculum"):
            self.curriculum.load_state_dict(state["curriculum"])
        if self.zone is not None and state.get("zone"):
            self.zone.load_state_dict(state["zone"])


class _Rows:
    """A generator factory `datasets` can call (and hash) that reads the live sampler."""

    def __init__(self, sampler: TaskSampler, row: Callable[[Task], dict[str, Any]]) -> None:
        self.sampler, self.row = sampler, row

    def __call__(self) -> Iterator[dict[str, Any]]:
        return self.sampler.rows(self.row)
