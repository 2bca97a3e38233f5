"""One timing at a time per GPU, and nothing else on that GPU while it runs.

A reader-writer lock per physical GPU, across threads and processes of one machine: correctness work (reference
outputs, a worker's checks) holds it shared; timing holds it exclusive. Writers get preference, so a stream of
correctness work cannot starve timing. Built on `fcntl.flock` over two files per GPU:
- `gate`: a writer holds it exclusive while it waits for readers to drain; a reader passes it (shared) on entry,
  so new readers queue behind a waiting writer.
- `rw`: readers shared, the writer exclusive.
flock locks belong to an open file description, so each acquisition opens its own descriptors: threads of one
process exclude each other exactly as processes do. A process that dies releases its locks with its descriptors.

Exclusive holders of one process share a window: when a timing ends while another thread of the same process already
waits to time, the GPU stays exclusive and passes to it, so the drain of concurrent correctness work (seconds, on a
busy GPU) is paid once per queue of timings rather than once per timing (docs/benchmarks.md 4b).

Which GPUs a batch uses is decided here too, by one rule (`batch_devices`, `slot_device`): 'cuda' means every visible
GPU, and the i-th item (or worker) of a batch goes to 'cuda:(i mod G)'; 'cpu' and 'cuda:N' stay as they are. Since
the lock is per physical GPU, each GPU then has its own exclusive timing slot while correctness work spreads over all.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import logging
import os
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

log = logging.getLogger(__name__)


def lock_dir() -> Path:
    path = Path(os.environ.get("TRITONRL_LOCK_DIR") or Path(tempfile.gettempdir()) / "tritonrl-gpu-locks")
    path.mkdir(parents=True, exist_ok=True)
    return path


def gpu_key(device: str) -> str:
    """A machine-wide name for the physical GPU behind `device` ('cuda' or 'cuda:N' under CUDA_VISIBLE_DEVICES)."""
    visible = [d.strip() for d in os.environ.get("CUDA_VISIBLE_DEVICES", "").split(",") if d.strip()]
    index = int(device.split(":")[1]) if ":" in device else 0
    physical = visible[index] if index < len(visible) else str(index)
    return hashlib.sha256(physical.encode()).hexdigest()[:12]


def visible_gpu_count() -> int:
    """GPUs this process sees (CUDA_VISIBLE_DEVICES applies); 0 without CUDA. torch counts them through NVML where
    it can, so no CUDA context is created (a spawned or forked child can still use CUDA afterwards)."""
    import torch

    return torch.cuda.device_count()


def batch_devices(device: str) -> list[str]:
    """The devices a batch on `device` spreads over: ['cpu'], ['cuda:N'], or for 'cuda' every visible GPU
    ['cuda:0', ..., 'cuda:G-1'] (['cuda:0'] when none is counted: the worker then reports the missing GPU)."""
    if device != "cuda":
        return [device]
    return [f"cuda:{i}" for i in range(max(1, visible_gpu_count()))]


def slot_device(device: str, index: int, devices: list[str] | None = None) -> str:
    """The device of the `index`-th item or worker of a batch on `device`: round-robin over `batch_devices`."""
    devices = devices or batch_devices(device)
    return devices[index % len(devices)]


class _Window:
    """This process's exclusive hold on one GPU, handed from one timing thread to the next while any waits."""

    def __init__(self) -> None:
        self.turn = threading.Lock()  # one timing at a time inside the window
        self.count = threading.Lock()
        self.waiting = 0  # threads of this process in exclusive() (queued or timing)
        self.files: tuple | None = None  # (gate, rw) while the flock is held


_windows: dict[str, _Window] = {}
_windows_lock = threading.Lock()


class GpuLock:
    """`with lock.shared():` for work that may share the GPU; `with lock.exclusive():` for timing."""

    def __init__(self, device: str, directory: Path | None = None) -> None:
        base = (directory or lock_dir()) / f"gpu-{gpu_key(device)}"
        self.gate_path = base.with_suffix(".gate")
        self.rw_path = base.with_suffix(".rw")
        for p in (self.gate_path, self.rw_path):
            p.touch(exist_ok=True)
        with _windows_lock:
            self.window = _windows.setdefault(str(self.rw_path), _Window())

    @contextlib.contextmanager
    def shared(self) -> Iterator[None]:
        with open(self.gate_path) as gate:
            fcntl.flock(gate, fcntl.LOCK_SH)  # waits while a writer holds the gate
            fcntl.flock(gate, fcntl.LOCK_UN)
        with open(self.rw_path) as rw:
            fcntl.flock(rw, fcntl.LOCK_SH)
            try:
                yield
            finally:
                fcntl.flock(rw, fcntl.LOCK_UN)

    @contextlib.contextmanager
    def exclusive(self) -> Iterator[float]:
        """Yields the seconds spent waiting (callers pause their candidate's clock for it)."""
        t0 = time.monotonic()
        window = self.window
        with window.count:
            window.waiting += 1
        window.turn.acquire()
        try:
            if window.files is None:
                window.files = self._acquire_exclusive()
                log.debug("window opens for %d timings", window.waiting)  # queued by the end of the drain
            waited = time.monotonic() - t0
            if waited > 1.0:
                log.debug("waited %.1f s for exclusive use of the GPU", waited)
            yield waited
        finally:
            with window.count:
                window.waiting -= 1
                last = window.waiting == 0
            if last and window.files is not None:  # nobody of ours queued: give the GPU back to shared work
                log.debug("window closes")
                gate, rw = window.files
                window.files = None
                fcntl.flock(rw, fcntl.LOCK_UN)
                rw.close()
                gate.close()
            window.turn.release()

    def _acquire_exclusive(self) -> tuple:
        gate, rw = open(self.gate_path), open(self.rw_path)  # noqa: SIM115 - kept open while the window lasts
        fcntl.flock(gate, fcntl.LOCK_EX)
        try:
            fcntl.flock(rw, fcntl.LOCK_EX)
        finally:
            fcntl.flock(gate, fcntl.LOCK_UN)  # queued readers now wait on rw, behind us
        return gate, rw
