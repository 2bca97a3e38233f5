"""tasks/edits.py: minimal text edits located by ast; renames that leave strings, comments and attributes alone."""

from __future__ import annotations

import ast

import pytest

from tritonrl.tasks.edits import LineIndex, apply_edits, rename


def test_rename_touches_names_only():
    src = 'class Foo(nn.Module):\n    """Foo docs."""\n    x = Foo  # Foo\n    y = self.Foo\n    s = "Foo"\n'
    expected = src.replace("class Foo", "class Model").replace("x = Foo", "x = Model")
    assert rename(src, "Foo", "Model") == expected


def test_spans_follow_utf8_columns():
    src = 'a = "\u00e9t\u00e9"; b = 5\n'
    index = LineIndex(src)
    node = ast.parse(src).body[1].value
    start, end = index.span(node)
    assert src[start:end] == "5"
    assert apply_edits(src, [(start, end, "7")]) == 'a = "\u00e9t\u00e9"; b = 7\n'


def test_overlapping_edits_are_refused():
    with pytest.raises(ValueError, match="overlapping"):
        apply_edits("abcdef", [(0, 3, "x"), (2, 4, "y")])


def test_dotted_names_attribute_chains():
    import ast

    from tritonrl.tasks.edits import dotted

    def expr(text: str) -> ast.AST:
        return ast.parse(text, mode="eval").body

    assert dotted(expr("torch.nn.functional.relu")) == "torch.nn.functional.relu"
    assert dotted(expr("f().x.y")) == "x.y"
    assert dotted(expr("f().x.y"), partial=False) == ""
    assert dotted(expr("1 + 2")) == "" and dotted(None) == ""
