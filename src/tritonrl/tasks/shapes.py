"""Shape planning: the sizes at which a task's reference and a candidate are compared.

`plan_shapes(task, device="cpu")` halves the task's free SIZE constants until every input and output has at most
`max_numel` elements and every parameter at most PARAM_SLACK times that, then gives constants that halving made equal
distinct values again unless the reference couples them (`cpu_scale`). The variants are the fewest shapes that meet
the coverage rule (`coverage.py`), each within `VARIANT_SLACK` x `max_numel` and run on CPU; what they cannot meet is
in `ShapePlan.coverage` with the reason; a larger `n_variants` adds awkward sizes (`variants.py`).
Sizes are measured on the meta device (`probe`), which allocates nothing even at KernelBench's multi-GB defaults; the
real reference runs on CPU only at planned sizes (`validate_variant`, from `validate.py`). Some ops have no meta kernel
(data-dependent shapes, `.item()`): then `probe` reports inputs only (`output_numels=None`) and, on CPU, the planner
measures the outputs with a real run once the inputs fit the budget. Plans are deterministic; `plan_shapes_cached`
memoises them.
"""

from __future__ import annotations

import dataclasses
import functools
import itertools
import logging
import warnings
from collections.abc import Iterator, Mapping

import torch

from tritonrl.errors import TaskError
from tritonrl.tasks.coverage import Coverage, plan_coverage
from tritonrl.tasks.loader import source_fingerprint
from tritonrl.tasks.reference import ReferenceProgram
from tritonrl.tasks.schema import Task
from tritonrl.tasks.validate import check_reference, validate_variant  # validate_variant: also shapes' API
from tritonrl.tasks.variants import awkward_variants, equal_groups, other_values

log = logging.getLogger(__name__)

DEFAULT_MAX_NUMEL = 8192  # elements of the largest tensor at CPU scale: the Triton interpreter stays ~1 s per check
# Model parameters may be this many times max_numel: hard-coded layers (KernelBench level1/50's 96x3x11x11 conv weight,
# 34848 elements) cannot shrink, and a weight is read once per tile rather than materialised per program.
PARAM_SLACK = 8
VARIANT_SLACK = 2  # a variant may be this many times larger than the budget (or, with no budget, than the base)
N_VARIANTS = 3  # the coverage rule's three templates (coverage.py) cover it for any number of size constants
_PROBE_SEED = 0
_VALIDATE_SEED = 1234
WEAK_CHANGED = 0.01  # below this fraction of output elements changing with the input, plans carry a "weak check" note

# Values tried, as fractions of the shared value, to move a constant off a value it shares with another (`_separate`).
_APART = ((3, 4), (5, 4), (5, 8), (3, 2))


@dataclasses.dataclass(frozen=True, slots=True)
class Probe:
    """What the reference builds at some sizes, measured without computing anything (on the meta device)."""

    ok: bool  # the module, inputs, model (and, off the meta device, forward) ran at these sizes
    error: str  # why not ok, or why the outputs are unknown; "" when everything ran
    input_numels: tuple[int, ...]  # per tensor input, in get_inputs() order
    output_numels: tuple[int, ...] | None  # per output; None when forward has no meta kernel (see module docstring)
    max_numel: int  # the largest input or output (when known) tensor
    max_param_numel: int = 0  # the largest model parameter or buffer (budgeted at PARAM_SLACK x max_numel)


@dataclasses.dataclass(frozen=True, slots=True)
class ShapePlan:
    """Sizes to check a task at: values for its free SIZE constants (others keep their defaults)."""

    base: dict[str, int]  # the main check's sizes
    variants: tuple[dict[str, int], ...]  # coverage-rule (then awkward-size) variants of base, validated like base
    notes: tuple[str, ...]  # what was dropped or could not be checked, for logs and reports
    coverage: Coverage = Coverage()  # which coverage-rule requirements base + variants meet, and why not the rest


