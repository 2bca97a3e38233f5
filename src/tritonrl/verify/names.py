"""Scope-aware name resolution for the static checks: what each `Name` in a candidate refers to.

`Names(tree)` answers `binding(name)` (the scope a Name is bound in; None for a builtin) and `dotted(node)`
(`torch.cuda.Stream` for a Name/Attribute chain rooted at an import, or at a `t = torch`-style alias of one). It follows
Python's scoping (class bodies do not enclose methods, `global`/`nonlocal`, comprehensions) but is flow-insensitive.
`is_receiver(node)` tells a method's own `self`/`cls` (every binding goes through `Scope.bind`, so any rebinding ends
that). `assigned_pairs`, `rebindings` and `root_alternatives` are shared with the rules, which live in
`static_checks.py` and `import_rule.py`. Pure `ast`.
"""

from __future__ import annotations

import ast
import dataclasses
from collections import Counter
from collections.abc import Callable, Iterator

from tritonrl.verify import passthrough
from tritonrl.verify.bindings import bound_by

# Decorators outside torch that return the method still bound on access (a cache, or the function itself, marked).
_BINDING_DECORATORS = frozenset(
    {
        "functools.cache",
        "functools.lru_cache",
        "functools.cached_property",
        "functools.singledispatchmethod",
        "abc.abstractmethod",
        "typing.override",
        "typing.final",
        "typing.no_type_check",
        "contextlib.contextmanager",
    }
)
# Class decorators that add methods but leave the class's own ones as they are.
_CLASS_DECORATORS = frozenset({"dataclasses.dataclass", "functools.total_ordering", "typing.final"})


@dataclasses.dataclass(eq=False)
class Scope:
    """One Python scope (module, class, function, lambda or comprehension) and the names it binds."""

    parent: Scope | None
    is_class: bool = False
    bound: set[str] = dataclasses.field(default_factory=set)  # names local to this scope
    globals: set[str] = dataclasses.field(default_factory=set)  # `global` declarations
    nonlocals: set[str] = dataclasses.field(default_factory=set)  # `nonlocal` declarations
    imports: dict[str, str] = dataclasses.field(default_factory=dict)  # name -> dotted path (imports and aliases)
    receiver: str | None = None  # a method's first parameter (`self`/`cls`) while nothing else binds that name
    method: str | None = None  # the name of the function defined in a class body whose scope this is
    class_param: str | None = None  # its first parameter when Python binds that to a class (classmethod, __new__, ...)
    owner: ast.ClassDef | None = None  # the class whose body defines that function

    def bind(self, name: str) -> None:
        """Every binding goes through here (assignment, import, def, class, except/match, nonlocal from inside), so
        any rebinding of the receiver's name ends its exemption."""
        self.bound.add(name)
        if name == self.receiver:
            self.receiver = None


