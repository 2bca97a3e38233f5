"""Build the correctness cases in the trusted parent: inputs, parameters and reference outputs.

For every planned shape (the CPU-scaled default plus the coverage-rule variants) the reference model is built under
a fresh secret seed; its state dict goes to the worker so ModelNew gets identical parameters. For every value
distribution a case gets a fresh secret seed: the task's own `get_inputs()` runs under it, then inputs are redrawn
from the distribution (`distribute`; native keeps them). Every shape costs one interpreter forward per distribution,
so not every shape gets every distribution (`shape_distributions`): the base shape gets all of them; variant i gets
native, the i-th signed distribution and the i-th unsigned one (rotating through each list), so every distribution
is seen on the base shape and every shape sees a signed distribution. The reference runs on a pristine copy, so a
candidate that mutates its inputs cannot corrupt the expected output; whether the reference itself mutates an input
is recorded. Cases whose reference output is entirely NaN/Inf (e.g. log of negative inputs) are dropped with a note.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import logging
import secrets
from collections.abc import Mapping
from typing import Any

import torch
from torch.utils._python_dispatch import TorchDispatchMode

from tritonrl.errors import ConfigError, TaskError
from tritonrl.tasks.reference import ReferenceProgram
from tritonrl.tasks.schema import Task
from tritonrl.tasks.shapes import ShapePlan
from tritonrl.verify.config import VerifyConfig
from tritonrl.verify.correctness import TRUTH_MAX_NUMEL, References, float64_inputs, nudged_inputs, truth_for
from tritonrl.verify.draws import distribute, fixed_inputs, shape_distributions, task_constants
from tritonrl.verify.messages import CaseRequest, ShapeRequest

MATMUL_OPS = frozenset(
    {
        "aten.mm",
        "aten.bmm",
        "aten.addmm",
        "aten.baddbmm",
        "aten.convolution",
        "aten.matmul",
        "aten.dot",
        "aten.mv",
        "aten.addmv",
        "aten._convolution",
        "aten.linear",
    }
)

log = logging.getLogger(__name__)


@dataclasses.dataclass
class Case:
    name: str
    distribution: str
    seed: int
    poison: str | None  # "sentinel" | "nan" | None
    inputs: list[Any]
    ref_outputs: tuple[torch.Tensor, ...]  # a correctness.References where run_shape kept a float64 truth
    ref_mutated: list[bool]
    ref_container: str = "tensor"  # "tensor", "tuple" or "list": what forward returned
    relation: Any = None  # a metamorphic.Relation when this case is a transformed copy of an earlier case


@dataclasses.dataclass
class Shape:
    name: str
    sizes: dict[str, int]
    init_args: list[Any]
    init_seed: int
    state_dict: dict[str, torch.Tensor]
    cases: list[Case]


class _OpNames(TorchDispatchMode):
    @classmethod
    def _should_skip_dynamo(cls) -> bool:  # see verify/worker/recorder.py: avoids a 1.2 s import of torch._dynamo
        return False

    def __init__(self) -> None:
        super().__init__()
        self.names: set[str] = set()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):  # noqa: ANN001
        self.names.add(str(func.overloadpacket))
        return func(*args, **(kwargs or {}))


def _seed() -> int:
    return secrets.randbits(31)  # fresh per run: the candidate cannot know the inputs in advance


class Seeds:
    """Where a verification's seeds come from: fresh secret ones, or (replay) the ones a verdict recorded in
    `extra["seeds"]` (shape -> what -> seed: "init" for the parameters, one per distribution, "timing<i>"). Every
    seed handed out is kept in `used`, which the verdict records once the run is over. A replay draws exactly the
    same parameters and inputs on the same plan (same task, config and device), so its verdict is the same up to
    the candidate's own nondeterminism."""

    def __init__(self, recorded: Mapping[str, Mapping[str, int]] | None = None) -> None:
        self.recorded = recorded
        self.used: dict[str, dict[str, int]] = {}

    def __call__(self, shape: str, what: str) -> int:
        if self.recorded is None:
            seed = _seed()
        else:
            try:
                seed = int(self.recorded[shape][what])
            except (KeyError, TypeError, ValueError):
                raise ConfigError(
                    f"replay: the recorded seeds have no {shape}/{what}; replay a verdict of the same task with the "
                    "same configuration (its extra['seeds'], from `tritonrl verify --json`)."
                ) from None
        self.used.setdefault(shape, {})[what] = seed
        return seed


