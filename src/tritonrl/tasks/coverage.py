"""The coverage rule: the sizes every shape plan must reach, the variant shapes that reach them, and the record.

The rule, for a task's free SIZE constants (constants the reference couples, sharing a value, move together):
1. every constant takes a size of 1, a 2^k+1 size and a 2^k-1 size (k >= 2) in some shape;
2. the long axis (the constant with the largest default) exceeds 1024, or reaches 4x its base size where 1025 is
   beyond the budget: a kernel with one fixed tile per row and no loop fails;
3. every pair a, b appears in both orders (a > b in some shape, b > a in another).
Three templates meet it for any number of constants, L being the long axis and the others in default order:
  long: L at the largest 2^k+1 in the budget, every other constant at 1;
  swap: L at 1, the others at 2^k-1 values (at most their base) rising against their default order;
  odd:  L at 2^k-1 (at most its base), the others at 2^k+1 values below it, falling in their default order.
A template the budget or the reference refuses (`check`) is applied one constant at a time, each falling back to the
nearest value that works; what no planned shape meets is recorded as not covered, with the reason. Runs nothing itself.
"""

from __future__ import annotations

import dataclasses
import itertools
from collections.abc import Callable, Iterable, Iterator, Mapping

from tritonrl.tasks.variants import equal_groups

Sizes = Mapping[str, int]
Check = Callable[[Sizes], str | None]  # why sizes cannot be checked (budget, reference), or None when they can

LONG_MIN = 1024  # the long axis must exceed this (a common largest BLOCK) ...
LONG_FACTOR = 4  # ... or reach this many times its base size when 1025 does not fit the budget
MIN_EXP = 2  # 2^k+1 and 2^k-1 sizes use k >= 2: 5, 9, 17, ... and 3, 7, 15, ...
# Fallbacks for a constant that must be 1 but cannot (a conv input smaller than its kernel): the smallest that works.
_SMALL = (1, 2, 3, 5, 7, 9, 11)


@dataclasses.dataclass(frozen=True, slots=True)
class Requirement:
    """One item of the rule, met by a shape's sizes or not."""

    label: str  # "dim=1", "dim=2^k+1", "dim=2^k-1", "dim>1024 or >=2048", "batch_size>dim"
    kind: str  # "one" | "pow+1" | "pow-1" | "long" | "order"
    names: tuple[str, ...]  # the constant, or (a, b) for "a > b"
    threshold: int = 0  # long only: LONG_FACTOR x the base size

    def met(self, sizes: Sizes) -> bool:
        value = sizes[self.names[0]]
        if self.kind == "one":
            return value == 1
        if self.kind == "pow+1":
            return value >= 2**MIN_EXP + 1 and _power_of_two(value - 1)
        if self.kind == "pow-1":
            return value >= 2**MIN_EXP - 1 and _power_of_two(value + 1)
        if self.kind == "long":
            return value > LONG_MIN or value >= self.threshold
        return value > sizes[self.names[1]]


@dataclasses.dataclass(frozen=True, slots=True)
class Coverage:
    """What the planned shapes of one plan cover (`verify` puts `to_dict()` in `Verdict.extra["coverage"]`)."""

    covered: tuple[tuple[str, str], ...] = ()  # (requirement, the first shape that meets it: "base", "variant2")
    not_covered: tuple[tuple[str, str], ...] = ()  # (requirement, why no planned shape meets it)

    def to_dict(self) -> dict[str, dict[str, str]]:
        return {"covered": dict(self.covered), "not_covered": dict(self.not_covered)}


@dataclasses.dataclass(frozen=True, slots=True)
class _Slot:
    group: tuple[str, ...]  # constants that share a value
    candidates: tuple[int, ...]  # values to try, best first
    serves: tuple[str, ...]  # labels of the requirements this value is for
    grow: bool = False  # applied last, after every other constant has shrunk


def plan_coverage(
    task_sizes: Mapping[str, int], base: dict[str, int], check: Check, n: int, pad: Iterable[dict[str, int]] = ()
) -> tuple[list[dict[str, int]], Coverage]:
    """Up to `n` variants of `base` that meet the coverage rule together, and what they cover.

    Args:
        task_sizes: the free SIZE constants at their defaults (they decide the long axis and the default order).
        base: the base sizes (covered requirements may come from it too).
        check: why sizes cannot be used (over the budget, the reference fails), or None.
        n: the most variants to return; the fewest that cover the rule come first.
        pad: further variants (awkward sizes) to fill up to `n` with, each passed through `check`.

    Returns:
        the variants, and the Coverage of base + variants.
    """
    groups, ones = _groups(base, task_sizes, check)
    reqs, fixed = _requirements(base, groups, ones)
    reasons: dict[str, str] = {}
    realized = []
    for template, slots in _templates(base, groups, task_sizes):
        sizes = _realize(base, slots, check, reasons)
        _order_reasons(reqs, groups, template, sizes, reasons)
        if sizes != base and all(sizes != other for _, other in realized):
            realized.append((template, sizes))
    chosen = _greedy(reqs, base, realized, n)
    variants = [sizes for _, sizes in chosen]
    for sizes in itertools.islice(_checked(pad, check, [base, *variants]), max(0, n - len(variants))):
        variants.append(sizes)
    unused = [(t, s) for t, s in realized if all(s != v for v in variants)]
    return variants, _coverage(reqs, fixed, base, variants, unused, reasons, n)


