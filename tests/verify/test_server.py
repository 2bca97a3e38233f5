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


def test_a_reference_that_is_not_a_regular_file_is_refused(server, tmp_path, monkeypatch):
    """Opened once and checked on the descriptor: /dev/zero, a FIFO (whose open would block) and a symlink as the
    last component are refused, so no swap between a check and a read can hang the server or fill its memory."""
    fifo = tmp_path / "ref.py"
    os.mkfifo(fifo)
    link = tmp_path / "link.py"
    link.symlink_to(Path(RELU.solution_path))
    for path, why in (("/dev/zero", "not a regular file"), (str(fifo), "not a regular file"), (str(link), "open")):
        with pytest.raises(ConfigError, match=why):
            request_verdicts(server.path, path, [GOOD], OPTIONS)
    monkeypatch.chdir(tmp_path)  # a relative file name (no separator) is a file too, and checked the same way
    with pytest.raises(ConfigError, match="not a regular file"):
        request_verdicts(server.path, "ref.py", [GOOD], OPTIONS)


def test_a_reference_file_is_verified_against(server, tmp_path):
    ref = tmp_path / "level1" / "19_ReLU.py"
    ref.parent.mkdir()
    ref.write_text(RELU.source)
    verdict = request_verdicts(server.path, str(ref), [GOOD], OPTIONS)[0]
    assert verdict.passed and verdict.task_id == "19_ReLU"


def test_distinct_configs_beyond_the_cap_close_the_least_recently_used(server):
    from tritonrl.verify.server import MAX_CONFIGS

    for i in range(MAX_CONFIGS + 1):
        assert request_verdicts(server.path, "relu", [GOOD], {**OPTIONS, "timeout_s": 60.0 + i})[0].passed
    assert len(server._verifiers) == MAX_CONFIGS


def test_an_evicted_config_is_closed_only_after_its_last_request(server):
    """A request in flight on the least recently used config still gets its verdicts when other requests push that
    config out; the config's workers are closed when the request ends."""
    from tritonrl.verify.server import MAX_CONFIGS

    with server.lease({**OPTIONS, "timeout_s": 90.0}) as held:
        for i in range(MAX_CONFIGS):
            assert request_verdicts(server.path, "relu", [GOOD], {**OPTIONS, "timeout_s": 100.0 + i})[0].passed
        assert all(entry.verifier is not held for entry in server._verifiers.values())
        assert held.verify(RELU, GOOD).passed  # evicted, but not closed under its user
    with pytest.raises(RuntimeError, match="closed"):
        held.verify(RELU, BAD)
    assert server._draining == []


def test_closing_the_server_closes_a_config_evicted_under_a_request(tmp_path, monkeypatch):
    from tritonrl.verify import server as server_module

    monkeypatch.setattr(server_module, "MAX_CONFIGS", 1)
    srv = VerifyServer(tmp_path / "v.sock", load_reference=load_reference, default_device="cpu", jobs=1)
    with srv.lease({**OPTIONS, "timeout_s": 90.0}) as held:
        with srv.lease({**OPTIONS, "timeout_s": 91.0}):
            assert srv._draining and srv._draining[0].verifier is held
        srv.close()  # a server stopped while the evicted config's request still runs
        with pytest.raises(RuntimeError, match="closed"):
            held.verify(RELU, GOOD)


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


def test_closing_a_server_leaves_a_later_servers_socket(tmp_path):
    path = tmp_path / "shared.sock"
    first = VerifyServer(path, load_reference=load_reference, default_device="cpu")
    path.unlink()  # e.g. removed by hand while the first one still runs
    second = VerifyServer(path, load_reference=load_reference, default_device="cpu")
    first.close()
    assert path.exists()
    second.close()
    assert not path.exists()
