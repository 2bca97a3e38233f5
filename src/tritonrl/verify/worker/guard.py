"""In-worker runtime guard: an audit hook that attributes sensitive operations to their origin and blocks them.

Runs only inside the sandboxed worker (`verify/worker/`), installed after torch and triton are imported and before
the candidate is. CPython audit hooks cannot be removed once added, and they see `open`, `socket.*`, `subprocess`,
`os.system`/`exec`/`fork`, `ctypes`, `gc`, frame introspection, `exec`/`compile` and type attribute assignment.

Origin: for each event we walk the Python stack outward, skipping "transparent" frames (the standard library and
installed packages, frozen importlib). The first other frame decides: triton's or tritonrl's code is trusted (Triton
compiles kernels, spawns ptxas and writes its cache on the candidate's behalf); anything else is the candidate (fail
closed).

What it covers:
- network: every Python-level socket is refused, whoever asks (nothing in the worker needs one);
- processes: refused, except a `subprocess.Popen` that Triton's code asked for of a program Triton runs, by real path
  and argument shape (`worker/tools.py`: ptxas & co., $CC building a .c, `ldconfig -p`, `file -b`), and the one
  spawn through which that Popen starts it: `os.posix_spawn`, or `_posixsubprocess.fork_exec` (wrapped here to raise
  an event: it raises none of its own), the very next event of the same thread, from the stdlib's own spawning frame
  and with the same command line. os.system/exec/spawn/fork/kill are refused whoever asks, since a C callable handed
  to Triton (a heuristic value `partial(next, map(os.system, ...))`) runs with only Triton's frames around it;
- files: writes outside the worker's temp dir are refused for everyone; candidate-originated opens are refused
  except reads inside the Python installation (lazy imports) and the temp dir;
- introspection and tampering from candidate code: gc object walks, frame/code access, ctypes, exec/compile,
  marshal, settrace/setprofile, new audit hooks, assigning attributes on types (monkeypatching torch.Tensor...).
What it does not cover (the other layers do): C-level syscalls made by native code (so CUDA keeps working);
`os.write` to an inherited fd (the result channel is authenticated instead, see `protocol.py`); module-attribute
monkeypatching (`torch.x = f`, caught by the integrity snapshot in `worker.py` and by the static rules); reading
memory it already holds. Python documents audit hooks as unsuitable for a sandbox on their own: this is one layer.
"""

from __future__ import annotations

import os
import subprocess
import sys
import sysconfig
import threading
from collections.abc import Callable
from types import FrameType

from tritonrl.verify.worker.tools import TritonTools

FORK_EXEC_EVENT = "tritonrl.fork_exec"  # raised by the wrapper `Guard.install` puts on _posixsubprocess.fork_exec
NETWORK_EVENTS = frozenset(
    {"socket.__new__", "socket.connect", "socket.bind", "socket.getaddrinfo", "socket.sendto", "socket.gethostbyname"}
)
PROCESS_EVENTS = frozenset(
    {
        "subprocess.Popen",
        FORK_EXEC_EVENT,
        "os.system",
        "os.exec",
        "os.posix_spawn",
        "os.spawn",
        "os.fork",
        "os.forkpty",
        "os.kill",
        "os.killpg",
        "pty.spawn",
        "signal.pthread_kill",
    }
)
FILE_MUTATION_EVENTS = frozenset(
    {
        "os.remove",
        "os.rename",
        "os.rmdir",
        "os.mkdir",
        "os.chmod",
        "os.chown",
        "os.link",
        "os.symlink",
        "os.truncate",
        "os.utime",
        "shutil.rmtree",
        "shutil.move",
        "shutil.copyfile",
    }
)
# Candidate-originated only: introspection and tampering primitives no honest kernel needs.
TAMPER_EVENTS = frozenset(
    {
        "gc.get_objects",
        "gc.get_referrers",
        "gc.get_referents",
        "sys._getframe",
        "sys._current_frames",
        "sys._current_exceptions",
        "sys.settrace",
        "sys.setprofile",
        "sys.addaudithook",
        "object.__getattr__",
        "object.__setattr__",
        "object.__delattr__",
        "code.__new__",
        "function.__new__",
        "exec",
        "compile",
        "marshal.loads",
        "marshal.load",
        "pickle.find_class",
        "ctypes.dlopen",
        "ctypes.dlsym",
        "ctypes.addressof",
        "ctypes.cdata",
        "ctypes.string_at",
        "ctypes.wstring_at",
        "ctypes.call_function",
        "os.putenv",
        "os.unsetenv",
        "os.chdir",
        "mmap.__new__",
        "builtins.input",
        "builtins.breakpoint",
    }
)
OPEN_WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_APPEND | os.O_CREAT | os.O_TRUNC
# Library modules whose OWN use of a tamper primitive is benign: they read a frame for a module name or line
# (typing, typing_extensions, enum, collections.namedtuple, warnings, logging) or exec source they generate
# themselves (dataclasses, namedtuple), and hand neither frames nor compiled code back. Real kernel files use them
# through annotations (`-> Tuple[torch.Tensor, int]`), `@dataclass` configs and `logging.getLogger`. The event is
# exempt only when the frame that raised it belongs to one of these files; `inspect` and `traceback`, which do hand
# frames to their caller, are not here.
# Reads that `object.__getattr__` audits but that expose no frame, globals or writable code: `inspect.signature`
# reads them for every `@dataclass`, `functools.wraps`-style helper and Triton itself.
SIGNATURE_ATTRS = frozenset({"__code__", "__defaults__", "__kwdefaults__"})
BENIGN_TAMPER_CALLERS = ("typing", "typing_extensions", "dataclasses", "collections", "enum", "warnings", "logging")


