"""Compatibility shims for the Triton interpreter, applied inside the worker only (when TRITON_INTERPRET=1), before
any candidate code runs. GPU execution does not use the interpreter and is unaffected.

1. numpy >= 2.4 refuses int() of a one-element array with ndim > 0, which the Triton interpreter (3.x, up to at
   least 3.6) relies on when a kernel uses a runtime argument as a loop bound (`for i in range(0, n)`): every such
   kernel fails with "only 0-dimensional arrays can be converted to Python scalars" (triton-lang/triton#9171). We
   re-bind the interpreter's `tensor.__index__` to `.item()`, which is what it means.
2. `@triton.autotune` benchmarks its configs through the GPU driver, which does not exist under the interpreter
   ("0 active drivers"), so honest autotuned kernels would be rejected on the CPU. We replace the benchmark: configs
   are tried in order, each run once until one runs; a config that fails in the interpreter (a `tl.static_assert`
   on its block sizes, which on a GPU is a compile failure the autotuner skips) times as infinite, the first that
   runs times 0 and the rest are not run. So the autotuner picks the first config that works for the shape, as a
   GPU would skip the ones that do not compile, at the cost of one extra kernel run per tuning key.
3. `triton.language.extra.libdevice` functions are stubs that return None under the interpreter (the real ones are
   bound per backend at compile time), so every kernel that calls `libdevice.tanh` or `libdevice.erf` (Liger,
   Unsloth) would fail on the CPU. We bind each stub whose math numpy has to a numpy implementation on the
   interpreter's tensors; the rest stay stubs and are reported as an interpreter limitation (`inconclusive_on_cpu`).
"""

from __future__ import annotations

import logging

log = logging.getLogger(__name__)


def patch_triton_interpreter() -> list[str]:
    """Apply the shims that this triton/numpy combination needs; returns the names of those applied."""
    applied = []
    if _patch_index_for_numpy():
        applied.append("numpy>=2.4 __index__")
    if _patch_autotuner():
        applied.append("autotune first config that runs")
    if n := _patch_libdevice():
        applied.append(f"libdevice ({n} functions)")
    return applied


def _patch_index_for_numpy() -> bool:
    try:
        import numpy as np
        from triton.runtime import interpreter
    except ImportError:
        return False
    major, minor = (int(p) for p in np.__version__.split(".")[:2])
    original = getattr(interpreter, "_patch_lang_tensor", None)
    if (major, minor) < (2, 4) or original is None:
        return False

    def patched(tensor, scope):  # noqa: ANN001
        original(tensor, scope)
        scope.set_attr(tensor, "__index__", lambda self: int(self.handle.data.item()))

    interpreter._patch_lang_tensor = patched
    return True


def _patch_autotuner() -> bool:
    try:
        from triton.runtime.autotuner import Autotuner
        from triton.runtime.errors import InterpreterError
    except ImportError:
        return False
    import functools
    import math

    if not isinstance(Autotuner.__dict__.get("do_bench"), (property, functools.cached_property)):
        return False
    original_run = Autotuner.run

    def run(self, *args, **kwargs):  # noqa: ANN001
        self._tritonrl_found = False  # a new tuning pass (the autotuner benchmarks only on a new key)
        return original_run(self, *args, **kwargs)

    def first_that_runs(self, kernel_call, quantiles=None):  # noqa: ANN001
        if self._tritonrl_found:
            timing = 1.0  # not run: the first config that ran (timed 0) wins
        else:
            try:
                kernel_call()
                timing, self._tritonrl_found = 0.0, True
            except InterpreterError:  # the config does not build for this shape: a GPU would skip it too
                timing = math.inf
        return [timing] * len(quantiles) if quantiles else timing

    Autotuner.run = run
    Autotuner.do_bench = property(lambda self: functools.partial(first_that_runs, self))
    return True


# libdevice names -> numpy functions of the interpreter's arrays (float in, same dtype out; predicates give bool).
_UNARY = {
    "tanh": "tanh", "sinh": "sinh", "cosh": "cosh", "tan": "tan", "asin": "arcsin", "acos": "arccos",
    "atan": "arctan", "asinh": "arcsinh", "acosh": "arccosh", "atanh": "arctanh", "log1p": "log1p",
    "expm1": "expm1", "log10": "log10", "cbrt": "cbrt", "trunc": "trunc", "rint": "rint", "nearbyint": "rint",
    "round": "round", "floor": "floor", "ceil": "ceil", "exp": "exp", "exp2": "exp2", "log": "log", "log2": "log2",
    "sqrt": "sqrt", "sin": "sin", "cos": "cos", "fabs": "abs", "abs": "abs", "fast_expf": "exp",
    "fast_logf": "log", "fast_tanf": "tan", "fast_sinf": "sin", "fast_cosf": "cos", "fast_exp10f": "exp10",
}  # fmt: skip
_BINARY = {
    "pow": "power", "powf": "power", "fast_powf": "power", "atan2": "arctan2", "fmod": "fmod", "fmax": "fmax",
    "fmin": "fmin", "max": "maximum", "min": "minimum", "hypot": "hypot", "copysign": "copysign",
    "nextafter": "nextafter", "div_rn": "divide", "div_rz": "divide", "fast_dividef": "divide",
}  # fmt: skip
_PREDICATES = {"isnan": "isnan", "isinf": "isinf", "isfinited": "isfinite", "finitef": "isfinite", "signbit": "signbit"}


