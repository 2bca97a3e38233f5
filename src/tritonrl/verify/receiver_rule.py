"""The static checks' receiver rule: a method's `self` is the class's own instance, so its `self._x` exemption holds.

The private-attribute rule lets a method read `self._x` (`names.Names.is_receiver`). That is sound only while `self`
is bound by Python to an instance: a method's raw function takes any object as `self` and reads that object's private
attributes. `names.py` already withdraws the exemption where a decorator, metaclass or class decorator may rebind the
receiver; this rule keeps the raw function of every privileged method (an instance method that reads a private
attribute of its receiver) out of reach:
- read from a class object (`Helper.peek`, `type(m).peek`, a classmethod's `cls.peek`, `super().peek` in a
  classmethod), it is only called, with an instance method's receiver as its first argument (`Base.launch(self, x)`:
  delegation within the class's hierarchy);
- in its class body its bare name (the raw function) is used only as `@name.setter`-style decorators or aliased by
  name (`forward = _impl`), never passed, stored or wrapped (`staticmethod(peek)`, `{"p": peek}`, `f=peek`);
- class objects through which one is reachable (the class or a candidate ancestor defines it; a `cls`, `type(x)` or
  class-bound `super()` may be any subclass) stay where this rule sees them: called, read from (`getattr` with a
  literal name too), compared, a base, an annotation, an `isinstance`/`issubclass`/`except`/`raise` operand, a
  decorator or aliased by name; never stored, passed or returned.
`own_class` also tells the private-attribute rule which class objects are the candidate's own (`Base._prepare`,
`cls._registry`, `super()._helper`). A file with no privileged method has nothing to protect here. Pure `ast`.
"""

from __future__ import annotations

import ast
import dataclasses
from collections.abc import Iterator

from tritonrl.types import FailureKind
from tritonrl.verify.names import Names, Scope

Violation = tuple[ast.AST, FailureKind, str]  # (offending node, failure kind, why)
_ACCESSORS = ("setter", "getter", "deleter")


@dataclasses.dataclass(frozen=True)
class Classes:
    """What the rules know of a candidate's classes, by name (as the rest of the static checks, flow-insensitive)."""

    own: frozenset[str]  # names only ever bound to the candidate's classes (class statements, `A = C`)
    named: frozenset[str]  # names that may hold one: class names and their `A = C` aliases
    privileged: frozenset[str]  # privileged method names, with their class-body aliases
    reaching: frozenset[str]  # names whose class has a privileged method as attribute (its own or a base's)
    below: frozenset[str]  # names whose class is in `reaching` or a base of one there: a `cls` there may reach one

    @classmethod
    def of(cls, tree: ast.Module, names: Names) -> Classes:
        defs = [n for n in ast.walk(tree) if isinstance(n, ast.ClassDef)]
        by_class: dict[str, set[str]] = {d.name: set() for d in defs}
        for node in ast.walk(tree):
            if isinstance(node, ast.Attribute) and node.attr.startswith("_") and not node.attr.endswith("__"):
                if isinstance(node.value, ast.Name) and names.is_receiver(node.value):
                    scope = names.binding(node.value)
                    if scope is not None and scope.owner is not None and scope.class_param is None:
                        by_class[scope.owner.name].add(scope.method or "")
        for d in defs:  # `forward = _impl` in the class body: the same function under another name
            body_aliases = _body_aliases(d)
            for _ in range(len(body_aliases)):
                by_class[d.name] |= {t.id for t, v in body_aliases if v.id in by_class[d.name]}
        assigns = [n for n in ast.walk(tree) if isinstance(n, ast.Assign) and len(n.targets) == 1
                   and isinstance(n.targets[0], ast.Name)]  # fmt: skip
        pairs = [(n.targets[0], n.value) for n in assigns if isinstance(n.value, ast.Name)]
        aliases = [(t.id, v.id) for t, v in pairs]
        bases = {d.name: {b.id for b in d.bases if isinstance(b, ast.Name)} for d in defs}
        reaching = {c for c, methods in by_class.items() if methods}
        for _ in range(len(defs) + 1):  # inheritance: a subclass reaches what its bases reach
            reaching |= {c for c, b in bases.items() if b & reaching}
        named, below = set(by_class), set(reaching)
        for _ in range(len(defs) + 1):
            below |= {b for c in below for b in bases.get(c, ())}
        for _ in range(len(aliases) + 1):
            named |= {t for t, v in aliases if v in named}
            reaching |= {t for t, v in aliases if v in reaching}
            below |= {t for t, v in aliases if v in below}
        # `t = type(self)`, `k = super()`: names of classes this reading cannot place, so any may reach one
        unknown = {n.targets[0].id for n in assigns if _class_call(n.value, names)}
        for _ in range(len(aliases) + 1):
            unknown |= {t for t, v in aliases if v in unknown}
        named, reaching, below = named | unknown, reaching | unknown, below | unknown
        own = named - _bound_otherwise(tree, {id(t) for t, _ in pairs})
        privileged = frozenset().union(*by_class.values()) if by_class else frozenset()
        return cls(frozenset(own), frozenset(named), privileged, frozenset(reaching), frozenset(below))


