"""GPU timing loops: raw per-rep device times of two callables, measured side by side. Runs in a process that has a
GPU; it never decides anything: the parent turns the raw samples into statistics and verdicts (`timing_stats.py`).

Protocol (numbers from notes/verification.md section 8, measured on an H100):
- Warm-up by time (`warmup_ms`), never by a count the callee could predict.
- Event mode: per rep, the L2 is flushed by zeroing a buffer larger than the L2 (256 MiB), then start event, call,
  end event on the current stream. No host sync inside a rep (a `synchronize()` adds tens of microseconds and biased
  a 4 us kernel by ~30%). Blocks of reps alternate between the two sides (ABAB...), so clock drift hits both.
- Inputs: a few input slots (fixed addresses) and one more value set than slots; before every timed call (every
  graph replay) the next value set is copied into the slot about to be used, outside the timed region. A result
  cached by address (data_ptr, id, _version) is therefore stale on the next use of a slot, and the parent checks
  the outputs of the last timed call on every slot against the reference for the values that were in it.
- Reps are added until the relative standard error of both medians is under `target_rel_err`, within caps.
- Launch-bound work (under `graph_below_us` per call) is timed as CUDA-graph replays of `graph_calls` unrolled calls:
  launch gaps vanish and ~4 us kernels resolve (every eager protocol showed ~8% CV there).
- After timing, device-synchronised wall-clock batches per side give the parent a cross-check: work that escaped the
  events (side streams, deferred launches) still has to finish before `synchronize()` returns.
"""

from __future__ import annotations

import dataclasses
import math
import statistics
import time
from collections.abc import Callable
from typing import Any

from tritonrl.verify.messages import TimingParams

Fn = Callable[[int], Any]  # call on input slot i, return the outputs


def rel_err_of_median(samples: list[float]) -> float:
    """Standard error of the median over the median, from the MAD (robust to the odd slow rep)."""
    if len(samples) < 3:
        return math.inf
    med = statistics.median(samples)
    mad = statistics.median(abs(x - med) for x in samples) * 1.4826
    return 1.2533 * mad / math.sqrt(len(samples)) / med if med > 0 else math.inf


@dataclasses.dataclass
class Hooks:
    """What the caller does around the loop (all outside the timed regions).

    prep(side, i, replay): before call i (event mode) or replay i (graph mode) of a side: the worker rotates input
        values through the input slots here, so a result cached by address is stale on the next use of that slot.
        i = -1: load the check round's fresh values into every slot.
    on_capture(side): inside a graph capture of a side; on_capture(-1) after it.
    after_timed(): after the check round, before the wall-clock batches.
    """

    prep: Callable[[int, int, bool], None] = lambda side, i, replay: None
    on_capture: Callable[[int], None] = lambda side: None
    after_timed: Callable[[], None] = lambda: None


class Timer:
    """Times two sides (0 = reference, 1 = candidate) with the protocol above. CUDA only. `fns[side](slot)` calls a
    side on input slot `slot` (of `n_slots`)."""

    def __init__(self, torch: Any, params: TimingParams, fns: tuple[Fn, Fn], n_slots: int, hooks: Hooks) -> None:
        self.torch = torch
        self.p = params
        self.fns = fns
        self.n_slots = n_slots
        self.hooks = hooks
        self.flush_buf = torch.empty(params.flush_mb << 18, dtype=torch.int32, device="cuda")

    # --- estimate --------------------------------------------------------------------------------------------
    def warm_up(self, side: int) -> tuple[float, int]:
        """Call until warmup_ms of wall time passed (at least 3 calls); return (us per call, calls made)."""
        torch = self.torch
        torch.cuda.synchronize()
        t0, calls = time.perf_counter(), 0
        while calls < 3 or (time.perf_counter() - t0) * 1e3 < self.p.warmup_ms:
            self.fns[side](calls % self.n_slots)
            calls += 1
            if calls % 8 == 0:
                torch.cuda.synchronize()
        torch.cuda.synchronize()
        return (time.perf_counter() - t0) * 1e6 / calls, calls

    # --- event mode --------------------------------------------------------------------------------------------
    def event_block(self, side: int, start: int, n: int) -> list[float]:
        torch = self.torch
        starts = [torch.cuda.Event(enable_timing=True) for _ in range(n)]
        ends = [torch.cuda.Event(enable_timing=True) for _ in range(n)]
        for i in range(n):
            self.hooks.prep(side, start + i, False)
            self.flush_buf.zero_()
            starts[i].record()
            self.fns[side]((start + i) % self.n_slots)
            ends[i].record()
        ends[-1].synchronize()
        return [s.elapsed_time(e) * 1e3 for s, e in zip(starts, ends, strict=True)]

    # --- graph mode --------------------------------------------------------------------------------------------
    def capture(self, side: int, calls: int) -> Any:
        """A CUDA graph of `calls` unrolled calls cycling through the input slots (warm L2: no flush inside)."""
        torch = self.torch
        graph = torch.cuda.CUDAGraph()
        torch.cuda.synchronize()
        try:
            with torch.cuda.graph(graph):
                self.hooks.on_capture(side)
                for i in range(calls):
                    self.fns[side](i % self.n_slots)
        finally:
            self.hooks.on_capture(-1)
        torch.cuda.synchronize()
        return graph

    def graph_block(self, side: int, graph: Any, calls: int, start: int, n: int) -> list[float]:
        torch = self.torch
        starts = [torch.cuda.Event(enable_timing=True) for _ in range(n)]
        ends = [torch.cuda.Event(enable_timing=True) for _ in range(n)]
        for i in range(n):
            self.hooks.prep(side, start + i, True)
            starts[i].record()
            graph.replay()
            ends[i].record()
        ends[-1].synchronize()
        return [s.elapsed_time(e) * 1e3 / calls for s, e in zip(starts, ends, strict=True)]

    # --- the interleaved loop ----------------------------------------------------------------------------------
    def interleave(self, run_block: Callable[[int, int, int], list[float]]) -> tuple[list[float], list[float], int]:
        """Alternate blocks of reps between side 0 and side 1 until both medians are precise enough or a cap hits.
        `run_block(side, start, n)` returns n per-call times (us). Returns (side0, side1, rounds)."""
        samples: tuple[list[float], list[float]] = ([], [])
        t0, rounds, p = time.perf_counter(), 0, self.p
        while True:
            for side in (0, 1) if rounds % 2 == 0 else (1, 0):  # alternate who goes first, too
                samples[side].extend(run_block(side, len(samples[side]), p.block))
            rounds += 1
            n = len(samples[0])
            precise = all(rel_err_of_median(s) <= p.target_rel_err for s in samples)
            if n >= p.max_reps or (n >= p.min_reps and (precise or time.perf_counter() - t0 > p.budget_s)):
                return samples[0], samples[1], rounds

    def wall_batch(self, side: int, per_call_us: float) -> dict[str, float]:
        """Host time to enqueue a batch of calls and wall time until the whole device is idle again."""
        torch = self.torch
        n = int(min(1000, max(10, self.p.wall_batch_ms * 1e3 / max(per_call_us, 1.0))))
        torch.cuda.synchronize()
        t0 = time.perf_counter()
        for i in range(n):
            self.fns[side](i % self.n_slots)
        t1 = time.perf_counter()
        torch.cuda.synchronize()  # the whole device: side-stream work is waited for here
        t2 = time.perf_counter()
        return {"n": n, "host_us": (t1 - t0) * 1e6, "wall_us": (t2 - t0) * 1e6}


