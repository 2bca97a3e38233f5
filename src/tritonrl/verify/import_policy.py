"""The import policy of the static checks: which modules a candidate may import, and which it may not even reach.

Fails closed: `is_allowed` holds only for torch, triton, a few pure stdlib modules and what real kernel files use.
`denied` sorts a dotted name (an import, or an attribute chain such as `torch.utils.cpp_extension.load_inline`) into
the FailureKind category that explains the refusal, and `KIND_WHY` words it; `is_module` tells a module path from a
member. Tables and lookups only: `import_rule.py` applies them."""

from __future__ import annotations

from tritonrl.types import FailureKind

ALLOWED_MODULES = frozenset(
    {"torch", "torch.nn", "torch.nn.functional", "torch.nn.init", "triton", "triton.language", "math", "typing"}
    | {"functools", "itertools", "dataclasses", "numbers", "enum", "collections", "collections.abc", "__future__"}
    | {"warnings", "typing_extensions", "abc", "numbers", "operator", "copy"}
    # What real kernel files import (Liger, FlagGems, Unsloth, attorch): loggers, context managers, autograd
    # Functions with AMP decorators, device guards. Their dangerous parts are contained at run time (the audit hook
    # refuses file writes and opens by candidate code; the Recorder classifies every op in forward).
    | {"logging", "contextlib", "torch.amp", "torch.autograd", "torch.cuda", "torch.cuda.amp"}
    # `os` for what kernel files read from it (os.environ.get("TRITON_..."), os.cpu_count(), os.path.join): the
    # members that touch files or processes are denied one by one below, and the audit hook refuses the same
    # operations at run time whatever name reached them (helpers' wave 2: a persistent kernel sizing its grid with
    # os.cpu_count() was rejected for `import os` alone).
    | {"os", "os.path"}
    # numpy for host-side shape arithmetic (`np.prod(x.shape)`, `np.float32`), common in LLM answers (helpers' wave 2).
    # Computing on tensor data needs the data on the host first, which the Recorder refuses in forward; numpy's own
    # file and foreign-memory entry points are denied by name below.
    | {"numpy"}
)
_OS_FILES = ["open", "fdopen", "read", "write", "pread", "pwrite", "remove", "unlink", "rename", "renames", "replace"]
_OS_FILES += ["rmdir", "removedirs", "mkdir", "makedirs", "listdir", "scandir", "walk", "fwalk", "chdir", "fchdir"]
_OS_FILES += ["chmod", "chown", "lchown", "link", "symlink", "readlink", "truncate", "ftruncate", "utime", "mkfifo"]
_OS_FILES += ["mknod", "dup", "dup2", "pipe", "pipe2", "memfd_create", "sendfile", "lseek", "close", "closerange"]
_OS_FILES += ["chroot", "fspath", "fsencode", "fsdecode", "get_inheritable", "set_inheritable", "openpty"]
_OS_PROCESSES = ["system", "popen", "fork", "forkpty", "kill", "killpg", "posix_spawn", "posix_spawnp", "_exit"]
_OS_PROCESSES += ["abort", "wait", "waitpid", "wait3", "wait4", "waitid", "setsid", "setpgid", "nice", "pidfd_open"]
_EXEC_SUFFIXES = ("l", "le", "lp", "lpe", "v", "ve", "vp", "vpe")
_OS_PROCESSES += [f"{verb}{suffix}" for verb in ("exec", "spawn") for suffix in _EXEC_SUFFIXES]
_NUMPY_FILES = ["load", "save", "savez", "savez_compressed", "savetxt", "loadtxt", "genfromtxt", "fromfile"]
_NUMPY_FILES += ["fromregex", "memmap", "DataSource", "lib", "f2py", "distutils", "testing", "ctypeslib", "rec"]
_OS_TAMPERING = ["putenv", "unsetenv", "register_at_fork", "setuid", "setgid", "seteuid", "setegid", "setresuid"]
_OS_TAMPERING += ["sched_setaffinity", "add_dll_directory"]
ALLOWED_PREFIXES = ("triton.language.",)  # triton.language.extra.*, triton.language.math, ...