def _clone(inputs: list[Any]) -> list[Any]:
    return [x.clone() if isinstance(x, torch.Tensor) else x for x in inputs]


def _moved(xs: list[Any], device: str) -> list[Any]:
    return [x.to(device) if isinstance(x, torch.Tensor) else x for x in xs]


def _same(a: Any, b: Any) -> bool:
    """Bitwise equal (NaN equals NaN), compared on `b`'s device (the GPU's comparison of a KernelBench-size input
    costs microseconds; the host's, milliseconds)."""
    if not isinstance(a, torch.Tensor):
        return True
    a = a.to(b.device)
    return bool(((a == b) | (torch.isnan(a) & torch.isnan(b))).all()) if a.is_floating_point() else torch.equal(a, b)


@dataclasses.dataclass
class DrawnShape:
    """One shape's seeds, parameters and inputs, drawn on the CPU (`draw_shape`) before the GPU is held: drawing is
    host work (seconds for KernelBench-size inputs), and work under the GPU hold delays every queued timing."""

    prog: ReferenceProgram
    name: str
    sizes: dict[str, int]
    init_seed: int
    init_args: list[Any]
    model: torch.nn.Module  # on the CPU until `run_shape` moves it
    state_dict: dict[str, torch.Tensor]
    draws: list[tuple[str, int, list[Any]]]  # (distribution, seed, inputs on the CPU)


def draw_shape(
    task: Task,
    name: str,
    sizes: dict[str, int],
    cfg: VerifyConfig,
    distributions: tuple[str, ...] | None = None,
    seeds: Seeds | None = None,
) -> DrawnShape:
    """Seeds, the reference model's parameters and every case's inputs for one shape (CPU only), one case per
    distribution (default: `cfg.distributions`)."""
    prog = ReferenceProgram(task, sizes)
    seeds = seeds or Seeds()
    init_seed = seeds(name, "init")
    model = prog.make_model(init_seed)
    state = {k: v.detach().clone() for k, v in model.state_dict().items()}
    draws = []
    constants = task_constants(task.source)
    chosen = distributions or cfg.distributions
    case_seeds = [seeds(name, distribution) for distribution in chosen]
    natives = [prog.inputs(seed) for seed in case_seeds]
    # one more native draw where a single case would leave nothing to compare (costs one get_inputs call)
    fixed = fixed_inputs(natives if len(natives) > 1 else [*natives, prog.inputs(seeds(name, "probe"))])
    for distribution, seed, native in zip(chosen, case_seeds, natives, strict=True):
        inputs = distribute(native, distribution, seed, constants=constants, fixed=fixed)
        exact = [a is not b for a, b in zip(native, inputs, strict=True) if not _floating(a)]
        # Redrawn integers may leave the reference's domain (offsets that must rise): keep them only where the
        # reference still runs on them, checked on the host at CPU sizes (on cuda the check would cost seconds).
        if any(exact) and (cfg.is_cuda or not _reference_runs(prog, model, inputs)):
            inputs = distribute(native, distribution, seed, integers=False, constants=constants, fixed=fixed)
        draws.append((distribution, seed, inputs))
    return DrawnShape(prog, name, dict(sizes), init_seed, prog.get_init_inputs(), model, state, draws)


def _floating(x: Any) -> bool:
    return not isinstance(x, torch.Tensor) or x.is_floating_point()


def _reference_runs(prog: ReferenceProgram, model: torch.nn.Module, inputs: list[Any]) -> bool:
    """The reference runs on `inputs` (on a copy of the model: forward may update buffers)."""
    try:
        with torch.no_grad(), torch.random.fork_rng(devices=[]):
            prog.run(copy.deepcopy(model), _clone(inputs))
    except TaskError:
        return False
    return True


