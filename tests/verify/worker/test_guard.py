"""verify/guard.py: origin attribution on real frames, and the audit-hook policy (`Guard._decide`) per event.

The hook itself is never installed here: audit hooks cannot be removed, and this is the test process. Frames of
"candidate", "trusted" (tritonrl) and "triton" code are made by compiling code under a file name in that place;
nothing is written there.
"""

from __future__ import annotations

import functools
import os
import shutil
import sys
from pathlib import Path

import pytest
import torch

import tritonrl
from tritonrl.verify.worker.guard import Guard, Origin

triton = pytest.importorskip("triton")

TRITONRL_DIR = Path(tritonrl.__file__).resolve().parent
TRITON_DIR = Path(triton.__file__).resolve().parent
FRAME_SRC = """import sys

def here():
    return sys._getframe()

def call(fn, *args):
    return fn(*args)

def here_then_release(box, lock):
    box.append(sys._getframe())
    lock.release()
"""


def code_at(filename: str | Path) -> dict:
    """Namespace of FRAME_SRC compiled as if it lived at `filename`."""
    namespace: dict = {}
    exec(compile(FRAME_SRC, str(filename), "exec"), namespace)
    return namespace


def frame_at(filename: str | Path):
    return code_at(filename)["here"]()


@pytest.fixture
def origin() -> Origin:
    return Origin()


@pytest.fixture
def candidate_file(tmp_path) -> Path:
    return tmp_path / "candidate.py"


@pytest.fixture
def guard(tmp_path, origin):
    workdir = tmp_path / "work"
    workdir.mkdir()
    reports: list[tuple[str, str]] = []
    g = Guard(str(workdir), lambda kind, detail: reports.append((kind, detail)), origin)
    g.reports = reports
    return g


def decide(guard: Guard, frame, event: str, args: tuple):
    return guard._decide(event, args, frame, None)  # no Popen vetted by this thread's previous event


# --- Origin -------------------------------------------------------------------------------------------------------


def test_code_compiled_in_a_temp_dir_is_candidate(origin, candidate_file):
    assert origin.of(frame_at(candidate_file)) == "candidate"


def test_test_code_is_candidate(origin):
    # tests/ is neither trusted (tritonrl) nor transparent (torch, stdlib): unknown code fails closed.
    assert origin.of(sys._getframe()) == "candidate"


def test_tritonrl_code_is_trusted(origin):
    assert origin.of(frame_at(TRITONRL_DIR / "verify" / "fake_module.py")) == "trusted"


def test_triton_code_is_triton(origin):
    assert origin.of(frame_at(TRITON_DIR / "runtime" / "fake_module.py")) == "triton"


def test_pseudo_file_frame_belongs_to_its_caller(origin, candidate_file):
    # `<string>` code (exec'd text) is walked through to whoever ran it: here tritonrl code.
    pseudo = code_at("<string>")
    assert origin.of(code_at(TRITONRL_DIR / "fake.py")["call"](pseudo["here"])) == "trusted"


def _stdlib_frame_from(caller: dict, through_reduce: bool = False):
    """A frame of functools.py (the pure-Python singledispatch wrapper) called by `caller`'s code, directly or as
    the callback of functools.reduce (C code: it adds no frame of its own)."""
    captured = []

    @functools.singledispatch
    def step(*_):
        captured.append(sys._getframe(1))

    if through_reduce:
        caller["call"](functools.reduce, step, [1, 2], 0)
    else:
        caller["call"](step, 0)
    frame = captured[0]
    assert frame.f_code.co_filename == functools.__file__
    return frame


def test_stdlib_frame_called_by_candidate_resolves_to_candidate(origin, candidate_file):
    assert origin.of(_stdlib_frame_from(code_at(candidate_file))) == "candidate"


def test_stdlib_frame_called_by_tritonrl_resolves_to_trusted(origin):
    assert origin.of(_stdlib_frame_from(code_at(TRITONRL_DIR / "fake.py"))) == "trusted"


def test_stdlib_callback_through_functools_reduce_resolves_to_the_candidate_caller(origin, candidate_file):
    assert origin.of(_stdlib_frame_from(code_at(candidate_file), through_reduce=True)) == "candidate"


