"""The pass-through decorator rule (and the reflection rules around it) against files written by a helper who had not
read the rules or our fixtures (session 26).

`passthrough_blackbox/honest/`: 27 kernels whose ModelNew method reads `self._x` under a decorator of the candidate's
own (Liger's `ensure_contiguous`, logging and timing wrappers, `from functools import wraps`, nested helpers, stacked
decorators): every one passes the static checks but the four other shapes listed in KNOWN_REJECTS.
`passthrough_blackbox/attack/`: 103 attempts to get such a method's body to read another object's private attributes
(the raw function called with another object or handed on, the wrapper calling or handing on itself, rebinding and
shadowing in every binding form, `operator.attrgetter` strings, frames through `gi_frame` and
`logging.currentframe()`): every one is rejected at the static stage, but the controls and the classmethod cases in
ALLOWED_BY_DESIGN (docs/verification.md, "Session 26, the candidate's own pass-through decorators")."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from tritonrl.types import FailureKind
from tritonrl.verify.static_checks import run_static_checks

ROOT = Path(__file__).resolve().parents[1] / "fixtures" / "passthrough_blackbox"
HONEST = sorted((ROOT / "honest").glob("*.py"))
ATTACKS = sorted((ROOT / "attack").glob("*.py"))
# Honest, and still rejected: shapes the rule does not read as pass-through (each could call the raw function with
# another object as far as the source shows).
KNOWN_REJECTS = {
    "h13_wrapper_reads_self_private": "the wrapper reads `self._cache` itself: a wrapper is not a method",
    "h14_factory_decorator": "a decorator factory `@cast_inputs(dtype)`",
    "h15_class_decorator": "a class-based decorator with `__get__`",
    "h23_star_args_only": "`args = [...]` rebinds the receiver's carrier before `fn(*args)`",
}
# Controls (no leak), and a classmethod over a pass-through decorator: `cls` is the candidate's own class, whose
# private attributes a plain classmethod may read too (a02b).
ALLOWED_BY_DESIGN = {
    "a00_baseline_control",
    "a81_control_trailing_binding",
    "a02b_classmethod_control_plain",
    "a02_classmethod_outer",
    "a69_init_subclass_implicit_cls",
}


def _check(path: Path):
    code = path.read_text()
    return run_static_checks(ast.parse(code), code)


def test_the_corpus_is_all_there():
    assert (len(HONEST), len(ATTACKS)) == (27, 103)
    assert {p.stem for p in HONEST} >= set(KNOWN_REJECTS) and {p.stem for p in ATTACKS} >= ALLOWED_BY_DESIGN


@pytest.mark.parametrize("path", [p for p in HONEST if p.stem not in KNOWN_REJECTS], ids=lambda p: p.stem)
def test_honest_decorated_methods_pass(path):
    outcome = _check(path)
    assert outcome.ok, outcome.message


@pytest.mark.parametrize("path", [p for p in HONEST if p.stem in KNOWN_REJECTS], ids=lambda p: p.stem)
def test_the_known_false_rejects_are_still_rejected(path):
    # a change that lets one pass should move it out of KNOWN_REJECTS (and docs/verification.md)
    assert not _check(path).ok, KNOWN_REJECTS[path.stem]


@pytest.mark.parametrize("path", [p for p in ATTACKS if p.stem not in ALLOWED_BY_DESIGN], ids=lambda p: p.stem)
def test_attacks_are_rejected_statically(path):
    outcome = _check(path)
    kinds = (FailureKind.TAMPERING, FailureKind.FORBIDDEN_IMPORT, FailureKind.FORBIDDEN_CONSTRUCT)
    assert not outcome.ok and outcome.failure in kinds, outcome.message
