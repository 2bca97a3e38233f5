"""tritonrl: verify LLM-written Triton kernels against PyTorch references and train on the verdicts.

The public API, imported lazily (so `import tritonrl` stays cheap and the sandboxed worker imports nothing extra):

    from tritonrl import Verifier, VerifyConfig, load_task

    task = load_task("path/to/reference.py")              # KernelBench format: Model, get_inputs, get_init_inputs
    with Verifier(VerifyConfig(device="cuda"), jobs=2) as verifier:
        verdict = verifier.verify(task, completion)        # one candidate: a .py text or a raw LLM completion
        verdicts = verifier.verify_many([(task, c) for c in completions])

The one-shot function is `tritonrl.verify.verify(task, text, cfg)`: `tritonrl.verify` is the subpackage, so the
function is not re-exported here under the same name.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any

__version__ = "0.1.0"


def lazy_exports(package: str, exports: dict[str, str]) -> Callable[[str], Any]:
    """A module `__getattr__` (PEP 562) that imports `exports[name]` (a module path) on first use of `name`."""

    def __getattr__(name: str) -> Any:
        if name not in exports:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        return getattr(importlib.import_module(exports[name]), name)

    return __getattr__


_EXPORTS = {
    "verify_many": "tritonrl.verify.verifier",
    "Verifier": "tritonrl.verify.verifier",
    "VerifyConfig": "tritonrl.verify.config",
    "Verdict": "tritonrl.types",
    "load_task": "tritonrl.tasks.loader",
    "builtin_task": "tritonrl.tasks.loader",
}
__all__ = sorted(_EXPORTS)
__getattr__ = lazy_exports(__name__, _EXPORTS)
