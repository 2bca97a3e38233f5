"""Compatibility shims applied inside the worker only, before any candidate code runs.

numpy >= 2.4 refuses int() of a one-element array with ndim > 0, which the Triton interpreter (3.x, up to at least
3.6) relies on when a kernel uses a runtime argument as a loop bound (`for i in range(0, n)`): every such kernel
fails under TRITON_INTERPRET=1 with "only 0-dimensional arrays can be converted to Python scalars" (reported
upstream as triton-lang/triton#9171). We re-bind the interpreter's `tensor.__index__` to `.item()`, which is what
the interpreter means. GPU execution does not use the interpreter and is unaffected.
"""

from __future__ import annotations

import logging

log = logging.getLogger(__name__)


def patch_triton_interpreter() -> bool:
    """Apply the numpy>=2.4 fix to the Triton interpreter. Returns True when the patch was applied."""
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
