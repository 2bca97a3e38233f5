"""The worker's phases over one candidate: load the file, construct ModelNew per shape, run every case inside a
recording window, the second environment profile, and the GPU timing phase. Runs only in the sandboxed worker."""

from __future__ import annotations

import contextlib
import dataclasses
import os
import sys
import time
from collections.abc import Iterator
from typing import Any

from tritonrl.verify.messages import (
    AwaitTiming,
    CaseFrame,
    CaseRequest,
    Frame,
    GpuAsk,
    GpuFree,
    GpuGo,
    Loaded,
    Mode,
    Request,
    ShapeRequest,
    TimingGo,
    Violation,
    WorkerError,
    case_poison,
    decode,
)
from tritonrl.verify.worker.failures import classify, format_exc


class Worker:
    def __init__(self, request: Request, key: bytes, result_fd: int, control_fd: int = -1) -> None:
        import torch

        from tritonrl.verify.protocol import write_frame
        from tritonrl.verify.worker.guard import Guard, Origin
        from tritonrl.verify.worker.recorder import (
            LaunchLog,
            Recorder,
            Window,
            guard_dispatch_internals,
            guard_host_escapes,
            integrity_snapshot,
            patch_triton_launches,
        )

        self.torch = torch
        self.req = request
        self.device = request.device
        self._write = lambda msg: write_frame(result_fd, msg, key)
        self.key = key
        self.control_fd = control_fd
        self.timing_ctx: Any = None
        # Every model built stays referenced until the process exits (os._exit, no collection): freed earlier, a
        # candidate's finaliser would run between GPU steps.
        self.models: list[Any] = []
        self.origin = Origin()
        self.log = LaunchLog(request.candidate_path, self._violation)
        patch_triton_launches(self.log)
        self.recorder = Recorder()
        self.window = Window()
        guard_dispatch_internals(self.origin, self.window, self._violation)
        guard_host_escapes(self.origin, self.window, self._violation)
        self.guard = Guard(request.workdir, self._violation, self.origin)
        self.snapshot = integrity_snapshot()
        self.threads = _thread_count()

    def send(self, frame: Frame) -> None:
        self._write(frame.to_wire())

    @contextlib.contextmanager
    def gpu_step(self) -> Iterator[None]:
        """A step that may use the GPU runs while the parent holds it shared for us (`Request.gpu_steps`): ask, wait
        for the answer, run, and free it once the device has finished the step's work. Between steps only trusted
        code runs here (a thread left by a case fails it, collection is off, every model built is kept), so another
        candidate's timing never shares the GPU with this one, and it waits for one step to end, not for this
        candidate's whole correctness phase (docs/benchmarks.md 9)."""
        if not self.req.gpu_steps:
            yield
            return
        from tritonrl.verify.protocol import read_frame

        self.send(GpuAsk())
        wire = read_frame(self.control_fd, self.key)  # None: the parent closed the pipe (it stopped this worker)
        if wire is None or not isinstance(decode(wire), GpuGo):
            os._exit(3)
        yield
        if self.device == "cuda":
            try:
                self.torch.cuda.synchronize()  # queued work of the step is done before the parent lets timing in
            except BaseException:  # noqa: BLE001 - a broken context: the GPU is not known idle, so never freed
                os._exit(4)
        self.send(GpuFree())

    def _violation(self, kind: str, detail: str) -> None:
        self.send(Violation(kind=kind, detail=detail))

    def tampering(self) -> list[str]:
        from torch.utils._python_dispatch import _get_current_dispatch_mode

        from tritonrl.verify.worker.recorder import integrity_diff, integrity_snapshot

        libraries = (self.origin.triton_dir, self.origin.torch_dir)  # torch._dynamo rebinds torch.manual_seed
        found = [f"patched: {name}" for name in integrity_diff(self.snapshot, integrity_snapshot(), libraries)[:10]]
        if _get_current_dispatch_mode() is not None:
            found.append("a dispatch mode was left active")
        return found

    # --- phases ------------------------------------------------------------------------------------------------
    def _import(self, name: str) -> Any:
        """Import the candidate file as module `name`, as `import name` would with the file on sys.path."""
        import importlib.util

        spec = importlib.util.spec_from_file_location(name, self.req.candidate_path)
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
        return module

    def load(self) -> Any | None:
        t0 = time.perf_counter()
        try:
            module = self._import(os.path.splitext(os.path.basename(self.req.candidate_path))[0])
        except BaseException as exc:  # noqa: BLE001 - the sandbox boundary: every failure becomes a message
            kind = classify(exc)
            kind = "import_error" if kind == "runtime_error" else kind
            self.send(WorkerError(phase="load", kind=kind, message=format_exc(exc)))
            return None
        if found := self.tampering():
            self.send(WorkerError(phase="load", kind="tampering", message="; ".join(found)))
            return None
        model_cls = getattr(module, "ModelNew", None)
        if not isinstance(model_cls, type):
            self.send(WorkerError(phase="load", kind="import_error", message="ModelNew is not a class"))
            return None
        self.send(Loaded(load_ms=(time.perf_counter() - t0) * 1e3))
        return model_cls

    def construct(self, model_cls: type, shape: ShapeRequest, index: int) -> Any | None:
        torch = self.torch
        try:
            torch.manual_seed(shape.init_seed)
            model = model_cls(*shape.init_args)
            own = model.state_dict()
            matching = {k: v for k, v in shape.state_dict.items() if k in own and own[k].shape == v.shape}
            model.load_state_dict(matching, strict=False)
            model = model.to(self.device)
            self.models.append(model)
            return model
        except BaseException as exc:  # noqa: BLE001
            kind = classify(exc)
            if kind == "runtime_error" and isinstance(exc, TypeError) and "argument" in str(exc):
                kind = "bad_signature"
            self.send(WorkerError(phase="construct", kind=kind, message=format_exc(exc), shape=index))
            return None

    def call_problems(self, model: Any) -> list[str]:
        """What makes calling `model` run something other than a `forward` written in the candidate file."""
        import inspect
        import types

        nn = self.torch.nn
        cls, found = type(model), []
        if cls.__call__ is not nn.Module.__call__ or cls.__getattribute__ is not nn.Module.__getattribute__:
            found.append("ModelNew overrides __call__ or __getattribute__ (forward must be what runs)")
        if "forward" in vars(model):
            found.append("an instance attribute replaces ModelNew.forward")
        fn = inspect.getattr_static(cls, "forward", None)
        for _ in range(8):  # decorators made with functools.wraps (`@torch.no_grad()`): judge what they wrap
            fn = getattr(fn, "__wrapped__", fn)
        code = getattr(fn, "__code__", None) if isinstance(fn, types.FunctionType) else None
        if code is None or os.path.realpath(code.co_filename) != self.log.candidate_file:
            found.append(f"ModelNew.forward is not a function defined in the candidate file ({fn!r:.80})")
        hooked = [name or "ModelNew" for name, m in model.named_modules() if m._forward_hooks or m._forward_pre_hooks]
        from torch.nn.modules import module as module_mod

        if module_mod._global_forward_hooks or module_mod._global_forward_pre_hooks:
            hooked.append("global module hooks")
        if hooked:
            found.append(f"forward hooks registered on {hooked[:3]} (they run around forward)")
        return found

    def run_case(
        self,
        model: Any,
        inputs: tuple[Any, ...],
        poison: str | None,
        mode: Mode,
        where: tuple[int, int],
        max_output_numel: float = float("inf"),
    ) -> CaseFrame:
        """One call of `model` inside a recording window; `where` is (shape index, case index) for the frame."""
        torch = self.torch
        from torch.utils._python_dispatch import _get_current_dispatch_mode

        from tritonrl.verify.worker.recorder import MAX_ITEM_CALLS, python_key_excluded

        tamper = self.call_problems(model)
        dev_inputs = [x.to(self.device).clone() if isinstance(x, torch.Tensor) else x for x in inputs]
        self.log.launches.clear()
        if self.device == "cuda":  # every candidate launch must go to the stream forward was called on
            self.log.expected_stream = torch.cuda.current_stream().cuda_stream
        self.log.ghost = mode == "ghost"
        self.recorder.reset(poison)
        t0 = time.perf_counter()
        try:
            # The second environment profile runs with grad mode on, as a training script would (always calling under
            # no_grad is a fingerprint: a candidate that checked torch.is_grad_enabled(), helpers' wave 2); its
            # model's parameters then require no grad, so inference code with out= ops (Inductor's mm(out=)) still runs.
            with torch.set_grad_enabled(mode == "profile"), self.recorder:
                self.window.active = True  # after entering the mode: entering it pushes a mode, refused inside
                try:
                    container, outputs, structure = self._call(model, dev_inputs, max_output_numel)
                    mode_ok = _get_current_dispatch_mode() is self.recorder and not python_key_excluded()
                finally:
                    self.window.active = False
        finally:
            self.log.ghost = False
        ms = (time.perf_counter() - t0) * 1e3
        tamper += self.tampering()
        if not mode_ok:
            tamper.append("the provenance recorder was displaced during forward (or the Python dispatch key excluded)")
        if self.recorder.ops["aten._local_scalar_dense"] > MAX_ITEM_CALLS:
            tamper.append(f"forward read more than {MAX_ITEM_CALLS} tensor elements into Python with .item()")
        return CaseFrame(
            shape=where[0],
            case=where[1],
            mode=mode,
            container=container,
            outputs=tuple(outputs),
            structure_error=structure,
            ops=dict(self.recorder.ops),
            launches=tuple(tuple(x) for x in self.log.launches),  # as logged: the parent checks each is (str, bool)
            mutated=tuple(_mutated(a, b) for a, b in zip(inputs, dev_inputs, strict=True)),
            threads=_thread_count() - self.threads,
            tamper=tuple(tamper),
            forward_ms=ms,
        )

    def _call(self, model: Any, inputs: list[Any], max_output_numel: float) -> tuple[str, list[Any], str | None]:
        """The recording window's work: the call, unpacking its result, a garbage collection (finalisers of what the
        call left behind run now, recorded) and copying the outputs out. Nothing of the candidate's can run later
        and still change these outputs; outside windows the collector is off (see main())."""
        import gc

        torch = self.torch
        out = model(*inputs)
        # Unpacked by exact type: a list subclass's __iter__ or a Tensor subclass could compute (or defer).
        container = type(out).__name__ if type(out) in (tuple, list) else "tensor"
        outs = list(out) if type(out) in (tuple, list) else [out]
        del out
        # Generation 0 holds everything made since the previous window (the collector is off outside windows, so
        # nothing is promoted in between): a young collection finds the call's garbage for ~1 ms where a full one
        # costs ~80 ms with torch loaded. Cycles tied to older objects stay uncollected, so their finalisers never
        # run at all (there is no full collection outside a window).
        gc.collect(0)
        structure, outputs = None, []
        if not all(type(o) is torch.Tensor for o in outs):  # exact type: subclasses can defer or fake values
            structure = f"forward returned {container} of {[type(o).__name__ for o in outs]}"
        elif sum(o.numel() for o in outs) > max_output_numel:
            structure = f"forward returned {sum(o.numel() for o in outs)} elements, far more than the reference"
        else:
            if self.device == "cuda":
                torch.cuda.synchronize()
            outputs = [o.detach().to("cpu").contiguous().clone() for o in outs]
        del outs
        gc.collect(0)
        return container, outputs, structure

    def _case(self, model: Any, case: CaseRequest, mode: Mode, i: int, j: int) -> bool:
        """Run one case in `mode` and send its frame (or the error); False when the worker must stop."""
        poison = case_poison(case.poison, mode)
        try:
            frame = self.run_case(model, case.inputs, poison, mode, (i, j), case.max_output_numel)
        except BaseException as exc:  # noqa: BLE001
            self.send(WorkerError(phase="forward", kind=classify(exc), message=format_exc(exc), shape=i, case=j,
                                  mode=mode))  # fmt: skip
            return False
        self.send(frame)
        return True

    def run(self) -> None:
        with self.gpu_step():  # module-level code may use the GPU
            model_cls = self.load()
        if model_cls is None:
            return
        base_model = None
        for i, shape in enumerate(self.req.shapes):
            with self.gpu_step():
                model = self.construct(model_cls, shape, i)
            if model is None:
                return
            base_model = model if i == 0 else base_model
            for j, case in enumerate(shape.cases):
                modes: list[Mode] = ["normal"]
                if i == 0 and j == 0:
                    modes += ["ghost"] * self.req.ghost + ["repeat"] * self.req.repeat
                for mode in modes:
                    with self.gpu_step():
                        ok = self._case(model, case, mode, i, j)
                    if not ok:
                        return
        if self.req.profile and not self.other_profile():
            return
        if self.timing_ctx is not None and base_model is not None:
            self.time_phase(base_model)

    def other_profile(self) -> bool:
        """Case 0 again in a second ordinary environment: the file imported afresh under another module name, torch
        on another thread count, another locale. The parent requires the same launches and the same op record as
        in the first profile, so behaviour that depends on where it runs is caught (a candidate that recognises a
        verifier by one of these would have to recognise it in both)."""
        torch, shape = self.torch, self.req.shapes[0]
        threads, lang = torch.get_num_threads(), os.environ.get("LANG")
        torch.set_num_threads(1 if threads > 1 else 2)
        os.environ["LANG"] = "en_US.UTF-8" if lang != "en_US.UTF-8" else "C.UTF-8"
        try:
            with self.gpu_step():
                try:
                    module = self._import(self.req.profile_module)
                    model_cls = module.ModelNew
                except BaseException as exc:  # noqa: BLE001
                    self.send(WorkerError(phase="load", kind=classify(exc), message=format_exc(exc)))
                    return False
                model = self.construct(model_cls, shape, 0)
                if model is None:
                    return False
                for param in torch.nn.Module.parameters(model):  # the class's own method, not an override
                    param.requires_grad_(False)
                return self._case(model, shape.cases[0], "profile", 0, 0)
        finally:
            torch.set_num_threads(threads)
            if lang is None:
                os.environ.pop("LANG", None)
            else:
                os.environ["LANG"] = lang

    def time_phase(self, model: Any) -> None:
        from tritonrl.verify.protocol import read_frame
        from tritonrl.verify.worker.timing_phase import run_timing

        self.send(AwaitTiming())
        wire = read_frame(self.control_fd, self.key)  # None: the parent closed the pipe (it stopped this worker)
        go = decode(wire) if wire is not None else None
        if not (isinstance(go, TimingGo) and go.go):
            return
        try:
            frame = run_timing(self, model, self.timing_ctx)
        except BaseException as exc:  # noqa: BLE001
            self.send(WorkerError(phase="timing", kind=classify(exc), message=format_exc(exc)))
            return
        self.send(dataclasses.replace(frame, tamper=tuple(self.tampering()), threads=_thread_count() - self.threads))
        self._case(model, self.req.shapes[0].cases[0], "post_timing", 0, 0)


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
