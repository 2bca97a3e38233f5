"""Runtime provenance recording inside the worker: every aten op and every Triton launch during `forward`.

- `Recorder` is a TorchDispatchMode, so it sees ops at the dispatcher: `@`, tensor methods, `torch.ops.aten.*`,
  functional calls, nn modules, ops reached through getattr or exec all arrive as aten ops. It records EVERY op
  issued while the candidate's call is in progress (the recording window, see `worker/main.py`), whoever issued it:
  the parent classifies each op by what it is (`verify/provenance.py`), not by which Python frame asked for it. This
  is sound because Triton's own launch machinery issues only allocation, copy, alias and metadata ops (measured on
  triton 3.6: the CPU interpreter's host copies are `new_empty`, `set_`, `empty`, `copy_`; the autotuner's L2 flush
  and restore are `empty`, `zero_`, `clone`, `copy_`), so no compute op in the window can be Triton's. Every fresh
  allocation in the window is poisoned (NaN or a sentinel) so unwritten output elements cannot pass.
- `patch_triton_launches` wraps `JITFunction.run` / `InterpretedFunction.run` to record launches and whether the
  kernel was defined in the candidate file, and in ghost mode to skip candidate kernels (Ghost Replay).
- `integrity_snapshot` records the identity of every public attribute of torch, torch.Tensor, torch.nn.functional,
  triton and triton.language; a changed snapshot after candidate code ran means monkeypatching.
The parent applies the policy to these records (`verify/provenance.py`); this module only observes.
"""

from __future__ import annotations

import collections
import os
import re
import signal
import sys
from typing import Any

import torch
from torch.utils._python_dispatch import TorchDispatchMode

from tritonrl.verify.messages import poison_value
from tritonrl.verify.worker.guard import Origin

ALLOC_OPS = frozenset(
    {
        "aten.empty",
        "aten.empty_like",
        "aten.empty_strided",
        "aten.new_empty",
        "aten.new_empty_strided",
    }
)


class Recorder(TorchDispatchMode):
    """Counts every aten op in the recording window and poisons every fresh allocation."""

    @classmethod
    def _should_skip_dynamo(cls) -> bool:
        # Otherwise torch wraps __torch_dispatch__ in a dynamo-disable shim whose first call imports torch._dynamo
        # (~800 modules, 1.2 s measured on this 2-core machine). We never compile inside the mode.
        return False

    def __init__(self) -> None:
        super().__init__()
        self.poison_kind: str | None = None  # "nan" | "sentinel" | None
        self.ops: collections.Counter[str] = collections.Counter()

    def reset(self, poison_kind: str | None) -> None:
        self.poison_kind = poison_kind
        self.ops = collections.Counter()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):  # noqa: ANN001
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        name = op_name(func, args, kwargs)
        self.ops[name] += 1
        if self.poison_kind and name in ALLOC_OPS and isinstance(out, torch.Tensor):
            value = poison_value(out.dtype, self.poison_kind)
            if value is not None and out.numel():
                out.fill_(value)
        return out


def op_name(func: Any, args: tuple, kwargs: dict) -> str:
    """The op's name, with `[dtype-change]` for a copy that converts: a cast computes (rounding, saturation, bool of
    a float), so it is judged apart from a plain copy."""
    name = str(func.overloadpacket)
    if name == "aten._to_copy" and args and isinstance(args[0], torch.Tensor):
        if kwargs.get("dtype", args[0].dtype) != args[0].dtype:
            return "aten._to_copy[dtype-change]"
    elif name == "aten.copy_" and len(args) > 1 and isinstance(args[1], torch.Tensor):
        if args[0].dtype != args[1].dtype:
            return "aten.copy_[dtype-change]"
    return name


class LaunchLog:
    """Triton launches seen during the current forward, plus the ghost-replay switch."""

    def __init__(self, candidate_file: str, report: Any = None) -> None:
        self.candidate_file = os.path.realpath(candidate_file)
        self.launches: list[tuple[str, bool]] = []
        self.ghost = False
        self.report = report or (lambda kind, detail: None)
        self.expected_stream: int | None = None  # cuda: the stream the harness called forward on

    def check_stream(self, name: str) -> None:
        """A launch on another stream escapes the events that time the call (and its outputs may be read before
        the work finishes): refused."""
        if self.expected_stream is None:
            return
        import torch

        stream = torch.cuda.current_stream().cuda_stream
        if stream != self.expected_stream:
            self.report("timing_escape", f"Triton kernel {name} was launched on a side stream")
            raise PermissionError("tritonrl sandbox: kernels must launch on the stream forward was called on")

    def is_candidate(self, kernel: Any) -> bool:
        fn = getattr(kernel, "fn", None)
        code = getattr(fn, "__code__", None)
        return bool(code) and os.path.realpath(code.co_filename) == self.candidate_file


