"""Reference validation: is a task's reference usable for checking kernels at given sizes?

`validate_variant(task, sizes, seed)` runs the real reference on CPU for two input seeds and says why the sizes are
unusable (it raised, an output is empty or all NaN/Inf, or the output ignores the input), or None.
`check_reference` also measures how much of the output changes with the input and whether forward uses the RNG, which
`shapes.plan_shapes` turns into plan notes. Runs real torch on CPU at small sizes only; it plans nothing.
"""

from __future__ import annotations

import dataclasses
import warnings
from collections.abc import Mapping

import torch

from tritonrl.errors import TaskError
from tritonrl.tasks.reference import RNG_LOCK, ReferenceProgram
from tritonrl.tasks.schema import Task


def validate_variant(task: Task, sizes: Mapping[str, int], seed: int) -> str | None:
    """Run the real reference on CPU at `sizes` with input seeds `seed` and `seed + 1`.

    Returns:
        None when usable, else why not: the reference raised, an output is empty or all NaN/Inf, or the outputs are
        identical for different inputs (degenerate: a constant kernel would pass).
    """
    return check_reference(task, sizes, seed).reason


@dataclasses.dataclass(frozen=True, slots=True)
class Checked:
    """What one `check_reference` run found."""

    reason: str | None  # validate_variant's answer: None when usable, else why not
    changed: float  # fraction of output elements that differ between the two input seeds
    rng_in_forward: bool  # same inputs, another RNG seed before forward: different outputs


def check_reference(task: Task, sizes: Mapping[str, int], seed: int, *, forward_rng: bool = False) -> Checked:
    """Run the reference for input seeds `seed` and `seed + 1` (and, with forward_rng, `seed` again under another
    RNG seed for forward); one model, seeded with `seed`. The global RNG is left as it was."""
    try:
        with torch.random.fork_rng(devices=[]), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            program = ReferenceProgram(task, sizes)
            model = program.make_model(seed)
            in_a, out_a = _run(program, model, seed, seed)
            in_b, out_b = _run(program, model, seed + 1, seed + 1)
            rng = forward_rng and not _same(out_a, _run(program, model, seed, seed + 7)[1])
    except TaskError as e:
        return Checked(str(e), 0.0, False)
    return Checked(_problem(out_a, out_b, _same(in_a, in_b), seed), _changed(out_a, out_b), rng)


def _run(program: ReferenceProgram, model: torch.nn.Module, input_seed: int, forward_seed: int) -> tuple[list, tuple]:
    with RNG_LOCK:  # the forward seed too: forward_rng asks whether forward itself draws random numbers
        inputs = program.inputs(input_seed)
        torch.manual_seed(forward_seed)
        return inputs, program.run(model, inputs)


def _problem(out_a: tuple, out_b: tuple, same_inputs: bool, seed: int) -> str | None:
    for i, out in enumerate(out_a):
        if out.numel() == 0:
            return f"output {i} is empty (shape {tuple(out.shape)})"
        if (out.is_floating_point() or out.is_complex()) and not bool(torch.isfinite(out).any()):
            return f"output {i} is all NaN/Inf"
    if _same(out_a, out_b):
        what = "get_inputs() ignores the seed" if same_inputs else "the output ignores the input"
        constant = [f"output {i} is all {t.flatten()[0].item()}" for i, t in enumerate(out_a) if _uniform(t)]
        return f"degenerate: identical outputs for input seeds {seed} and {seed + 1} ({'; '.join([what, *constant])})"
    return None


def _changed(out_a: tuple, out_b: tuple) -> float:
    if [t.shape for t in out_a] != [t.shape for t in out_b]:
        return 1.0
    differ = sum(int((torch.nan_to_num(a) != torch.nan_to_num(b)).sum()) for a, b in zip(out_a, out_b, strict=True))
    return differ / max(sum(t.numel() for t in out_a), 1)


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
    return bool((t == t.flatten()[0]).all())
