"""verify/reflection.py: attributes read by name (getattr, operator.attrgetter/methodcaller) meet the limits of
`x.name`, and frames, code objects and closure cells are out of reach by any name (session 26's helpers found
`operator.attrgetter("_version")(x)` and frame walks through `gi_frame` / `logging.currentframe()` passing)."""

from __future__ import annotations

import ast

import pytest

from tritonrl.types import FailureKind
from tritonrl.verify import reflection
from tritonrl.verify.static_checks import run_static_checks

HEAD = """\
import logging
import operator
from operator import attrgetter, methodcaller

import torch
import triton
import triton.language as tl


@triton.jit
def copy_kernel(x_ptr, out_ptr, n, BLOCK: tl.constexpr):
    offs = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    tl.store(out_ptr + offs, tl.load(x_ptr + offs, mask=offs < n), mask=offs < n)


"""


def check(snippet: str):
    code = HEAD + snippet + "\n"
    return run_static_checks(ast.parse(code), code)


@pytest.mark.parametrize(
    "snippet",
    [
        "key = operator.attrgetter('shape')",
        "dims = attrgetter('shape', 'dtype.itemsize')(torch.ones(1))",
        "t = methodcaller('contiguous')(torch.ones(1))",
        "name = getattr(torch.ones(1), '__name__', 'tensor')",
    ],
)
def test_public_names_read_by_string_pass(snippet):
    outcome = check(snippet)
    assert outcome.ok, outcome.message


@pytest.mark.parametrize(
    ("snippet", "why"),
    [
        ("v = operator.attrgetter('_version')(torch.ones(1))", "private attribute"),
        ("f = attrgetter('shape.__class__.mro')", "private attribute"),  # a dotted path, part by part
        ("f = methodcaller('_make_subclass', 1)", "private attribute"),
        ("_C = operator.attrgetter('_C')(torch.nn.functional.torch)", "private attribute"),  # helpers' wave 2
        ("f = attrgetter('f_back.f_locals')", "frame"),
        ("f = getattr(torch, 'gi_frame')", "frame"),
        ("name = '_version'\nf = attrgetter(name)", "computes the attribute name"),
        ("f = methodcaller(*['_x'])", "computes the attribute name"),
        ("readers = [attrgetter]", "passes an attribute reader around"),
    ],
)
def test_names_read_by_string_meet_the_attribute_limits(snippet, why):
    outcome = check(snippet)
    assert not outcome.ok and outcome.failure is FailureKind.TAMPERING and why in outcome.message, outcome.message


@pytest.mark.parametrize(
    "snippet",
    [
        "g = (i for i in range(2))\nlocals_of_caller = g.gi_frame.f_back.f_locals",
        "def f():\n    yield 1\nx = f().gi_frame",
        "def outer():\n    v = torch.ones(1)\n    return (lambda: v).__closure__\n",
        "cell = [c.cell_contents for c in ()]",
        "frame = logging.currentframe()",
    ],
)
def test_frames_code_and_cells_are_out_of_reach(snippet):
    outcome = check(snippet)
    assert not outcome.ok and outcome.failure is FailureKind.TAMPERING, outcome.message


def test_hidden_names_the_reason():
    assert reflection.hidden("shape") is None and reflection.hidden("__name__") is None
    assert "private" in reflection.hidden("_version") and "frame" in reflection.hidden("f_globals")
