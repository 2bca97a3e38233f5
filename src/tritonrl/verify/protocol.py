"""The parent <-> worker wire format: length-prefixed, HMAC-authenticated frames of `torch.save` payloads.

Parent -> worker: one frame on the worker's stdin (the request). Worker -> parent: frames on a dedicated pipe whose
descriptor the parent passes in; the candidate's stdout/stderr are separate files, so printing cannot speak the
protocol. Every frame carries HMAC-SHA256 under a per-run key the worker reads from stdin before any candidate code
runs, so a candidate that writes to the pipe (it shares the process) produces frames the parent rejects. Payloads
are loaded with `torch.load(weights_only=True)`: tensors and plain containers only, never arbitrary objects. What
the payloads mean is `messages.py`'s business: frames travel in their wire form (plain dicts) and are typed there.
"""

from __future__ import annotations

import hashlib
import hmac
import io
import os
import struct
import sys
from pathlib import Path
from typing import Any

# How the parent hands the worker its pipe ends and device (environment variables, popped at start).
RESULT_FD_ENV = "TRITONRL_RESULT_FD"
CONTROL_FD_ENV = "TRITONRL_CONTROL_FD"
DEVICE_ENV = "TRITONRL_WORKER_DEVICE"
ZYGOTE_FD_ENV = "TRITONRL_ZYGOTE_FD"  # the fork server's socket (verify/forkserver.py, verify/worker/zygote.py)


HEADER = struct.Struct(">Q")  # payload length
MAC_LEN = 32
MAX_FRAME_BYTES = 1 << 34  # 16 GiB: a sanity bound, not a policy


def interpreter_argv(module: str) -> list[str]:
    """The command line of a fresh worker-side interpreter that runs `module.main()` from this source tree: isolated
    from the user's site-packages, PYTHON* variables and the working directory (-P -E -s), unbuffered, no bytecode
    written (-u -B). Used for the spawned worker and for the fork server's zygote."""
    src_dir = str(Path(__file__).resolve().parents[2])
    bootstrap = f"import sys; sys.path.insert(0, {src_dir!r}); from {module} import main; main()"
    return [sys.executable, "-P", "-E", "-s", "-u", "-B", "-c", bootstrap]


class ProtocolError(Exception):
    """A frame that is truncated, oversized or fails authentication."""


def encode(obj: Any, key: bytes) -> bytes:
    import torch

    buf = io.BytesIO()
    torch.save(obj, buf)
    payload = buf.getvalue()
    mac = hmac.new(key, payload, hashlib.sha256).digest()
    return HEADER.pack(len(payload)) + mac + payload


def decode_payload(payload: bytes, mac: bytes, key: bytes) -> Any:
    import torch

    if not hmac.compare_digest(mac, hmac.new(key, payload, hashlib.sha256).digest()):
        raise ProtocolError("frame failed authentication (forged or corrupted)")
    return torch.load(io.BytesIO(payload), weights_only=True)


def write_frame(fd: int, obj: Any, key: bytes) -> None:
    data = encode(obj, key)
    view = memoryview(data)
    while view:
        n = os.write(fd, view)
        view = view[n:]


def read_exact(fd: int, n: int) -> bytes | None:
    """Read n bytes; None on a clean EOF before the first byte; ProtocolError on EOF mid-frame."""
    chunks, got = [], 0
    while got < n:
        chunk = os.read(fd, min(n - got, 1 << 20))
        if not chunk:
            if got == 0:
                return None
            raise ProtocolError(f"truncated frame ({got} of {n} bytes)")
        chunks.append(chunk)
        got += len(chunk)
    return b"".join(chunks)


def read_frame(fd: int, key: bytes) -> Any | None:
    """The next decoded frame, or None at EOF."""
    header = read_exact(fd, HEADER.size)
    if header is None:
        return None
    (length,) = HEADER.unpack(header)
    if length > MAX_FRAME_BYTES:
        raise ProtocolError(f"frame of {length} bytes exceeds the bound")
    mac = read_exact(fd, MAC_LEN)
    payload = read_exact(fd, length) if length else b""
    if mac is None or payload is None:
        raise ProtocolError("truncated frame")
    return decode_payload(payload, mac, key)
