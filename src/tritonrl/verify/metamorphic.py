"""Metamorphic relations (VerifyConfig.metamorphic): hold the candidate to laws its own outputs must obey.

Parent side only. `derive_cases` (called by `cases.build_shape`) tries, for one source case per shape, a row
permutation (f(x[p]) == f(x)[p]), power-of-two scaling (f(2^10 x) == 2^10d f(x), positive homogeneity of degree d)
and an argument swap (f(b, a) == f(a, b)); it runs the reference on each transformed input and keeps a relation only
where the reference satisfies it bitwise. The kept ones become extra cases: the worker runs them like any other case
(it cannot tell them apart and never sees reference outputs). `RelationChecker` (used by the judge) then compares the
candidate on T(x) with T applied to the candidate's own output on x; the ordinary check still compares T(x) with the
reference. Not covered: laws that need the parameters transformed too (a bias breaks homogeneity), and approximate
invariances (layernorm's eps makes f(2x) == f(x) inexact), which the bitwise rule drops.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from typing import Any

import torch

from tritonrl.errors import TaskError
from tritonrl.types import CheckResult
from tritonrl.verify.cases import Case, Shape, _clone, _moved, _same
from tritonrl.verify.correctness import compare_outputs
from tritonrl.verify.messages import CaseFrame

# 2^10: exact in IEEE arithmetic (only the exponent moves, for every dtype), far from fp32 overflow even for degree 2
# (outputs x 2^20), and ~1000x beyond the largest magnitudes the value distributions test (x100 `wide` inputs reach
# ~500), which is where magnitude-dependent shortcuts (saturation, fast-math ranges) differ.
SCALE = 2.0**10
# The candidate must satisfy a kept relation to a tenth of the table tolerance. Permutation and power-of-two scaling
# are exact for a deterministic row-independent, homogeneous computation, so a correct kernel is usually bitwise
# consistent; the slack is for legitimate position-dependent reduction orders (atomics, split-K), whose rounding is
# ~sqrt(K) ulp ~ 1e-6 relative in fp32 at K = 4096, ten times under this bound. A tenth of the tolerance still sees
# systematic deviations that hide inside the ordinary tolerance band.
TOL_SCALE = 0.1
MAX_SWAP_PAIRS = 3


@dataclasses.dataclass(frozen=True)
class Relation:
    """A law a derived case must satisfy against its source case (same shape, earlier in the case list)."""

    name: str  # "permute_rows" | "scale_pow2" | "swap_args"
    source: int  # index of the source case in the shape's case list
    law: str  # human-readable statement, used in messages
    perm: torch.Tensor | None = None  # permute_rows: the permutation of dim 0
    factor: float = 1.0  # scale_pow2: what the outputs are multiplied by (SCALE ** degree)

    def expected(self, outputs: Sequence[torch.Tensor]) -> list[torch.Tensor]:
        """T applied to the outputs on the source inputs: what forward must return on the transformed inputs."""
        if self.perm is not None:
            return [o[self.perm] for o in outputs]
        if self.factor != 1.0:
            return [o * self.factor for o in outputs]
        return list(outputs)


Reference = Callable[[list[Any]], tuple[tuple[torch.Tensor, ...], list[bool], str]]


def reference_runner(prog: Any, model: torch.nn.Module, device: str) -> Reference:
    """inputs -> (reference outputs on the CPU, which inputs it mutated, its container), on a pristine copy."""

    def run(inputs: list[Any]) -> tuple[tuple[torch.Tensor, ...], list[bool], str]:
        ref_inputs = _moved(_clone(inputs), device)
        outputs = tuple(o.detach().to("cpu") for o in prog.run(model, ref_inputs))
        mutated = [not _same(a, b) for a, b in zip(inputs, ref_inputs, strict=True)]
        return outputs, mutated, prog.last_container

    return run


def derive_cases(shape_name: str, cases: list[Case], reference: Reference) -> tuple[list[Case], list[str]]:
    """The relation cases of one shape (to append after `cases`) and one note saying which relations were kept."""
    usable = [i for i, c in enumerate(cases) if not any(c.ref_mutated)]
    if not usable:
        return [], [f"metamorphic {shape_name}: none (the reference mutates its inputs)"]
    first = usable[0]
    # Scaling probes large magnitudes: start from the case whose floating inputs are already the largest.
    loudest = max(usable, key=lambda i: _max_abs(cases[i].inputs))
    trials = [
        ("permute_rows", first, _permute_trials(cases[first], first)),
        ("scale_pow2", loudest, _scale_trials(cases[loudest], loudest)),
        ("swap_args", first, _swap_trials(cases[first], first)),
    ]
    derived, kept, dropped = [], [], []
    for name, index, options in trials:
        case = _first_that_holds(cases[index], options, reference)
        if case is None:
            dropped.append(name)
            continue
        derived.append(case)
        kept.append(f"{name} on {cases[index].name} ({case.relation.law})")
    note = f"metamorphic {shape_name}: kept {'; '.join(kept) or 'none'}"
    if dropped:
        note += f"; not applicable or not exact on the reference: {', '.join(dropped)}"
    return derived, [note]


def _first_that_holds(
    source: Case, options: list[tuple[list[Any], list[Relation]]], reference: Reference
) -> Case | None:
    for inputs, relations in options:
        try:
            outputs, mutated, container = reference(inputs)
        except TaskError:  # the reference cannot take the transformed inputs: the law is not applicable
            continue
        if any(mutated) or container != source.ref_container:
            continue
        for relation in relations:
            if _bitwise(outputs, relation.expected(source.ref_outputs)):
                return Case(f"{source.name}~{relation.name}", source.distribution, source.seed, None, inputs,
                            outputs, mutated, container, relation=relation)  # fmt: skip
    return None


def _permute_trials(case: Case, index: int) -> list[tuple[list[Any], list[Relation]]]:
    """Permute dim 0 of the inputs whose dim 0 is the outputs' dim 0: all of them, else each alone (square matmul:
    permuting B's rows too breaks the law, permuting A's alone keeps it)."""
    outs = case.ref_outputs
    if not outs or any(o.dim() == 0 for o in outs) or outs[0].shape[0] < 2:
        return []
    n = outs[0].shape[0]
    if any(o.shape[0] != n for o in outs):
        return []
    rows = [i for i, x in enumerate(case.inputs) if isinstance(x, torch.Tensor) and x.dim() >= 1 and x.shape[0] == n]
    gen = torch.Generator().manual_seed(case.seed ^ 0x5EED)  # the case seed is secret, so is the permutation
    perm = torch.randperm(n, generator=gen)
    if torch.equal(perm, torch.arange(n)):
        perm = perm.roll(1)
    options = []
    for subset in [rows] + ([[i] for i in rows] if len(rows) > 1 else []):
        inputs = [x[perm] if i in subset else x for i, x in enumerate(case.inputs)]
        law = f"f(x[p]) == f(x)[p], p permuting dim 0 of input(s) {_names(subset)}"
        options.append((inputs, [Relation("permute_rows", index, law, perm=perm)]))
    return options


def _scale_trials(case: Case, index: int) -> list[tuple[list[Any], list[Relation]]]:
    """Scale the floating inputs (all, else each alone) by 2^10; try homogeneity degrees 1..#scaled."""
    if not case.ref_outputs or not all(o.is_floating_point() for o in case.ref_outputs):
        return []
    floats = [i for i, x in enumerate(case.inputs) if isinstance(x, torch.Tensor) and x.is_floating_point()]
    options = []
    for subset in ([floats] if floats else []) + ([[i] for i in floats] if len(floats) > 1 else []):
        inputs = [x * SCALE if i in subset else x for i, x in enumerate(case.inputs)]
        relations = [
            Relation("scale_pow2", index, f"f(s*x) == s^{d}*f(x), s = 2^10 scaling input(s) {_names(subset)}",
                     factor=SCALE**d)
            for d in range(1, len(subset) + 1)
        ]  # fmt: skip
        options.append((inputs, relations))
    return options


