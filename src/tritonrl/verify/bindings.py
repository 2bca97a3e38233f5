"""What one AST node binds: the one list of Python's binding constructs, shared by the name resolution's rebinding
check (`names.rebindings`), the pass-through decorator rule (`passthrough.py`) and its count of a decorator's
bindings. Pure `ast`."""

from __future__ import annotations

import ast
from collections.abc import Iterator


def bound_by(node: ast.AST) -> Iterator[tuple[str, ast.AST]]:
    """(name, node) for each name `node` itself binds: an assignment or deletion target, a def or class, a
    parameter, an import, a `global`/`nonlocal` declaration, an except or match capture. Its children are not read."""
    if isinstance(node, ast.Name) and not isinstance(node.ctx, ast.Load):
        yield node.id, node
    elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
        yield node.name, node
    elif isinstance(node, ast.arg):
        yield node.arg, node
    elif isinstance(node, ast.alias):
        yield node.asname or node.name.split(".")[0], node
    elif isinstance(node, (ast.Global, ast.Nonlocal)):
        yield from ((name, node) for name in node.names)
    elif isinstance(node, (ast.ExceptHandler, ast.MatchAs, ast.MatchStar)) and node.name:
        yield node.name, node
    elif isinstance(node, ast.MatchMapping) and node.rest:
        yield node.rest, node