def _package_dir(name: str) -> str | None:
    mod = sys.modules.get(name)
    file = getattr(mod, "__file__", None)
    return os.path.dirname(os.path.realpath(file)) + os.sep if file else None


def _library_dirs() -> set[str]:
    """The standard library's and every site-packages folder of this interpreter, from sysconfig and site."""
    import site

    paths = sysconfig.get_paths()
    dirs = {paths[k] for k in ("stdlib", "platstdlib", "purelib", "platlib") if k in paths}
    dirs |= set(site.getsitepackages() if hasattr(site, "getsitepackages") else [])
    dirs |= {p for p in sys.path if p.endswith(("site-packages", "dist-packages"))}
    if site.ENABLE_USER_SITE and (user := site.getusersitepackages()):
        dirs.add(user)
    return {os.path.realpath(d) + os.sep for d in dirs if d}


def _module_files(names: tuple[str, ...]) -> list[str]:
    """Real paths of the named modules' files (imported here, before any candidate code; missing ones skipped)."""
    import importlib

    files = []
    for name in names:
        try:
            files.append(os.path.realpath(importlib.import_module(name).__file__))
        except (ImportError, TypeError):
            continue
    return files


class Origin:
    """Attributes the running Python code to 'candidate', 'triton' or 'trusted' by walking the stack outward."""

    def __init__(self) -> None:
        # Library code is transparent: the standard library and every installed package, wherever the site layout
        # puts them (a venv layered on a system site, a user site, Debian's dist-packages). The candidate's file
        # lives in the worker's temp dir, never among them; Triton's and tritonrl's folders are matched first.
        self.torch_dir = _package_dir("torch") or "\0"
        self.transparent = tuple(sorted(_library_dirs() | {p for p in (self.torch_dir, _package_dir("numpy")) if p}))
        self.triton_dir = _package_dir("triton") or "\0"
        self.trusted = tuple(p for p in [_package_dir("tritonrl")] if p)

    def of(self, f, *, through_imports: bool = False) -> str:  # noqa: ANN001 (a frame)
        """'candidate', 'triton', 'import' or 'trusted' for the code running in frame `f` (walking outward).

        With `through_imports`, import machinery is transparent too and whoever started the import decides (used for
        file opens: importlib's loaders can read any path)."""
        while f is not None:
            fn = f.f_code.co_filename
            # Trusted packages first: site-packages sits under the stdlib prefix, which is transparent.
            if fn.startswith(self.triton_dir):
                return "triton"
            if fn.startswith(self.trusted):
                return "trusted"
            if fn.startswith("<frozen importlib") and not through_imports:
                # Python's import machinery, e.g. torch lazily importing a submodule on the candidate's behalf.
                # Which modules a candidate may import is the static rules' job; imports of already-loaded modules
                # raise no event at all.
                return "import"
            if fn.startswith("<") or fn.startswith(self.transparent):
                # Pseudo-files (<string>, torch's generated <_remote_module...>) belong to whoever ran them: walk on.
                f = f.f_back
                continue
            return "candidate"  # includes code at the bottom of a thread the candidate started
        return "trusted"  # only transparent frames down to the worker's <string> bootstrap

    def culprit(self, f) -> str:  # noqa: ANN001
        """file:line of the frame that decided the origin (for messages)."""
        while f is not None:
            fn = f.f_code.co_filename
            if not (fn.startswith("<") or fn.startswith(self.transparent)):
                return f"{os.path.basename(fn)}:{f.f_lineno}"
            f = f.f_back
        return "?"


