"""`funnel._judge_stream` and `_GpuHold`: when the parent takes the GPU exclusively and how long it keeps it.

The stream is driven by stand-ins for the worker process and the judge (the real ones need a candidate run; the
GPU tests cover them end to end); the hold is the real `_GpuHold` over a real `GpuLock`, whose transitions are read
from the debug records it logs."""

from __future__ import annotations

from tritonrl.verify.config import VerifyConfig
from tritonrl.verify.funnel import _Clock, _GpuHold, _judge_stream
from tritonrl.verify.messages import AwaitTiming, CaseFrame, Frame, Ready, TimingFrame, TimingGo

TIMING = TimingFrame(
    mode="events", graph_calls=1, note="", ref_us=(1.0,), cand_us=(1.0,), rounds=1, warmup_calls=(3, 3),
    host_us_per_call=(1.0, 1.0), estimate_us=(1.0, 1.0), wall=((), ()), gpu="test", l2_bytes=0, clock_mhz=None,
    params={}, cand_calls={"n": 1, "without_launch": 0}, outputs=(),
)  # fmt: skip
POST_TIMING = CaseFrame(
    shape=0, case=0, mode="post_timing", container="tensor", outputs=(), structure_error=None, ops={}, launches=(),
    mutated=(), threads=0, tamper=(), forward_ms=0.0,
)  # fmt: skip


class _Worker:
    """Streams frames; records what the parent did while each frame was being handled."""

    def __init__(self, frames: list[Frame], hold_log: list[str]) -> None:
        self.frames, self.hold_log = frames, hold_log
        self.exit, self.started, self.controls, self.seen = None, 0.0, [], []

    def messages(self):
        for frame in self.frames:
            self.seen.append((frame.TAG, list(self.hold_log)))
            yield frame
        self.exit = 0

    def send_control(self, msg: TimingGo) -> None:
        self.controls.append(msg)

    def pause_clock(self, seconds: float) -> None:
        pass

    def kill(self) -> None:
        pass

    def output(self, name: str) -> str:
        return ""


class _Judge:
    ready, load_ms, forward_ms = True, 0.0, 0.0

    def feed(self, msg: Frame):
        return None

    def all_checked(self) -> bool:
        return True

    def finish(self, exit_code: int):
        return None


def test_the_gpu_stays_exclusive_from_timing_until_the_worker_has_exited(hold_log):
    hold = _GpuHold(VerifyConfig(device="cuda"))
    hold.shared()
    frames = [Ready(netns=False), AwaitTiming(), TIMING, POST_TIMING]
    worker = _Worker(frames, hold_log)
    timed: list[TimingFrame] = []
    failure = _judge_stream(worker, _Judge(), _Clock(), hold, lambda raw: timed.append(raw))
    assert failure is None and timed == [TIMING] and worker.controls == [TimingGo(go=True)]
    seen = dict(worker.seen)
    assert seen["await_timing"][-1] == "shared"
    # the post-timing recorded call runs GPU work: the hold is still exclusive while its frame arrives
    assert seen["timing"][-1] == "exclusive" and seen["case"][-1] == "exclusive"
    hold.release()  # what _run_sandboxed does once the stream has ended
    assert hold_log == ["asking", "shared", "released", "waiting", "exclusive", "released"]
