"""Shape-family variants: awkward sizes derived from a task's base sizes, planned after the coverage rule's variants.

`awkward_variants(task, base, fits, usable)` yields, in order, the odd-and-distinct variant, the long-axis variant
grown from it, then further awkward sizes made by `_TRANSFORMS`, each new and each accepted by `fits` (the size
budget, decided by the caller). Values are never multiples of 16, and distinct constants get distinct values unless
`usable` (a real run of the reference, when given) says the reference couples them. The size helpers `equal_groups`
and `other_values` are shared with `shapes.py`, which plans the base sizes, and `coverage.py`, which plans the
variants every plan gets first (`shapes.plan_shapes` adds these awkward ones only when asked for more variants).
Deterministic; runs nothing itself.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Mapping

from tritonrl.tasks.schema import Task

log = logging.getLogger("tritonrl.tasks.shapes")  # the planner's logger: variants are part of a shape plan

Sizes = Mapping[str, int]
Check = Callable[[Sizes], bool]  # a predicate on sizes: within the budget (`fits`), or the reference runs (`usable`)

# Candidate transforms for awkward sizes, tried in order until enough variants pass. Each maps a base value to a new
# one; `_pick` then keeps it >= 2, off multiples of 16 and off the other constants' values. The first makes the
# odd-and-distinct variant (every value odd); the long-axis variant follows it (`_long_axis`).
_TRANSFORMS: tuple[tuple[str, Callable[[int], int]], ...] = (
    ("x1.3+1", lambda v: int(v * 1.3) + 1),
    ("x0.6+3", lambda v: int(v * 0.6) + 3),
    ("next prime", lambda v: _next_prime(v + 1)),
    ("x0.8+1", lambda v: int(v * 0.8) + 1),
    ("+1", lambda v: v + 1),
    ("x1.5+3", lambda v: int(v * 1.5) + 3),
    ("-1", lambda v: v - 1),
)
LONG_AXIS_SMALL = 3  # in the long-axis variant the other sizes take the smallest odd values from here (3, 5, 7, ...)


def awkward_variants(task: Task, base: dict[str, int], fits: Check, usable: Check | None) -> Iterator[dict[str, int]]:
    """Variants of `base`, best first, each differing from `base` and from every earlier one.

    `fits` says whether sizes are within the variant budget; `usable`, when given, whether the real reference runs
    at them (checked before giving distinct values to constants that share one).
    """
    seen = {tuple(sorted(base.items()))}

    def fresh(what: str, variant: dict[str, int] | None) -> bool:
        key = tuple(sorted(variant.items())) if variant is not None else None
        if key is None or key in seen:
            return False
        seen.add(key)
        log.debug("task %s: variant %s = %s", task.task_id, what, variant)
        return True

    for i, (label, transform) in enumerate(_TRANSFORMS):
        sizes = _transformed(base, transform, fits, odd=i == 0, usable=usable)
        if i == 0 and _n_even(sizes):  # growing used the budget up before every size was odd: try odd values below
            below = _transformed(base, lambda v: v - 1, fits, odd=True, usable=usable)
            sizes, label = (below, "-1") if _n_even(below) < _n_even(sizes) else (sizes, label)
        if fresh(f"odd {label}" if i == 0 else label, sizes):
            yield sizes
        if i == 0:  # the long axis grows from the odd variant: its values are already distinct and awkward
            long = _long_axis(task, sizes, fits)
            if fresh("long axis", long):
                yield long


def equal_groups(sizes: Sizes) -> list[list[str]]:
    """Names grouped by equal value, largest value first (declaration order within a group); 1s never."""
    groups: dict[int, list[str]] = {}
    for name, value in sorted(sizes.items(), key=lambda item: -item[1]):
        if value > 1:
            groups.setdefault(value, []).append(name)
    return list(groups.values())


def other_values(sizes: Sizes, names: list[str]) -> set[int]:
    """The values (> 1) of the constants not in `names`: what a new value for `names` must differ from."""
    return {value for name, value in sizes.items() if name not in names and value > 1}


def _pick(target: int, avoid: set[int], odd: bool, down: bool = False) -> int:
    """The value nearest `target` (searching down first when `down`, else up) that is >= 2, not in `avoid`, and odd
    (>= 3) when `odd`, else not a multiple of 16."""
    low = 3 if odd else 2
    start = value = max(target, low)
    step = -1 if down else 1
    while value in avoid or (value % 2 == 0 if odd else value % 16 == 0):
        value += step
        if value < low:
            value, step = start, 1
    return value


def _n_even(sizes: Sizes) -> int:
    return sum(1 for value in sizes.values() if value % 2 == 0)


def _transformed(
    base: dict[str, int], transform: Callable[[int], int], fits: Check, *, odd: bool, usable: Check | None
) -> dict[str, int]:
    """`transform` applied to each group of equal base values, largest first, keeping each change that `fits`.
    Members of a group get distinct values where the reference allows it (checked with a real run when `usable` is
    given), else one shared value (coupled sizes: HingeLoss needs batch == features). Every new value is awkward (odd
    when `odd`) and differs from all other constants' current values; where the transformed value does not fit, the
    nearest such value below the base value is tried, then above it."""
    sizes = dict(base)
    for group in equal_groups(base):
        value = base[group[0]]
        for option in _options(sizes, group, transform(value), value, odd):
            trial = {**sizes, **option}
            split = len(set(option.values())) > 1
            if trial == sizes or not fits(trial):
                continue
            if split and usable is not None and not usable(trial):
                continue
            sizes = trial
            break
    return sizes


def _options(sizes: dict[str, int], group: list[str], target: int, value: int, odd: bool) -> Iterator[dict[str, int]]:
    """New values for one group of equal sizes, best first: split (one value each) before shared; at `target`, then
    below `value`, then above it."""
    others = other_values(sizes, group)
    goals = ((target, target < value), (value - 1, True), (value + 1, False))
    if len(group) > 1:
        for goal, down in goals:
            split: dict[str, int] = {}
            for name in group:
                split[name] = _pick(goal, others | set(split.values()), odd, down)
            yield split
    for goal, down in goals:
        shared = _pick(goal, others, odd, down)
        yield {name: shared for name in group}


def _long_axis(task: Task, start: dict[str, int], fits: Check) -> dict[str, int] | None:
    """`start` with the constant of the largest default (and any constant sharing its value: coupled) as large as
    the budget allows, at most its default, and every other constant at the smallest odd values that fit (3, 5, ...).

    A kernel that handles one fixed-size tile per row, or never loops over a reduced dimension, fails here even when
    halving shrank that dimension below its tile. None when no constant can change.
    """
    defaults = task.free_size_constants
    movable = [name for name, value in start.items() if value > 1]
    if not movable:
        return None
    long = max(movable, key=lambda n: defaults.get(n, start[n]))  # first of equal defaults
    axis = [name for name in movable if start[name] == start[long]]
    rest = [g for g in equal_groups(start) if long not in g]
    rest.sort(key=lambda g: min(defaults.get(n, start[n]) for n in g))  # smallest default first: 3, then 5, ...
    small: dict[str, int] = {}
    for group in [*rest, axis]:  # all at once: the others at 3, 5, 7, ... and the long axis just above them
        value = _pick(LONG_AXIS_SMALL, set(small.values()), odd=True)
        small.update({n: value for n in group})
    if fits({**start, **small}):
        sizes = {**start, **small}
    else:  # one group at a time from `start`, each to the smallest odd value that fits and no other constant has
        sizes = dict(start)
        for group in rest:
            tried: set[int] = set()
            for _ in range(4):
                value = _pick(LONG_AXIS_SMALL, other_values(sizes, group) | tried, odd=True)
                if value >= sizes[group[0]]:
                    break
                trial = {**sizes, **{n: value for n in group}}
                if fits(trial):
                    sizes = trial
                    break
                tried.add(value)
    value = _grown(sizes, axis, max(defaults.get(long, sizes[long]), sizes[long]), fits)
    return {**sizes, **{n: value for n in axis}}


def _grown(sizes: dict[str, int], axis: list[str], cap: int, fits: Check) -> int:
    """The largest odd value up to `cap` for the `axis` constants (which share one value in `sizes`) that fits, is
    off the other constants' values and off multiples of 16; their current value when no larger one does."""

    def fits_at(value: int) -> bool:
        return fits({**sizes, **{n: value for n in axis}})

    current = sizes[axis[0]]
    good, bad = current, None
    while good < cap:  # double, then bisect the first failure: the largest fitting value, assuming monotony
        trial = min(2 * good, cap)
        if not fits_at(trial):
            bad = trial
            break
        good = trial
    while bad is not None and bad - good > 1:
        middle = (good + bad) // 2
        good, bad = (middle, bad) if fits_at(middle) else (good, middle)
    avoid = other_values(sizes, axis)
    for _ in range(8):  # odd, distinct, off multiples of 16; step down where monotony did not hold
        value = _pick(good, avoid, odd=True, down=True)
        if value <= current:
            return current
        if fits_at(value):
            return value
        good = value - 1
    return current


def _next_prime(value: int) -> int:
    candidate = max(value, 2)
    while any(candidate % d == 0 for d in range(2, int(candidate**0.5) + 1)):
        candidate += 1
    return candidate
