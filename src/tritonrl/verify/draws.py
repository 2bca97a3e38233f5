"""Value distributions of the correctness cases: how a case's inputs are redrawn from the task's own `get_inputs()`.

Each distribution targets a class of bug that standard-normal inputs hide (the comments at SCALES and below say
which); docs/verification.md "Coverage rule" states the rule. Pure functions of a seed: the parent draws, the worker
never does.
"""

from __future__ import annotations

import ast
import functools
import math
from typing import Any

import torch

TIE_VALUES = tuple(k / 2 for k in range(-6, 7))  # -3, -2.5, ..., 3: ties, exact zeros and round-half cases
# The ties pool takes at most this many of the task's constants (each with its negation), those nearest 1 first, so
# each value still repeats often: with 4 constants the pool has at most 21 values, so a 4096-element row holds
# each ~195 times.
MAX_CONSTANTS = 4
CONSTANT_MAX_ABS = 1e4  # larger literals are sizes or sentinels (e.g. -1e9 masks), not boundaries inputs can hit

# (scale, offset) of each redrawn normal distribution: signed values (normal) catch missing relus and wrong signs; x100
# (wide) overflows unstable exp/softmax; x1e-3 (small) makes eps matter; +100 (offset) makes one-pass variance
# E[x^2] - E[x]^2 cancel in fp32 (relative error ~1e-3, ten times the tolerance); -100 (negative) makes every row
# entirely negative and far from 0, so a running max started at 0 underflows exp() (a max started at 0 returns 0).
SCALES = {
    "normal": (1.0, 0.0), "wide": (100.0, 0.0), "small": (1e-3, 0.0), "offset": (1.0, 100.0), "negative": (1.0, -100.0)
}  # fmt: skip
# Drawn otherwise (`_float_draw`): positive = |randn| (a running min started at 0); ties = values drawn from the
# multiples of 0.5 in [-3, 3] and the task's own constants (`task_constants`), as floats (argmax/argmin tie-breaking,
# exact zeros, rounding of halves, `>` against `>=` at a threshold, a clamp bound hit exactly); zero_rows = randn with
# a quarter of the rows (last-dim slices) all 0 (a missing eps clamp gives 0/0); mixed = randn with per-row scales
# 1e-3..1e3 (a scale taken from the wrong row).
# Integer inputs are redrawn under three of them (`_exact_draw`): negative = all at the native minimum, positive =
# all at the native maximum, ties = a mix of {min, max, -1, 0, 1} within [min, max]; bool inputs: all False, all
# True, random. Index inputs stay in range because the range is the native draw's; `draw_shape` keeps native
# integers where the reference fails on the redrawn ones. Inputs the task computes without randomness keep their
# native values (`fixed_inputs`).
SIGNED = frozenset({"normal", "wide", "small", "ties", "zero_rows", "mixed"})  # both signs in (nearly) every row


def distribute(
    inputs: list[Any],
    distribution: str,
    seed: int,
    *,
    integers: bool = True,
    constants: tuple[float, ...] = (),
    fixed: frozenset[int] = frozenset(),
) -> list[Any]:
    """Redraw tensors from `distribution` (native: unchanged; see SCALES). Integer and bool tensors are redrawn only
    under negative/positive/ties, and only with `integers`; a tensor that is not redrawn is returned as is.
    `constants` join the ties pool of floating tensors (see `task_constants`); inputs at the `fixed` positions (see
    `fixed_inputs`) are never redrawn."""
    if distribution == "native":
        return inputs
    gen = torch.Generator().manual_seed(seed)
    out = []
    for i, x in enumerate(inputs):
        if i in fixed:
            pass
        elif isinstance(x, torch.Tensor) and x.is_floating_point():
            # drawn in float32 (float64 only for float64 inputs): half the host time of a float64 draw, and every
            # distribution here is exact enough in float32 for fp32/fp16/bf16 inputs
            work = torch.float64 if x.dtype == torch.float64 else torch.float32
            x = _float_draw(x.shape, distribution, gen, work, constants).to(x.dtype)
        elif integers and isinstance(x, torch.Tensor) and x.numel() and not x.is_complex():
            x = _exact_draw(x, distribution, gen)
        out.append(x)
    return out


