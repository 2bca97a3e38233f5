"""GPU steps (`Request.gpu_steps`): the worker asks for the GPU before each step that may use it and frees it after,
so a timing waits for one step of another candidate, not for its whole correctness phase.

Run on the CPU with a real worker and a real `GpuLock` (on a temporary lock directory) given to the funnel's hold, as
on cuda: the protocol and the lock are the same; only the device work differs (the GPU tests run it on cuda).
"""

from __future__ import annotations

import dataclasses
import threading
import time
from pathlib import Path

import pytest

import tritonrl.verify.funnel as funnel
from tritonrl.tasks.loader import builtin_task
from tritonrl.verify.config import VerifyConfig
from tritonrl.verify.gpu_lock import GpuLock
from tritonrl.verify.judge import Judge

CPU = VerifyConfig(device="cpu")


@pytest.fixture
def stepped(hold_log, monkeypatch):
    """The funnel as on cuda: its hold takes a real lock and the worker is asked to step. Yields the hold's
    transitions as they are logged."""
    real_init, real_request = funnel._GpuHold.__init__, funnel._request

    def init(self, cfg):  # noqa: ANN001, ANN202
        real_init(self, cfg)
        self.lock = GpuLock("cuda")

    monkeypatch.setattr(funnel._GpuHold, "__init__", init)
    stepping = lambda *a, **kw: dataclasses.replace(real_request(*a, **kw), gpu_steps=True)  # noqa: E731
    monkeypatch.setattr(funnel, "_request", stepping)
    return hold_log


def test_every_step_runs_under_a_shared_hold_and_frees_it(stepped, monkeypatch):
    relu = builtin_task("relu")
    fed: list[tuple[str, str | None]] = []
    real_feed = Judge.feed

    def feed(self, frame):  # noqa: ANN001, ANN202
        fed.append((frame.TAG, stepped[-1] if stepped else None))
        return real_feed(self, frame)

    monkeypatch.setattr(Judge, "feed", feed)
    verdict = funnel.verify(relu, Path(relu.solution_path).read_text(), CPU)
    assert verdict.passed, verdict.message
    # what candidate code produced arrived while the GPU was held for its step
    produced = [held for tag, held in fed if tag in ("loaded", "case")]
    assert produced and all(held == "shared" for held in produced)
    # one hold for the reference, then one per worker step (load, a construct per shape, every case run), each freed
    cases = sum(1 for tag, _ in fed if tag == "case")
    steps = 1 + len(verdict.extra["plan"]["variants"]) + 1 + cases
    assert stepped.count("shared") == 1 + steps
    assert stepped.count("released") == 1 + steps and stepped[-1] == "released"


def test_a_timing_gets_the_gpu_between_two_steps_of_another_candidate(stepped):
    relu = builtin_task("relu")
    lock, held_s = GpuLock("cuda"), 0.5
    taken: list[float] = []

    def timing() -> None:  # another candidate's timing, asking once this one's correctness is under way
        deadline = time.monotonic() + 60
        while stepped.count("shared") < 3 and time.monotonic() < deadline:  # the reference's, the load step's
            time.sleep(0.005)
        with lock.exclusive():
            taken.append(time.monotonic())
            time.sleep(held_s)

    thread = threading.Thread(target=timing)
    thread.start()
    verdict = funnel.verify(relu, Path(relu.solution_path).read_text(), CPU)
    ended = time.monotonic()
    thread.join()
    assert verdict.passed, verdict.message
    # granted before this verification ended, and its next step waited for it (the candidate's clock paused)
    assert taken and taken[0] < ended - held_s
    assert verdict.stage_times_ms["gpu_wait_steps"] >= 0.8 * held_s * 1e3
