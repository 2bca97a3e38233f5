"""A resident verifier: `tritonrl serve` keeps warm workers, the fork server, calibrations and case plans in one
process, and `tritonrl verify --server PATH` sends it (reference, candidates, options) over a Unix socket.

Why: a `tritonrl verify` process pays the torch import, a worker's start and the task's case plan every time; on an
H100 that was 21-25 s per call, of which the worker's start alone was 11 s (docs/benchmarks.md 9c). A server pays
them once; a request then costs the candidate's own work.

Trust: the server is a parent-side process (trusted, like the CLI): candidate code runs only in its sandboxed
workers. The socket is created with mode 0600 in a directory the user owns, so only the user who started the server
can submit; a request names a reference by a built-in task id or a file path the server reads, and carries candidate
texts and verifier options, never code the server itself runs.

Wire format, one request per connection, newline-terminated JSON each way:
  client -> server  {"reference": str, "candidates": [str, ...], "options": {VerifyConfig fields}}
  server -> client  {"verdicts": [Verdict.to_dict(), ...]}  or  {"error": str, "message": str}
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import os
import socket
import stat
import struct
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

from tritonrl.errors import ConfigError, TritonRLError
from tritonrl.types import Verdict

log = logging.getLogger(__name__)

SERVER_ENV = "TRITONRL_SERVER"  # the socket `tritonrl verify` uses when --server is not given
MAX_REQUEST_BYTES = 64 << 20  # 64 MiB of candidate text per request: a sanity bound, not a policy
MAX_REFERENCE_BYTES = 16 << 20  # a reference file larger than this is not a task (and /dev/zero never ends)
REQUEST_READ_TIMEOUT_S = 60.0  # a client that connects and never finishes its request does not keep a thread
CLIENT_TIMEOUT_S = 3600.0
MAX_CONFIGS = 4  # distinct verifier configs kept warm at once; the least recently used is closed beyond that


@dataclasses.dataclass(eq=False)
class _Lease:
    """A warm Verifier with the number of requests using it; an evicted one is closed when that reaches 0."""

    verifier: Any
    users: int = 0


def default_socket() -> Path:
    """$XDG_RUNTIME_DIR/tritonrl.sock (a per-user directory), else ~/.cache/tritonrl/verify.sock."""
    runtime = os.environ.get("XDG_RUNTIME_DIR")
    return Path(runtime) / "tritonrl.sock" if runtime else Path.home() / ".cache" / "tritonrl" / "verify.sock"


class VerifyServer:
    """Answers verification requests on a Unix socket with one warm `Verifier` per distinct verifier config.

    `load_reference(name)` turns a request's reference into a Task; `default_device` replaces a request's "auto"."""

    def __init__(
        self,
        path: Path,
        *,
        load_reference: Callable[[str], Any],
        default_device: str,
        jobs: int = 4,
    ) -> None:
        self.path = Path(path)
        self.load_reference = load_reference
        self.default_device = default_device
        self.jobs = jobs
        self.served = 0
        self._verifiers: dict[str, _Lease] = {}
        self._draining: list[_Lease] = []  # evicted while in use: closed by their last request, or by close()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self.sock = self._bind()

    def _bind(self) -> socket.socket:
        self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        if self.path.exists() or self.path.is_symlink():
            if not stat.S_ISSOCK(self.path.lstat().st_mode):
                raise ConfigError(f"--socket {self.path}: exists and is not a socket; choose another path.")
            if _answers(self.path):
                raise ConfigError(f"--socket {self.path}: a server already answers there; stop it or choose another "
                                  "path.")  # fmt: skip
            self.path.unlink()  # a stale socket of a server that ended without cleaning up
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        old = os.umask(0o177)  # the socket is born 0600: no window in which another user could connect
        try:
            sock.bind(str(self.path))
        finally:
            os.umask(old)
        sock.listen(64)
        self._inode = self.path.stat().st_ino  # close() removes this socket only, never a later server's
        return sock

    @contextlib.contextmanager
    def lease(self, options: Mapping[str, Any]) -> Iterator[Any]:
        """The warm `Verifier` for these options, held for the `with` block. Beyond MAX_CONFIGS the least recently
        used config is evicted; it is closed once its last lease ends, so a request in flight on it still gets its
        verdicts (closing it at eviction would fail that request)."""
        from tritonrl.verify.config import VerifyConfig
        from tritonrl.verify.verifier import Verifier

        fields = {f.name for f in dataclasses.fields(VerifyConfig)}
        unknown = sorted(set(options) - fields)
        if unknown:
            raise ConfigError(f"options {unknown}: not VerifyConfig fields; the client and server versions differ?")
        options = dict(options)
        if options.get("device", "auto") == "auto":
            options["device"] = self.default_device
        cfg = VerifyConfig(**options)
        key = cfg.config_hash() + cfg.device
        idle_evicted = None
        with self._lock:
            if key not in self._verifiers:
                log.info("starting %d warm workers for %s", self.jobs, cfg.device)
                self._verifiers[key] = _Lease(Verifier(cfg, jobs=self.jobs, keep_warm=True))
                if len(self._verifiers) > MAX_CONFIGS:  # each config keeps `jobs` warm workers (~200 MB each)
                    evicted = self._verifiers.pop(next(iter(self._verifiers)))
                    if evicted.users == 0:
                        idle_evicted = evicted
                    else:
                        self._draining.append(evicted)
            else:
                self._verifiers[key] = self._verifiers.pop(key)  # most recently used last
            entry = self._verifiers[key]
            entry.users += 1
        if idle_evicted is not None:
            idle_evicted.verifier.close()
        try:
            yield entry.verifier
        finally:
            with self._lock:
                entry.users -= 1
                last = entry.users == 0 and entry in self._draining
                if last:
                    self._draining.remove(entry)
            if last:
                entry.verifier.close()

    def handle(self, request: Mapping[str, Any]) -> dict[str, Any]:
        """One request's reply (errors as a reply, never an exception: the server keeps serving)."""
        try:
            reference, candidates = request["reference"], request["candidates"]
            if not isinstance(reference, str) or not isinstance(candidates, list):
                raise ConfigError("a request needs 'reference' (str) and 'candidates' (list of str)")
            if not all(isinstance(c, str) for c in candidates):
                raise ConfigError("every candidate must be a string")
            # every file goes through _load_file's checks; `load_reference` is left the built-in task ids
            is_file = os.sep in reference or reference.endswith(".py")
            task = _load_file(reference) if is_file else self.load_reference(reference)
            with self.lease(request.get("options") or {}) as verifier:
                verdicts = verifier.verify_many([(task, text) for text in candidates])
        except (TritonRLError, FileNotFoundError, ValueError, KeyError, TypeError) as exc:
            return {"error": type(exc).__name__, "message": str(exc)}
        with self._lock:  # requests are answered on their own threads
            self.served += len(verdicts)
        return {"verdicts": [v.to_dict() for v in verdicts]}

    def serve_forever(self) -> None:
        """Accept connections until `stop()`; each is answered on its own thread."""
        self.sock.settimeout(0.5)  # so that stop() is seen without a connection
        while not self._stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except TimeoutError:
                continue
            except OSError:
                if self._stop.is_set():
                    break
                raise
            threading.Thread(target=self._answer, args=(conn,), daemon=True, name="verify-request").start()

    def _answer(self, conn: socket.socket) -> None:
        with conn:
            if (uid := _peer_uid(conn)) is not None and uid != os.getuid():
                log.warning("refused a connection from uid %d", uid)  # the socket's mode should already prevent it
                return
            try:
                request = json.loads(_read_line(conn, REQUEST_READ_TIMEOUT_S).split(b"\n", 1)[0])
                conn.settimeout(None)  # the verification may take long; the reply is sent whenever it is done
                if not isinstance(request, dict):
                    raise ValueError("a request is a JSON object")
                reply = self.handle(request)
            except (ValueError, TimeoutError) as exc:
                reply = {"error": type(exc).__name__, "message": f"unreadable request: {exc}"}
            except Exception as exc:  # noqa: BLE001 - a bug of ours: the client hears of it, the server goes on
                log.exception("request failed")
                reply = {"error": type(exc).__name__, "message": str(exc)}
            try:
                conn.sendall(json.dumps(reply).encode() + b"\n")
            except OSError:  # the client went away: nothing to tell it
                log.info("a client left before its reply")

    def stop(self) -> None:
        self._stop.set()

    def close(self) -> None:
        self.stop()
        self.sock.close()
        try:
            if self.path.lstat().st_ino == self._inode:
                self.path.unlink()
        except FileNotFoundError:
            pass
        with self._lock:
            entries, self._verifiers = [*self._verifiers.values(), *self._draining], {}
            self._draining = []
        for entry in entries:
            entry.verifier.close()  # waits for the requests running on it

    def __enter__(self) -> VerifyServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def request_verdicts(
    path: Path, reference: str, candidates: list[str], options: Mapping[str, Any], timeout_s: float = CLIENT_TIMEOUT_S
) -> list[Verdict]:
    """Ask the server at `path` for verdicts. Needs neither torch nor triton in this process."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(timeout_s)
    with sock:
        try:
            sock.connect(str(path))
        except OSError as exc:
            raise ConfigError(f"--server {path}: no tritonrl server answers there ({exc.strerror or exc}); start one "
                              f"with `tritonrl serve --socket {path}`, or drop --server.") from None  # fmt: skip
        if (uid := _peer_uid(sock)) is not None and uid != os.getuid():  # candidates and verdicts go to the user's own
            raise ConfigError(f"--server {path}: the process answering there runs as uid {uid}, not as you; not sent.")
        request = {"reference": reference, "candidates": candidates, "options": dict(options)}
        sock.sendall(json.dumps(request).encode() + b"\n")
        reply = json.loads(_read_line(sock))
    if "error" in reply:
        raise ConfigError(f"the server at {path} refused the request: {reply['error']}: {reply.get('message', '')}")
    return [Verdict.from_dict(v) for v in reply["verdicts"]]


def _load_file(reference: str):  # noqa: ANN202 - a Task (imported lazily)
    """A reference given as a path: opened once (no symlink as its last component, never blocking on a FIFO), checked
    on that descriptor to be a regular file of a plausible size and read from it, so no swap of the path between a
    check and a read can hand the server /dev/zero or a FIFO."""
    from tritonrl.tasks.loader import folder_level, load_task

    try:
        fd = os.open(reference, os.O_RDONLY | os.O_NONBLOCK | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError as exc:
        raise ConfigError(f"reference {reference!r}: cannot open it ({exc.strerror})") from None
    with os.fdopen(fd, "rb") as f:
        info = os.fstat(f.fileno())
        if not stat.S_ISREG(info.st_mode):
            raise ConfigError(f"reference {reference!r}: not a regular file")
        data = f.read(MAX_REFERENCE_BYTES + 1)
    if len(data) > MAX_REFERENCE_BYTES:
        raise ConfigError(f"reference {reference!r}: over {MAX_REFERENCE_BYTES} bytes; a task file is a few KiB")
    path = Path(reference)
    return load_task(data.decode("utf-8", errors="replace") + "\n", task_id=path.stem, level=folder_level(path))


def _read_line(conn: socket.socket, deadline_s: float | None = None) -> bytes:
    """One newline-terminated message; with `deadline_s`, all of it within that many seconds (not per recv: a client
    sending a byte a minute does not keep a thread forever)."""
    chunks, size = [], 0
    end = time.monotonic() + deadline_s if deadline_s is not None else None
    while True:
        if end is not None:
            left = end - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"no complete request within {deadline_s} s")
            conn.settimeout(left)
        data = conn.recv(1 << 20)
        if not data:
            break
        chunks.append(data)
        size += len(data)
        if b"\n" in data:
            break
        if size > MAX_REQUEST_BYTES:
            raise ValueError(f"a message over {MAX_REQUEST_BYTES} bytes")
    return b"".join(chunks)


def _peer_uid(sock: socket.socket) -> int | None:
    """The uid of the process at the other end of a Unix socket (Linux SO_PEERCRED), None where unknown."""
    if not hasattr(socket, "SO_PEERCRED"):
        return None
    creds = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    return struct.unpack("3i", creds)[1]


def _answers(path: Path) -> bool:
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    with probe:
        try:
            probe.connect(str(path))
        except OSError:
            return False
    return True
