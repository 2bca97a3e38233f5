"""The verifier, parent side: `verify(task, text, cfg)` for one candidate, `Verifier` for many (warm workers on
every device, one executor, a cache hook), `verify_many` for one batch. `worker/` is the other side of the trust line.

Exports resolve lazily (PEP 562): the sandboxed worker imports `verify.messages` and `verify.protocol`, which runs
this file first, and must not import the parent side with it.
"""

from __future__ import annotations

from tritonrl import lazy_exports

_EXPORTS = {
    "verify": "tritonrl.verify.funnel",
    "Verifier": "tritonrl.verify.verifier",
    "verify_many": "tritonrl.verify.verifier",
    "VerdictCache": "tritonrl.verify.cache",
    "SQLiteVerdictStore": "tritonrl.verify.verdict_store",
    "open_verdict_store": "tritonrl.verify.verdict_store",
    "VerifyConfig": "tritonrl.verify.config",
}
__all__ = sorted(_EXPORTS)
__getattr__ = lazy_exports(__name__, _EXPORTS)