def test_stdlib_callback_through_functools_reduce_resolves_to_the_trusted_caller(origin):
    assert origin.of(_stdlib_frame_from(code_at(TRITONRL_DIR / "fake.py"), through_reduce=True)) == "trusted"


def test_candidate_code_at_the_bottom_of_a_raw_thread_is_candidate(origin, candidate_file):
    import _thread

    box: list = []
    lock = _thread.allocate_lock()
    lock.acquire()
    _thread.start_new_thread(code_at(candidate_file)["here_then_release"], (box, lock))
    assert lock.acquire(timeout=10)
    assert box[0].f_back is None and box[0].f_code.co_filename == str(candidate_file)
    assert origin.of(box[0]) == "candidate"


class _CaptureCaller:
    """A path whose str() records the calling frame and aborts the call."""

    def __init__(self) -> None:
        self.frame = None

    def __str__(self) -> str:
        self.frame = sys._getframe(1)
        raise RuntimeError("captured")


def _importlib_get_data_frame(caller: dict):
    """The frame of importlib's FileLoader.get_data (frozen importlib code) called by `caller`'s code."""
    from importlib.machinery import SourceFileLoader

    path = _CaptureCaller()
    with pytest.raises(RuntimeError, match="captured"):
        caller["call"](SourceFileLoader("x", "/etc/hostname").get_data, path)
    assert path.frame.f_code.co_filename.startswith("<frozen importlib")
    return path.frame


def test_importlib_frames_are_import(origin, candidate_file):
    assert origin.of(_importlib_get_data_frame(code_at(candidate_file))) == "import"


def test_candidate_read_through_importlib_get_data_is_file_access(guard, candidate_file):
    frame = _importlib_get_data_frame(code_at(candidate_file))
    verdict = decide(guard, frame, "open", ("/etc/hostname", "rb", os.O_RDONLY))
    assert verdict is not None and verdict[0] == "file_access"


def test_torch_frame_is_transparent(origin, candidate_file):
    # torch code calling back into candidate code (a tensor subclass hook, a module forward): the candidate decides.
    frames = []

    class Capture(torch.nn.Module):
        def forward(self):
            frames.append(sys._getframe(1))  # torch.nn.Module._call_impl's frame

    code_at(candidate_file)["call"](Capture())
    assert frames[0].f_code.co_filename.startswith(os.path.dirname(torch.__file__))
    assert origin.of(frames[0]) == "candidate"


# --- Guard._decide ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("event", ["socket.__new__", "socket.connect", "socket.getaddrinfo"])
def test_socket_events_are_network_access_even_for_trusted_code(guard, event):
    verdict = decide(guard, frame_at(TRITONRL_DIR / "fake.py"), event, ())
    assert verdict is not None and verdict[0] == "network_access"


def test_write_outside_workdir_is_file_access_even_for_trusted_code(guard, tmp_path):
    frame = frame_at(TRITONRL_DIR / "fake.py")
    assert guard.origin.of(frame) == "trusted"
    verdict = decide(guard, frame, "open", (str(tmp_path / "outside.txt"), "w", os.O_WRONLY | os.O_CREAT))
    assert verdict is not None and verdict[0] == "file_access"


def test_os_open_write_flags_outside_workdir_are_file_access(guard, tmp_path):
    verdict = decide(guard, frame_at(TRITONRL_DIR / "fake.py"), "open", (str(tmp_path / "x"), None, os.O_RDWR))
    assert verdict is not None and verdict[0] == "file_access"


def test_trusted_write_inside_workdir_is_allowed(guard):
    path = os.path.join(guard.workdir, ".triton", "cache.bin")
    assert decide(guard, frame_at(TRITONRL_DIR / "fake.py"), "open", (path, "wb", os.O_WRONLY | os.O_CREAT)) is None


def test_candidate_read_inside_site_packages_is_allowed(guard, candidate_file):
    assert decide(guard, frame_at(candidate_file), "open", (torch.__file__, "r", os.O_RDONLY)) is None


def test_candidate_read_outside_python_and_workdir_is_file_access(guard, candidate_file):
    verdict = decide(guard, frame_at(candidate_file), "open", ("/etc/hostname", "r", os.O_RDONLY))
    assert verdict is not None and verdict[0] == "file_access"