class Guard:
    """The audit-hook policy. `report(kind, detail)` is called once per blocked operation (it must not raise)."""

    def __init__(self, workdir: str, report: Callable[[str, str], None], origin: Origin) -> None:
        self.workdir = os.path.realpath(workdir) + os.sep
        self.report = report
        self.origin = origin
        self.enabled = False
        prefixes = {sys.prefix, sys.base_prefix, sys.exec_prefix, *sysconfig.get_paths().values()}
        self.readable = tuple(os.path.realpath(p) + os.sep for p in prefixes) + (self.workdir,)
        # Per thread: while one thread's event is being judged, another thread's events must still be judged (an
        # instance-wide flag let a candidate's second thread act unchecked during that window).
        self._judging = threading.local()
        self._vetted: dict[int, tuple] = {}  # thread -> (executable, argv, real path) of the Popen just allowed
        self.tools = TritonTools(os.environ, origin.triton_dir if origin.triton_dir != "\0" else None)
        self.benign_files = frozenset(_module_files(BENIGN_TAMPER_CALLERS))

    def install(self) -> None:
        self.enabled = True
        sys.addaudithook(self._hook)
        _audit_fork_exec()

    # --- the hook -----------------------------------------------------------------------------------------------
    def _hook(self, event: str, args: tuple) -> None:
        if not self.enabled or getattr(self._judging, "busy", False):
            return
        # An allowed Popen's own spawn is the next event of its thread, or it is not that spawn.
        vetted = self._vetted.pop(threading.get_ident(), None) if self._vetted else None
        if not (
            event == "open"
            or event in NETWORK_EVENTS
            or event in PROCESS_EVENTS
            or event in FILE_MUTATION_EVENTS
            or event in TAMPER_EVENTS
        ):
            return
        self._judging.busy = True  # our own frame walk raises sys._getframe / object.__getattr__ events
        try:
            frame = sys._getframe(1)  # the Python code that triggered the event
            verdict = self._decide(event, args, frame, vetted)
            where = self.origin.culprit(frame) if verdict is not None else ""
        finally:
            frame = None  # no reference cycle through this frame
            self._judging.busy = False
        if verdict is not None:
            kind, detail = verdict
            detail += f" [at {where}]"
            self.report(kind, detail)
            raise PermissionError(f"tritonrl sandbox: {detail}")

    def _decide(self, event: str, args: tuple, frame: FrameType, vetted: tuple | None) -> tuple[str, str] | None:
        if event in NETWORK_EVENTS:
            return "network_access", f"{event} refused (no network in the sandbox)"
        if event == "open":
            return self._decide_open(args, frame)
        origin = self.origin.of(frame)
        if event in PROCESS_EVENTS:
            return self._decide_process(event, args, origin, frame, vetted)
        if event in FILE_MUTATION_EVENTS:
            paths = [a for a in args if isinstance(a, (str, bytes, os.PathLike))]
            if origin == "candidate" or not all(self._in_workdir(p) for p in paths):
                return "file_access", f"{event}{tuple(map(str, paths))} refused"
            return None
        if event in TAMPER_EVENTS and origin == "candidate":
            if os.path.realpath(frame.f_code.co_filename) in self.benign_files:
                return None
            if event == "object.__getattr__" and len(args) > 1 and args[1] in SIGNATURE_ATTRS:
                return None
            return "tampering", f"{event} refused: candidate code may not introspect or patch the runtime"
        return None

    def _decide_process(
        self, event: str, args: tuple, origin: str, frame: FrameType, vetted: tuple | None
    ) -> tuple[str, str] | None:
        """`vetted`: the (executable, argv, real path) of the Popen this thread's previous event allowed, if any."""
        code = frame.f_code
        if event == "subprocess.Popen" and origin == "triton" and (command := _command(args)) is not None:
            why = self.tools.refusal(*command)
            if why is None:
                self._vetted[threading.get_ident()] = (*command, self.tools.real(command[0]))
                return None
            return "process_spawn", f"subprocess.Popen refused (origin: triton): {why}"
        if event == "os.posix_spawn" and vetted and code is _SPAWN_CODES[0] and _command(args) == vetted[:2]:
            return None
        caller = frame.f_back  # the event comes from the wrapper; who called the wrapper decides
        if event == FORK_EXEC_EVENT and vetted and caller is not None and caller.f_code is _SPAWN_CODES[1]:
            argv, executables = args
            if tuple(map(os.fsdecode, argv)) == vetted[1] and self.tools.first_executable(executables) == vetted[2]:
                return None
        program = self._program(args) if event == "subprocess.Popen" else None
        return (
            "process_spawn",
            f"{event} of {program or args[:1]!r} refused (origin: {origin}; only Triton's own tools may run)",
        )

    def _decide_open(self, args: tuple, frame: FrameType) -> tuple[str, str] | None:
        path, mode, flags = (list(args) + [None, None, None])[:3]
        if path is None or isinstance(path, int):  # fdopen of an existing descriptor
            return None
        path = os.fsdecode(path)
        writing = bool(mode and any(c in str(mode) for c in "wax+")) or bool(flags and flags & OPEN_WRITE_FLAGS)
        real = os.path.realpath(path)
        if writing and not (self._in_workdir(real) or real == "/dev/null"):
            return "file_access", f"open({path!r}, write) outside the sandbox directory refused"
        origin = self.origin.of(frame, through_imports=True)
        if origin == "candidate" and (writing or not real.startswith(self.readable)):
            return "file_access", f"open({path!r}) by candidate code refused"
        return None

    @staticmethod
    def _program(args: tuple) -> str | None:
        """The file name of the program a `subprocess.Popen` audit event runs (its `executable`, else argv[0])."""
        executable, argv = (list(args) + [None, None])[:2]
        program = executable if executable is not None else (argv[0] if isinstance(argv, (list, tuple)) and argv
                                                            else argv)  # fmt: skip
        if not isinstance(program, (str, bytes, os.PathLike)):
            return None
        return os.path.basename(os.fsdecode(program))

    def _in_workdir(self, path: object) -> bool:
        # The directory itself counts: O_TMPFILE opens it for writing (tempfile does, on CUDA runs).
        real = os.path.realpath(os.fsdecode(path))  # type: ignore[arg-type]
        return real.startswith(self.workdir) or real + os.sep == self.workdir