class Names:
    """Flow-insensitive resolution of every Name node: an imported module or member (and which), a builtin, or local."""

    def __init__(self, tree: ast.Module) -> None:
        self.module = Scope(None)
        self.scope_of: dict[ast.Name, Scope] = {}
        self.import_paths: dict[str, set[str]] = {}  # every name an import binds, in any scope -> its dotted paths
        self._aliases: list[tuple[Scope, str, ast.expr]] = []  # `t = torch`-style assignments
        self._methods: list[tuple[Scope, ast.FunctionDef | ast.AsyncFunctionDef, ast.ClassDef]] = []
        self._visit(tree, self.module)
        for _ in range(len(self._aliases)):  # fixpoint: a chain of n aliases resolves in at most n passes
            changed = False
            for scope, name, value in self._aliases:
                path = self.dotted(value)
                if path and scope.imports.get(name) != path:
                    scope.imports[name], changed = path, True
            if not changed:
                break
        self._pass_through = self._pass_through_decorators(tree)
        for inner, node, cls in self._methods:  # decorators resolve only now, after the aliases
            self._settle_receiver(inner, node, cls)

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

    def is_receiver(self, node: ast.Name) -> bool:
        """`node` is a method's own `self`/`cls` (its first parameter, never rebound in it), seen from the method or
        a function nested in it; not a comprehension variable or a local that happens to be called `self`."""
        scope = self.binding(node)
        return scope is not None and scope.receiver == node.id

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

    def _visit(self, node: ast.AST, scope: Scope, cls: ast.ClassDef | None = None) -> None:
        """`cls`: the class whose body `node` is a statement of."""
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
            self._visit_function(node, scope, cls)
            return
        if isinstance(node, ast.ClassDef):
            scope.bind(node.name)
            for child in [*node.decorator_list, *node.bases, *node.keywords]:
                self._visit(child, scope)
            inner = Scope(scope, is_class=True)
            for stmt in node.body:
                self._visit(stmt, inner, node)
            return
        if isinstance(node, (ast.ListComp, ast.SetComp, ast.DictComp, ast.GeneratorExp)):
            scope = Scope(scope)
        elif isinstance(node, ast.Name):
            self.scope_of[node] = scope
            if not isinstance(node.ctx, ast.Load):
                scope.bind(node.id)  # `self = other` in the method: `self._x` no longer means its own
        elif isinstance(node, ast.Import):
            for alias in node.names:
                top = alias.name.split(".")[0]
                self._bind_import(scope, alias.asname or top, alias.name if alias.asname else top)
        elif isinstance(node, ast.ImportFrom):
            for alias in node.names:
                if alias.name != "*":
                    path = f"{'.' * node.level}{node.module or ''}.{alias.name}"
                    self._bind_import(scope, alias.asname or alias.name, path)
        elif isinstance(node, ast.Global):
            scope.globals.update(node.names)
            self.module.bound.update(node.names)
        elif isinstance(node, ast.Nonlocal):
            scope.nonlocals.update(node.names)
            for name in node.names:  # a nested function may rebind the method's `self` through `nonlocal self`
                if (owner := _enclosing_function_binding(scope.parent, name)) is not None:
                    owner.bind(name)
        elif isinstance(node, (ast.ExceptHandler, ast.MatchAs, ast.MatchStar)) and node.name:
            scope.bind(node.name)
        elif isinstance(node, ast.MatchMapping) and node.rest:
            scope.bind(node.rest)
        for target, value in assigned_pairs(node):
            if isinstance(target, ast.Name) and isinstance(value, (ast.Name, ast.Attribute)):
                self._aliases.append((scope, target.id, value))
        for child in ast.iter_child_nodes(node):
            self._visit(child, scope, cls if scope.is_class else None)  # `if ...: def m(self)` in a class body

    def _bind_import(self, scope: Scope, name: str, path: str) -> None:
        scope.bind(name)
        scope.imports[name] = path
        self.import_paths.setdefault(name, set()).add(path)

    def _visit_function(
        self, node: ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda, scope: Scope, cls: ast.ClassDef | None
    ) -> None:
        args = node.args
        params = [*args.posonlyargs, *args.args, *args.kwonlyargs, *(a for a in (args.vararg, args.kwarg) if a)]
        outer = [*args.defaults, *(d for d in args.kw_defaults if d), *(p.annotation for p in params if p.annotation)]
        if not isinstance(node, ast.Lambda):
            scope.bind(node.name)
            outer += [*node.decorator_list, *([node.returns] if node.returns else [])]
        for child in outer:
            self._visit(child, scope)
        inner = Scope(scope, bound={p.arg for p in params})
        positional = [*args.posonlyargs, *args.args]
        if scope.is_class and positional and cls is not None and not isinstance(node, ast.Lambda):
            inner.method, inner.owner = node.name, cls
            self._methods.append((inner, node, cls))
            # a default would let a bare call bind it to anything
            if positional[0].arg in ("self", "cls") and len(args.defaults) < len(positional):
                inner.receiver = positional[0].arg
        for stmt in node.body if isinstance(node.body, list) else [node.body]:
            self._visit(stmt, inner)
        inner.bound -= inner.globals | inner.nonlocals
        if inner.receiver in inner.globals | inner.nonlocals:
            inner.receiver = None

    def _settle_receiver(self, inner: Scope, node: ast.FunctionDef | ast.AsyncFunctionDef, cls: ast.ClassDef) -> None:
        """A receiver stays exempt only where Python binds it to the class's own instance (or, for classmethods, the
        class): not under a decorator that may rebind it (`staticmethod`, or one of the candidate's own, which can
        return one), nor in a class whose creation a metaclass or class decorator controls (either can rewrite
        methods into static ones). `receiver_rule.py` keeps the class from being used to call them unbound."""
        defs = [f for f in cls.body if isinstance(f, ast.FunctionDef | ast.AsyncFunctionDef)]
        props = {f.name for f in defs if any(self.is_builtin(d, "property") for d in f.decorator_list)}
        is_metaclass = any(self.is_builtin(b, "type") for b in cls.bases)  # its methods' first argument is a class
        classmethod = any(self.is_builtin(d, "classmethod") for d in node.decorator_list)
        if classmethod or is_metaclass or node.name in ("__new__", "__init_subclass__", "__class_getitem__"):
            first = node.args.posonlyargs[0] if node.args.posonlyargs else node.args.args[0]
            inner.class_param = first.arg  # whatever its name, and exempt or not (`receiver_rule` reads it)
        decorated = not all(self._known_decorator(d, _CLASS_DECORATORS.__contains__) for d in cls.decorator_list)
        controlled = decorated or is_metaclass or any(k.arg == "metaclass" for k in cls.keywords)
        if controlled or not all(self._keeps_binding(d, props) for d in node.decorator_list):
            inner.receiver = None

    def _keeps_binding(self, decorator: ast.expr, props: set[str]) -> bool:
        """A decorator that leaves `obj.method` bound to obj: the builtins classmethod and property, a setter (getter,
        deleter) of one of the class's properties, the caching/marking decorators of functools, abc and typing, or
        one from torch; called, only with plain arguments (`functools.partial(staticmethod)` would make it static);
        or a pass-through wrapper of the candidate's own (`passthrough.py`)."""
        target = decorator.func if isinstance(decorator, ast.Call) else decorator
        if self.is_builtin(target, "classmethod") or self.is_builtin(target, "property"):
            return True
        if isinstance(target, ast.Attribute) and isinstance(target.value, ast.Name):
            if target.attr in ("setter", "getter", "deleter") and target.value.id in props:
                return True
        if isinstance(decorator, ast.Name) and decorator.id in self._pass_through:
            return self.binding(decorator) is self.module
        return self._known_decorator(decorator, lambda path: path.startswith("torch.") or path in _BINDING_DECORATORS)

    def _pass_through_decorators(self, tree: ast.Module) -> frozenset[str]:
        """The candidate's module-level functions that are pass-through wrappers (`passthrough.py`), bound once in
        the whole module and read nowhere but as a decorator: what runs is the function read, and it cannot be
        handed elsewhere or altered (`deco.__code__ = ...` reads it)."""
        functions = [f for f in tree.body if isinstance(f, ast.FunctionDef)]
        if not functions:
            return frozenset()
        bindings: Counter[str] = Counter()
        decorators: set[int] = set()
        reads: list[ast.Name] = []
        for node in ast.walk(tree):  # one pass: every candidate is statically checked, most have no such function
            bindings.update(name for name, _ in bound_by(node))
            decorators.update(id(d) for d in getattr(node, "decorator_list", ()))
            if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Load):
                reads.append(node)
        read_elsewhere = {n.id for n in reads if id(n) not in decorators}

        def is_wraps(node: ast.expr) -> bool:
            return self.dotted(node) == "functools.wraps"

        return frozenset(
            f.name
            for f in functions
            if bindings[f.name] == 1 and f.name not in read_elsewhere and passthrough.keeps_receiver(f, is_wraps)
        )

    def _known_decorator(self, decorator: ast.expr, known: Callable[[str], bool]) -> bool:
        """`decorator` (or the call of one) resolves to a path `known` accepts, and any arguments are plain."""
        target = decorator.func if isinstance(decorator, ast.Call) else decorator
        args = [*decorator.args, *(k.value for k in decorator.keywords)] if isinstance(decorator, ast.Call) else []
        path = self.dotted(target)
        return bool(path) and known(path) and all(self._plain(a) for a in args)

    def _plain(self, node: ast.expr) -> bool:
        """A decorator argument that cannot be a callable of the candidate's: a constant, or a torch/triton/math
        name (`torch.float16`)."""
        if isinstance(node, ast.Constant):
            return True
        if isinstance(node, (ast.Tuple, ast.List)):
            return all(self._plain(e) for e in node.elts)
        if isinstance(node, ast.UnaryOp):
            return self._plain(node.operand)
        path = self.dotted(node)
        return bool(path) and path.split(".")[0] in ("torch", "triton", "math")

    def is_builtin(self, node: ast.AST, name: str) -> bool:
        """`node` is the Name `name` and refers to the builtin (nothing in the candidate binds it)."""
        return isinstance(node, ast.Name) and node.id == name and self.binding(node) is None

    def literal_getattr(self, call: ast.AST | None, obj: ast.AST) -> str | None:
        """The attribute name of `getattr(obj, "name"[, default])` or `hasattr(obj, "name")` (the builtins, a string
        literal): such a call reads what `obj.name` reads. None for any other call."""
        if not isinstance(call, ast.Call) or call.args[:1] != [obj]:
            return None
        if not (self.is_builtin(call.func, "getattr") or self.is_builtin(call.func, "hasattr")):
            return None
        name = call.args[1] if len(call.args) > 1 else None
        return name.value if isinstance(name, ast.Constant) and isinstance(name.value, str) else None