def _groups(base: Sizes, defaults: Mapping[str, int], check: Check) -> tuple[list[tuple[str, ...]], list[str]]:
    """Constants that move together (equal at base and refused apart by `check`), long axis first then by default,
    and the constants of base size 1 (never changed)."""
    order = list(base)
    groups: list[tuple[str, ...]] = []
    for group in equal_groups(base):
        apart = {name: base[name] + i for i, name in enumerate(group)}
        groups += [(name,) for name in group] if len(group) > 1 and check({**base, **apart}) is None else [tuple(group)]
    groups.sort(key=lambda g: (-max(defaults.get(n, base[n]) for n in g), order.index(g[0])))
    return groups, [name for name in order if base[name] == 1]


def _requirements(
    base: Sizes, groups: list[tuple[str, ...]], ones: list[str]
) -> tuple[list[Requirement], list[tuple[str, str]]]:
    """The rule's items for these sizes, and the items known impossible up front with their reasons."""
    reqs: list[Requirement] = []
    for group in groups:
        for name in group:
            reqs += [
                Requirement(f"{name}=1", "one", (name,)),
                Requirement(f"{name}=2^k+1", "pow+1", (name,)),
                Requirement(f"{name}=2^k-1", "pow-1", (name,)),
            ]
    if groups:
        long, threshold = groups[0][0], LONG_FACTOR * base[groups[0][0]]
        reqs.append(Requirement(f"{long}>{LONG_MIN} or >={threshold}", "long", (long,), threshold))
    fixed = [(f"{name} (every size but 1)", "its default is 1: a size of 1 is never changed") for name in ones]
    for a, b in itertools.permutations([name for group in groups for name in group], 2):
        if any(a in g and b in g for g in groups):
            fixed.append((f"{a}>{b}", f"coupled: the reference needs {a} == {b}"))
        else:
            reqs.append(Requirement(f"{a}>{b}", "order", (a, b)))
    return reqs, fixed


def _templates(
    base: Sizes, groups: list[tuple[str, ...]], defaults: Mapping[str, int]
) -> list[tuple[str, list[_Slot]]]:
    """The three templates of the module docstring, as slots (a value per group, with fallbacks)."""
    if not groups:
        return []
    long, others = groups[0], groups[1:]
    name = long[0]
    growth = _grow_candidates(max(defaults.get(name, 0) + 1, LONG_FACTOR * base[name], 2 * LONG_MIN))
    ones = [_Slot(g, _SMALL, (f"{g[0]}=1",)) for g in others]
    templates = [("long", [*ones, _Slot(long, growth, (f"{name}=2^k+1", f"{name}>{LONG_MIN}"), grow=True)])]
    rising = list(reversed(others))  # smallest default first: it gets the largest value
    exps = _chain([_floor_exp(base[g[0]] + 1) for g in rising])
    swap = [_Slot(long, _SMALL, (f"{name}=1",))]
    swap += [_Slot(g, _pow_candidates(e, -1), (f"{g[0]}=2^k-1",)) for g, e in zip(rising, exps, strict=True)]
    templates.append(("swap", swap))
    exps = _chain([_floor_exp(base[name] + 1)] + [_floor_exp(base[g[0]]) for g in others])
    odd = [_Slot(long, _pow_candidates(exps[0], -1), (f"{name}=2^k-1",))]
    odd += [_Slot(g, _pow_candidates(e, +1), (f"{g[0]}=2^k+1",)) for g, e in zip(others, exps[1:], strict=True)]
    templates.append(("odd", odd))
    return templates


def _chain(caps: list[int]) -> list[int]:
    """Strictly falling exponents, each at most its cap where room for the rest (down to MIN_EXP) allows."""
    exps: list[int] = []
    for i, cap in enumerate(caps):
        floor = MIN_EXP + len(caps) - 1 - i
        exps.append(max(min(cap, exps[-1] - 1) if exps else cap, floor))
    return exps


def _grow_candidates(cap: int) -> tuple[int, ...]:
    """2^k+1 sizes from the largest <= cap down to 2^MIN_EXP+1: the first that passes `check` wins."""
    top = _floor_exp(cap - 1)
    return tuple(2**k + 1 for k in range(top, MIN_EXP - 1, -1))


def _pow_candidates(exp: int, sign: int) -> tuple[int, ...]:
    """2^exp + sign first, then smaller exponents down to MIN_EXP, then two larger ones."""
    order = [*range(exp, MIN_EXP - 1, -1), exp + 1, exp + 2]
    return tuple(2**k + sign for k in order)


