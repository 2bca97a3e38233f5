"""verify/protocol.py: length-prefixed, HMAC-authenticated frames of weights-only torch payloads."""

from __future__ import annotations

import hashlib
import hmac
import io
import os
import pickle

import pytest
import torch

from tritonrl.verify.protocol import (
    HEADER,
    MAC_LEN,
    MAX_FRAME_BYTES,
    ProtocolError,
    decode_payload,
    encode,
    read_frame,
    write_frame,
)

KEY = bytes(range(32))
OTHER_KEY = bytes(32)
MESSAGE = {"t": "case", "outputs": [torch.arange(6.0).reshape(2, 3)], "ops": {"aten.empty_like": 1}, "ms": 1.5}
EXECUTED: list[str] = []


def _record(what: str) -> str:
    EXECUTED.append(what)
    return what


class Payload:
    """An arbitrary object: unpickling it would run `_record` (a stand-in for any callable)."""

    def __reduce__(self):
        return _record, ("unpickled",)


@pytest.fixture
def pipe():
    r, w = os.pipe()
    yield r, w
    for fd in (r, w):
        try:
            os.close(fd)
        except OSError:
            pass


def send_bytes(pipe, data: bytes) -> int:
    r, w = pipe
    os.write(w, data)
    os.close(w)
    return r


def test_round_trip_through_a_pipe(pipe):
    r, w = pipe
    write_frame(w, MESSAGE, KEY)
    os.close(w)
    got = read_frame(r, KEY)
    assert got.keys() == MESSAGE.keys()
    assert torch.equal(got["outputs"][0], MESSAGE["outputs"][0])
    assert got["ops"] == MESSAGE["ops"] and got["ms"] == MESSAGE["ms"]


def test_clean_eof_reads_none(pipe):
    r, w = pipe
    write_frame(w, {"t": "done"}, KEY)
    os.close(w)
    assert read_frame(r, KEY) == {"t": "done"}
    assert read_frame(r, KEY) is None


def test_frame_under_a_wrong_key_raises(pipe):
    r = send_bytes(pipe, encode(MESSAGE, OTHER_KEY))
    with pytest.raises(ProtocolError, match="authentication"):
        read_frame(r, KEY)


def test_tampered_payload_raises(pipe):
    data = bytearray(encode(MESSAGE, KEY))
    data[-1] ^= 0xFF
    r = send_bytes(pipe, bytes(data))
    with pytest.raises(ProtocolError, match="authentication"):
        read_frame(r, KEY)


def test_truncated_frame_raises(pipe):
    r = send_bytes(pipe, encode(MESSAGE, KEY)[:-5])
    with pytest.raises(ProtocolError, match="truncated"):
        read_frame(r, KEY)


def test_truncated_header_raises(pipe):
    r = send_bytes(pipe, encode(MESSAGE, KEY)[: HEADER.size - 3])
    with pytest.raises(ProtocolError, match="truncated"):
        read_frame(r, KEY)


def test_length_header_beyond_the_bound_raises(pipe):
    r = send_bytes(pipe, HEADER.pack(MAX_FRAME_BYTES + 1) + b"\0" * MAC_LEN)
    with pytest.raises(ProtocolError, match="exceeds the bound"):
        read_frame(r, KEY)


def test_authenticated_arbitrary_object_is_refused():
    buf = io.BytesIO()
    torch.save(Payload(), buf)
    payload = buf.getvalue()
    mac = hmac.new(KEY, payload, hashlib.sha256).digest()  # a correct MAC: only weights_only stands in the way
    with pytest.raises(pickle.UnpicklingError):
        decode_payload(payload, mac, KEY)
    assert EXECUTED == []
