"""Compatibility shims for the Triton interpreter, applied inside the worker only (when TRITON_INTERPRET=1), before
any candidate code runs. GPU execution does not use the interpreter and is unaffected.

1. numpy >= 2.4 refuses int() of a one-element array with ndim > 0, which the Triton interpreter (3.x, up to at
   least 3.6) relies on when a kernel uses a runtime argument as a loop bound (`for i in range(0, n)`): every such
   kernel fails with "only 0-dimensional arrays can be converted to Python scalars" (triton-lang/triton#9171). We
   re-bind the interpreter's `tensor.__index__` to `.item()`, which is what it means.
2. `@triton.autotune` benchmarks its configs through the GPU driver, which does not exist under the interpreter
   ("0 active drivers"), so honest autotuned kernels would be rejected on the CPU. We make every config time the
   same, so the autotuner deterministically picks its first config (the other configs run on the GPU only).
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
        applied.append("autotune first config")
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
    except ImportError:
        return False
    import functools

    if not isinstance(Autotuner.__dict__.get("do_bench"), (property, functools.cached_property)):
        return False

    def same_time(kernel_call, quantiles=None):  # noqa: ANN001
        return [0.0] * len(quantiles) if quantiles else 0.0

    Autotuner.do_bench = property(lambda self: same_time)
    return True
