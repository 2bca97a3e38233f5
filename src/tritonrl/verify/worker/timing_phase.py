"""The worker's timing phase (runs in the sandboxed worker, after every correctness case was sent).

The reference model and the timing inputs are built before any candidate code is imported (`prepare`), from the
task source the parent sends, under the seeds the parent chose: the parent computed the reference outputs for the
same seeds, so it can check the outputs of timed calls without trusting this process. Everything measured here goes
back raw; the parent computes statistics and decides (`timing_stats.py`).
"""

from __future__ import annotations

import dataclasses
from typing import Any

from tritonrl.verify.messages import TimingFrame, TimingParams, TimingRequest
from tritonrl.verify.worker.timing import Hooks, measure_pair


@dataclasses.dataclass
class TimingContext:
    reference: Any  # the task's Model at the base sizes, parameters as in the parent (on the GPU after `to_gpu`)
    values: list[list[Any]]  # value set v (the parent's seed v), on the GPU after `to_gpu`; never passed to a model
    n_slots: int  # input slots per side; values[:n_slots + 1] rotate while timing, the rest are the check round's
    params: TimingParams


def prepare(torch: Any, spec: TimingRequest, state_dict: dict[str, Any]) -> TimingContext:
    """Build the reference model and the value sets on the host (trusted: no candidate code has run yet);
    `to_gpu` moves them, in a GPU step."""
    from tritonrl.tasks.loader import load_task
    from tritonrl.tasks.reference import ReferenceProgram

    task = load_task(spec.task_source, task_id=spec.task_id, roles=spec.roles)
    prog = ReferenceProgram(task, spec.sizes)
    reference = prog.make_model(spec.init_seed)
    reference.load_state_dict(state_dict)  # the parameters the parent's reference and the candidate have
    # the parent drew these inputs the same way (`timing_cases.draw_timing`)
    values = [list(prog.inputs(seed)) for seed in spec.seeds]
    return TimingContext(reference.eval(), values, spec.n_slots, TimingParams.from_dict(spec.params))


def to_gpu(torch: Any, ctx: TimingContext) -> None:
    """The reference model and the value sets onto the GPU (the worker's first GPU step)."""
    ctx.reference = ctx.reference.to("cuda")
    ctx.values = [[x.to("cuda") if isinstance(x, torch.Tensor) else x for x in inputs] for inputs in ctx.values]


class _Slots:
    """Input slots of both sides and which value set each holds; `rotate` copies value sets into slots."""

    def __init__(self, torch: Any, ctx: TimingContext) -> None:
        self.torch = torch
        m = ctx.n_slots
        self.values = ctx.values[: m + 1]  # rotated while timing: one more than slots, so contents change per use
        self.fresh = ctx.values[m + 1 :]  # the check round's: never in a slot before it
        # separate buffers per side: a side that writes its inputs cannot change the other's work
        self.slots = [[self._copy(ctx.values[s]) for s in range(m)] for _ in (0, 1)]
        self.holds = [list(range(m)), list(range(m))]

    def _copy(self, value_set: list[Any]) -> list[Any]:
        return [x.clone() if isinstance(x, self.torch.Tensor) else x for x in value_set]

    def put(self, side: int, slot: int, v: int) -> None:
        if self.holds[side][slot] == v:
            return
        source = self.values[v] if v < len(self.values) else self.fresh[v - len(self.values)]
        for dst, src in zip(self.slots[side][slot], source, strict=True):
            if isinstance(dst, self.torch.Tensor):
                dst.copy_(src)
        self.holds[side][slot] = v

    def rotate(self, side: int, i: int, replay: bool) -> None:
        n, m = len(self.values), len(self.slots[side])
        if i < 0:  # the check round: value set n + slot is fresh
            for slot in range(m):
                self.put(side, slot, n + slot)
            return
        if n <= m:
            return
        if replay:  # a graph replay uses every slot: shift all of them
            for slot in range(m):
                self.put(side, slot, (i * m + slot) % n)
        else:  # call i uses slot i % m; value i % n differs from what that slot held m calls ago
            self.put(side, i % m, i % n)


def run_timing(worker: Any, model: Any, ctx: TimingContext) -> TimingFrame:
    """Time reference vs candidate; return the raw timing frame (samples, cross-check, launch facts, outputs). The
    caller adds the integrity findings (`tamper`, `threads`) taken after it."""
    torch = worker.torch
    log = worker.log
    slots = _Slots(torch, ctx)
    last: dict[int, list[Any]] = {}  # the candidate's outputs of its latest call on each slot
    calls = {"n": 0, "without_launch": 0}
    # The reference allocates from its own pool: a candidate's torch.empty can never be handed a block that just
    # held the reference's result for the same inputs (the "uninitialised memory" cheat). Graph captures have
    # private pools already.
    ref_pool = torch.cuda.MemPool()

    def ref_fn(slot: int) -> Any:
        if torch.cuda.is_current_stream_capturing():
            return ctx.reference(*slots.slots[0][slot])
        with torch.cuda.use_mem_pool(ref_pool):
            return ctx.reference(*slots.slots[0][slot])

    def cand_fn(slot: int) -> Any:
        if len(log.launches) > 10_000:  # keep the launch log bounded over hundreds of reps
            log.launches.clear()
        before = len(log.launches)
        out = model(*slots.slots[1][slot])
        calls["n"] += 1
        calls["without_launch"] += not any(mine for _, mine in log.launches[before:])
        last[slot] = list(out) if type(out) in (tuple, list) else [out]
        return out

    default_stream = torch.cuda.current_stream().cuda_stream

    def on_capture(side: int) -> None:  # Triton launches inside a capture go to the capture stream: expect it there
        log.expected_stream = default_stream if side < 0 else torch.cuda.current_stream().cuda_stream

    snapshot: dict[int, tuple[int, list[Any]]] = {}

    def after_timed() -> None:  # outputs of the last timed calls, before the cross-check batches overwrite them
        torch.cuda.synchronize()
        for slot, outs in last.items():
            held = slots.holds[1][slot]
            snapshot[slot] = (held, [o.detach().clone() if type(o) is torch.Tensor else o for o in outs])

    hooks = Hooks(prep=slots.rotate, on_capture=on_capture, after_timed=after_timed)
    with torch.no_grad():
        log.expected_stream = default_stream
        raw = measure_pair(torch, (ref_fn, cand_fn), ctx.n_slots, ctx.params, hooks)
        log.expected_stream = default_stream
    torch.cuda.synchronize()
    outputs = []
    for _slot, (v, outs) in sorted(snapshot.items()):
        ok = all(type(o) is torch.Tensor for o in outs)  # values are never taken from a non-tensor
        outputs.append((v, tuple(o.to("cpu").contiguous() for o in outs) if ok else None))
    return TimingFrame(**raw, cand_calls=calls, outputs=tuple(outputs))
