"""Fixtures shared by the verifier's tests."""

from __future__ import annotations

import logging

import pytest


@pytest.fixture
def hold_log(monkeypatch, tmp_path, caplog):
    """The funnel's GPU hold transitions ("asking", "shared", "waiting", "exclusive", "released") as they are logged,
    with the GPU locks in a private directory."""
    monkeypatch.setenv("TRITONRL_LOCK_DIR", str(tmp_path))
    caplog.set_level(logging.DEBUG, logger="tritonrl.verify.funnel")
    records: list[str] = []

    class _Tap(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            if record.getMessage().startswith("gpu hold: "):
                records.append(record.getMessage()[10:])

    tap = _Tap()
    logging.getLogger("tritonrl.verify.funnel").addHandler(tap)
    yield records
    logging.getLogger("tritonrl.verify.funnel").removeHandler(tap)
