"""Scope-aware name resolution for the static checks: what each `Name` in a candidate refers to.

`Names(tree)` answers `binding(name)` (the scope a Name is bound in; None for a builtin) and `dotted(node)`
(`torch.cuda.Stream` for a Name/Attribute chain rooted at an import, or at a `t = torch`-style alias of one). It follows
Python's scoping (class bodies do not enclose methods, `global`/`nonlocal`, comprehensions) but is flow-insensitive.
`assigned_pairs` is shared with the rules; the rules themselves live in `static_checks.py`. Pure `ast`.
"""

from __future__ import annotations

import ast
import dataclasses
from collections.abc import Iterator


@dataclasses.dataclass(eq=False)
class Scope:
    """One Python scope (module, class, function, lambda or comprehension) and the names it binds."""

    parent: Scope | None
    is_class: bool = False
    bound: set[str] = dataclasses.field(default_factory=set)  # names local to this scope
    globals: set[str] = dataclasses.field(default_factory=set)  # `global` declarations
    nonlocals: set[str] = dataclasses.field(default_factory=set)  # `nonlocal` declarations
    imports: dict[str, str] = dataclasses.field(default_factory=dict)  # name -> dotted path (imports and aliases)


class Names:
    """Flow-insensitive resolution of every Name node: an imported module or member (and which), a builtin, or local."""

    def __init__(self, tree: ast.Module) -> None:
        self.module = Scope(None)
        self.scope_of: dict[ast.Name, Scope] = {}
        self._aliases: list[tuple[Scope, str, ast.expr]] = []  # `t = torch`-style assignments
        self._visit(tree, self.module)
        for _ in range(len(self._aliases)):  # fixpoint: a chain of n aliases resolves in at most n passes
            changed = False
            for scope, name, value in self._aliases:
                path = self.dotted(value)
                if path and scope.imports.get(name) != path:
                    scope.imports[name], changed = path, True
            if not changed:
                break

    def binding(self, node: ast.Name) -> Scope | None:
        """The scope whose binding `node` refers to; None for a builtin."""
        scope, first = self.scope_of.get(node, self.module), True
        while scope.parent is not None:
            if node.id in scope.globals:
                break
            if node.id in scope.bound and (first or not scope.is_class):  # class bodies do not enclose methods
                return scope
            scope, first = scope.parent, False
        return self.module if node.id in self.module.bound else None

    def dotted(self, node: ast.AST) -> str | None:
        """`torch.cuda.Stream` for a Name/Attribute chain rooted at an imported name, else None."""
        attrs: list[str] = []
        while isinstance(node, ast.Attribute):
            attrs.append(node.attr)
            node = node.value
        if not isinstance(node, ast.Name):
            return None
        scope = self.binding(node)
        root = scope.imports.get(node.id) if scope else None
        return ".".join([root, *reversed(attrs)]) if root else None

    def _visit(self, node: ast.AST, scope: Scope) -> None:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
            self._visit_function(node, scope)
            return
        if isinstance(node, ast.ClassDef):
            scope.bound.add(node.name)
            for child in [*node.decorator_list, *node.bases, *node.keywords]:
                self._visit(child, scope)
            inner = Scope(scope, is_class=True)
            for stmt in node.body:
                self._visit(stmt, inner)
            return
        if isinstance(node, (ast.ListComp, ast.SetComp, ast.DictComp, ast.GeneratorExp)):
            scope = Scope(scope)
        elif isinstance(node, ast.Name):
            self.scope_of[node] = scope
            if not isinstance(node.ctx, ast.Load):
                scope.bound.add(node.id)
        elif isinstance(node, ast.Import):
            for alias in node.names:
                top = alias.name.split(".")[0]
                scope.bound.add(alias.asname or top)
                scope.imports[alias.asname or top] = alias.name if alias.asname else top
        elif isinstance(node, ast.ImportFrom):
            for alias in node.names:
                if alias.name != "*":
                    scope.bound.add(alias.asname or alias.name)
                    scope.imports[alias.asname or alias.name] = f"{'.' * node.level}{node.module or ''}.{alias.name}"
        elif isinstance(node, ast.Global):
            scope.globals.update(node.names)
            self.module.bound.update(node.names)
        elif isinstance(node, ast.Nonlocal):
            scope.nonlocals.update(node.names)
        elif isinstance(node, (ast.ExceptHandler, ast.MatchAs, ast.MatchStar)) and node.name:
            scope.bound.add(node.name)
        elif isinstance(node, ast.MatchMapping) and node.rest:
            scope.bound.add(node.rest)
        for target, value in assigned_pairs(node):
            if isinstance(target, ast.Name) and isinstance(value, (ast.Name, ast.Attribute)):
                self._aliases.append((scope, target.id, value))
        for child in ast.iter_child_nodes(node):
            self._visit(child, scope)

    def _visit_function(self, node: ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda, scope: Scope) -> None:
        args = node.args
        params = [*args.posonlyargs, *args.args, *args.kwonlyargs, *(a for a in (args.vararg, args.kwarg) if a)]
        outer = [*args.defaults, *(d for d in args.kw_defaults if d), *(p.annotation for p in params if p.annotation)]
        if not isinstance(node, ast.Lambda):
            scope.bound.add(node.name)
            outer += [*node.decorator_list, *([node.returns] if node.returns else [])]
        for child in outer:
            self._visit(child, scope)
        inner = Scope(scope, bound={p.arg for p in params})
        for stmt in node.body if isinstance(node.body, list) else [node.body]:
            self._visit(stmt, inner)
        inner.bound -= inner.globals | inner.nonlocals


def assigned_pairs(node: ast.AST) -> Iterator[tuple[ast.expr, ast.expr]]:
    """(target, value) pairs of simple assignments, unpacking `a, b = x, y`."""
    if isinstance(node, ast.Assign):
        pairs = [(t, node.value) for t in node.targets]
    elif isinstance(node, (ast.AnnAssign, ast.NamedExpr)) and node.value is not None:
        pairs = [(node.target, node.value)]
    else:
        return
    while pairs:
        target, value = pairs.pop()
        if isinstance(target, (ast.Tuple, ast.List)) and isinstance(value, (ast.Tuple, ast.List)):
            pairs += zip(target.elts, value.elts, strict=False)
        else:
            yield target, value
