"""Shape planning: the sizes at which a task's reference and a candidate are compared.

`plan_shapes(task, device="cpu")` halves the task's free SIZE constants until every input and output has at most
`max_numel` elements, and every parameter at most PARAM_SLACK times that (`cpu_scale`), then derives variants with
awkward sizes (odd, prime, never multiples of 16) so that a kernel assuming aligned shapes fails (`shape_family`). Sizes are
measured on the meta device (`probe`), which allocates nothing even at KernelBench's multi-GB defaults; the real
reference runs on CPU only at planned sizes (`validate_variant`). Some ops have no meta kernel (data-dependent shapes,
`.item()`): then `probe` reports inputs only (`output_numels=None`) and, on CPU, the planner measures the outputs with a
real run once the inputs fit the budget. Plans are deterministic; `plan_shapes_cached` memoises them per task.
"""

from __future__ import annotations

import dataclasses
import functools
import itertools
import logging
import warnings
from collections.abc import Callable, Iterator, Mapping

import torch

from tritonrl.errors import TaskError
from tritonrl.tasks.loader import source_fingerprint
from tritonrl.tasks.reference import ReferenceProgram
from tritonrl.tasks.schema import Task

log = logging.getLogger(__name__)

DEFAULT_MAX_NUMEL = 8192  # elements of the largest tensor at CPU scale: the Triton interpreter stays ~1 s per check
# Model parameters may be this many times max_numel: hard-coded layers (KernelBench level1/50's 96x3x11x11 conv weight,
# 34848 elements) cannot shrink, and a weight is read once per tile rather than materialised per program.
PARAM_SLACK = 8
VARIANT_SLACK = 2  # a variant may be this many times larger than the budget (or, with no budget, than the base)
_PROBE_SEED = 0
_VALIDATE_SEED = 1234

