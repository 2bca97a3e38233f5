"""verify/import_rule.py on its own: the chains it collects and every breach it yields (static_checks reports only
the first by line; its rule tables are tested in test_static_checks.py)."""

from __future__ import annotations

import ast

from tritonrl.types import FailureKind as K
from tritonrl.verify import import_rule
from tritonrl.verify.names import Names


def _run(code: str) -> tuple[list[tuple[str, int]], list[tuple[int, K, str]]]:
    tree = ast.parse(code)
    names = Names(tree)
    parents = {child: node for node in ast.walk(tree) for child in ast.iter_child_nodes(node)}
    refs = import_rule.references(tree, names, parents)
    found = import_rule.violations(tree, names, parents, refs)
    return [(path, node.lineno) for path, node in refs], sorted((n.lineno, kind, why) for n, kind, why in found)


def test_references_are_maximal_chains_through_aliases():
    refs, found = _run("import torch as t\nimport os.path\nx = t.nn.functional.relu\ny = os.path.join('a', 'b')\n")
    assert ("torch.nn.functional.relu", 3) in refs and ("os.path.join", 4) in refs
    assert ("torch", 1) in refs and ("os.path", 2) in refs
    assert not any(path in ("torch.nn", "torch.nn.functional") for path, _ in refs)  # only the longest chain
    assert found == []


def test_every_breach_is_yielded_with_its_kind():
    code = "import os\nimport scipy\nfrom . import x\nfrom math import *\nos.system('sh')\nfrom os import _exit\n"
    _, found = _run(code)
    kinds = {line: kind for line, kind, _ in found}
    assert kinds == {
        2: K.FORBIDDEN_IMPORT,  # off the allowlist
        3: K.FORBIDDEN_IMPORT,  # relative
        4: K.FORBIDDEN_IMPORT,  # star
        5: K.PROCESS_SPAWN,  # a denied member by attribute
        6: K.PROCESS_SPAWN,  # a denied member by name
    }


def test_a_rebound_import_and_an_uncalled_driver_query_are_tampering():
    _, found = _run("import os\nos = 3 if True else os\n")
    assert [(line, kind) for line, kind, _ in found] == [(2, K.TAMPERING)]
    code = "from triton.runtime import driver\nq = driver.active.get_current_device\n"
    _, found = _run(code)
    assert [(line, kind) for line, kind, why in found] == [(2, K.TAMPERING)] and "other than by calling" in found[0][2]
    _, found = _run("from triton.runtime import driver\nq = driver.active.get_current_device()\n")
    assert found == []