def patch_triton_launches(log: LaunchLog) -> None:
    """Wrap the kernel-launch entry points of JITFunction and InterpretedFunction."""
    import triton.runtime.jit as jit_mod

    classes: list[type] = [jit_mod.JITFunction]
    try:
        from triton.runtime.interpreter import InterpretedFunction

        classes.append(InterpretedFunction)
    except ImportError:  # pragma: no cover - very old triton
        pass
    for cls in classes:
        original = cls.run

        def run(self, *args, _original=original, **kwargs):  # noqa: ANN001
            if kwargs.get("warmup"):
                return _original(self, *args, **kwargs)
            candidate = log.is_candidate(self)
            name = getattr(getattr(self, "fn", None), "__name__", repr(self))
            log.launches.append((name, candidate))
            log.check_stream(name)
            if getattr(self, "pre_run_hooks", None):
                # Hooks run inside Triton's launcher, so their torch ops look like Triton's own; a C callable such
                # as torch.Tensor.relu_ leaves no candidate frame behind. No honest kernel needs one.
                log.report("tampering", "a pre-run hook was registered on a Triton kernel (runs torch ops unseen)")
                raise PermissionError("tritonrl sandbox: pre-run hooks on Triton kernels are refused")
            if log.ghost and candidate:
                return None  # Ghost Replay: the kernel does nothing; the output must then differ
            return _original(self, *args, **kwargs)

        cls.run = run


DISPATCH_INTERNALS = (
    "_pop_torch_dispatch_stack",
    "_push_on_torch_dispatch_stack",
    "_set_dispatch_mode",
    "_unset_dispatch_mode",
    "_DisableTorchDispatch",
    "_DisablePythonDispatcher",
    "_dispatch_tls_set_dispatch_key_excluded",
    "_dispatch_tls_set_dispatch_key_included",
    "_SetExcludeDispatchKeyGuard",
    "_pop_mode",
    "_push_mode",
    "_disable_current_modes",
    "_pop_mode_temporarily",
)


# Every torch._C binding that changes which dispatch keys run, matched by name at start-up rather than listed one by
# one: a list held only the guards earlier attacks used, and wave 2 hid torch.matmul from the Recorder with
# `ExcludeDispatchKeyGuard(Python | PythonTLSSnapshot)`, which was not on it. Guards that only exclude autograd keys
# (`_AutoDispatchBelowAutograd`, used by torch.library's autograd glue) or restore the current set
# (`_PreserveDispatchKeyGuard`) cannot skip the Python key and stay unwrapped.
DISPATCH_TLS_NAMES = re.compile(r"^_?(Exclude|Include|Force|SetExclude)DispatchKeyGuard$|^_dispatch_tls_set_"
                                r"|^_RestorePythonTLSSnapshot$|PythonDispatcher$|^_DisableTorchDispatch$")  # fmt: skip


def dispatch_internals() -> list[str]:
    """The torch._C names `guard_dispatch_internals` wraps: the fixed list and every name the pattern matches."""
    return sorted(set(DISPATCH_INTERNALS) | {n for n in dir(torch._C) if DISPATCH_TLS_NAMES.search(n)})


def _formatting(frame: Any) -> bool:
    while frame is not None:
        if frame.f_code.co_filename.endswith(os.path.join("torch", "_tensor_str.py")):
            return True
        frame = frame.f_back
    return False


class Window:
    """Whether the candidate's call is in progress: set by the worker from the call of the module until its outputs
    are copied out, with a garbage collection inside (so finalisers run while recorded)."""

    def __init__(self) -> None:
        self.active = False
        try:
            import triton.runtime.interpreter as interpreter

            self.interpreter_file = os.path.realpath(interpreter.__file__)
        except ImportError:  # pragma: no cover - a triton without the interpreter
            self.interpreter_file = "\0"

    def refuses(self, origin: Origin, caller: Any) -> bool:
        """Inside the window everyone is refused but the Triton interpreter's own code (its host copies of kernel
        arguments read storages): a torch builtin handed to Triton as a heuristic or hook runs with only Triton's
        frames around it, so "no candidate frame" proves nothing there. Outside the window (import, __init__) the
        candidate's own frames are refused."""
        if self.active:
            return os.path.realpath(caller.f_code.co_filename) != self.interpreter_file
        return origin.of(caller) == "candidate"


def guard_dispatch_internals(origin: Origin, window: Window, report: Any) -> None:
    """Make the torch internals that could hide ops from the Recorder refuse (see `Window.refuses`).

    Wrapped on torch._C and wherever a loaded torch module bound the same object at import (torch.utils.
    _python_dispatch, torch._ops, ...), so no second name reaches the original. The static rules already reject
    private attributes; this catches the same attempt at run time (e.g. via `operator.attrgetter("_C")`)."""
    wrappers: dict[int, Any] = {}
    for name in dispatch_internals():
        original = torch._C.__dict__.get(name)
        if original is None:
            import torch.utils._python_dispatch as pd  # names that only exist there (_pop_mode, ...)

            original = pd.__dict__.get(name)
        if original is None or id(original) in wrappers:
            continue

        def wrapper(*args, _original=original, _name=name, **kwargs):  # noqa: ANN001
            frame = sys._getframe(1)
            if window.refuses(origin, frame):
                if _formatting(frame):  # print(tensor) in forward: torch's repr reads values with modes off
                    report("torch_compute", "a tensor was formatted (print/str/repr) in forward, which reads its "
                           "values on the host; remove debug prints of tensors")  # fmt: skip
                else:
                    report("tampering", f"{_name} called during the candidate's call (would hide ops)")
                raise PermissionError(f"tritonrl sandbox: {_name} refused")
            return _original(*args, **kwargs)

        wrappers[id(original)] = wrapper
    for module in [m for name, m in list(sys.modules.items()) if name == "torch" or name.startswith("torch.")]:
        for attr, value in list(getattr(module, "__dict__", {}).items()):
            if id(value) in wrappers and not attr.startswith("__"):
                setattr(module, attr, wrappers[id(value)])


