"""Minimal edits of Python source text: change what must change, keep every other character (comments, layout).

Converters (KernelBook rows, Inductor idioms, shape and dtype variants) locate what to change with `ast` and apply
the change to the text with `apply_edits`, so a converted file reads like the original. `rename` renames an
identifier token by token (strings and comments untouched); `dotted` names a Name/Attribute chain. Pure text;
nothing here executes code.
"""

from __future__ import annotations

import ast
import io
import tokenize
from collections.abc import Iterable

Edit = tuple[int, int, str]  # (start offset, end offset, replacement) in characters of the source


class LineIndex:
    """Character offsets of `ast` positions (lines are 1-based; columns are UTF-8 byte offsets)."""

    def __init__(self, source: str) -> None:
        self.source = source
        self.lines = source.splitlines(keepends=True)
        self.starts = [0]
        for line in self.lines:
            self.starts.append(self.starts[-1] + len(line))

    def offset(self, lineno: int, col_offset: int) -> int:
        if lineno > len(self.lines):
            return len(self.source)
        line = self.lines[lineno - 1]
        return self.starts[lineno - 1] + len(line.encode("utf-8")[:col_offset].decode("utf-8", errors="ignore"))

    def span(self, node: ast.AST) -> tuple[int, int]:
        """[start, end) of a node's text."""
        return self.offset(node.lineno, node.col_offset), self.offset(node.end_lineno, node.end_col_offset)

    def line_span(self, node: ast.AST) -> tuple[int, int]:
        """[start, end) of the whole lines a statement occupies, newline included."""
        return self.starts[node.lineno - 1], self.starts[min(node.end_lineno, len(self.lines))]

    def text(self, node: ast.AST) -> str:
        start, end = self.span(node)
        return self.source[start:end]


def apply_edits(source: str, edits: Iterable[Edit]) -> str:
    """Apply non-overlapping edits. Raises ValueError when two edits overlap (a converter bug, not an input error)."""
    ordered = sorted(edits, key=lambda e: (e[0], e[1]))
    for (s1, e1, _), (s2, _, _) in zip(ordered, ordered[1:], strict=False):
        if s2 < e1:
            raise ValueError(f"overlapping edits at characters {s1}-{e1} and {s2}")
    out, pos = [], 0
    for start, end, text in ordered:
        out.append(source[pos:start])
        out.append(text)
        pos = end
    out.append(source[pos:])
    return "".join(out)


def rename(source: str, old: str, new: str) -> str:
    """Rename every NAME token `old` to `new` (not attribute names after a dot, not text in strings or comments).

    >>> rename("class A(B):\\n    x = A  # A\\n    y = o.A\\n", "A", "Model")
    'class Model(B):\\n    x = Model  # A\\n    y = o.A\\n'
    """
    index = LineIndex(source)
    edits: list[Edit] = []
    previous = None
    for tok in tokenize.generate_tokens(io.StringIO(source).readline):
        if tok.type == tokenize.NAME and tok.string == old and not (previous and previous.string == "."):
            start = index.starts[tok.start[0] - 1] + tok.start[1]
            edits.append((start, start + len(old), new))
        if tok.type not in (tokenize.NL, tokenize.COMMENT):
            previous = tok
    return apply_edits(source, edits)


def top_level(tree: ast.Module | ast.ClassDef, kind: type, name: str) -> ast.AST | None:
    """The class or function `name` defined directly in a module or class body (the last definition wins)."""
    found = None
    for node in tree.body:
        if isinstance(node, kind) and getattr(node, "name", None) == name:
            found = node
    return found


def dotted(node: ast.AST | None, *, partial: bool = True) -> str:
    """`torch.nn.functional.relu` for a Name/Attribute chain. A chain not rooted at a name (`f().x.y`) gives its
    attribute part (`x.y`), or '' with `partial=False`; anything else gives ''."""
    parts = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if isinstance(node, ast.Name):
        parts.append(node.id)
    elif not partial:
        return ""
    return ".".join(reversed(parts))