# The stdlib frames that start an allowed Popen's program (Popen._posix_spawn calls os.posix_spawn; Popen.
# _execute_child calls _posixsubprocess.fork_exec): a spawn from any other frame is not that Popen's.
_SPAWN_CODES = (subprocess.Popen._posix_spawn.__code__, subprocess.Popen._execute_child.__code__)


def _audit_fork_exec() -> None:
    """`_posixsubprocess.fork_exec` starts a process and raises no audit event (Popen's audit comes before it, and
    multiprocessing calls it directly): wrap it so that it raises FORK_EXEC_EVENT with its argv and program paths."""
    import _posixsubprocess

    original = _posixsubprocess.fork_exec
    if getattr(original, "__module__", None) == __name__:
        return  # already wrapped (a second guard in this process: tests)

    def fork_exec(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
        sys.audit(FORK_EXEC_EVENT, list(args[0] or ()), list(args[1] or ()))
        return original(*args, **kwargs)

    # subprocess binds it at import (`from _posixsubprocess import fork_exec as _fork_exec`): every loaded name of
    # the original is replaced, as for the dispatch internals (recorder.guard_dispatch_internals)
    for module in list(sys.modules.values()):
        namespace = getattr(module, "__dict__", None)
        if isinstance(namespace, dict):
            for name, value in list(namespace.items()):
                if value is original:
                    namespace[name] = fork_exec


def _command(args: tuple) -> tuple | None:
    """(executable, argv) of a `subprocess.Popen` or `os.posix_spawn` event, as comparable text (both events carry
    them first, and Popen passes its own to posix_spawn unchanged); None when they are not paths and strings."""
    executable, argv = (list(args) + [None, None])[:2]
    if not isinstance(argv, (list, tuple)) or not all(isinstance(a, (str, bytes, os.PathLike)) for a in argv):
        return None
    if not isinstance(executable, (str, bytes, os.PathLike)):
        return None
    return os.fsdecode(executable), tuple(os.fsdecode(a) for a in argv)