def python_key_excluded() -> bool:
    """The Python dispatch key is excluded in this thread: ops would run without reaching any dispatch mode."""
    return bool(torch._C._dispatch_tls_is_dispatch_key_excluded(torch._C.DispatchKey.Python))


# Ways data leaves torch without an aten op, after which host Python or numpy can compute unseen by the Recorder.
HOST_ESCAPES = ("numpy", "tolist", "__array__", "__dlpack__", "untyped_storage", "storage")
MAX_ITEM_CALLS = 64  # .item() per forward: a few scalars are fine, an element-by-element Python loop is not


def guard_host_escapes(origin: Origin, window: Window, report: Any) -> None:
    """Refuse the Tensor methods that hand tensor data to Python/numpy (and torch.from_numpy), and thread creation
    (dispatch modes are per thread: ops in another thread go unrecorded); who is refused: `Window.refuses`."""
    import _thread
    import threading

    def refusing(owner: Any, name: str, kind: str, why: str) -> None:
        original = getattr(owner, name, None)
        if original is None:
            return

        def wrapper(*args, _original=original, **kwargs):  # noqa: ANN001
            caller = sys._getframe(1)
            if window.refuses(origin, caller):
                report(kind, f"{name} called in the candidate's call: {why}")
                raise PermissionError(f"tritonrl sandbox: {name} refused")
            return _original(*args, **kwargs)

        setattr(owner, name, wrapper)

    for name in HOST_ESCAPES:
        refusing(torch.Tensor, name, "torch_compute", "tensor data leaves torch, so computing on it is unseen")
    refusing(torch, "from_numpy", "torch_compute", "numpy results come back without a Triton kernel")
    # Neither torch nor Triton starts a Python thread in a forward or a launch (intra-op threads are native).
    refusing(_thread, "start_new_thread", "process_spawn", "work in another thread escapes the Recorder")
    refusing(threading, "_start_new_thread", "process_spawn", "work in another thread escapes the Recorder")


def integrity_snapshot() -> dict[str, object]:
    """Every public attribute of the objects a timing/correctness cheat would patch."""
    import time

    import triton
    import triton.language as tl

    targets = {
        "torch": torch,
        "torch.Tensor": torch.Tensor,
        "torch.nn.functional": torch.nn.functional,
        "torch.nn.Module": torch.nn.Module,
        "torch.cuda": torch.cuda,
        # what the timing loop calls (verify/worker/timing.py): events, graphs, streams and the host clock
        "torch.cuda.Event": torch.cuda.Event,
        "torch.cuda.CUDAGraph": torch.cuda.CUDAGraph,
        "torch.cuda.Stream": torch.cuda.Stream,
        "time": time,
        "triton": triton,
        "triton.language": tl,
    }
    snap = {}
    for prefix, obj in targets.items():
        for name, value in list(vars(obj).items()):
            # Callables only: patches replace functions and classes, while data attributes change legitimately
            # (torch.cuda.default_generators is rebuilt when CUDA initialises).
            if not name.startswith("_") and callable(value):
                snap[f"{prefix}.{name}"] = value
    # A Python signal handler runs candidate code whenever its signal arrives: outside every recording window,
    # between GPU steps, during another candidate's timing. No audit event sees it being installed.
    for sig in signal.valid_signals():  # Signals members, plain ints for the real-time ones
        name = sig.name if isinstance(sig, signal.Signals) else f"signal {sig}"
        snap[f"signal handler {name}"] = signal.getsignal(sig)
    return snap


def integrity_diff(before: dict[str, object], after: dict[str, object], library_dirs: tuple[str, ...]) -> list[str]:
    """Entries rebound or deleted since `before`, except rebinding to a Python function that torch or triton
    defined themselves (torch._dynamo rebinds torch.manual_seed when something first imports it). Entries added
    since are ignored: libraries add submodule attributes lazily, which patches nothing."""
    changed = []
    for key, old in before.items():
        new = after.get(key, _MISSING)
        if new is old:
            continue
        code = getattr(new, "__code__", None)
        if code is not None and os.path.realpath(code.co_filename).startswith(library_dirs):
            continue
        changed.append(key)
    return sorted(changed)


_MISSING = object()