def violations(
    tree: ast.Module, names: Names, parents: dict[ast.AST, ast.AST], classes: Classes
) -> Iterator[Violation]:
    """Every breach of the receiver rule, in no particular order (the caller reports the first by line)."""
    if not classes.privileged:
        return
    yield from _class_body_uses(tree, names, classes)
    annotations = {id(n) for a in _annotation_roots(tree) for n in ast.walk(a)}
    for node in ast.walk(tree):
        reach = _reach(node, names, classes)
        if reach is None:
            continue
        parent = parents.get(node)
        if isinstance(parent, ast.Attribute) and parent.value is node:
            if reach and parent.attr in classes.privileged and not _called_with_instance(parent, parents, names):
                yield (
                    parent,
                    FailureKind.TAMPERING,
                    (
                        f"reads the method {parent.attr} from a class: called so, its self can be any object, whose "
                        "private attributes it would read (call it on an instance)"
                    ),
                )
        elif reach and id(node) not in annotations and not _visible_use(node, parent, (names, parents, classes)):
            yield (
                node,
                FailureKind.TAMPERING,
                (
                    "uses a class object as a value: stored or passed on, it could call a method that reads private "
                    "attributes with any object as its self"
                ),
            )


def own_class(node: ast.AST, names: Names, classes: Classes) -> bool:
    """A class object that is the candidate's own: one of its classes by name (a name bound to nothing else),
    `super()` (Python checks it is bound within the class's hierarchy), or the class of an instance receiver
    (`type(self)`, `self.__class__`). `type(x)` of anything else is not, nor is a metaclass method's class."""
    if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Load):
        return names.binding(node) is not None and node.id in classes.own and not names.is_receiver(node)
    if isinstance(node, ast.Call) and names.is_builtin(node.func, "super"):
        return not node.args or (own_class(node.args[0], names, classes) and len(node.args) == 2
                                 and _receiver(node.args[1], names) is not None)  # fmt: skip
    of = _class_of(node, names)
    return of is not None and _receiver(of, names) is not None


def _reach(node: ast.AST, names: Names, classes: Classes) -> bool | None:
    """None: not a class object; else whether a privileged method may be reached through it."""
    if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Load):
        scope = names.binding(node)
        if scope is None:
            return None
        if scope.class_param == node.id:  # bound to its class or any subclass; a metaclass's, to any class
            owner = scope.owner
            return owner is None or owner.name in classes.below or any(names.is_builtin(b, "type") for b in owner.bases)
        if node.id in classes.named and not names.is_receiver(node):
            return node.id in classes.reaching
        return None
    if isinstance(node, ast.Call) and names.is_builtin(node.func, "super"):
        method = _method_scope(names.scope_of.get(node.func))  # type: ignore[arg-type]
        if not node.args:  # bound to a class only in a classmethod
            return None if method is None or method.class_param is None else True
        return None if len(node.args) == 2 and _receiver(node.args[1], names) is not None else True
    of = _class_of(node, names)
    if of is None:
        return None
    scope = _receiver(of, names)
    return scope is None or scope.owner is None or scope.owner.name in classes.below


def _class_call(node: ast.AST, names: Names) -> bool:
    """`type(x)`, `x.__class__` or `super(...)`."""
    return _class_of(node, names) is not None or (isinstance(node, ast.Call) and names.is_builtin(node.func, "super"))


def _class_of(node: ast.AST, names: Names) -> ast.AST | None:
    """`x` of `type(x)` or `x.__class__`."""
    if isinstance(node, ast.Call) and names.is_builtin(node.func, "type") and len(node.args) == 1:
        return node.args[0]
    if isinstance(node, ast.Attribute) and node.attr == "__class__":
        return node.value
    return None


def _receiver(node: ast.AST | None, names: Names) -> Scope | None:
    """The method scope of an instance method's receiver (`self`), or None."""
    if not (isinstance(node, ast.Name) and names.is_receiver(node)):
        return None
    scope = names.binding(node)
    return scope if scope is not None and scope.class_param != node.id else None


def _method_scope(scope: Scope | None) -> Scope | None:
    while scope is not None and scope.method is None:
        scope = scope.parent
    return scope


def _called_with_instance(attr: ast.Attribute, parents: dict[ast.AST, ast.AST], names: Names) -> bool:
    """`C.method(self, ...)`: the read is the call's function and its first argument is an instance receiver."""
    call = parents.get(attr)
    return (
        isinstance(call, ast.Call)
        and call.func is attr
        and bool(call.args)
        and _receiver(call.args[0], names) is not None
    )