def test_candidate_write_inside_workdir_is_file_access(guard, candidate_file):
    path = os.path.join(guard.workdir, "scratch.txt")
    verdict = decide(guard, frame_at(candidate_file), "open", (path, "w", os.O_WRONLY | os.O_CREAT))
    assert verdict is not None and verdict[0] == "file_access"


PTXAS = str(TRITON_DIR / "backends/nvidia/bin/ptxas")
GCC = shutil.which("gcc")
FILE = shutil.which("file")


def popen(*argv: str) -> tuple:
    """A `subprocess.Popen` audit event as Popen raises it: (executable, argv, cwd, env), executable = argv[0]."""
    return (argv[0], list(argv), None, None)


@pytest.mark.parametrize(
    "argv",
    [
        (PTXAS, "--version"),
        (PTXAS, "-lineinfo", "-v", "--gpu-name=sm_90a", "/tmp/k.ptx", "-o", "/tmp/k.cubin"),
        ("/sbin/ldconfig", "-p"),
        pytest.param(
            (
                GCC,
                "/tmp/x/__triton_launcher.c",
                "-O3",
                "-shared",
                "-fPIC",
                "-Wno-psabi",
                "-o",
                "/tmp/x/l.so",
                "-lcuda",
                "-l:libcuda.so.1",
                "-L/usr/lib64",
                "-I/usr/include/python3",
            ),
            marks=pytest.mark.skipif(GCC is None, reason="no gcc"),
        ),  # fmt: skip
        pytest.param(("file", "-b", sys.executable), marks=pytest.mark.skipif(FILE is None, reason="no file")),
    ],
    ids=["ptxas_version", "ptxas_compile", "ldconfig", "cc_build", "file_b"],
)
def test_what_triton_runs_is_allowed_from_tritons_frames(guard, argv):
    """The programs of a first GPU compile on an H100 (tools.py), with their arguments."""
    assert decide(guard, frame_at(TRITON_DIR / "fake.py"), "subprocess.Popen", popen(*argv)) is None


@pytest.mark.parametrize(
    ("event", "args"),
    [
        ("os.system", (b"id > /tmp/x",)),  # a C callable handed to Triton (heuristic value) runs os.system
        ("subprocess.Popen", popen("/bin/sh", "-c", "id")),
        ("subprocess.Popen", popen("python3", "-c", "pass")),
        ("subprocess.Popen", popen("/usr/bin/env", "sh")),
        ("subprocess.Popen", popen("/lib64/ld-linux-x86-64.so.2", "/bin/sh", "-c", "id")),  # a loader runs anything
        ("subprocess.Popen", popen("/sbin/ldconfig", "-C", "/tmp/cache")),  # a Triton tool with other arguments
        ("subprocess.Popen", popen("/usr/local/bin/ptxas", "--version")),  # a ptxas Triton would not pick
        ("subprocess.Popen", popen("gcc", "-wrapper", "/bin/sh,-c,id", "x.c")),  # gcc runs the wrapper
        ("subprocess.Popen", popen("gcc", "@/tmp/response", "x.c")),  # options from a file
        ("subprocess.Popen", popen("gcc", "-fplugin=/tmp/p.so", "x.c")),
        ("subprocess.Popen", popen("gcc", "x.c", "-Wl,-plugin,/tmp/p.so")),
        ("os.posix_spawn", ("/bin/sh", ["sh"], {})),
        ("os.posix_spawn", ("/sbin/ldconfig", ["/sbin/ldconfig", "-p"], {})),  # no Popen allowed it just before
        ("tritonrl.fork_exec", ([b"/sbin/ldconfig", b"-p"], [b"/sbin/ldconfig"])),  # same
        ("os.fork", ()),
        ("os.kill", (1, 9)),
    ],
)
def test_what_triton_never_runs_is_refused_even_in_tritons_frames(guard, event, args):
    """Who asked is not enough: the frame is Triton's whenever Triton calls something it was handed, which then picks
    the program and its arguments (a heuristic built from C callables)."""
    verdict = decide(guard, frame_at(TRITON_DIR / "fake.py"), event, args)
    assert verdict is not None and verdict[0] == "process_spawn"


