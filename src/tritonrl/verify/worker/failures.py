"""How the worker names a failure: an exception -> its kind and a message (inside the sandboxed worker)."""

from __future__ import annotations

import os
import traceback


def classify(exc: BaseException) -> str:
    if os.environ.get("TRITON_INTERPRET") == "1":
        from tritonrl.verify.worker.compat import interpreter_limitation

        if interpreter_limitation(exc):
            return "inconclusive_on_cpu"
    if isinstance(exc, SystemExit):
        return "exited"
    if isinstance(exc, MemoryError):
        return "memory_limit"
    # Message matching only for errors torch raised itself: a candidate can put any text in its own exceptions.
    if type(exc).__module__.split(".")[0] != "torch" and type(exc) is not RuntimeError:
        return "runtime_error"
    text = safe_str(exc)
    if "can't allocate memory" in text or "out of memory" in text.lower():
        return "memory_limit"
    if type(exc).__name__ == "AcceleratorError" and any(s in text for s in _MEMORY_FAULTS):
        return "crash"  # a GPU memory fault is the device's segfault (and is sticky)
    return "runtime_error"


def safe_str(exc: BaseException) -> str:
    try:
        return str(exc)
    except Exception:  # noqa: BLE001 - a candidate's exception may raise from __str__
        return f"<{type(exc).__name__} whose message could not be read>"


_MEMORY_FAULTS = ("illegal memory access", "misaligned address", "unspecified launch failure", "illegal address")


def format_exc(exc: BaseException, limit_chars: int = 4000) -> str:
    if os.environ.get("TRITON_INTERPRET") == "1":
        from tritonrl.verify.worker.compat import interpreter_limitation

        if reason := interpreter_limitation(exc):
            return f"inconclusive on the CPU interpreter: {reason} ({type(exc).__name__}: {safe_str(exc)[:300]})"
    try:
        text = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__, limit=-6))
    except Exception:  # noqa: BLE001 - a hostile exception can break formatting; keep its type
        text = f"{type(exc).__name__}: {safe_str(exc)}"
    return text[-limit_chars:]
