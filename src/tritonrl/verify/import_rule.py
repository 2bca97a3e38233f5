"""The static checks' import rule: every import statement and every chain rooted at an imported name, against the
tables of `import_policy.py`.

Fails closed: a module off the allowlist is refused, and so is a denied member reached by attribute (`os.system`) or
under any of the paths a name imported twice may hold at run time. Imported names may not be rebound where the
flow-insensitive resolution of `names.py` could not follow them. `static_checks.py` registers this as its first rule.
Pure `ast`.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator

from tritonrl.types import FailureKind
from tritonrl.verify.import_policy import KIND_WHY, QUERY_GATEWAYS, READ_ONLY_QUERIES, denied, is_allowed
from tritonrl.verify.names import Names, rebindings, root_alternatives

_K = FailureKind
Violation = tuple[ast.AST, FailureKind, str]  # (offending node, failure kind, why)


def references(tree: ast.Module, names: Names, parents: dict[ast.AST, ast.AST]) -> list[tuple[str, ast.AST]]:
    """(dotted name, node) for every import statement's names and every maximal chain rooted at an imported name."""
    found: list[tuple[str, ast.AST]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(alias.name, node) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found += [(f"{node.module}.{alias.name}", node) for alias in node.names if alias.name != "*"]
        elif isinstance(node, ast.Name) and isinstance(node.ctx, ast.Load):
            top: ast.AST = node
            while isinstance(parents.get(top), ast.Attribute):
                top = parents[top]
            path = names.dotted(top)
            if path:
                found.append((path, top))
    return found


def violations(
    tree: ast.Module, names: Names, parents: dict[ast.AST, ast.AST], refs: list[tuple[str, ast.AST]]
) -> Iterator[Violation]:
    """Every breach of the import rule, in no particular order (the caller reports the first by line)."""
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield from _check_module(node, alias.name)
        elif isinstance(node, ast.ImportFrom):
            yield from _check_import_from(node)
    imported = names.import_paths
    for name, node in rebindings(tree, set(imported)):
        yield node, _K.TAMPERING, (f"binds {name}, a name an import binds: the rules could no longer tell what it "
                                   "refers to (use another name)")  # fmt: skip
    for path, node in refs:
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            continue
        for alternative in root_alternatives(path, node, imported):  # a name imported twice may be either at run time
            if kind := denied(alternative):
                yield node, kind, f"reaches {alternative}, which {KIND_WHY[kind]}"
                break
        else:
            call = parents.get(node)
            if path in READ_ONLY_QUERIES and not (isinstance(call, ast.Call) and call.func is node):
                yield node, _K.TAMPERING, f"uses {path} other than by calling it"


def _check_import_from(node: ast.ImportFrom) -> Iterator[Violation]:
    module = node.module or ""
    if node.level:
        yield node, _K.FORBIDDEN_IMPORT, "is a relative import; it could reach the harness's own modules"
    elif any(alias.name == "*" for alias in node.names):
        yield node, _K.FORBIDDEN_IMPORT, "is a star import, which hides the names it binds"
    elif not is_allowed(module) and not all(f"{module}.{a.name}" in QUERY_GATEWAYS for a in node.names):
        yield from _check_module(node, module)
    for alias in node.names:
        member = f"{module}.{alias.name}"
        if member in QUERY_GATEWAYS:
            continue  # its uses are references, checked in `violations`
        if kind := denied(member):
            yield node, kind, f"imports {member}, which {KIND_WHY[kind]}"
        elif alias.name.startswith("_") and not node.level:
            yield node, _K.TAMPERING, f"imports the private name {member}"


def _check_module(node: ast.AST, module: str) -> Iterator[Violation]:
    if kind := denied(module):
        yield node, kind, f"imports {module}, which {KIND_WHY[kind]}"
    elif not is_allowed(module):
        yield node, _K.FORBIDDEN_IMPORT, f"imports {module}, which is not on the import allowlist"