def probe(task: Task, sizes: Mapping[str, int] | None = None, device: str = "meta") -> Probe:
    """Build the task at `sizes` on `device` and report tensor sizes. Never raises for a task problem.

    On "meta", a forward that fails for want of a meta kernel gives `ok=True, output_numels=None`; any other failure
    (a shape error, a bad override) gives `ok=False`. On a real device, forward runs for real; use small sizes.
    """
    with torch.random.fork_rng(devices=[]), torch.device(device), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            program = ReferenceProgram(task, sizes)
            inputs = program.get_inputs()
            model = program.make_model(_PROBE_SEED)
        except TaskError as e:
            return Probe(False, str(e), (), None, 0)
        input_numels = tuple(t.numel() for t in inputs if isinstance(t, torch.Tensor))
        tensors = itertools.chain(model.parameters(), model.buffers()) if isinstance(model, torch.nn.Module) else ()
        max_param = max((t.numel() for t in tensors), default=0)
        try:
            output_numels: tuple[int, ...] | None = tuple(t.numel() for t in program.run(model, inputs))
            error = ""
        except TaskError as e:
            if device != "meta" or not _meta_unsupported(e):
                return Probe(False, str(e), input_numels, None, max(*input_numels, 0), max_param)
            output_numels, error = None, f"outputs unknown (no meta kernel): {e}"
    largest = max(*input_numels, *(output_numels or ()), 0)
    return Probe(True, error, input_numels, output_numels, largest, max_param)


def cpu_scale(task: Task, max_numel: int = DEFAULT_MAX_NUMEL) -> dict[str, int]:
    """Halve the largest free SIZE constant (rounding up) until every input and output has at most `max_numel`
    elements (parameters: `PARAM_SLACK * max_numel`), then give constants that halving left equal distinct values.

    A constant never drops below 1, nor below 2 when it started at 2 or more. A halving that breaks the reference
    (a conv input smaller than its kernel, channels no longer divisible by groups) is undone and that constant is left
    alone from then on. Halving makes sizes converge (matmul's M=1024 and K=4096 both end at 64), which would let a
    kernel that reads K from M's dimension pass; so in each group of equal values the constant with the largest default
    keeps the value and the others move to a nearby one (3/4, 5/4, ... of it) within the budget at which the reference
    still runs on CPU (`_separate`). Constants no value works for stay equal: the reference couples them (HingeLoss
    needs batch == features).

    Returns:
        values for all the task's free SIZE constants.

    Raises:
        TaskError: the reference does not build at its defaults, or no scaling reaches the budget.
    """
    sizes = task.free_size_constants
    floors = {name: min(value, 2) for name, value in sizes.items()}
    frozen: list[str] = []
    budget = _Budget(max_numel, PARAM_SLACK * max_numel, real=True)
    current = _measure(task, sizes, budget)
    if not current.ok:
        raise TaskError(f"task {task.task_id}: the reference does not build at its default sizes: {current.error}")
    while not budget.admits(current):
        movable = sorted((n for n, v in sizes.items() if n not in frozen and v > floors[n]), key=lambda n: -sizes[n])
        if not movable:
            raise TaskError(_unscalable(task, sizes, current, frozen, budget))
        halved = _halve(task, sizes, movable, budget)
        if halved is None:
            log.debug("task %s: halving %s broke the reference; keeping it", task.task_id, movable[0])
            frozen.append(movable[0])
        else:
            sizes, current = halved
    return _separate(task, sizes, floors, budget)


def shape_family(
    task: Task, base: Mapping[str, int], n: int = 2, max_numel: int | None = DEFAULT_MAX_NUMEL
) -> list[dict[str, int]]:
    """Up to `n` variants of `base` with awkward sizes, each probed ok and within `VARIANT_SLACK * max_numel`.

    In order (module docstring): odd and distinct, long axis, then further awkward sizes. Within a variant distinct
    constants get distinct values unless the reference couples them (they share a value in every variant then); no
    value is a multiple of 16. Deterministic. Constants of value 1 stay 1. With `max_numel=None` (GPU plans at full
    size) the limit is `VARIANT_SLACK` times the base's largest tensor and only the meta device is used.
    """
    return list(itertools.islice(_family(task, dict(base), _variant_budget(task, base, max_numel)), n))


