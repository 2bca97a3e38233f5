"""Attribute reads by name, for the static checks: `getattr(x, "name")`, `operator.attrgetter("a.b")`,
`operator.methodcaller("m")` and `type(name, bases, ns)`, judged by what the names reach.

A name given as a string reads exactly what `x.name` reads, so the same limits apply: nothing private (but the
read-only dunders), nothing of a frame, code object or closure cell, and the name must be a literal (a computed one
hides what it reaches). A reader handed around uncalled cannot be checked at all. Pure `ast`.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator

SAFE_DUNDERS = frozenset({"__name__", "__qualname__", "__doc__", "__version__"})  # read-only strings
# Frames, code objects and closure cells, whoever's: a frame's f_locals/f_globals/f_back reach every caller's variables
# (the harness's included), and a generator's gi_frame or a cell's contents hand out what a closure keeps. Public
# names, so the underscore rule misses them; no honest kernel reads one (helpers' wave 5).
FRAME_ATTRIBUTES = frozenset(
    {"f_back", "f_builtins", "f_code", "f_globals", "f_locals", "f_trace", "f_lasti", "tb_frame", "tb_next"}
    | {"gi_frame", "gi_code", "gi_yieldfrom", "cr_frame", "cr_code", "cr_await", "ag_frame", "ag_code", "ag_await"}
    | {"cell_contents", "co_consts", "co_code", "co_names"}
)
# operator's attribute readers take names as strings, like getattr: the same limits apply to each name.
ATTRIBUTE_READERS = frozenset({"operator.attrgetter", "operator.methodcaller"})

Hit = tuple[ast.AST, str]


def hidden(attr: str) -> str | None:
    """Why reading `attr` by name is refused: a private name (but the read-only dunders) or a frame internal."""
    if attr.startswith("_") and attr not in SAFE_DUNDERS:
        return "reaches a private attribute"
    if attr in FRAME_ATTRIBUTES:
        return f"reaches {attr}, an interpreter frame's or closure's internals"
    return None


def builtin_call_hits(node: ast.Name, call: ast.AST | None) -> Iterator[Hit]:
    """The builtin `getattr` (called in place, with a literal name `hidden` allows) or `type` (never with 3
    arguments: a class built at run time is out of the static rules' sight)."""
    if not (isinstance(call, ast.Call) and call.func is node):
        if node.id == "getattr":
            yield node, "passes getattr around; its attribute names cannot be checked"
        return
    if node.id == "type":
        if len(call.args) == 3:
            yield call, "builds a class at run time, out of the static rules' sight"
        return
    name = call.args[1] if len(call.args) >= 2 else None
    if not (isinstance(name, ast.Constant) and isinstance(name.value, str)):
        yield call, "computes the attribute name, which hides what it reaches"
    elif why := hidden(name.value):
        yield call, why


def attribute_reader_hits(node: ast.AST, call: ast.AST | None, path: str) -> Iterator[Hit]:
    """`operator.attrgetter("a.b", "c")` / `operator.methodcaller("m", ...)` (`path` says which): called in place,
    with literal names that `hidden` allows; an attrgetter path is checked part by part."""
    if not (isinstance(call, ast.Call) and call.func is node):
        yield node, "passes an attribute reader around; its attribute names cannot be checked"
        return
    names = call.args if path == "operator.attrgetter" else call.args[:1]
    if not names or call.keywords and path == "operator.attrgetter":
        yield call, "computes the attribute name, which hides what it reaches"
        return
    for arg in names:
        if not (isinstance(arg, ast.Constant) and isinstance(arg.value, str)):
            yield call, "computes the attribute name, which hides what it reaches"
            return
        for part in arg.value.split("."):
            if why := hidden(part):
                yield call, why
                return