def _realize(base: dict[str, int], slots: list[_Slot], check: Check, reasons: dict[str, str]) -> dict[str, int]:
    """`base` with every slot at its first candidate if `check` accepts that at once; else slot by slot (shrinking
    ones first, growing ones after), each at its first accepted candidate or left as it was. Failures go to
    `reasons` by label."""
    fixed = [s for s in slots if not s.grow]
    sizes = {**base, **{name: s.candidates[0] for s in fixed for name in s.group}}
    if not fixed or check(sizes) is not None:
        sizes = dict(base)
        for slot in sorted(fixed, key=lambda s: (s.candidates[0] >= base[s.group[0]], s.candidates[0])):
            sizes = _apply(sizes, slot, check, reasons)
    for slot in (s for s in slots if s.grow):
        sizes = _apply(sizes, slot, check, reasons)
    return sizes


def _apply(sizes: dict[str, int], slot: _Slot, check: Check, reasons: dict[str, str]) -> dict[str, int]:
    current = sizes[slot.group[0]]
    taken = {v for name, v in sizes.items() if name not in slot.group and v > 1}
    for value in slot.candidates:
        if slot.candidates[0] == 1 and value >= current:  # a fallback for 1 is only worth it below the current size
            break
        if value in taken:  # never another constant's size: a kernel that mixes the two up would pass
            continue
        trial = {**sizes, **{name: value for name in slot.group}}
        why = check(trial)
        if why is None:
            return trial
        for label in slot.serves:
            reasons[label] = f"{why} (at {_fmt(trial)})"
    return sizes


def _order_reasons(
    reqs: list[Requirement], groups: list[tuple[str, ...]], template: str, sizes: Sizes, reasons: dict[str, str]
) -> None:
    """Why `template` missed the orders it is meant for: "swap" puts each pair against the default order (a later
    group above an earlier one), "odd" in it."""
    rank = {name: i for i, group in enumerate(groups) for name in group}
    for req in reqs:
        if req.kind != "order" or req.met(sizes):
            continue
        a, b = req.names
        if template == ("swap" if rank[a] > rank[b] else "odd"):
            reasons[req.label] = (
                f"the {template} shape meant for it ended at {a}={sizes[a]}, {b}={sizes[b]}: the budget or the "
                "reference refused the values that order them"
            )


def _greedy(
    reqs: list[Requirement], base: Sizes, realized: list[tuple[str, dict[str, int]]], n: int
) -> list[tuple[str, dict[str, int]]]:
    """Up to `n` shapes, each the one meeting the most requirements no earlier shape (nor base) meets."""
    open_ = [r for r in reqs if not r.met(base)]
    chosen, left = [], list(realized)
    while left and len(chosen) < n:
        gains = [sum(r.met(sizes) for r in open_) for _, sizes in left]
        best = max(range(len(left)), key=lambda i: (gains[i], -i))
        if gains[best] == 0:
            break
        chosen.append(left.pop(best))
        open_ = [r for r in open_ if not r.met(chosen[-1][1])]
    return chosen


def _checked(pad: Iterable[dict[str, int]], check: Check, seen: list[dict[str, int]]) -> Iterator[dict[str, int]]:
    for sizes in pad:
        if all(sizes != other for other in seen) and check(sizes) is None:
            seen.append(sizes)
            yield sizes


def _coverage(
    reqs: list[Requirement], fixed: list[tuple[str, str]], base: Sizes, variants: list[dict[str, int]],
    unused: list[tuple[str, dict[str, int]]], reasons: Mapping[str, str], n: int,
) -> Coverage:  # fmt: skip
    shapes = [("base", base)] + [(f"variant{i + 1}", v) for i, v in enumerate(variants)]
    covered, missing = [], list(fixed)
    for req in reqs:
        where = next((name for name, sizes in shapes if req.met(sizes)), None)
        if where is not None:
            covered.append((req.label, where))
            continue
        spare = next((t for t, sizes in unused if req.met(sizes)), None)
        if spare is not None:
            why = f"beyond n_variants={n}: the {spare} shape meets it"
        else:
            why = reasons.get(req.label) or reasons.get(_reason_key(req)) or _default_reason(req)
        missing.append((req.label, why))
    return Coverage(tuple(covered), tuple(missing))


def _reason_key(req: Requirement) -> str:
    return f"{req.names[0]}>{LONG_MIN}" if req.kind == "long" else req.label


def _default_reason(req: Requirement) -> str:
    if req.kind == "order":
        return f"no shape that the budget and the reference allow has {req.names[0]} > {req.names[1]}"
    return "no shape that the budget and the reference allow meets it"


def _floor_exp(value: int) -> int:
    """The largest k >= MIN_EXP with 2^k <= value (MIN_EXP when value is smaller)."""
    return max(MIN_EXP, max(value, 1).bit_length() - 1)


def _power_of_two(value: int) -> bool:
    return value > 0 and value & (value - 1) == 0


def _fmt(sizes: Sizes) -> str:
    return ", ".join(f"{k}={v}" for k, v in sizes.items())
