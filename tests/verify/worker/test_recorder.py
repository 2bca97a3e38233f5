"""verify/worker/recorder.py: the integrity snapshot sees a rebound library function and an installed signal handler."""

from __future__ import annotations

import signal

import torch

from tritonrl.verify.worker.recorder import integrity_diff, integrity_snapshot


def test_a_signal_handler_installed_since_the_snapshot_is_a_change():
    before = integrity_snapshot()
    previous = signal.signal(signal.SIGUSR1, lambda *a: None)
    try:
        assert integrity_diff(before, integrity_snapshot(), ()) == ["signal handler SIGUSR1"]
    finally:
        signal.signal(signal.SIGUSR1, previous)
    assert integrity_diff(before, integrity_snapshot(), ()) == []  # restored: nothing changed


def test_a_rebound_torch_function_is_a_change():
    before = integrity_snapshot()
    original = torch.allclose
    torch.allclose = lambda *a, **kw: True
    try:
        assert integrity_diff(before, integrity_snapshot(), ()) == ["torch.allclose"]
    finally:
        torch.allclose = original