def _float_draw(
    shape: torch.Size, distribution: str, gen: torch.Generator, work: torch.dtype, constants: tuple[float, ...]
) -> torch.Tensor:
    if distribution == "ties":
        pool = torch.tensor(sorted({*TIE_VALUES, *constants}), dtype=work)
        return pool[torch.randint(len(pool), shape, generator=gen)]
    x = torch.randn(shape, generator=gen, dtype=work)
    if distribution in SCALES:
        scale, offset = SCALES[distribution]
        return x * scale + offset
    if distribution == "positive":
        return x.abs()
    rows = x.reshape(-1, shape[-1] if len(shape) >= 2 else 1)  # a view: last-dim slices (1-D: each element)
    order = torch.randperm(rows.shape[0], generator=gen)
    if distribution == "zero_rows":
        rows[order[: max(1, rows.shape[0] // 4)]] = 0
    elif distribution == "mixed":  # exponents evenly spread over [-3, 3], shuffled across rows
        rows *= (10.0 ** torch.linspace(-3, 3, rows.shape[0], dtype=work))[order].unsqueeze(1)
    return x


def _exact_draw(x: torch.Tensor, distribution: str, gen: torch.Generator) -> torch.Tensor:
    if x.dtype == torch.bool:
        fills = {"negative": False, "positive": True}
        if distribution in fills:
            return torch.full_like(x, fills[distribution])
        return torch.rand(x.shape, generator=gen) < 0.5 if distribution == "ties" else x
    low, high = int(x.min()), int(x.max())
    if distribution in ("negative", "positive"):
        return torch.full_like(x, low if distribution == "negative" else high)
    if distribution != "ties":
        return x
    values = torch.tensor(sorted({low, high} | {v for v in (-1, 0, 1) if low <= v <= high}), dtype=x.dtype)
    return values[torch.randint(len(values), x.shape, generator=gen)]


def shape_distributions(index: int, distributions: tuple[str, ...]) -> tuple[str, ...]:
    """The distributions the shape at `index` (0: base) is checked with: see the module docstring."""
    if index == 0:
        return distributions
    signed = [d for d in distributions if d in SIGNED]
    unsigned = [d for d in distributions if d not in SIGNED and d != "native"]
    picks = [d for d in distributions if d == "native"]
    picks += [group[(index - 1) % len(group)] for group in (signed, unsigned) if group]
    return tuple(picks)


def fixed_inputs(natives: list[list[Any]]) -> frozenset[int]:
    """Positions of the tensor inputs the task computes without randomness: equal in every native draw (two or more
    draws under different seeds). Such an input is a table the task defines (RoPE's cos/sin of positions, a causal
    mask, a ramp), part of the task like its constants, not a random variable: redrawing it at random would destroy
    structure that correct kernels rely on (Liger's RoPE reads half of a cos table whose halves are equal).
    Random inputs differ between any two seeds, so they keep every distribution."""
    if len(natives) < 2:
        return frozenset()
    first, *rest = natives
    return frozenset(
        i
        for i, x in enumerate(first)
        if isinstance(x, torch.Tensor)
        and x.numel() > 1
        and all(isinstance(o[i], torch.Tensor) and o[i].shape == x.shape and torch.equal(o[i], x) for o in rest)
    )


@functools.lru_cache(maxsize=256)
def task_constants(source: str) -> tuple[float, ...]:
    """The boundary values a reference compares its inputs against: the float literals of the module (thresholds,
    clamp bounds, slopes, module-level hyperparameters such as `negative_slope = 0.01`) and the int literals inside
    class bodies (`clamp(x, 0, 6)`), each with its negation, excluding 0, non-finite values and magnitudes over
    CONSTANT_MAX_ABS. Module-level ints are sizes and stay out. The rule, not a list of ops: any comparison with a
    written constant is exercised at that constant."""
    try:
        tree = ast.parse(source)
    except SyntaxError:
        return ()
    found: set[float] = set()
    for top in tree.body:
        in_class = isinstance(top, ast.ClassDef)
        for node in ast.walk(top):
            if not isinstance(node, ast.Constant) or isinstance(node.value, bool):
                continue
            if isinstance(node.value, float) or (in_class and isinstance(node.value, int)):
                value = float(node.value)
                if math.isfinite(value) and 0 < abs(value) <= CONSTANT_MAX_ABS:
                    found.add(abs(value))
    # nearest 1 in magnitude first: the other draws live on that scale, and an eps of 1e-30 is no boundary
    picked = sorted(found - set(TIE_VALUES), key=lambda v: abs(math.log10(v)))[:MAX_CONSTANTS]
    return tuple(sorted({*picked, *(-v for v in picked)}))