def measure_pair(
    torch: Any, fns: tuple[Fn, Fn], n_slots: int, params: TimingParams, hooks: Hooks | None = None
) -> dict[str, Any]:
    """Time reference (fns[0]) and candidate (fns[1]) side by side. Returns raw samples and facts, no judgement."""
    hooks = hooks or Hooks()
    timer = Timer(torch, params, fns, n_slots, hooks)
    warm = [timer.warm_up(side) for side in (0, 1)]
    est = [statistics.median(timer.event_block(side, 0, 5)) for side in (0, 1)]
    mode, calls, note = "events", 1, ""
    if min(est) < params.graph_below_us:
        calls = int(min(200, max(10, params.graph_target_us / max(max(est), 1.0))))
        try:
            graphs = [timer.capture(side, calls) for side in (0, 1)]
            mode = "cuda_graph"
        except Exception as exc:  # noqa: BLE001 - capture refuses host syncs etc.; fall back to events
            torch.cuda.synchronize()
            note = f"CUDA-graph capture failed ({type(exc).__name__}); timed with events"
            calls = 1
    if mode == "cuda_graph":
        for g in graphs:  # one warm replay each: the first replay uploads the graph
            g.replay()
        torch.cuda.synchronize()
        ref, cand, rounds = timer.interleave(lambda side, start, n: timer.graph_block(side, graphs[side], calls,
                                                                                      start, n))  # fmt: skip
    else:
        ref, cand, rounds = timer.interleave(timer.event_block)
    # The check round: every candidate slot gets a value set never loaded during timing (`prep(1, -1, ...)`), then
    # one more call per slot (or one more replay). The candidate cannot tell it from a timed call; a result cached
    # or left over from an earlier call cannot match values it has never seen.
    hooks.prep(1, -1, mode == "cuda_graph")
    if mode == "cuda_graph":
        graphs[1].replay()
    else:
        for slot in range(n_slots):
            fns[1](slot)
    hooks.after_timed()
    # Batches alternate sides, and the parent judges each side's best: work that escapes the events slows every
    # batch, while a one-off stall (another process starting its CUDA context, this host thread descheduled on a
    # loaded machine) slows one. A single batch once read an honest matmul 1.6x slow in a 16-thread batch on the
    # H100 (docs/benchmarks.md 4b).
    medians = [statistics.median(ref), statistics.median(cand)]
    wall: list[list[dict[str, float]]] = [[], []]
    for _ in range(max(1, params.wall_repeats)):
        for side in (0, 1):
            wall[side].append(timer.wall_batch(side, medians[side]))
    props = torch.cuda.get_device_properties(torch.cuda.current_device())
    return {
        "mode": mode,
        "graph_calls": calls,
        "note": note,
        "ref_us": ref,
        "cand_us": cand,
        "rounds": rounds,
        "warmup_calls": [w[1] for w in warm],
        "host_us_per_call": [w[0] for w in warm],
        "estimate_us": est,
        "wall": wall,
        "gpu": torch.cuda.get_device_name(),
        "l2_bytes": int(getattr(props, "L2_cache_size", 0)),
        "clock_mhz": _clock_mhz(torch),
        "params": dataclasses.asdict(params),
    }


def _clock_mhz(torch: Any) -> int | None:
    """The SM clock seen right after timing (through NVML when torch can reach it)."""
    try:
        return int(torch.cuda.clock_rate())
    except Exception:  # noqa: BLE001 - pynvml missing or not permitted: a fact we simply do not have
        return None
