"""The static checks' receiver rule: a method's `self` is the class's own instance, so its `self._x` exemption holds.

The private-attribute rule lets a method read `self._x` (`names.Names.is_receiver`). That is sound only while `self`
is bound by Python to an instance: read from the class instead (`Helper.look(obj)`, `type(m).look(obj)`,
`super().look(obj)` in a classmethod, `cls.look(obj)`), a method takes any object as `self` and reads that object's
private attributes. `names.py` already withdraws the exemption where a decorator, metaclass or class decorator may
rebind the receiver; this rule covers the reads through the class, once some method uses the exemption:
- a privileged method (one that reads a private attribute of its receiver) read from a class is only called, with a
  receiver of an instance method as its first argument (`Base.helper(self, x)`: delegation within the class's
  hierarchy);
- class objects (the candidate's classes and their `A = C` aliases, a classmethod's `cls`, `type(x)`, a `super()`
  bound to a class) stay where this rule sees them: called, read an attribute of, compared, as a base, an
  annotation, an `isinstance`/`issubclass`/`except`/`raise` operand or a decorator; never stored, passed or returned,
  from where a read could not be followed.
A file with no privileged method has nothing to protect and is not checked. Pure `ast`.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator

from tritonrl.types import FailureKind
from tritonrl.verify.names import Names, Scope

Violation = tuple[ast.AST, FailureKind, str]  # (offending node, failure kind, why)


def violations(tree: ast.Module, names: Names, parents: dict[ast.AST, ast.AST]) -> Iterator[Violation]:
    """Every breach of the receiver rule, in no particular order (the caller reports the first by line)."""
    privileged = _privileged_methods(tree, names)
    if not privileged:
        return
    classes = _class_names(tree, names)
    annotations = {id(n) for a in _annotation_roots(tree) for n in ast.walk(a)}
    for node in ast.walk(tree):
        if not _class_valued(node, names, classes):
            continue
        parent = parents.get(node)
        if isinstance(parent, ast.Attribute) and parent.value is node:
            if parent.attr in privileged and not _called_with_own_instance(parent, parents.get(parent), names):
                yield (
                    parent,
                    FailureKind.TAMPERING,
                    (
                        f"reads the method {parent.attr} from a class: called so, its self can be any object, whose "
                        "private attributes it would read (call it on an instance)"
                    ),
                )
        elif id(node) not in annotations and not _visible_use(node, parent, parents, privileged):
            yield (
                node,
                FailureKind.TAMPERING,
                (
                    "uses a class object as a value: stored or passed on, it could call a method that reads private "
                    "attributes with any object as its self"
                ),
            )


def _privileged_methods(tree: ast.Module, names: Names) -> set[str]:
    """Names of the instance methods that read a (non-dunder) private attribute of their own receiver."""
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and node.attr.startswith("_") and not node.attr.endswith("__"):
            if isinstance(node.value, ast.Name) and names.is_receiver(node.value):
                scope = names.binding(node.value)
                if scope is not None and scope.method and scope.class_param is None:  # a classmethod binds cls anyway
                    found.add(scope.method)
    return found


def _class_names(tree: ast.Module, names: Names) -> set[str]:
    """The candidate's class names and the names assigned one of them (`ModelNew = FastModel`), to a fixpoint."""
    found = {n.name for n in ast.walk(tree) if isinstance(n, ast.ClassDef)}
    assigns = [n for n in ast.walk(tree) if isinstance(n, ast.Assign) and len(n.targets) == 1]
    aliases = [(n.targets[0].id, n.value) for n in assigns if isinstance(n.targets[0], ast.Name)]
    while True:
        more = {target for target, value in aliases if target not in found and _class_valued(value, names, found)}
        if not more:
            return found
        found |= more


def _class_valued(node: ast.AST, names: Names, classes: set[str]) -> bool:
    """An expression whose value is a class object (as far as this flow-insensitive reading can tell)."""
    if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Load):
        scope = names.binding(node)
        if scope is None:
            return False
        if scope.class_param == node.id:
            return True
        return node.id in classes and not names.is_receiver(node)
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and names.binding(node.func) is None:
        if node.func.id == "type":
            return len(node.args) == 1 and not node.keywords
        if node.func.id == "super":  # zero-argument super() in a classmethod, or super(C, <not an instance>)
            if not node.args:
                method = _method_scope(names.scope_of.get(node.func))
                return method is not None and method.class_param is not None
            second = node.args[1] if len(node.args) > 1 else None
            return not (_instance_receiver(second, names))
    return False


def _method_scope(scope: Scope | None) -> Scope | None:
    while scope is not None and scope.method is None:
        scope = scope.parent
    return scope


def _instance_receiver(node: ast.AST | None, names: Names) -> bool:
    if not (isinstance(node, ast.Name) and names.is_receiver(node)):
        return False
    scope = names.binding(node)
    return scope is not None and scope.class_param != node.id


def _called_with_own_instance(attr: ast.Attribute, call: ast.AST | None, names: Names) -> bool:
    """`C.method(self, ...)`: the read is the call's function and its first argument is an instance receiver."""
    return (
        isinstance(call, ast.Call)
        and call.func is attr
        and bool(call.args)
        and not isinstance(call.args[0], ast.Starred)
        and _instance_receiver(call.args[0], names)
    )


_CLASS_OPERANDS = ("isinstance", "issubclass", "super")


def _visible_use(node: ast.AST, parent: ast.AST | None, parents: dict[ast.AST, ast.AST], privileged: set[str]) -> bool:
    """Uses of a class object that hand it to nothing: see the module docstring for the list."""
    if isinstance(parent, ast.Call):
        if parent.func is node:
            return True
        func = parent.func
        if isinstance(func, ast.Name) and func.id in ("getattr", "hasattr") and parent.args[:1] == [node]:
            # getattr(cls, "name", default) reads like cls.name (a private or computed name is another rule's)
            name = parent.args[1] if len(parent.args) > 1 else None
            return isinstance(name, ast.Constant) and isinstance(name.value, str) and name.value not in privileged
        return isinstance(func, ast.Name) and func.id in _CLASS_OPERANDS and node in parent.args
    if isinstance(parent, ast.Tuple):  # isinstance(x, (A, B)), except (A, B)
        outer = parents.get(parent)
        if isinstance(outer, ast.ExceptHandler):
            return True
        return isinstance(outer, ast.Call) and isinstance(outer.func, ast.Name) and outer.func.id in _CLASS_OPERANDS[:2]
    if isinstance(parent, (ast.Compare, ast.ExceptHandler, ast.Raise, ast.MatchClass)):
        return True
    if isinstance(parent, ast.ClassDef):
        return node in parent.bases or node in parent.decorator_list
    if isinstance(parent, (ast.FunctionDef, ast.AsyncFunctionDef)):
        return node in parent.decorator_list
    return isinstance(parent, ast.Assign) and len(parent.targets) == 1 and isinstance(parent.targets[0], ast.Name)


def _annotation_roots(tree: ast.Module) -> Iterator[ast.AST]:
    for node in ast.walk(tree):
        if isinstance(node, ast.arg) and node.annotation is not None:
            yield node.annotation
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.returns is not None:
            yield node.returns
        elif isinstance(node, ast.AnnAssign):
            yield node.annotation