def _enclosing_function_binding(scope: Scope | None, name: str) -> Scope | None:
    """The function scope a `nonlocal name` refers to: the nearest enclosing non-class scope that binds it."""
    while scope is not None and scope.parent is not None:
        if not scope.is_class and name in scope.bound:
            return scope
        scope = scope.parent
    return None


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


def rebindings(tree: ast.Module, imported: set[str]) -> Iterator[tuple[str, ast.AST]]:
    """Bindings of the names in `imported` (other than imports) that this flow-insensitive resolution cannot follow:
    at module level or in a class body (where the name is the import before the binding and something else after it,
    or a class body reads the global), as a comprehension target (its first iterable is read outside it), as a walrus
    target, or declared global/nonlocal. In a function a name is local throughout, which `Names` does follow, so
    parameters and locals there (`def k(x_ptr, F: tl.constexpr)` beside `import torch.nn.functional as F`) are fine; so
    is a constant (`triton = None` in an ImportError fallback), which hides nothing."""
    constants = {id(t) for node in ast.walk(tree) for t, v in assigned_pairs(node) if isinstance(v, ast.Constant)}

    def names_bound(node: ast.AST, at_module: bool) -> Iterator[tuple[str, ast.AST]]:
        # imports are what is checked, global/nonlocal are judged in `visit`, parameters only bind inside functions;
        # a constant at module level only: a class body that assigns one still reads the global before it
        if isinstance(node, (ast.alias, ast.Global, ast.Nonlocal, ast.arg)) or (at_module and id(node) in constants):
            return
        yield from bound_by(node)

    def visit(node: ast.AST, where: str) -> Iterator[tuple[str, ast.AST]]:
        if isinstance(node, (ast.Global, ast.Nonlocal)):
            yield from ((n, node) for n in node.names if n in imported)
        elif isinstance(node, ast.NamedExpr) and isinstance(node.target, ast.Name) and node.target.id in imported:
            yield node.target.id, node
        elif isinstance(node, ast.comprehension):
            yield from ((n, b) for t in ast.walk(node.target) for n, b in names_bound(t, False) if n in imported)
        elif where != "function":
            yield from ((n, b) for n, b in names_bound(node, where == "module") if n in imported)
        for child in ast.iter_child_nodes(node):
            inner = where
            is_function = isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda)
            if is_function and child not in _outer_parts(node):
                inner = "function"
            elif isinstance(node, ast.ClassDef) and child in node.body:
                inner = "class"  # a class body reads the enclosing binding until its own, wherever it is
            yield from visit(child, inner)

    yield from visit(tree, "module")


def _outer_parts(node: ast.AST) -> list[ast.AST]:
    """The parts of a def/lambda evaluated in the enclosing scope: decorators, defaults, annotations, returns."""
    args = node.args  # type: ignore[attr-defined]
    parts: list[ast.AST] = [*args.defaults, *(d for d in args.kw_defaults if d)]
    if not isinstance(node, ast.Lambda):
        parts += [*node.decorator_list, *([node.returns] if node.returns else [])]  # type: ignore[attr-defined]
    return parts


def root_alternatives(path: str, node: ast.AST, imported: dict[str, set[str]]) -> list[str]:
    """`path` with its root replaced by every path the root's name is imported as (`try: from a import x` /
    `except: from b import x`); just `path` for a name imported once (or an alias)."""
    root = node
    while isinstance(root, ast.Attribute):
        root = root.value
    paths = imported.get(root.id, set()) if isinstance(root, ast.Name) else set()
    prefix = next((p for p in sorted(paths, key=len, reverse=True) if path == p or path.startswith(p + ".")), None)
    if len(paths) < 2 or prefix is None:
        return [path]
    return [alt + path[len(prefix) :] for alt in sorted(paths)]
