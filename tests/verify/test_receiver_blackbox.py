"""The receiver rule against files written by a helper who had not read the rules or our fixtures (session 25).

`receiver_blackbox/honest/`: 26 kernels in the styles of the Triton tutorials, Liger-Kernel, FlagGems, Unsloth and
KernelBench answers, each using classes with private state the ordinary ways: every one must pass the static checks.
`receiver_blackbox/attack/`: 67 attempts to read another object's private attributes through a method's `self`
(unbound calls, `type(x)`, `cls`, `super()`, static methods, decorators, metaclasses, class-body tricks): every one
must be rejected at the static stage, except the one that reads its own `self._forward_hooks`, which the exemption
allows by design (docs/verification.md, "Session 25, the receiver rule")."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from tritonrl.types import FailureKind
from tritonrl.verify.static_checks import run_static_checks

ROOT = Path(__file__).resolve().parents[1] / "fixtures" / "receiver_blackbox"
HONEST = sorted((ROOT / "honest").glob("*.py"))
ATTACKS = sorted((ROOT / "attack").glob("*.py"))
ALLOWED_BY_DESIGN = {"a37_self_module_private"}  # its own self: the exemption's whole point


def _check(path: Path):
    code = path.read_text()
    return run_static_checks(ast.parse(code), code)


def test_the_corpus_is_all_there():
    assert (len(HONEST), len(ATTACKS)) == (26, 67)


@pytest.mark.parametrize("path", HONEST, ids=lambda p: p.stem)
def test_honest_class_patterns_pass(path):
    outcome = _check(path)
    assert outcome.ok, outcome.message


@pytest.mark.parametrize("path", [p for p in ATTACKS if p.stem not in ALLOWED_BY_DESIGN], ids=lambda p: p.stem)
def test_attacks_through_self_are_rejected_statically(path):
    outcome = _check(path)
    assert not outcome.ok and outcome.failure in (FailureKind.TAMPERING, FailureKind.FORBIDDEN_IMPORT), outcome.message