def _patch_libdevice() -> int:
    import math

    try:
        import numpy as np
        import triton.language as tl
        from triton.language.extra import libdevice
        from triton.runtime.interpreter import TensorHandle
    except ImportError:
        return 0

    def numpy_fn(name: str, predicate: bool):  # noqa: ANN202
        if name == "exp10":
            op = lambda x: np.power(10.0, x).astype(x.dtype)  # noqa: E731
        elif name == "rsqrt":
            op = lambda x: (1.0 / np.sqrt(x)).astype(x.dtype)  # noqa: E731
        elif name == "rcp":
            op = lambda x: (1.0 / x).astype(x.dtype)  # noqa: E731
        elif name == "erfc":
            op = np.vectorize(math.erfc, otypes=[np.float64])
        elif name == "erf":
            op = np.vectorize(math.erf, otypes=[np.float64])
        else:
            op = getattr(np, name)

        def fn(*args, **kwargs):  # noqa: ANN002, ANN003 - the interpreter passes tl.tensors and Python scalars
            tensors = [a for a in args if isinstance(a, tl.core.tensor)]
            shaped = max(tensors, key=lambda a: a.handle.data.ndim)
            arrays = [a.handle.data if isinstance(a, tl.core.tensor) else a for a in args]
            with np.errstate(all="ignore"):  # inf/nan results are values here, as on a GPU
                out = np.asarray(op(*arrays))
            if predicate:
                return tl.core.tensor(TensorHandle(out.astype(np.bool_), tl.int1), shaped.type.with_element_ty(tl.int1)
                                      if shaped.type.is_block() else tl.int1)  # fmt: skip
            dtype = shaped.handle.dtype.scalar
            out = out.astype(shaped.handle.data.dtype)
            return tl.core.tensor(TensorHandle(np.broadcast_to(out, out.shape).copy(), dtype), shaped.type)

        return fn

    table = {**{k: (v, False) for k, v in _UNARY.items()}, **{k: (v, False) for k, v in _BINARY.items()}}
    table.update({k: (v, True) for k, v in _PREDICATES.items()})
    table.update(erf=("erf", False), erfc=("erfc", False), rsqrt=("rsqrt", False), rcp=("rcp", False))
    patched = 0
    modules = [libdevice]
    try:  # kernels also import the backend's module directly (`triton.language.extra.cuda.libdevice`)
        from triton.language.extra.cuda import libdevice as cuda_libdevice

        modules.append(cuda_libdevice)
    except ImportError:
        pass
    for name, (np_name, predicate) in table.items():
        for module in modules:
            if hasattr(module, name):
                setattr(module, name, numpy_fn(np_name, predicate))
                patched += module is libdevice
    _UNPATCHED.update(n for n in dir(libdevice) if not n.startswith("_") and n not in table)
    return patched


_UNPATCHED: set[str] = set()  # libdevice stubs left as they are (they return None in the interpreter)


# Failures that say "the interpreter cannot run this", not "the kernel is wrong": (text in the exception, reason).
# Matched only when the exception was raised inside triton's own code (see `interpreter_limitation`), so a candidate
# cannot claim one by raising its own exception with this text.
_LIMITS = (
    ("Did you forget to add @triton.jit", "a triton.language builtin bound to another name is not patched by the "
     "Triton interpreter (it runs on a GPU)"),
    ("active drivers", "the code queries the GPU driver, which the CPU interpreter does not have"),
    ("Expected a cuda device", "the code requires a CUDA device"),
    ("Torch not compiled with CUDA", "the code requires a CUDA device"),
    ("extern_elementwise not supported", "an extern (libdevice) function the interpreter does not implement"),
)  # fmt: skip


def interpreter_limitation(exc: BaseException) -> str | None:
    """Why the Triton interpreter, not the candidate, is at fault for `exc`, or None."""
    import os

    try:
        text = f"{type(exc).__name__}: {exc}"
    except Exception:  # noqa: BLE001 - a candidate's exception may raise from __str__: then it is the candidate's
        return None
    tb, files = exc.__traceback__, []
    while tb is not None:
        files.append(os.path.realpath(tb.tb_frame.f_code.co_filename))
        tb = tb.tb_next
    innermost = files[-1] if files else ""
    library = innermost.startswith(_library_dirs())
    for needle, reason in _LIMITS:
        if needle in text and library:
            return reason
    # A libdevice stub the shim does not cover returned None, and arithmetic on it failed: the failing line of the
    # kernel must call one of those stubs (a jit helper that forgot its `return` is the candidate's bug).
    if "NoneType" in text and library and (name := _unpatched_libdevice_call(exc)):
        return f"libdevice.{name} is not implemented by the Triton interpreter (it is on a GPU)"
    return None


def _unpatched_libdevice_call(exc: BaseException) -> str | None:
    import linecache
    import re

    cause = exc.__cause__ or exc
    tb, last = cause.__traceback__, None
    while tb is not None:
        last, tb = tb, tb.tb_next
    if last is None:
        return None
    line = linecache.getline(last.tb_frame.f_code.co_filename, last.tb_lineno)
    return next((n for n in re.findall(r"libdevice\.(\w+)", line) if n in _UNPATCHED), None)


def _library_dirs() -> tuple[str, ...]:
    import os

    import torch
    import triton

    return tuple(os.path.dirname(os.path.realpath(m.__file__)) + os.sep for m in (triton, torch))