def plan_shapes(
    task: Task, *, device: str = "cpu", n_variants: int = N_VARIANTS, max_numel: int = DEFAULT_MAX_NUMEL
) -> ShapePlan:
    """The base sizes and up to `n_variants` variants to check `task` at on `device`, and their coverage.

    On "cpu": base = `cpu_scale(task, max_numel)`; base and variants are validated with real CPU runs. On a GPU
    ("cuda"): base = the task's own defaults, variants get no budget but `VARIANT_SLACK` x the base's largest tensor,
    and everything is probed on the meta device only (`max_numel` is ignored). The variants are the coverage rule's
    shapes (`coverage.py`; three meet it), then awkward sizes. Notes say when sizes had to stay equal (coupled by the
    reference, or nothing distinct fit the budget) or no variant has every size odd.

    Raises:
        TaskError: the reference is broken at base, or cannot be scaled to the budget. A degenerate reference (its
            output ignores its input) is planned with a "DEGENERATE TASK" note instead.
    """
    notes: list[str] = []
    if device == "cpu":
        base = cpu_scale(task, max_numel)
        notes.extend(_check_base(task, base))
        budget = _variant_budget(task, base, max_numel)
    else:
        base = task.free_size_constants
        found = probe(task, base)
        if not found.ok:
            raise TaskError(f"task {task.task_id}: the reference does not build at its default sizes: {found.error}")
        budget = _variant_budget(task, base, None)
        notes.append(f"{device} plan: probed on the meta device only, never run on CPU at these sizes")
    pad = _family(task, base, budget)
    check = _Checker(task, base, budget, degenerate_ok=True)  # a softmax over one column is all 1s, yet a fair check
    variants, coverage = plan_coverage(task.free_size_constants, base, check.reason, n_variants, pad)
    if len(variants) < n_variants:
        notes.append(f"only {len(variants)} of {n_variants} variants found")
    # A GPU plan's base is the task's own sizes: equal defaults there are the task's choice, not the planner's.
    shapes = ([("base", base)] if device == "cpu" else []) + [(f"variant{i + 1}", v) for i, v in enumerate(variants)]
    notes.extend(_coverage_notes(shapes, bool(variants)))
    return ShapePlan(base, tuple(variants), tuple(notes), coverage)


def plan_shapes_cached(
    task: Task, *, device: str = "cpu", n_variants: int = N_VARIANTS, max_numel: int = DEFAULT_MAX_NUMEL
) -> ShapePlan:
    """`plan_shapes`, memoised by (task id, source and roles fingerprint, arguments). Returns a fresh copy."""
    plan = _plan_cached(_TaskKey(task), device, n_variants, max_numel)
    return ShapePlan(dict(plan.base), tuple(dict(v) for v in plan.variants), plan.notes, plan.coverage)


class _TaskKey:
    """Hashes a task by its fingerprint, so the cache never hashes or compares whole sources twice."""

    __slots__ = ("task", "fingerprint")

    def __init__(self, task: Task) -> None:
        self.task, self.fingerprint = task, source_fingerprint(task)

    def __hash__(self) -> int:
        return hash(self.fingerprint)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, _TaskKey) and other.fingerprint == self.fingerprint


@functools.lru_cache(maxsize=1024)
def _plan_cached(key: _TaskKey, device: str, n_variants: int, max_numel: int) -> ShapePlan:
    return plan_shapes(key.task, device=device, n_variants=n_variants, max_numel=max_numel)


def _meta_unsupported(error: TaskError) -> bool:
    cause = error.__cause__
    return isinstance(cause, NotImplementedError) or "meta" in str(cause).lower()


@dataclasses.dataclass(frozen=True, slots=True)
class _Budget:
    numel: int  # the largest input or output allowed
    param_numel: int  # the largest parameter or buffer allowed
    real: bool  # may run the reference on CPU to measure outputs the meta device cannot (small sizes only)

    def admits(self, found: Probe) -> bool:
        known = found.output_numels is not None or not self.real
        return found.ok and known and found.max_numel <= self.numel and found.max_param_numel <= self.param_numel


def _measure(task: Task, sizes: Mapping[str, int], budget: _Budget) -> Probe:
    """Probe on meta; if the outputs are unknown but the rest fits the budget, run on CPU to measure them."""
    found = probe(task, sizes)
    small = found.max_numel <= budget.numel and found.max_param_numel <= budget.param_numel
    if budget.real and found.ok and found.output_numels is None and small:
        found = probe(task, sizes, device="cpu")
    return found


