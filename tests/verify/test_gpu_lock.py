"""`verify/gpu_lock.py`: shared holders coexist, an exclusive holder is alone, and a waiting writer is not starved
by a stream of readers. Threads of one process exclude each other like processes (each acquisition opens its own
descriptors), so threads are enough to test it."""

from __future__ import annotations

import threading
import time

from tritonrl.verify.gpu_lock import GpuLock, gpu_key


def test_shared_holders_overlap_and_exclusive_waits(tmp_path):
    lock = GpuLock("cuda:0", tmp_path)
    events: list[str] = []
    inside = threading.Barrier(2, timeout=5)

    def reader(name: str) -> None:
        with lock.shared():
            inside.wait()  # both readers are in at once
            events.append(f"{name} in")
            time.sleep(0.2)
            events.append(f"{name} out")

    def writer() -> None:
        time.sleep(0.05)
        with lock.exclusive() as waited:
            events.append("writer in")
            assert waited >= 0.1
            events.append("writer out")

    threads = [threading.Thread(target=reader, args=(n,)) for n in ("a", "b")] + [threading.Thread(target=writer)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert events.index("writer in") > max(events.index("a out"), events.index("b out"))


def test_waiting_writer_blocks_new_readers(tmp_path):
    lock = GpuLock("cuda", tmp_path)
    order: list[str] = []
    first_in = threading.Event()

    def first_reader() -> None:
        with lock.shared():
            first_in.set()
            time.sleep(0.3)
        order.append("reader1 out")

    def writer() -> None:
        first_in.wait(5)
        with lock.exclusive():
            order.append("writer")

    def late_reader() -> None:
        first_in.wait(5)
        time.sleep(0.1)  # arrives while the writer waits
        with lock.shared():
            order.append("reader2")

    threads = [threading.Thread(target=f) for f in (first_reader, writer, late_reader)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert order.index("writer") < order.index("reader2")


def test_gpu_key_follows_visible_devices(monkeypatch):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "3,5")
    assert gpu_key("cuda:1") == gpu_key("cuda:1") != gpu_key("cuda:0")
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "5")
    assert gpu_key("cuda") == gpu_key("cuda:0")


def test_queued_timings_of_one_process_share_one_exclusive_window(tmp_path):
    """A reader that asked during one timing gets the GPU only after a second timing of the same process that queued
    later: the first hands its exclusive window over instead of letting correctness work in between."""
    lock = GpuLock("cuda:7", tmp_path)
    order: list[str] = []
    t1_in, reader_asking = threading.Event(), threading.Event()

    def first() -> None:
        with lock.exclusive():
            order.append("t1 in")
            t1_in.set()
            deadline = time.monotonic() + 5
            while lock.window.waiting < 2 and time.monotonic() < deadline:  # t2 is queued
                time.sleep(0.01)
            order.append("t1 out")

    def second() -> None:
        reader_asking.wait(5)
        time.sleep(0.1)  # the reader is already blocked on the lock (past the gate) when t2 queues
        with lock.exclusive():
            order.append("t2")

    def reader() -> None:
        t1_in.wait(5)
        reader_asking.set()
        with lock.shared():
            order.append("reader")

    threads = [threading.Thread(target=f) for f in (first, second, reader)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert order == ["t1 in", "t1 out", "t2", "reader"]
