"""The sandboxed worker: the only place candidate code is ever imported. Started by `verify/sandbox.py`.

Protocol (see `protocol.py`): read a 32-byte key and one request frame from stdin, then close stdin; set limits;
import the candidate from its file; for each shape construct `ModelNew(*init_args)` under the reference's seed and
load the reference's matching state-dict entries; run every input case under the provenance `Recorder`, and send
one authenticated frame per case (outputs, ops by origin, Triton launches, input mutation, integrity findings).
Case 0 is also run in ghost mode (candidate kernels skipped) and repeated with the other poison value. On cuda, when
the request asks for timing, the worker then says "await_timing" and waits on the control pipe: the parent answers
once it has judged every case correct and holds the GPU exclusively; the worker times (`worker_timing.py`), sends
the raw samples, and runs case 0 once more under the recorder ("post_timing"), so a candidate that changes behaviour
after many calls is caught. The worker never sees reference outputs and never decides pass/fail: the parent does.
"""

from __future__ import annotations

import os
import sys
import time
import traceback
from typing import Any

from tritonrl.verify.protocol import CONTROL_FD_ENV, DEVICE_ENV, RESULT_FD_ENV

CLONE_NEWNET = 0x40000000


def _set_limits(limits: dict[str, Any]) -> None:
    import resource

    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    fsize = int(limits["fsize_mb"]) << 20
    resource.setrlimit(resource.RLIMIT_FSIZE, (fsize, fsize))
    if limits.get("as_mb"):  # CPU only: CUDA reserves ~17 GiB of address space (notes/training.md 4.4)
        as_bytes = int(limits["as_mb"]) << 20
        resource.setrlimit(resource.RLIMIT_AS, (as_bytes, as_bytes))
    if os.geteuid() != 0:  # root ignores RLIMIT_NPROC; for others bound process creation
        soft, hard = resource.getrlimit(resource.RLIMIT_NPROC)
        resource.setrlimit(resource.RLIMIT_NPROC, (min(4096, hard) if hard != -1 else 4096, hard))


def _isolate_network() -> bool:
    """A private network namespace (no interfaces up). Needs CAP_SYS_ADMIN; False when unavailable."""
    import ctypes

    try:
        libc = ctypes.CDLL(None, use_errno=True)
        return libc.unshare(CLONE_NEWNET) == 0
    except OSError:
        return False


def _classify(exc: BaseException) -> str:
    if isinstance(exc, SystemExit):
        return "exited"
    if isinstance(exc, MemoryError):
        return "memory_limit"
    # Message matching only for errors torch raised itself: a candidate can put any text in its own exceptions.
    if type(exc).__module__.split(".")[0] != "torch" and type(exc) is not RuntimeError:
        return "runtime_error"
    text = _safe_str(exc)
    if "can't allocate memory" in text or "out of memory" in text.lower():
        return "memory_limit"
    if type(exc).__name__ == "AcceleratorError" and any(s in text for s in _MEMORY_FAULTS):
        return "crash"  # a GPU memory fault is the device's segfault (and is sticky)
    return "runtime_error"


def _safe_str(exc: BaseException) -> str:
    try:
        return str(exc)
    except Exception:  # noqa: BLE001 - a candidate's exception may raise from __str__
        return f"<{type(exc).__name__} whose message could not be read>"


_MEMORY_FAULTS = ("illegal memory access", "misaligned address", "unspecified launch failure", "illegal address")


def _format_exc(exc: BaseException, limit_chars: int = 4000) -> str:
    try:
        text = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__, limit=-6))
    except Exception:  # noqa: BLE001 - a hostile exception can break formatting; keep its type
        text = f"{type(exc).__name__}: {_safe_str(exc)}"
    return text[-limit_chars:]