# Candidate transforms for awkward sizes, tried in order until enough variants pass. Each maps a base value to a new
# one; `_awkward` then keeps it >= 2 and off multiples of 16.
_TRANSFORMS: tuple[tuple[str, Callable[[int], int]], ...] = (
    ("x1.3+1", lambda v: int(v * 1.3) + 1),
    ("x0.6+3", lambda v: int(v * 0.6) + 3),
    ("next prime", lambda v: _next_prime(v + 1)),
    ("x0.8+1", lambda v: int(v * 0.8) + 1),
    ("+1", lambda v: v + 1),
    ("x1.5+3", lambda v: int(v * 1.5) + 3),
    ("-1", lambda v: v - 1),
)


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
    variants: tuple[dict[str, int], ...]  # awkward-size variants of base, each validated like base
    notes: tuple[str, ...]  # what was dropped or could not be checked, for logs and reports


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
    elements (parameters: `PARAM_SLACK * max_numel`).

    A constant never drops below 1, nor below 2 when it started at 2 or more. A halving that breaks the reference
    (a conv input smaller than its kernel, channels no longer divisible by groups) is undone and that constant is left
    alone from then on.

    Returns:
        values for all the task's free SIZE constants.

    Raises:
        TaskError: the reference does not build at its defaults, or no scaling reaches the budget.
    """
    sizes = task.free_size_constants
    floors = {name: min(value, 2) for name, value in sizes.items()}
    frozen: list[str] = []
    current = _measure(task, sizes, max_numel, real_fallback=True)
    if not current.ok:
        raise TaskError(f"task {task.task_id}: the reference does not build at its default sizes: {current.error}")
    while not _within(current, max_numel, need_outputs=True):
        movable = sorted((n for n, v in sizes.items() if n not in frozen and v > floors[n]), key=lambda n: -sizes[n])
        if not movable:
            raise TaskError(_unscalable(task, sizes, current, frozen, max_numel))
        halved = _halve(task, sizes, movable, max_numel)
        if halved is None:
            log.debug("task %s: halving %s broke the reference; keeping it", task.task_id, movable[0])
            frozen.append(movable[0])
        else:
            sizes, current = halved
    return sizes


def _halve(task: Task, sizes: dict[str, int], movable: list[str], budget: int) -> tuple[dict[str, int], Probe] | None:
    """Halve movable[0] (the largest); if that breaks the reference, halve it together with one other movable
    constant (coupled sizes: HingeLoss needs batch == features), largest first. None when nothing works."""
    first = movable[0]
    for partner in [None, *movable[1:]]:
        trial = {**sizes, **{n: -(-sizes[n] // 2) for n in (first, partner) if n is not None}}
        measured = _measure(task, trial, budget, real_fallback=True)
        if measured.ok:
            return trial, measured
    return None


def shape_family(
    task: Task, base: Mapping[str, int], n: int = 2, max_numel: int | None = DEFAULT_MAX_NUMEL
) -> list[dict[str, int]]:
    """Up to `n` variants of `base` with awkward sizes, each probed ok and within `VARIANT_SLACK * max_numel`.

    Deterministic. Constants of value 1 stay 1. With `max_numel=None` (GPU plans at full size) the limit is
    `VARIANT_SLACK` times the base's largest tensor and only the meta device is used.
    """
    return list(itertools.islice(_family(task, dict(base), max_numel), n))


def validate_variant(task: Task, sizes: Mapping[str, int], seed: int) -> str | None:
    """Run the real reference on CPU at `sizes` with input seeds `seed` and `seed + 1`.

    Returns:
        None when usable, else why not: the reference raised, an output is empty or all NaN/Inf, or the outputs are
        identical for different inputs (degenerate: a constant kernel would pass).
    """
    try:
        (in_a, out_a), (in_b, out_b) = _run_twice(task, sizes, seed, seed + 1)
    except TaskError as e:
        return str(e)
    for i, out in enumerate(out_a):
        if out.numel() == 0:
            return f"output {i} is empty (shape {tuple(out.shape)})"
        if (out.is_floating_point() or out.is_complex()) and not bool(torch.isfinite(out).any()):
            return f"output {i} is all NaN/Inf"
    if _same(out_a, out_b):
        what = "get_inputs() ignores the seed" if _same(in_a, in_b) else "the output ignores the input"
        constant = [f"output {i} is all {t.flatten()[0].item()}" for i, t in enumerate(out_a) if _uniform(t)]
        return f"degenerate: identical outputs for input seeds {seed} and {seed + 1} ({'; '.join([what, *constant])})"
    return None


def plan_shapes(
    task: Task, *, device: str = "cpu", n_variants: int = 2, max_numel: int = DEFAULT_MAX_NUMEL
) -> ShapePlan:
    """The base sizes and up to `n_variants` awkward variants to check `task` at on `device`.

    On "cpu": base = `cpu_scale(task, max_numel)`; base and variants are validated with real CPU runs. On a GPU
    ("cuda"): base = the task's own defaults, variants get no budget but `VARIANT_SLACK` x the base's largest tensor,
    and everything is probed on the meta device only (`max_numel` is ignored).

    Raises:
        TaskError: the reference is broken or degenerate at base, or cannot be scaled to the budget.
    """
    notes: list[str] = []
    if device == "cpu":
        base = cpu_scale(task, max_numel)
        reason = validate_variant(task, base, _VALIDATE_SEED)
        if reason:
            raise TaskError(f"task {task.task_id}: unusable at its CPU base sizes {base}: {reason}. Fix the task.")
        if not _deterministic(task, base, _VALIDATE_SEED):
            notes.append("reference is nondeterministic (same inputs, different outputs): e.g. dropout in training")
        variants = _validated_variants(task, base, n_variants, max_numel, notes)
    else:
        base = task.free_size_constants
        found = probe(task, base)
        if not found.ok:
            raise TaskError(f"task {task.task_id}: the reference does not build at its default sizes: {found.error}")
        variants = shape_family(task, base, n_variants, max_numel=None)
        notes.append(f"{device} plan: probed on the meta device only, never run on CPU at these sizes")
    if len(variants) < n_variants:
        notes.append(f"only {len(variants)} of {n_variants} variants found")
    return ShapePlan(base, tuple(variants), tuple(notes))


def plan_shapes_cached(
    task: Task, *, device: str = "cpu", n_variants: int = 2, max_numel: int = DEFAULT_MAX_NUMEL
) -> ShapePlan:
    """`plan_shapes`, memoised by (task id, source and roles fingerprint, arguments). Returns a fresh copy."""
    plan = _plan_cached(_TaskKey(task), device, n_variants, max_numel)
    return ShapePlan(dict(plan.base), tuple(dict(v) for v in plan.variants), plan.notes)


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


def _measure(task: Task, sizes: Mapping[str, int], budget: int, *, real_fallback: bool) -> Probe:
    """Probe on meta; if the outputs are unknown but everything else fits `budget`, run on CPU to measure them."""
    found = probe(task, sizes)
    small = found.max_numel <= budget and found.max_param_numel <= PARAM_SLACK * budget
    if real_fallback and found.ok and found.output_numels is None and small:
        found = probe(task, sizes, device="cpu")
    return found


def _within(found: Probe, limit: int, *, need_outputs: bool) -> bool:
    return (
        found.ok
        and found.max_numel <= limit
        and found.max_param_numel <= PARAM_SLACK * limit
        and (found.output_numels is not None or not need_outputs)
    )


def _unscalable(task: Task, sizes: Mapping[str, int], found: Probe, frozen: list[str], budget: int) -> str:
    stuck = "outputs could not be measured" if found.output_numels is None else f"{found.max_numel} elements"
    return (
        f"task {task.task_id}: no scaling reaches max_numel={budget}: at sizes {dict(sizes)} the largest tensor has "
        f"{stuck}; frozen because halving them broke the reference: {frozen or 'none'}; kept fixed: "
        f"{task.fixed_constants}. Fix: raise max_numel, or declare more constants 'size' (roles= or TRITONRL_ROLES)."
    )


def _family(task: Task, base: dict[str, int], max_numel: int | None) -> Iterator[dict[str, int]]:
    if max_numel is None:
        limit, real = VARIANT_SLACK * max(probe(task, base).max_numel, 1), False
    else:
        limit, real = VARIANT_SLACK * max_numel, True
    # Constants of equal value change together first (HingeLoss needs batch == features), then one by one.
    groups: dict[int, list[str]] = {}
    for name, value in sorted(base.items(), key=lambda item: -item[1]):
        if value > 1:
            groups.setdefault(value, []).append(name)
    steps = [names for group in groups.values() for names in (group, *([[n] for n in group] if len(group) > 1 else []))]
    seen = {tuple(sorted(base.items()))}
    for label, transform in _TRANSFORMS:
        sizes = dict(base)
        for names in steps:  # greedily, keeping each change that still probes ok and within the limit
            trial = {**sizes, **{n: _awkward(transform(base[n])) for n in names}}
            if trial == sizes:
                continue
            if _within(_measure(task, trial, limit, real_fallback=real), limit, need_outputs=real):
                sizes = trial
        key = tuple(sorted(sizes.items()))
        if key not in seen:
            seen.add(key)
            log.debug("task %s: variant %s = %s", task.task_id, label, sizes)
            yield sizes


def _validated_variants(
    task: Task, base: dict[str, int], n: int, max_numel: int, notes: list[str]
) -> list[dict[str, int]]:
    variants = []
    for sizes in _family(task, base, max_numel):
        reason = validate_variant(task, sizes, _VALIDATE_SEED)
        if reason:
            notes.append(f"dropped variant {sizes}: {reason}")
            continue
        variants.append(sizes)
        if len(variants) == n:
            break
    return variants


def _awkward(value: int) -> int:
    value = max(value, 2)
    return value + 1 if value % 16 == 0 else value


def _next_prime(value: int) -> int:
    candidate = max(value, 2)
    while any(candidate % d == 0 for d in range(2, int(candidate**0.5) + 1)):
        candidate += 1
    return candidate


def _run_twice(task: Task, sizes: Mapping[str, int], seed_a: int, seed_b: int) -> list[tuple[list, tuple]]:
    """(inputs, outputs) for two input seeds, one model (seeded with seed_a); the global RNG is left as it was."""
    with torch.random.fork_rng(devices=[]), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        program = ReferenceProgram(task, sizes)
        model = program.make_model(seed_a)
        runs = []
        for seed in (seed_a, seed_b):
            torch.manual_seed(seed)
            inputs = program.get_inputs()
            runs.append((inputs, program.run(model, inputs)))
    return runs


def _same(a: list | tuple, b: list | tuple) -> bool:
    if len(a) != len(b):
        return False
    for x, y in zip(a, b, strict=True):
        if isinstance(x, torch.Tensor) and isinstance(y, torch.Tensor):
            if x.shape != y.shape or x.dtype != y.dtype:
                return False
            if x.is_floating_point() or x.is_complex():  # NaN != NaN, yet two NaNs in one place are "the same"
                x, y = torch.nan_to_num(x), torch.nan_to_num(y)
            if not torch.equal(x, y):
                return False
        elif isinstance(x, torch.Tensor) or isinstance(y, torch.Tensor) or x != y:
            return False
    return True


def _uniform(t: torch.Tensor) -> bool:
    return t.numel() > 0 and bool((t == t.flatten()[0]).all())


def _deterministic(task: Task, sizes: Mapping[str, int], seed: int) -> bool:
    try:
        (_, out_a), (_, out_b) = _run_twice(task, sizes, seed, seed)
    except TaskError:
        return False
    return _same(out_a, out_b)
