"""Which of the candidate's own decorators keep a method bound: the pass-through wrapper, read from its source.

A method's `self._x` reads are exempt only while Python binds `self` to the method's own instance (`names.py`). A
decorator receives the raw function, so in general it could call it with any object as `self` and read that object's
private attributes; the candidate's own decorators therefore end the exemption. One shape cannot do that, and real
kernels use it (Liger's `ensure_contiguous`, logging and timing wrappers):

    def deco(fn):
        @functools.wraps(fn)                 # optional; nothing else decorates the wrapper
        def wrapper(self, *args, **kwargs):  # its first parameter has no default; or only `*args`, passed on whole
            ...                              # anything that neither rebinds `self` or `fn` nor hands `fn` on
            return fn(self, *args, **kwargs)
        return wrapper

`obj.method` is then `wrapper` bound to obj, and every call of the raw function passes that same obj first. The rule:
the decorator's body is the wrapper's definition and `return wrapper`; in the wrapper `fn` is only ever called, with
the wrapper's first parameter as the first argument (`fn(*args, ...)` when the wrapper takes only `*args`), or has its
name read (`fn.__name__`); the wrapper never reads its own name (it would call or hand on itself with any first
argument); none of the three names is rebound inside it (parameters of nested functions and lambdas, comprehension
targets, walrus, `global`/`nonlocal`, imports). `names.Names` applies it only to a module-level function bound once
and read nowhere but as a decorator, so the function seen here is the one that runs. Pure `ast`.
"""

from __future__ import annotations

import ast
from collections.abc import Callable

from tritonrl.verify.bindings import bound_by
from tritonrl.verify.reflection import SAFE_DUNDERS  # what a wrapper may read of `fn` besides calling it: strings


def keeps_receiver(deco: ast.FunctionDef, is_wraps: Callable[[ast.expr], bool]) -> bool:
    """`deco` is a pass-through wrapper (module docstring). `is_wraps(node)`: `node` is `functools.wraps`."""
    params = [*deco.args.posonlyargs, *deco.args.args]
    extra = deco.args.vararg or deco.args.kwarg or deco.args.kwonlyargs or deco.args.defaults
    if deco.decorator_list or len(params) != 1 or extra:
        return False
    body = deco.body[1:] if ast.get_docstring(deco, clean=False) is not None else deco.body
    if len(body) != 2 or not isinstance(body[0], ast.FunctionDef):
        return False
    wrapper, ret = body
    if not (isinstance(ret, ast.Return) and isinstance(ret.value, ast.Name) and ret.value.id == wrapper.name):
        return False
    fn = params[0].arg
    if not all(_wraps_fn(d, fn, is_wraps) for d in wrapper.decorator_list):
        return False
    positional = [*wrapper.args.posonlyargs, *wrapper.args.args]
    if positional and len(wrapper.args.defaults) < len(positional):
        first, starred = positional[0], False
    elif not positional and wrapper.args.vararg is not None:
        first, starred = wrapper.args.vararg, True  # `wrapper(*args)`: args[0] is the receiver, `fn(*args)` passes it
    else:
        return False
    names = {first.arg, fn, wrapper.name}
    if len(names) < 3 or not _never_rebound(wrapper, first, names):
        return False
    # the wrapper never reads its own name: called from inside (`wrapper(x, x)`) or handed on, it takes any first
    if any(isinstance(n, ast.Name) and n.id == wrapper.name for n in ast.walk(wrapper)):
        return False
    return _fn_only_called_with(wrapper, fn, first.arg, starred)


def _wraps_fn(decorator: ast.expr, fn: str, is_wraps: Callable[[ast.expr], bool]) -> bool:
    """`@functools.wraps(fn)` and nothing else (its other arguments could name any callable)."""
    return (
        isinstance(decorator, ast.Call)
        and is_wraps(decorator.func)
        and len(decorator.args) == 1
        and not decorator.keywords
        and isinstance(decorator.args[0], ast.Name)
        and decorator.args[0].id == fn
    )


def _never_rebound(wrapper: ast.FunctionDef, first: ast.arg, names: set[str]) -> bool:
    """Nothing inside the wrapper binds one of `names` (nested parameters, targets, imports, `global`/`nonlocal`
    and captures included); the wrapper's own `first` parameter and its own def are the bindings allowed."""
    return not any(
        name in names
        for node in ast.walk(wrapper)
        if node is not wrapper and node is not first
        for name, _ in bound_by(node)
    )


def _fn_only_called_with(wrapper: ast.FunctionDef, fn: str, first: str, starred: bool) -> bool:
    """Every read of `fn` in the wrapper is the callee of a call whose first argument is `first` itself (`*first`
    when `first` is the wrapper's `*args`), or reads one of its names (`fn.__name__` in a log line)."""
    allowed = {id(n) for d in wrapper.decorator_list for n in ast.walk(d)}  # `functools.wraps(fn)`, checked apart
    for node in ast.walk(wrapper):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == fn and node.args:
            spread = isinstance(node.args[0], ast.Starred)
            leading = node.args[0].value if spread else node.args[0]  # type: ignore[attr-defined]
            if spread == starred and isinstance(leading, ast.Name) and leading.id == first:
                allowed.add(id(node.func))
        elif isinstance(node, ast.Attribute) and node.attr in SAFE_DUNDERS and isinstance(node.ctx, ast.Load):
            allowed.add(id(node.value))
    return all(id(n) in allowed for n in ast.walk(wrapper) if isinstance(n, ast.Name) and n.id == fn)
