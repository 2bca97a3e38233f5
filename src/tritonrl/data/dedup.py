"""Deduplicate tasks by a normalized source hash: comments, docstrings, blank lines and formatting do not count.

`normalized_hash(source)` parses the file, drops docstrings, and hashes `ast.unparse` of the rest (which also
discards comments and layout); a file that does not parse is hashed as stripped text. `dedup(items, key)` keeps the
first item of each hash, in order, and says which later ones it dropped and why.
"""

from __future__ import annotations

import ast
import hashlib
from collections.abc import Callable, Iterable
from typing import TypeVar

T = TypeVar("T")


def normalized_source(source: str) -> str:
    """The source without comments, docstrings or formatting.

    >>> normalized_source('def f(x):\\n    \"\"\"Doc.\"\"\"\\n    return x+1  # one\\n') == normalized_source(
    ...     'def f(x):\\n\\n    return (x + 1)\\n')
    True
    """
    try:
        tree = ast.parse(source)
    except SyntaxError:
        return "\n".join(line.strip() for line in source.splitlines() if line.strip())
    for node in ast.walk(tree):
        body = getattr(node, "body", None)
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef) and body:
            if (
                isinstance(body[0], ast.Expr)
                and isinstance(body[0].value, ast.Constant)
                and isinstance(body[0].value.value, str)
            ):
                node.body = body[1:] or [ast.Pass()]
    return ast.unparse(tree)


def normalized_hash(source: str) -> str:
    """sha256 (hex) of `normalized_source`."""
    return hashlib.sha256(normalized_source(source).encode("utf-8", "surrogatepass")).hexdigest()


def dedup(
    items: Iterable[T], source_of: Callable[[T], str], id_of: Callable[[T], str]
) -> tuple[list[T], list[tuple[str, str]]]:
    """(kept items in order, [(dropped id, "duplicate of <kept id>")]): the first item of each normalized hash wins."""
    first: dict[str, str] = {}
    kept: list[T] = []
    dropped: list[tuple[str, str]] = []
    for item in items:
        digest = normalized_hash(source_of(item))
        if digest in first:
            dropped.append((id_of(item), f"duplicate of {first[digest]} (same source up to comments and layout)"))
            continue
        first[digest] = id_of(item)
        kept.append(item)
    return kept, dropped
