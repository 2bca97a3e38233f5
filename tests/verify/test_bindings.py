"""verify/bindings.py: the one list of what an AST node binds."""

from __future__ import annotations

import ast

from tritonrl.verify.bindings import bound_by


def test_bound_by_names_every_kind_of_binding():
    tree = ast.parse("import a.b as c\nfrom x import y\ndef f(p, *q):\n    global g\n    r = 1\n"
                     "    try:\n        pass\n    except E as h:\n        pass\nclass K:\n    pass\n")  # fmt: skip
    assert sorted(name for node in ast.walk(tree) for name, _ in bound_by(node)) == sorted("cfghKpqry")


def test_bound_by_reads_only_the_node_itself():
    assign = ast.parse("x = [y for y in z]").body[0]
    assert [name for name, _ in bound_by(assign)] == []  # the target and the comprehension's are children
    assert [name for name, _ in bound_by(assign.targets[0])] == ["x"]