def run_shape(drawn: DrawnShape, cfg: VerifyConfig) -> tuple[Shape, list[str], set[str]]:
    """The reference's outputs for a drawn shape, on `cfg.device` (the GPU work of case building). Returns the
    shape, notes about dropped cases, and the aten ops the reference ran.

    Each case also gets the float64 truth of its floating outputs where the own-precision reference is unreliable
    (`correctness.truth_for`, the tolerance rule of docs/verification.md): a copy of the model with `.double()` runs
    on the floating inputs cast to float64, on the same device; both precisions run once more on inputs nudged by
    one ulp, for a second sample of the own-precision error. Three extra reference forwards per case; where the
    float64 forward fails (an op without a float64 kernel), the shape keeps its own-precision references and a note.
    """
    prog, name = drawn.prog, drawn.name
    model64 = copy.deepcopy(drawn.model)  # same parameters, cast and moved on first use
    model = drawn.model.to(cfg.device)
    cases, notes, ops = [], [], set()

    def with_truth(inputs: list[Any], outputs: tuple[torch.Tensor, ...], seed: int, tf32: bool) -> References:
        nonlocal model64
        if model64 is None or not any(o.is_floating_point() and o.dtype != torch.float64 for o in outputs):
            return References(outputs)
        largest = max(x.numel() for x in [*inputs, *outputs] if isinstance(x, torch.Tensor))
        try:
            if largest > TRUTH_MAX_NUMEL:
                raise ValueError(f"a tensor of {largest} elements is over TRUTH_MAX_NUMEL")
            model64 = model64.double().to(cfg.device)
            xs = _moved(inputs, cfg.device)  # everything below runs on the reference's device
            nudged = nudged_inputs(xs, seed ^ 0x0DD0)
            with torch.no_grad():  # only the truths kept come back to the host
                hi, own2, hi2 = (prog.run(m, _clone(ys)) for m, ys in ((model64, float64_inputs(xs)), (model, nudged),
                                                                       (model64, float64_inputs(nudged))))  # fmt: skip
            if not len(hi) == len(own2) == len(hi2) == len(outputs):
                return References(outputs)
            own = _moved(list(outputs), cfg.device)
            truth = [truth_for(*four, tf32=tf32) for four in zip(own, hi, own2, hi2, strict=True)]
            truth = [t and dataclasses.replace(t, values=t.values.cpu(), noise=t.noise.cpu()) for t in truth]
        except Exception as e:  # the truth is optional evidence: without it the own-precision judgement stands
            notes.append(f"{name}: no float64 reference, judged against the task's own precision only ({e})")
            model64 = None
            return References(outputs)
        return References(outputs, tuple(truth))

    for distribution, seed, inputs in drawn.draws:
        ref_inputs = _moved(_clone(inputs), cfg.device)
        recorder = _OpNames()
        with torch.no_grad(), recorder if cfg.use_tf32_tolerance else contextlib.nullcontext():
            outputs = prog.run(model, ref_inputs)
        container = prog.last_container
        ops |= recorder.names
        outputs = tuple(o.detach().to("cpu") for o in outputs)
        refs = with_truth(inputs, outputs, seed, cfg.use_tf32_tolerance and bool(recorder.names & MATMUL_OPS))
        # dropped: nothing finite that the output dtype can hold, in either precision (fp16 a @ b at randn + 100)
        if distribution != "native" and all(
            o.is_floating_point()
            and not bool(torch.isfinite(o).any())
            and (t is None or not bool(torch.isfinite(t.values.to(o.dtype)).any()))
            for o, t in zip(refs, refs.truth, strict=True)
        ):
            notes.append(f"{name}/{distribution}: dropped, the reference output is entirely NaN/Inf")
            continue
        mutated = [not _same(a, b) for a, b in zip(inputs, ref_inputs, strict=True)]
        cases.append(Case(f"{name}/{distribution}", distribution, seed, None, inputs, refs, mutated, container))
    if name == "base":
        cases.sort(key=lambda c: not ghost_informative(c))  # stable: the first informative case leads
    if cfg.metamorphic:  # imported here: metamorphic builds on this module's Case
        from tritonrl.verify.metamorphic import derive_cases, reference_runner

        derived, derived_notes = derive_cases(name, cases, reference_runner(prog, model, cfg.device))
        for case in derived:
            tf32 = cfg.use_tf32_tolerance and bool(ops & MATMUL_OPS)
            case.ref_outputs = with_truth(case.inputs, case.ref_outputs, case.seed ^ 0x0DD1, tf32)
        cases += derived
        notes += derived_notes
    for i, case in enumerate(cases):  # alternate poison so NaN- and sentinel-filled runs both occur per shape
        case.poison = ("sentinel" if i % 2 == 0 else "nan") if cfg.poison_outputs else None
    return Shape(name, drawn.sizes, drawn.init_args, drawn.init_seed, drawn.state_dict, cases), notes, ops