def _swap_trials(case: Case, index: int) -> list[tuple[list[Any], list[Relation]]]:
    """Swap two inputs of the same shape and dtype (commutativity)."""
    xs = case.inputs
    pairs = [
        (i, j)
        for i in range(len(xs))
        for j in range(i + 1, len(xs))
        if isinstance(xs[i], torch.Tensor) and isinstance(xs[j], torch.Tensor)
        and xs[i].shape == xs[j].shape and xs[i].dtype == xs[j].dtype
    ][:MAX_SWAP_PAIRS]  # fmt: skip
    options = []
    for i, j in pairs:
        inputs = list(xs)
        inputs[i], inputs[j] = xs[j], xs[i]
        options.append((inputs, [Relation("swap_args", index, f"f(x) unchanged with inputs {i} and {j} swapped")]))
    return options


class RelationChecker:
    """Judge side: keeps the candidate's outputs on relation sources, and checks each relation case against them."""

    def __init__(self, shapes: list[Shape], *, tf32: bool) -> None:
        self.shapes = shapes
        self.tf32 = tf32
        self._wanted = {(i, c.relation.source) for i, s in enumerate(shapes) for c in s.cases if c.relation}
        self._outputs: dict[tuple[int, int], list[torch.Tensor]] = {}

    def check(self, frame: CaseFrame) -> CheckResult | None:
        """Called for every judged case frame (after its ordinary comparison); a CheckResult for relation cases."""
        if frame.mode != "normal":
            return None
        outputs = list(frame.outputs)
        if (frame.shape, frame.case) in self._wanted:
            self._outputs[(frame.shape, frame.case)] = outputs
        shape = self.shapes[frame.shape]
        case = shape.cases[frame.case]
        relation = case.relation
        if relation is None:
            return None
        source = shape.cases[relation.source]
        # The worker runs cases in order and a failed source stops the run, so the source was judged already.
        mine = self._outputs[(frame.shape, relation.source)]
        cmp = compare_outputs(outputs, tuple(relation.expected(mine)), poison=None, tf32=self.tf32,
                              tol_scale=TOL_SCALE)  # fmt: skip
        message = "ok"
        if cmp.failure is not None:
            message = (f"metamorphic relation {relation.name} violated on {source.name}: {relation.law} holds "
                       f"exactly for the reference, but the candidate's f(T(x)) differs from T(f(x)): "
                       f"{cmp.message}")  # fmt: skip
        return CheckResult(
            case=f"{case.name}:relation", sizes=shape.sizes, distribution=case.distribution, seed=case.seed,
            passed=cmp.failure is None, failure=cmp.failure, message=message, stats=cmp.stats,
        )  # fmt: skip


def _bitwise(a: Sequence[torch.Tensor], b: Sequence[torch.Tensor]) -> bool:
    return len(a) == len(b) and all(
        x.shape == y.shape and x.dtype == y.dtype and _same(x, y) for x, y in zip(a, b, strict=True)
    )


def _max_abs(inputs: list[Any]) -> float:
    values = [float(x.abs().max()) for x in inputs if isinstance(x, torch.Tensor) and x.is_floating_point()
              and x.numel() and bool(torch.isfinite(x).all())]  # fmt: skip
    return max(values, default=0.0)


def _names(indices: list[int]) -> str:
    return ", ".join(str(i) for i in indices)