class Worker:
    def __init__(self, request: dict[str, Any], key: bytes, result_fd: int, control_fd: int = -1) -> None:
        import torch

        from tritonrl.verify.protocol import write_frame
        from tritonrl.verify.worker.guard import Guard, Origin
        from tritonrl.verify.worker.recorder import (
            LaunchLog,
            Recorder,
            guard_dispatch_internals,
            guard_host_escapes,
            integrity_snapshot,
            patch_triton_launches,
        )

        self.torch = torch
        self.req = request
        self.device = request["device"]
        self._write = lambda msg: write_frame(result_fd, msg, key)
        self.key = key
        self.control_fd = control_fd
        self.timing_ctx: Any = None
        self.origin = Origin()
        self.log = LaunchLog(request["candidate_path"], self._violation)
        patch_triton_launches(self.log)
        self.recorder = Recorder(self.origin)
        guard_dispatch_internals(self.origin, self._violation)
        guard_host_escapes(self.origin, self._violation)
        self.guard = Guard(request["workdir"], self._violation, self.origin)
        self.snapshot = integrity_snapshot()
        self.threads = _thread_count()

    def send(self, msg: dict[str, Any]) -> None:
        self._write(msg)

    def _violation(self, kind: str, detail: str) -> None:
        self.send({"t": "violation", "kind": kind, "detail": detail})

    def tampering(self) -> list[str]:
        from torch.utils._python_dispatch import _get_current_dispatch_mode

        from tritonrl.verify.worker.recorder import integrity_diff, integrity_snapshot

        libraries = (self.origin.triton_dir, *self.origin.transparent)
        found = [f"patched: {name}" for name in integrity_diff(self.snapshot, integrity_snapshot(), libraries)[:10]]
        if _get_current_dispatch_mode() is not None:
            found.append("a dispatch mode was left active")
        return found

    # --- phases ------------------------------------------------------------------------------------------------
    def load(self) -> Any | None:
        import importlib.util

        t0 = time.perf_counter()
        try:
            spec = importlib.util.spec_from_file_location("candidate", self.req["candidate_path"])
            module = importlib.util.module_from_spec(spec)
            sys.modules["candidate"] = module
            spec.loader.exec_module(module)
        except BaseException as exc:  # noqa: BLE001 - the sandbox boundary: every failure becomes a message
            kind = _classify(exc)
            self.send(
                {
                    "t": "error",
                    "phase": "load",
                    "kind": "import_error" if kind == "runtime_error" else kind,
                    "message": _format_exc(exc),
                }
            )
            return None
        if found := self.tampering():
            self.send({"t": "error", "phase": "load", "kind": "tampering", "message": "; ".join(found)})
            return None
        model_cls = getattr(module, "ModelNew", None)
        if not isinstance(model_cls, type):
            self.send({"t": "error", "phase": "load", "kind": "import_error", "message": "ModelNew is not a class"})
            return None
        self.send({"t": "loaded", "ms": (time.perf_counter() - t0) * 1e3})
        return model_cls

    def construct(self, model_cls: type, shape: dict[str, Any], index: int) -> Any | None:
        torch = self.torch
        try:
            torch.manual_seed(shape["init_seed"])
            model = model_cls(*shape["init_args"])
            own = model.state_dict()
            matching = {k: v for k, v in shape["state_dict"].items() if k in own and own[k].shape == v.shape}
            model.load_state_dict(matching, strict=False)
            return model.to(self.device)
        except BaseException as exc:  # noqa: BLE001
            kind = _classify(exc)
            if kind == "runtime_error" and isinstance(exc, TypeError) and "argument" in str(exc):
                kind = "bad_signature"
            self.send({"t": "error", "phase": "construct", "kind": kind, "shape": index, "message": _format_exc(exc)})
            return None

    def run_case(
        self, model: Any, inputs: list[Any], poison: str | None, mode: str, max_output_numel: float = float("inf")
    ) -> dict[str, Any]:
        torch = self.torch
        from torch.utils._python_dispatch import _get_current_dispatch_mode

        dev_inputs = [x.to(self.device).clone() if isinstance(x, torch.Tensor) else x for x in inputs]
        self.log.launches.clear()
        if self.device == "cuda":  # every candidate launch must go to the stream forward was called on
            self.log.expected_stream = torch.cuda.current_stream().cuda_stream
        self.log.ghost = mode == "ghost"
        self.recorder.reset(poison)
        t0 = time.perf_counter()
        try:
            with torch.no_grad(), self.recorder:
                out = model(*dev_inputs)
                mode_ok = _get_current_dispatch_mode() is self.recorder
                # Unpacked inside the Recorder and by exact type: a list subclass's __iter__ or a Tensor subclass
                # could otherwise compute (or defer) after recording stops.
                container = type(out).__name__ if type(out) in (tuple, list) else "tensor"
                outs = list(out) if type(out) in (tuple, list) else [out]
            if self.device == "cuda":
                torch.cuda.synchronize()
        finally:
            self.log.ghost = False
        ms = (time.perf_counter() - t0) * 1e3
        tamper = self.tampering()
        if not mode_ok:
            tamper.append("the provenance recorder was displaced during forward")
        from tritonrl.verify.worker.recorder import MAX_ITEM_CALLS

        if self.recorder.candidate_ops["aten._local_scalar_dense"] > MAX_ITEM_CALLS:
            tamper.append(f"forward read more than {MAX_ITEM_CALLS} tensor elements into Python with .item()")
        structure = None
        if not all(type(o) is torch.Tensor for o in outs):  # exact type: subclasses can defer or fake values
            structure = f"forward returned {type(out).__name__} of {[type(o).__name__ for o in outs]}"
            outs = []
        elif sum(o.numel() for o in outs) > max_output_numel:
            structure = f"forward returned {sum(o.numel() for o in outs)} elements, far more than the reference"
            outs = []
        return {
            "t": "case",
            "mode": mode,
            "container": container,
            "outputs": [o.detach().to("cpu").contiguous().clone() for o in outs],
            "structure_error": structure,
            "ops": dict(self.recorder.candidate_ops),
            "launch_ops": dict(self.recorder.launch_ops),
            "launches": [list(x) for x in self.log.launches],
            "mutated": [_mutated(a, b) for a, b in zip(inputs, dev_inputs, strict=True)],
            "threads": _thread_count() - self.threads,
            "tamper": tamper,
            "ms": ms,
        }

    def run(self) -> None:
        model_cls = self.load()
        if model_cls is None:
            return
        base_model = None
        for i, shape in enumerate(self.req["shapes"]):
            model = self.construct(model_cls, shape, i)
            if model is None:
                return
            base_model = model if i == 0 else base_model
            for j, case in enumerate(shape["cases"]):
                modes = ["normal"]
                if i == 0 and j == 0:
                    modes += ["ghost"] * self.req["ghost"] + ["repeat"] * self.req["repeat"]
                for mode in modes:
                    poison = case["poison"]
                    if mode == "repeat" and poison:
                        poison = "nan" if poison == "sentinel" else "sentinel"
                    try:
                        msg = self.run_case(model, case["inputs"], poison, mode, case["max_output_numel"])
                    except BaseException as exc:  # noqa: BLE001
                        self.send(
                            {
                                "t": "error",
                                "phase": "forward",
                                "kind": _classify(exc),
                                "shape": i,
                                "case": j,
                                "mode": mode,
                                "message": _format_exc(exc),
                            }
                        )
                        return
                    self.send({**msg, "shape": i, "case": j})
        if self.timing_ctx is not None and base_model is not None:
            self.time_phase(base_model)

    def time_phase(self, model: Any) -> None:
        from tritonrl.verify.protocol import read_frame
        from tritonrl.verify.worker.timing_phase import run_timing

        self.send({"t": "await_timing"})
        go = read_frame(self.control_fd, self.key)
        if not (isinstance(go, dict) and go.get("go")):
            return
        try:
            msg = run_timing(self, model, self.timing_ctx)
        except BaseException as exc:  # noqa: BLE001
            self.send({"t": "error", "phase": "timing", "kind": _classify(exc), "message": _format_exc(exc)})
            return
        msg["tamper"] = self.tampering()
        msg["threads"] = _thread_count() - self.threads
        self.send(msg)
        case = self.req["shapes"][0]["cases"][0]
        try:
            post = self.run_case(model, case["inputs"], case["poison"], "post_timing", case["max_output_numel"])
        except BaseException as exc:  # noqa: BLE001
            self.send({"t": "error", "phase": "forward", "kind": _classify(exc), "shape": 0, "case": 0,
                       "mode": "post_timing", "message": _format_exc(exc)})  # fmt: skip
            return
        self.send({**post, "shape": 0, "case": 0})


