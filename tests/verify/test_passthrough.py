"""verify/passthrough.py: a decorator of the candidate's own keeps a method's `self._x` exemption only when it is a
pass-through wrapper (every call of the raw function passes the wrapper's own first argument first); every other
shape, or one that can be altered or handed on, ends the exemption (rule `private-attribute`)."""

from __future__ import annotations

import ast
import textwrap

import pytest

from tritonrl.types import FailureKind
from tritonrl.verify import passthrough
from tritonrl.verify.static_checks import run_static_checks

HEAD = """\
import functools
from functools import wraps

import torch
import torch.nn as nn
import triton
import triton.language as tl


@triton.jit
def copy_kernel(x_ptr, out_ptr, n, BLOCK: tl.constexpr):
    offs = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    tl.store(out_ptr + offs, tl.load(x_ptr + offs, mask=offs < n), mask=offs < n)

"""
# The method under test: reads its receiver's private attribute, so it keeps passing only under a decorator that
# leaves `self` bound to the instance.
MODEL = """

class ModelNew(nn.Module):
    def __init__(self):
        super().__init__()
        self._block = 1024

    @deco
    def forward(self, x):
        out = torch.empty_like(x)
        copy_kernel[(triton.cdiv(x.numel(), self._block),)](x, out, x.numel(), BLOCK=self._block)
        return out
"""


def check(deco: str, after: str = ""):
    code = HEAD + textwrap.dedent(deco) + MODEL + textwrap.dedent(after)
    return run_static_checks(ast.parse(code), code)


HONEST = {
    "liger_ensure_contiguous": """
        def deco(fn):
            @functools.wraps(fn)
            def wrapper(ctx, *args, **kwargs):
                def maybe_to_contiguous(x):
                    return x.contiguous() if isinstance(x, torch.Tensor) else x

                args = [maybe_to_contiguous(arg) for arg in args]
                kwargs = {k: maybe_to_contiguous(v) for k, v in kwargs.items()}
                return fn(ctx, *args, **kwargs)

            return wrapper
        """,
    "logging_wrapper_with_docstring_and_annotations": """
        def deco(fn: "Callable") -> "Callable":
            \"\"\"Log the shapes of every call.\"\"\"
            @wraps(fn)
            def wrapper(self, x: torch.Tensor, *rest) -> torch.Tensor:
                shape = tuple(x.shape)
                out = fn(self, x, *rest)
                assert out.shape == shape, shape
                return out

            return wrapper
        """,
    "star_args_passed_on_unchanged": """
        def deco(fn):
            @functools.wraps(fn)
            def wrapper(*args, **kwargs):
                kwargs = {k: v.contiguous() if isinstance(v, torch.Tensor) else v for k, v in kwargs.items()}
                return fn(*args, **kwargs)

            return wrapper
        """,
    "logs_the_function_name": """
        def deco(fn):
            @functools.wraps(fn)
            def wrapper(self, x):
                name = f"{fn.__qualname__} ({fn.__doc__})"
                assert name, fn.__name__
                return fn(self, x)

            return wrapper
        """,
    "wrapper_without_wraps_calling_twice": """
        def deco(fn):
            def wrapper(self, x):
                if x.numel() == 0:
                    return fn(self, x.new_zeros(1))[:0]
                return fn(self, x)

            return wrapper
        """,
}


@pytest.mark.parametrize("name", HONEST)
def test_pass_through_wrappers_keep_the_receiver_exempt(name):
    outcome = check(HONEST[name])
    assert outcome.ok, outcome.message