def ghost_informative(case: Case) -> bool:
    """Ghost Replay on this case can tell whether kernels matter: no reference output equals an input.

    A correct kernel may legitimately start from a copy of its input (`out = x.clone(); kernel(out)`); with the
    kernel skipped its output is that copy, which equals the true output whenever f(x) == x (relu on [0, 1) inputs).
    """
    tensors = [x for x in case.inputs if isinstance(x, torch.Tensor)]
    for out in case.ref_outputs:
        for x in tensors:
            if x.shape == out.shape and x.dtype == out.dtype and _same(x, out):
                return False
    return True


def draw_cases(task: Task, plan: ShapePlan, cfg: VerifyConfig, seeds: Seeds | None = None) -> list[DrawnShape]:
    """Every shape's seeds, parameters and inputs (CPU only: call it before holding the GPU)."""
    named = [("base", plan.base)] + [(f"variant{i + 1}", v) for i, v in enumerate(plan.variants[: cfg.n_variants])]
    return [draw_shape(task, name, sizes, cfg, shape_distributions(i, cfg.distributions), seeds)
            for i, (name, sizes) in enumerate(named)]  # fmt: skip


def run_cases(drawn: list[DrawnShape], plan: ShapePlan, cfg: VerifyConfig) -> tuple[list[Shape], list[str], bool]:
    """The reference outputs of every drawn case (GPU work). Returns (shapes, notes, reference_uses_matmul).

    A variant at which the reference itself fails on `cfg.device` is dropped with a note: no candidate can be compared
    there, and the sizes are the planner's choice, not the task's. (Seen on an H100: a CUDA plan, probed on the meta
    device only, gave a 3x3 conv2d a 2x15 input, which the GPU refused, and the whole task was lost.) The base shape
    is the task's own: a reference failing there is a task error, raised as before.
    """
    shapes, notes, ops = [], list(plan.notes), set()
    for one in drawn:
        try:
            shape, shape_notes, shape_ops = run_shape(one, cfg)
        except TaskError as e:
            if one.name == "base":
                raise
            log.warning("variant %s dropped, the reference fails on %s: %s", one.name, cfg.device, e)
            notes.append(f"{one.name}: dropped, the reference fails at {one.sizes} on {cfg.device} ({e})")
            continue
        shapes.append(shape)
        notes += shape_notes
        ops |= shape_ops
    return shapes, notes, bool(ops & MATMUL_OPS)


def build_cases(task: Task, plan: ShapePlan, cfg: VerifyConfig) -> tuple[list[Shape], list[str], bool]:
    """All shapes and cases, drawn and run in one go (the funnel does the two halves apart)."""
    return run_cases(draw_cases(task, plan, cfg), plan, cfg)


def request_shapes(shapes: list[Shape]) -> tuple[ShapeRequest, ...]:
    """What the worker receives: never the reference outputs. The output size bound lets the worker refuse a flood
    of outputs before it reaches the parent."""
    return tuple(
        ShapeRequest(
            name=s.name,
            init_args=tuple(s.init_args),
            init_seed=s.init_seed,
            state_dict=s.state_dict,
            cases=tuple(
                CaseRequest(c.name, tuple(c.inputs), c.poison, 2 * sum(o.numel() for o in c.ref_outputs) + 1024)
                for c in s.cases
            ),
        )
        for s in shapes
    )