def _thread_count() -> int:
    """Python threads alive, including raw `_thread.start_new_thread` ones that `threading` does not track."""
    import _thread

    return _thread._count()


def _mutated(original: Any, used: Any) -> bool:
    import torch

    if not isinstance(original, torch.Tensor):
        return False
    used = used.detach().to("cpu")
    if used.shape != original.shape or used.dtype != original.dtype:
        return True
    if original.is_floating_point():
        same = (used == original) | (torch.isnan(used) & torch.isnan(original))
        return not bool(same.all())
    return not torch.equal(used, original)


def _warm_up_dispatch() -> None:
    """Enter a dispatch mode once before any candidate code, while the parent is still computing references, so
    first-use imports of the dispatch machinery happen before the integrity snapshot and outside any timing."""
    import torch
    from torch.utils._python_dispatch import TorchDispatchMode

    class _Noop(TorchDispatchMode):
        @classmethod
        def _should_skip_dynamo(cls) -> bool:  # see Recorder._should_skip_dynamo
            return False

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):  # noqa: ANN001
            return func(*args, **(kwargs or {}))

    with _Noop():
        torch.empty(1)


def main() -> None:
    """Entry point (bootstrapped by the parent with `python -P -E -s -u -c ...`)."""
    sys.path[:] = [p for p in sys.path if p not in ("", ".", os.getcwd())]
    result_fd = int(os.environ.pop(RESULT_FD_ENV))
    control_fd = int(os.environ.pop(CONTROL_FD_ENV, "-1"))
    device = os.environ.pop(DEVICE_ENV, "cpu")
    import torch  # noqa: F401 - imported before any candidate code, while we are still trusted
    import triton  # noqa: F401
    import triton.language  # noqa: F401

    from tritonrl.verify.protocol import read_exact, read_frame

    if os.environ.get("TRITON_INTERPRET") == "1":
        from tritonrl.verify.worker.compat import patch_triton_interpreter

        patch_triton_interpreter()
    _warm_up_dispatch()
    if device == "cuda":  # before the request: a pre-started worker (verify/pool.py) is then fully warm
        torch.cuda.init()
        torch.empty(1, device="cuda")
    key = read_exact(0, 32)  # sent by the parent at spawn; the request follows once the parent is ready for it
    if key:
        from tritonrl.verify.protocol import write_frame

        write_frame(result_fd, {"t": "warm"}, key)  # imports and CUDA init done: the parent may take the GPU now
    request = read_frame(0, key) if key else None
    devnull = os.open(os.devnull, os.O_RDONLY)
    os.dup2(devnull, 0)
    os.close(devnull)
    if request is None:
        os._exit(3)
    _set_limits(request["limits"])
    netns = _isolate_network() if request.get("isolate_network", True) else False
    torch.set_num_threads(1)
    if request["device"] == "cuda":  # initialise CUDA before the integrity snapshot and before any candidate code
        torch.cuda.init()
        torch.empty(1, device="cuda")
    worker = Worker(request, key, result_fd, control_fd)
    worker.send({"t": "ready", "netns": netns})
    if request.get("timing") and request["device"] == "cuda":  # trusted setup, before the candidate is imported
        from tritonrl.verify.worker.timing_phase import prepare

        worker.timing_ctx = prepare(torch, request["timing"], request["shapes"][0]["state_dict"])
    if request["guard"]:
        worker.guard.install()
    worker.run()
    worker.send({"t": "done"})
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)  # skip atexit handlers the candidate may have registered


if __name__ == "__main__":
    main()