def _visible_use(node: ast.AST, parent: ast.AST | None, ctx: tuple[Names, dict[ast.AST, ast.AST], Classes]) -> bool:
    """Uses of a class object that hand it to nothing: see the module docstring for the list."""
    names, parents, classes = ctx

    def operand_of(call: ast.AST | None, *builtins: str) -> bool:
        return isinstance(call, ast.Call) and any(names.is_builtin(call.func, b) for b in builtins)

    if isinstance(parent, ast.Call):
        if parent.func is node:
            return True
        if operand_of(parent, "getattr", "hasattr") and parent.args[:1] == [node]:
            # getattr(cls, "name", default) reads like cls.name (a private or computed name is another rule's)
            name = names.literal_getattr(parent, node)
            return name is not None and name not in classes.privileged
        return operand_of(parent, "isinstance", "issubclass", "super") and node in parent.args
    if isinstance(parent, ast.Tuple):  # isinstance(x, (A, B)), except (A, B)
        outer = parents.get(parent)
        return isinstance(outer, ast.ExceptHandler) or operand_of(outer, "isinstance", "issubclass")
    if isinstance(parent, (ast.Compare, ast.ExceptHandler, ast.Raise, ast.MatchClass)):
        return True
    if isinstance(parent, ast.ClassDef):
        return node in parent.bases or node in parent.decorator_list
    if isinstance(parent, (ast.FunctionDef, ast.AsyncFunctionDef)):
        return node in parent.decorator_list
    return isinstance(parent, ast.Assign) and len(parent.targets) == 1 and isinstance(parent.targets[0], ast.Name)


def _class_body_uses(tree: ast.Module, names: Names, classes: Classes) -> Iterator[Violation]:
    """A privileged method's bare name read in its class body (where it is the raw function): only `@name.setter`
    (and getter/deleter) decorators and `alias = name` keep it bound."""
    for cls in (n for n in ast.walk(tree) if isinstance(n, ast.ClassDef)):
        local = {f.name for f in cls.body if isinstance(f, ast.FunctionDef | ast.AsyncFunctionDef)}
        local |= {t.id for t, _ in _body_aliases(cls)}
        mine = local & classes.privileged
        if not mine:
            continue
        kept = {id(v) for _, v in _body_aliases(cls)}
        for f in cls.body:
            if isinstance(f, ast.FunctionDef | ast.AsyncFunctionDef):
                kept |= {id(d.value) for d in f.decorator_list if isinstance(d, ast.Attribute) and d.attr in _ACCESSORS}
        for node in _class_scope_names(cls):
            if node.id in mine and id(node) not in kept:
                yield (
                    node,
                    FailureKind.TAMPERING,
                    (
                        f"uses the method {node.id} as a value in its class body: unbound there, it would read the "
                        "private attributes of whatever it is called with"
                    ),
                )


def _bound_otherwise(tree: ast.Module, alias_targets: set[int]) -> set[str]:
    """Names bound anywhere by something other than a class statement or a `name = name` alias."""
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Name) and not isinstance(node.ctx, ast.Load) and id(node) not in alias_targets:
            found.add(node.id)
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            found.add(node.name)
        elif isinstance(node, ast.arg):
            found.add(node.arg)
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            found |= {(a.asname or a.name).split(".")[0] for a in node.names}
        elif isinstance(node, (ast.ExceptHandler, ast.MatchAs, ast.MatchStar)) and node.name:
            found.add(node.name)
        elif isinstance(node, (ast.Global, ast.Nonlocal)):
            found |= set(node.names)
    return found


def _body_aliases(cls: ast.ClassDef) -> list[tuple[ast.Name, ast.Name]]:
    """`alias = name` statements of a class body."""
    return [(s.targets[0], s.value) for s in cls.body if isinstance(s, ast.Assign) and len(s.targets) == 1
            and isinstance(s.targets[0], ast.Name) and isinstance(s.value, ast.Name)]  # fmt: skip


def _class_scope_names(cls: ast.ClassDef) -> Iterator[ast.Name]:
    """Name loads evaluated in the class body's scope: its statements, and its defs' decorators and defaults (not
    their bodies, nor a nested class's body)."""
    stack: list[ast.AST] = list(cls.body)
    while stack:
        node = stack.pop()
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
            args = node.args
            stack += [*args.defaults, *(d for d in args.kw_defaults if d)]
            if not isinstance(node, ast.Lambda):
                stack += node.decorator_list
            continue
        if isinstance(node, ast.ClassDef):
            stack += [*node.decorator_list, *node.bases, *(k.value for k in node.keywords)]
            continue
        if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Load):
            yield node
        stack += ast.iter_child_nodes(node)


def _annotation_roots(tree: ast.Module) -> Iterator[ast.AST]:
    for node in ast.walk(tree):
        if isinstance(node, ast.arg) and node.annotation is not None:
            yield node.annotation
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.returns is not None:
            yield node.returns
        elif isinstance(node, ast.AnnAssign):
            yield node.annotation
