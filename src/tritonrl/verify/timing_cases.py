"""The timing stage's cases: fresh input sets of the base shape, drawn by seed on the CPU before the GPU is held
(`draw_timing`), their reference outputs and the work of one set on the device (`run_timing`), and the worker's part
of them (`timing_request`: seeds and how to rebuild the reference, never the outputs). Correctness cases are
`cases.py`; these never overlap them.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
from typing import Any

import torch

from tritonrl.tasks.reference import ReferenceProgram
from tritonrl.tasks.schema import Task
from tritonrl.verify.cases import DrawnShape, Seeds, Shape, _moved
from tritonrl.verify.config import VerifyConfig
from tritonrl.verify.messages import TimingRequest
from tritonrl.verify.timing_stats import Work


@dataclasses.dataclass
class TimingSets:
    """Fresh inputs for the timing stage (never seen in correctness), by seed, with their reference outputs and
    the work the reference does on one set (for the speed-of-light floor)."""

    seeds: list[int]
    ref_outputs: list[tuple[torch.Tensor, ...]]
    work: Work  # FLOPs by torch's FlopCounterMode (matmul/conv/attention; elementwise ops count 0), bytes moved


@dataclasses.dataclass
class DrawnTiming:
    """The timing stage's seeds and inputs, drawn on the CPU before the GPU is held (see `DrawnShape`)."""

    prog: ReferenceProgram
    model: torch.nn.Module  # the base shape's parameters, on the CPU until `run_timing` moves it
    draws: list[tuple[int, list[Any]]]  # (seed, native inputs on the CPU)


def draw_timing(base: DrawnShape, cfg: VerifyConfig, seeds: Seeds | None = None) -> DrawnTiming:
    """Native input sets of the base shape under fresh seeds: `cfg.timing_input_sets` rotate through the timed
    calls, and `timing_input_sets - 1` more (one per input slot) feed the check round. The worker draws the same
    inputs from the same seeds (`worker_timing.prepare`), so only seeds travel and outputs can be checked here.
    Call it before `run_shape(base)`: the model is a copy of the base's, still on the CPU, with exactly the
    parameters the candidate got."""
    prog = base.prog
    model = copy.deepcopy(base.model)
    draws = []
    seeds = seeds or Seeds()
    for i in range(cfg.timing_input_sets + timing_slots(cfg)):
        seed = seeds("timing", str(i))
        draws.append((seed, prog.inputs(seed)))
    return DrawnTiming(prog, model, draws)


def run_timing(drawn: DrawnTiming, cfg: VerifyConfig) -> TimingSets:
    """The reference outputs of every timing set on `cfg.device`, and the work of one set."""
    from torch.utils.flop_counter import FlopCounterMode

    model = drawn.model.to(cfg.device)
    params = sum(t.numel() * t.element_size() for t in model.state_dict().values())
    seeds, outputs, flops, n_in, n_out = [], [], 0, 0, 0
    for i, (seed, cpu_inputs) in enumerate(drawn.draws):
        inputs = _moved(cpu_inputs, cfg.device)
        counter = FlopCounterMode(display=False) if i == 0 else contextlib.nullcontext()
        with torch.no_grad(), counter:
            outs = drawn.prog.run(model, inputs)
        if i == 0:
            flops = int(counter.get_total_flops())
            n_in = sum(x.numel() * x.element_size() for x in inputs if isinstance(x, torch.Tensor))
            n_out = sum(o.numel() * o.element_size() for o in outs)
        seeds.append(seed)
        outputs.append(tuple(o.detach().to("cpu") for o in outs))
    return TimingSets(seeds, outputs, Work(flops, bytes_read=n_in + params, bytes_written=n_out, set_bytes=n_in))


def timing_slots(cfg: VerifyConfig) -> int:
    return max(1, cfg.timing_input_sets - 1)


def timing_request(task: Task, shape: Shape, sets: TimingSets, params: dict[str, Any], n_slots: int) -> TimingRequest:
    """The worker's part of the timing stage: how to rebuild the reference and the inputs, never the outputs."""
    return TimingRequest(
        task_source=task.source,
        task_id=task.task_id,
        roles={c.name: c.role.value for c in task.constants},
        sizes=dict(shape.sizes),
        init_seed=shape.init_seed,
        seeds=tuple(sets.seeds),
        n_slots=n_slots,
        params=params,
    )