def test_popen_from_candidate_is_process_spawn(guard, candidate_file):
    verdict = decide(guard, frame_at(candidate_file), "subprocess.Popen", ("sh", ["sh"], None, None))
    assert verdict is not None and verdict[0] == "process_spawn"


def test_popen_from_tritonrl_is_process_spawn(guard):
    verdict = decide(guard, frame_at(TRITONRL_DIR / "fake.py"), "subprocess.Popen", ("sh", ["sh"], None, None))
    assert verdict is not None and verdict[0] == "process_spawn"


def test_tamper_event_from_candidate_is_tampering(guard, candidate_file):
    verdict = decide(guard, frame_at(candidate_file), "gc.get_objects", ())
    assert verdict is not None and verdict[0] == "tampering"


def test_tamper_event_from_trusted_code_is_allowed(guard):
    assert decide(guard, frame_at(TRITONRL_DIR / "fake.py"), "gc.get_objects", ()) is None


# --- library code: benign tamper primitives, site layout ----------------------------------------------------------


@pytest.mark.parametrize("module", ["typing", "dataclasses", "collections", "enum", "logging"])
def test_a_library_reading_a_frame_for_its_own_use_is_not_tampering(guard, candidate_file, module):
    # `-> Tuple[torch.Tensor, int]` makes typing(_extensions) call sys._getframe; `@dataclass` execs generated code.
    import importlib

    library_file = importlib.import_module(module).__file__
    called_by_candidate = code_at(candidate_file)["call"](code_at(library_file)["here"])
    assert decide(guard, called_by_candidate, "sys._getframe", (1,)) is None
    assert decide(guard, called_by_candidate, "exec", (None,)) is None


def test_the_candidate_reading_a_frame_itself_is_tampering(guard, candidate_file):
    assert decide(guard, frame_at(candidate_file), "sys._getframe", (1,))[0] == "tampering"


def test_inspect_reading_frames_for_the_candidate_is_still_tampering(guard, candidate_file):
    import inspect

    through_inspect = code_at(candidate_file)["call"](code_at(inspect.__file__)["here"])
    assert decide(guard, through_inspect, "sys._getframe", (1,))[0] == "tampering"


def test_signature_reads_are_not_tampering_but_frame_reads_are(guard, candidate_file):
    frame = frame_at(candidate_file)
    assert decide(guard, frame, "object.__getattr__", (len, "__code__")) is None
    assert decide(guard, frame, "object.__getattr__", (None, "tb_frame"))[0] == "tampering"


def test_any_installed_package_is_transparent(origin, candidate_file):
    # A package beside torch in site-packages (typing_extensions, packaging, ...): whoever called it decides.
    import site

    other_package = Path(site.getsitepackages()[0]) / "some_library" / "module.py"
    library = code_at(other_package)
    assert origin.of(code_at(candidate_file)["call"](library["here"])) == "candidate"
    assert origin.of(code_at(TRITONRL_DIR / "fake.py")["call"](library["here"])) == "trusted"


def test_a_venv_layered_on_the_system_site_is_trusted(tmp_path):
    """torch and triton live in the base interpreter's site-packages while tritonrl sits in a venv made with
    --system-site-packages (a common cluster layout): the guard's trusted paths come from the site layout, so the
    bundled solution passes and an attack is still refused."""
    import json
    import subprocess
    import sys
    import sysconfig
    from pathlib import Path

    from tritonrl.tasks.loader import builtin_task

    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--system-site-packages", "--without-pip", str(venv)], check=True)
    python = venv / "bin" / "python"
    site = Path(subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                               capture_output=True, text=True, check=True).stdout.strip())  # fmt: skip
    assert site != Path(sysconfig.get_paths()["purelib"])  # really a second site layer
    (site / "tritonrl_src.pth").write_text(str(Path(__file__).resolve().parents[3] / "src") + "\n")
    relu = builtin_task("relu")
    attack = Path(__file__).resolve().parents[2] / "fixtures/candidates/relu/unseen_classattr_forward_prehook.py"
    verdicts = []
    for candidate in (relu.solution_path, attack):
        run = subprocess.run([str(python), "-m", "tritonrl.cli.main", "verify", "relu", str(candidate), "--device",
                              "cpu", "--json"], capture_output=True, text=True, timeout=600, cwd=tmp_path)  # fmt: skip
        verdicts.append(json.loads(run.stdout))
    assert verdicts[0]["passed"], verdicts[0]["message"]
    assert not verdicts[1]["passed"] and verdicts[1]["stage"] == "provenance", verdicts[1]["message"]


