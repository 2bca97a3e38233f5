"""verify/server.py and `tritonrl serve` / `tritonrl verify --server`: a resident verifier answers over a Unix socket
with the verdicts the one-shot funnel gives (real sandboxed verifications on the CPU), errors come back as messages
and the server goes on, the socket is the user's alone, and the command stops cleanly on SIGTERM."""

from __future__ import annotations

import json
import os
import signal
import socket
import stat
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from tritonrl.cli.common import load_reference
from tritonrl.cli.main import main
from tritonrl.errors import ConfigError
from tritonrl.tasks.loader import builtin_task
from tritonrl.verify.config import VerifyConfig
from tritonrl.verify.funnel import verify
from tritonrl.verify.server import VerifyServer, request_verdicts

RELU = builtin_task("relu")
GOOD = Path(RELU.solution_path).read_text()
BAD = (Path(__file__).resolve().parents[1] / "fixtures/candidates/relu/identity_on_negatives.py").read_text()
OPTIONS = {"device": "cpu", "timing": False, "compile_baseline": False}


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    path = tmp_path_factory.mktemp("srv") / "verify.sock"
    srv = VerifyServer(path, load_reference=load_reference, default_device="cpu", jobs=2)
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    yield srv
    srv.close()
    thread.join(timeout=10)


def test_verdicts_equal_the_one_shot_funnels(server):
    verdicts = request_verdicts(server.path, "relu", [GOOD, BAD], OPTIONS)
    cfg = VerifyConfig(**OPTIONS)
    for text, got in zip((GOOD, BAD), verdicts, strict=True):
        want = verify(RELU, text, cfg)
        assert (got.passed, got.stage, got.failure) == (want.passed, want.stage, want.failure)
    assert verdicts[0].passed and not verdicts[1].passed


def test_a_bad_request_is_an_error_reply_and_the_server_goes_on(server):
    with pytest.raises(ConfigError, match="no builtin task .no_such_task."):
        request_verdicts(server.path, "no_such_task", [GOOD], OPTIONS)
    with pytest.raises(ConfigError, match="not VerifyConfig fields"):
        request_verdicts(server.path, "relu", [GOOD], {**OPTIONS, "warp_drive": True})
    with socket.socket(socket.AF_UNIX) as raw:  # not JSON at all
        raw.connect(str(server.path))
        raw.sendall(b"hello\n")
        assert "unreadable request" in json.loads(raw.makefile().readline())["message"]
    assert request_verdicts(server.path, "relu", [GOOD], OPTIONS)[0].passed


def test_the_socket_is_the_users_alone(server):
    assert stat.S_IMODE(server.path.stat().st_mode) == 0o600


def test_a_live_socket_is_not_taken_over_and_a_stale_one_is(server, tmp_path):
    with pytest.raises(ConfigError, match="already answers"):
        VerifyServer(server.path, load_reference=load_reference, default_device="cpu")
    stale = tmp_path / "stale.sock"
    dead = socket.socket(socket.AF_UNIX)
    dead.bind(str(stale))
    dead.close()  # the file stays, nobody listens
    VerifyServer(stale, load_reference=load_reference, default_device="cpu").close()
    plain = tmp_path / "plain"
    plain.write_text("not a socket")
    with pytest.raises(ConfigError, match="not a socket"):
        VerifyServer(plain, load_reference=load_reference, default_device="cpu")


def test_no_server_says_how_to_start_one(tmp_path):
    with pytest.raises(ConfigError, match="tritonrl serve --socket"):
        request_verdicts(tmp_path / "none.sock", "relu", [GOOD], OPTIONS)


def test_the_cli_verifies_through_the_server(server, tmp_path, capsys):
    candidate = tmp_path / "relu.py"
    candidate.write_text(GOOD)
    code = main(["verify", "relu", str(candidate), "--server", str(server.path), "--device", "cpu", "--no-timing",
                 "--json"])  # fmt: skip
    assert code == 0 and json.loads(capsys.readouterr().out)["passed"] is True
    assert main(["verify", "relu", str(candidate), "--server", str(server.path), "--cache", "x.jsonl"]) == 2


def test_serve_stops_on_sigterm_and_removes_its_socket(tmp_path):
    path = tmp_path / "cli.sock"
    proc = subprocess.Popen([sys.executable, "-m", "tritonrl.cli.main", "serve", "--socket", str(path), "--device",
                             "cpu", "--jobs", "1"], stdout=subprocess.PIPE, text=True)  # fmt: skip
    try:
        assert "serving verifications on" in proc.stdout.readline()
        assert request_verdicts(path, "relu", [GOOD], OPTIONS)[0].passed
        proc.send_signal(signal.SIGTERM)
        time.sleep(0.2)
        proc.send_signal(signal.SIGTERM)  # a second signal while stopping must not hang it
        out, _ = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0 and "stopped after 1 verdicts" in out
    assert not os.path.exists(path)


def test_a_reference_that_is_not_a_regular_file_is_refused(server):
    with pytest.raises(ConfigError, match="not a regular file"):
        request_verdicts(server.path, "/dev/zero", [GOOD], OPTIONS)


def test_a_client_that_never_finishes_its_request_is_timed_out(server, monkeypatch):
    from tritonrl.verify import server as server_module

    monkeypatch.setattr(server_module, "REQUEST_READ_TIMEOUT_S", 0.5)
    with socket.socket(socket.AF_UNIX) as raw:
        raw.connect(str(server.path))
        raw.sendall(b'{"reference": "relu"')  # no newline, never closed
        raw.settimeout(30)
        reply = json.loads(raw.makefile().readline())
    assert reply["error"] == "TimeoutError"
    assert request_verdicts(server.path, "relu", [GOOD], OPTIONS)[0].passed