def _unscalable(task: Task, sizes: Mapping[str, int], found: Probe, frozen: list[str], budget: _Budget) -> str:
    stuck = "unmeasured outputs" if found.output_numels is None else f"{found.max_numel} elements"
    return (
        f"task {task.task_id}: no scaling reaches max_numel={budget.numel} (parameters {budget.param_numel}): at "
        f"sizes {dict(sizes)} the largest input/output has {stuck}, the largest parameter {found.max_param_numel}; "
        f"frozen because halving them broke the reference: {frozen or 'none'}; kept fixed: "
        f"{task.fixed_constants}. Fix: raise max_numel, or declare more constants 'size' (roles= or TRITONRL_ROLES)."
    )


def _halve(
    task: Task, sizes: dict[str, int], movable: list[str], budget: _Budget
) -> tuple[dict[str, int], Probe] | None:
    """Halve movable[0] (the largest); if that breaks the reference, halve it together with one other movable
    constant (coupled sizes: HingeLoss needs batch == features), largest first. None when nothing works."""
    first = movable[0]
    for partner in [None, *movable[1:]]:
        trial = {**sizes, **{n: -(-sizes[n] // 2) for n in (first, partner) if n is not None}}
        measured = _measure(task, trial, budget)
        if measured.ok:
            return trial, measured
    return None


def _variant_budget(task: Task, base: Mapping[str, int], max_numel: int | None) -> _Budget:
    """`VARIANT_SLACK` x `max_numel` (real runs allowed), or x the base's largest tensor (meta device only)."""
    if max_numel is None:
        at_base = probe(task, base)
        return _Budget(VARIANT_SLACK * at_base.max_numel, VARIANT_SLACK * at_base.max_param_numel, real=False)
    return _Budget(VARIANT_SLACK * max_numel, VARIANT_SLACK * PARAM_SLACK * max_numel, real=True)


def _family(task: Task, base: dict[str, int], budget: _Budget) -> Iterator[dict[str, int]]:
    """`variants.awkward_variants` of `base` within the variant budget (lazily: each variant costs probes)."""
    usable = _Checker(task, base) if budget.real else None
    yield from awkward_variants(task, base, lambda sizes: _fits(task, sizes, budget), usable)


class _Checker:
    """Why sizes cannot be used (over `budget` when given; where real runs are allowed, the reference fails at them
    on CPU as `validate_variant` sees it), or None; called, usable or not. A degenerate answer (the output ignores the
    input) is usable with `degenerate_ok`, or when it is degenerate at `start` too."""

    def __init__(
        self, task: Task, start: Mapping[str, int], budget: _Budget | None = None, *, degenerate_ok: bool = False
    ) -> None:
        self.task, self.start, self.budget = task, dict(start), budget
        self._degenerate_at_start: bool | None = True if degenerate_ok else None

    def __call__(self, sizes: Mapping[str, int]) -> bool:
        return self.reason(sizes) is None

    def reason(self, sizes: Mapping[str, int]) -> str | None:
        if self.budget is not None:
            found = _measure(self.task, sizes, self.budget)
            if not self.budget.admits(found):
                return _refusal(found, self.budget)
            if not self.budget.real:
                return None
        reason = validate_variant(self.task, sizes, _VALIDATE_SEED)
        if reason is None or not reason.startswith("degenerate"):
            return reason
        if self._degenerate_at_start is None:
            at_start = validate_variant(self.task, self.start, _VALIDATE_SEED)
            self._degenerate_at_start = bool(at_start and at_start.startswith("degenerate"))
        return None if self._degenerate_at_start else reason


def _refusal(found: Probe, budget: _Budget) -> str:
    if not found.ok:
        return f"the reference fails: {found.error}"
    if found.output_numels is None and budget.real:
        return "outputs unknown (no meta kernel) and the inputs are over the budget"
    if found.max_numel > budget.numel:
        return f"over the size budget: a tensor of {found.max_numel} elements (at most {budget.numel})"
    return f"over the size budget: a parameter of {found.max_param_numel} elements (at most {budget.param_numel})"


def _fits(task: Task, sizes: Mapping[str, int], budget: _Budget) -> bool:
    return budget.admits(_measure(task, sizes, budget))


def _separate(task: Task, sizes: dict[str, int], floors: Mapping[str, int], budget: _Budget) -> dict[str, int]:
    """`sizes` with equal values made distinct where the reference allows it (see `cpu_scale`)."""
    defaults = task.free_size_constants
    usable = _Checker(task, sizes)
    for group in equal_groups(sizes):
        if len(group) < 2:
            continue
        order = sorted(group, key=lambda n: -defaults.get(n, sizes[n]))  # stable: declaration order among ties
        anchor, stuck = order[0], []
        for name in order[1:]:
            moved = _move_apart(task, sizes, [name], floors, budget, usable)
            if moved is None and anchor == order[0]:  # `name` cannot move (a group count divides it): move the anchor
                moved = _move_apart(task, sizes, [anchor], floors, budget, usable)
                anchor = name if moved is not None else anchor
            if moved is None:
                stuck.append(name)
            else:
                sizes = moved
        if len(stuck) > 1:  # coupled among themselves, maybe not with the anchor: try them together
            sizes = _move_apart(task, sizes, stuck, floors, budget, usable) or sizes
        if stuck:
            log.debug("task %s: %s kept equal to %s", task.task_id, stuck, anchor)
    return sizes


def _move_apart(
    task: Task, sizes: dict[str, int], names: list[str], floors: Mapping[str, int], budget: _Budget, usable: _Checker
) -> dict[str, int] | None:
    """`sizes` with `names` (equal) moved together to a nearby value no other constant has, or None."""
    value = sizes[names[0]]
    low = max(2, *(floors.get(n, 2) for n in names))
    avoid = other_values(sizes, names)
    candidates = [value * a // b for a, b in _APART] + [value - 1, value + 1, value // 2]
    if value <= 16:  # small values: every value up to twice this one, nearest first, below before above
        candidates += sorted(range(low, 2 * value + 1), key=lambda c: (abs(c - value), c > value))
    for candidate in dict.fromkeys(candidates):
        if candidate == value or candidate < low or candidate in avoid:
            continue
        trial = {**sizes, **{n: candidate for n in names}}
        if _fits(task, trial, budget) and usable(trial):
            return trial
    return None


def _coverage_notes(shapes: list[tuple[str, dict[str, int]]], any_variant: bool) -> list[str]:
    """Notes for what the plan could not give: distinct constants at distinct values, a variant with every size odd."""
    notes = []
    equal: dict[tuple[str, ...], list[str]] = {}
    for name, sizes in shapes:
        for group in equal_groups(sizes):
            if len(group) > 1:
                equal.setdefault(tuple(group), []).append(name)
    for group, where in equal.items():
        notes.append(
            f"sizes kept equal in {', '.join(where)}: {' == '.join(group)} (the reference couples them, or nothing "
            "distinct fit the budget); a kernel that mixes them up passes those shapes"
        )
    odd = [name for name, sizes in shapes if name != "base" and all(v % 2 for v in sizes.values())]
    if any_variant and not odd:
        notes.append("no variant has every size odd: a kernel that drops an odd tail may pass")
    return notes


def _check_base(task: Task, base: dict[str, int]) -> list[str]:
    """Raise if the reference is unusable at base; otherwise the notes worth keeping about it."""
    checked = check_reference(task, base, _VALIDATE_SEED, forward_rng=True)
    if checked.reason and checked.reason.startswith("degenerate"):
        # A task whose output ignores its input (KernelBench L2/80 and L2/83 compute all zeros) can still be
        # evaluated, and benchmark users need a verdict for every task: keep it, flagged, rather than refuse it.
        return [f"DEGENERATE TASK: {checked.reason}; a kernel returning a constant passes it"]
    if checked.reason:
        raise TaskError(f"task {task.task_id}: unusable at its CPU base sizes {base}: {checked.reason}. Fix the task.")
    notes = []
    if checked.changed < WEAK_CHANGED:
        notes.append(
            f"weak check: only {checked.changed:.2%} of output elements change with the input at base sizes; "
            "a kernel returning a constant would nearly pass"
        )
    if checked.rng_in_forward:
        notes.append("forward uses the RNG (e.g. dropout in training mode): compare under the same RNG state")
    return notes