REAL_POPEN = """
import os, shutil, subprocess, sys
sys.path.insert(0, {src!r})
import torch, triton  # imported before the guard, as in the worker
from tritonrl.verify.worker.guard import Guard, Origin
reports = []
Guard({work!r}, lambda kind, detail: reports.append(kind), Origin()).install()
ns = {{}}
RUN = ("import subprocess\\ndef run(argv, close):\\n"
       "    return subprocess.run(argv, close_fds=close, stdout=subprocess.DEVNULL).returncode\\n")
exec(compile(RUN, {fake!r}, "exec"), ns)  # Triton's frames asking
def attempt(name, fn):
    try:
        fn()
        print(name, "ran")
    except PermissionError:
        print(name, "refused")
LDCONFIG = ["/sbin/ldconfig", "-p"]
attempt("ldconfig/posix_spawn", lambda: ns["run"](LDCONFIG, False))  # 3.11: posix_spawn only without close_fds
attempt("ldconfig/fork_exec", lambda: ns["run"](LDCONFIG, True))  # 3.11: _posixsubprocess.fork_exec
attempt("sh", lambda: ns["run"]([shutil.which("sh"), "-c", "exit 0"], True))
# A vetted Popen ridden by the caller's own spawn right after it (fork_exec path: no posix_spawn consumed it)
attempt("ldconfig/then", lambda: ns["run"](LDCONFIG, True))
attempt("ride", lambda: os.posix_spawn("/sbin/ldconfig", LDCONFIG, dict(os.environ)))
import _posixsubprocess  # refused before the call, so its (version-specific) argument list does not matter
attempt("fork_exec/direct", lambda: _posixsubprocess.fork_exec(
    [b"/bin/true"], [b"/bin/true"], True, (), None, None, -1, -1, -1, -1, -1, -1, *os.pipe(), True, False, -1,
    None, None, None, -1, None, True))
print("wrapped", subprocess._fork_exec.__module__)
print("reports:", reports)
"""


def test_real_spawns_from_triton_run_and_nothing_else_does(tmp_path):
    """The events a real Popen raises, through an installed hook in a fresh interpreter: `Popen`, then `posix_spawn`
    (Python 3.12 for Triton's calls; 3.11 without close_fds) or the wrapped `_posixsubprocess.fork_exec` (which
    raises no event of its own). Triton's tool starts both ways; a shell does not; a spawn of the caller's own right
    after an allowed Popen does not ride its allowance; fork_exec called directly (it needs no Popen) is refused."""
    import subprocess

    work = tmp_path / "work"
    work.mkdir()
    script = REAL_POPEN.format(src=str(TRITONRL_DIR.parent), work=str(work), fake=str(TRITON_DIR / "fake.py"))
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    lines = dict(line.rsplit(" ", 1) for line in out.stdout.splitlines() if not line.startswith("reports"))
    assert lines == {"ldconfig/posix_spawn": "ran", "ldconfig/fork_exec": "ran", "sh": "refused",
                     "ldconfig/then": "ran", "ride": "refused", "fork_exec/direct": "refused",
                     "wrapped": "tritonrl.verify.worker.guard"}, out.stdout  # fmt: skip


def test_one_threads_judging_does_not_blind_the_hook_to_another_thread(guard):
    """The hook ignores events raised while it judges one (its own frame walk), but only on the judging thread: a
    candidate's second thread acting during that window is still judged."""
    import threading

    guard.enabled = True
    guard._judging.busy = True  # this thread is inside the hook
    raised: list[BaseException] = []

    def other() -> None:
        try:
            guard._hook("socket.connect", (None, ("10.0.0.1", 80)))
        except PermissionError as exc:
            raised.append(exc)

    thread = threading.Thread(target=other)
    thread.start()
    thread.join()
    assert len(raised) == 1 and guard.reports[0][0] == "network_access"
    guard._hook("socket.connect", (None, ("10.0.0.1", 80)))  # the judging thread's own events pass through