_K = FailureKind
# Denied modules and torch/triton members by category; a name matches an entry or any dotted child of it. The torch and
# triton entries also apply to attribute chains (`torch.utils.cpp_extension.load_inline` after `import torch`).
DENIED: dict[str, FailureKind] = {
    **dict.fromkeys(
        ["pathlib", "shutil", "io", "tempfile", "glob", "fileinput", "fcntl", "mmap", "zipfile", "tarfile", "sqlite3"]
        + ["torch.save", "torch.load", "torch.from_file"]
        + [f"os.{name}" for name in _OS_FILES]
        + [f"numpy.{name}" for name in _NUMPY_FILES],
        _K.FILE_ACCESS,
    ),
    **dict.fromkeys(
        ["socket", "ssl", "http", "urllib", "urllib3", "requests", "httpx", "aiohttp", "ftplib", "smtplib", "xmlrpc"]
        + ["telnetlib", "poplib", "imaplib", "websocket", "websockets", "asyncio", "torch.distributed", "torch.hub"],
        _K.NETWORK_ACCESS,
    ),
    **dict.fromkeys(
        ["subprocess", "multiprocessing", "threading", "_thread", "concurrent", "signal", "pty", "sched"]
        + ["torch.multiprocessing"]
        + [f"os.{name}" for name in _OS_PROCESSES],
        _K.PROCESS_SPAWN,
    ),
    **dict.fromkeys(
        ["sys", "gc", "inspect", "ctypes", "cffi", "importlib", "builtins", "marshal", "pickle", "dill", "cloudpickle"]
        + ["code", "codeop", "types", "weakref", "atexit", "traceback", "dis", "faulthandler", "resource"]
        + ["typing.get_type_hints", "typing.ForwardRef"]  # both evaluate strings as code
        + ["logging.currentframe"]  # the caller's frame: f_locals/f_back reach the harness (helpers' wave 5)
        + [f"os.{name}" for name in _OS_TAMPERING],
        _K.TAMPERING,
    ),
    **dict.fromkeys(
        ["torch._C", "torch._dynamo", "torch._inductor", "torch.utils", "torch.library", "torch.overrides"]
        + ["torch.nn.modules", "torch.classes", "torch.ops.load_library", "torch.cuda.cudart"]  # global hooks, .so
        + ["torch.cuda.caching_allocator_alloc", "torch.cuda.caching_allocator_delete"]  # allocator reuse
        + ["torch.cuda.change_current_allocator", "torch.set_default_tensor_type", "torch.set_default_dtype"]
        + ["torch.set_default_device", "torch.set_float32_matmul_precision"],  # process-wide numerics
        _K.TAMPERING,
    ),
    **dict.fromkeys(
        ["triton.runtime", "triton.testing", "triton.compiler", "triton.compile", "triton.backends", "triton.knobs"]
        + ["triton.tools"],
        _K.TAMPERING,
    ),
}
# Read-only device queries under a denied prefix, allowed as these exact chains only (the official fused-softmax
# tutorial and code written after it size their grids with them: helpers' wave 2). The driver object itself, any
# shorter chain (`d = driver.active`) and every other member (`utils.load_binary` loads a foreign cubin) stay denied.
READ_ONLY_QUERIES = frozenset(
    f"triton.runtime.driver.active.{member}"
    for member in ("get_active_torch_device", "get_current_device", "get_current_target", "get_device_capability",
                   "utils.get_device_properties")
)  # fmt: skip
# `from triton.runtime import driver` binds only a name whose every use is then checked against the chains above.
QUERY_GATEWAYS = frozenset({"triton.runtime.driver"})
# Stdlib modules that torch and triton re-export as attributes (`torch.os.system`): denied anywhere in a chain. Not
# "signal", "types" or "code", which are also names of harmless torch submodules and attributes.
_INNER_DENIED = {m: k for m, k in DENIED.items() if "." not in m and m not in ("signal", "types", "code")}
_INNER_DENIED["os"] = _K.FILE_ACCESS  # `torch.os.<anything>`: a kernel imports os itself, it never reaches it via torch
_MODULE_PATHS = ALLOWED_MODULES | {
    "triton.language.math",
    "triton.language.extra",
    *(f"triton.language.extra{sub}{lib}" for sub in (".cuda", ".hip", "") for lib in ("", ".libdevice")),
}
KIND_WHY = {
    _K.FILE_ACCESS: "touches the file system",
    _K.NETWORK_ACCESS: "opens network connections",
    _K.PROCESS_SPAWN: "starts processes or threads",
    _K.TAMPERING: "reaches interpreter or framework internals",
}


def is_allowed(module: str) -> bool:
    return module in ALLOWED_MODULES or module.startswith(ALLOWED_PREFIXES)


def denied(dotted: str) -> FailureKind | None:
    """The category `dotted` is denied under: its longest denied prefix, else a re-exported stdlib module in it."""
    if dotted in READ_ONLY_QUERIES:
        return None
    parts = dotted.split(".")
    for n in range(len(parts), 0, -1):
        if kind := DENIED.get(".".join(parts[:n])):
            return kind
    return next((_INNER_DENIED[p] for p in parts[1:] if p in _INNER_DENIED), None)


def is_module(path: str) -> bool:
    return path in _MODULE_PATHS  # `from triton import jit` binds a function, not a module