ATTACKS = {
    "calls_fn_with_another_object": """
        def deco(fn):
            def wrapper(self, x):
                return fn(torch.Tensor, x)
            return wrapper
        """,
    "star_args_rebound": """
        def deco(fn):
            def wrapper(*args):
                args = (torch.Tensor, *args[1:])
                return fn(*args)
            return wrapper
        """,
    "star_args_passed_on_shifted": """
        def deco(fn):
            def wrapper(*args):
                return fn(*args[1:])
            return wrapper
        """,
    "wrapper_calls_itself": """
        def deco(fn):
            def wrapper(self, x):
                if self is not x:
                    return wrapper(x, x)
                return fn(self, x)
            return wrapper
        """,
    "wrapper_hands_itself_on": """
        def deco(fn):
            def wrapper(self, x):
                return list(map(wrapper, [x], [x]))[0] if x is None else fn(self, x)
            return wrapper
        """,
    "reorders_arguments": """
        def deco(fn):
            def wrapper(self, other):
                return fn(other, self)
            return wrapper
        """,
    "rebinds_self_before_the_call": """
        def deco(fn):
            def wrapper(self, x):
                self = torch.Tensor
                return fn(self, x)
            return wrapper
        """,
    "shadows_self_in_a_lambda": """
        def deco(fn):
            def wrapper(self, x):
                return (lambda self: fn(self, x))(torch.Tensor)
            return wrapper
        """,
    "shadows_self_in_a_comprehension": """
        def deco(fn):
            def wrapper(self, x):
                return [fn(self, x) for self in [torch.Tensor]][0]
            return wrapper
        """,
    "walrus_rebinds_self": """
        def deco(fn):
            def wrapper(self, x):
                return fn((self := torch.Tensor), x) if (self := torch.Tensor) else None
            return wrapper
        """,
    "hands_fn_on": """
        def deco(fn):
            def wrapper(self, x):
                return functools.partial(fn, torch.Tensor)(x)
            return wrapper
        """,
    "binds_fn_by_descriptor": """
        def deco(fn):
            def wrapper(self, x):
                return fn.__get__(torch.Tensor)(x)
            return wrapper
        """,
    "stores_fn_on_the_wrapper": """
        def deco(fn):
            def wrapper(self, x):
                return fn(self, x)
            wrapper.raw = fn
            return wrapper
        """,
    "wrapper_self_with_a_default": """
        def deco(fn):
            def wrapper(self=torch.Tensor, *a):
                return fn(self, *a)
            return wrapper
        """,
    "wraps_with_other_arguments": """
        def deco(fn):
            @functools.wraps(fn, assigned=())
            def wrapper(self, x):
                return fn(self, x)
            return wrapper
        """,
    "wrapper_made_static": """
        def deco(fn):
            @staticmethod
            def wrapper(self, x):
                return fn(self, x)
            return wrapper
        """,
    "returns_fn_itself_behind_a_condition": """
        def deco(fn):
            def wrapper(self, x):
                return fn(self, x)
            return wrapper if torch.Tensor else fn
        """,
    "global_fn_rebound": """
        def deco(fn):
            def wrapper(self, x):
                global fn
                return fn(self, x)
            return wrapper
        """,
}
# the decorator is fine but can be replaced, altered or handed on: what runs may not be what was read
AROUND = {
    "rebound_after_use": ("def deco(fn):\n    def wrapper(self, x):\n        return fn(self, x)\n    return wrapper\n",
                          "deco = staticmethod\n"),
    "code_swapped": ("def deco(fn):\n    def wrapper(self, x):\n        return fn(self, x)\n    return wrapper\n",
                     "deco.__code__ = (lambda fn: staticmethod(fn)).__code__\n"),
    "defined_twice": ("def deco(fn):\n    return staticmethod(fn)\n\n\n"
                      "def deco(fn):\n    def wrapper(self, x):\n        return fn(self, x)\n    return wrapper\n", ""),
}  # fmt: skip


@pytest.mark.parametrize("name", ATTACKS)
def test_other_decorators_end_the_exemption(name):
    outcome = check(ATTACKS[name])
    assert not outcome.ok and outcome.failure is FailureKind.TAMPERING, outcome.message
    assert outcome.rule == "private-attribute"  # `self._block`, or the dunder the attack itself reads


@pytest.mark.parametrize("name", AROUND)
def test_a_pass_through_wrapper_that_can_be_replaced_or_altered_ends_the_exemption(name):
    deco, after = AROUND[name]
    outcome = check(deco, after)
    assert not outcome.ok, outcome.message


def test_keeps_receiver_reads_the_shape_alone():
    def parsed(src: str) -> ast.FunctionDef:
        return ast.parse(textwrap.dedent(src)).body[0]

    def never_wraps(node: ast.expr) -> bool:
        return False

    plain = "def d(fn):\n    def w(s, *a):\n        return fn(s, *a)\n    return w\n"
    assert passthrough.keeps_receiver(parsed(plain), never_wraps)
    assert not passthrough.keeps_receiver(parsed(plain.replace("(fn)", "(fn, extra)")), never_wraps)
    assert not passthrough.keeps_receiver(parsed("def d(fn):\n    return fn\n"), never_wraps)
    wrapped = "def d(fn):\n    @wraps(fn)\n    def w(s):\n        return fn(s)\n    return w\n"
    assert not passthrough.keeps_receiver(parsed(wrapped), never_wraps)  # `wraps` is not functools.wraps here
    assert passthrough.keeps_receiver(parsed(wrapped), lambda node: isinstance(node, ast.Name))
