"""Stage STATIC: AST rules that reject candidates no honest Triton port would write, before anything runs.

A cheap pre-filter, never the authority: the sandbox and the runtime provenance checks decide. Each rule is written
to have no false positives on honest Triton kernels; imports fail closed (`import_rule.py` applies the allowlist of
`import_policy.py`). Names are
resolved with Python's scoping (`names.py`), so aliases (`import os as o`, `t = torch`) and shadowing
(`def forward(self, input)`) are seen.
Rules run in `RULES` order and the first one that fires reports its first offending line. Torch compute inside
`forward` only warns. Pure Python: nothing here imports torch or triton.
"""

from __future__ import annotations

import ast
import dataclasses
from collections.abc import Callable, Iterator

from tritonrl.errors import ConfigError
from tritonrl.types import FailureKind, Stage, StageOutcome
from tritonrl.verify import import_rule, receiver_rule, reflection
from tritonrl.verify.config import POLICIES  # "partial" drops only the torch-compute warnings; every rule applies
from tritonrl.verify.extract import model_new_bindings
from tritonrl.verify.import_policy import is_module
from tritonrl.verify.names import Names, assigned_pairs

MAX_WARNINGS = 5

_K = FailureKind
_FORBIDDEN_NAMES = {
    **dict.fromkeys(["exec", "eval", "compile", "__import__", "globals", "locals", "vars", "setattr"], _K.TAMPERING),
    **dict.fromkeys(["delattr", "breakpoint", "input", "help", "memoryview", "__builtins__"], _K.TAMPERING),
    **dict.fromkeys(["__loader__", "__spec__"], _K.TAMPERING),  # the loader reads files: __loader__.get_data(path)
    "exit": _K.FORBIDDEN_CONSTRUCT,
    "quit": _K.FORBIDDEN_CONSTRUCT,
    "open": _K.FILE_ACCESS,
}
_STREAM_GRAPH = frozenset(
    {"Stream", "stream", "wait_stream", "record_stream", "set_stream", "ExternalStream", "CUDAGraph", "graph"}
    | {"graphs", "make_graphed_callables"}
)
_COMPILERS = ("torch.compile", "torch.compiler", "torch.jit", "torch.fx", "torch.export")
_COMPILE_QUERIES = frozenset(
    {"torch.compiler.disable", "torch.compiler.is_compiling", "torch.compiler.is_dynamo_compiling"}
    | {"torch.compiler.is_exporting", "torch.jit.is_scripting", "torch.jit.is_tracing"}
)
_TENSOR_BASES = frozenset({"torch.Tensor", "torch.nn.Parameter", "torch.nn.parameter.Parameter"})
_TORCH_GLUE = frozenset(
    {"empty", "empty_like", "empty_strided", "zeros", "zeros_like", "ones", "ones_like", "full", "full_like"}
    | {"arange", "tensor", "as_tensor", "is_tensor", "is_floating_point", "is_complex", "numel", "device", "dtype"}
    | {"finfo", "iinfo", "Size", "no_grad", "inference_mode", "enable_grad", "set_grad_enabled", "is_grad_enabled"}
    | {"get_default_dtype", "broadcast_shapes", "result_type", "promote_types", "can_cast"}
)
_NN_CONTAINERS = frozenset({"Module", "ModuleList", "ModuleDict", "Parameter", "ParameterList", "ParameterDict"})


# --- the checker --------------------------------------------------------------------------------------------------


@dataclasses.dataclass
class _Context:
    tree: ast.Module
    code: str
    names: Names
    parents: dict[ast.AST, ast.AST]
    references: list[tuple[str, ast.AST]]  # (dotted name, node): import statements and maximal imported chains
    classes: receiver_rule.Classes  # the candidate's classes and their privileged methods


@dataclasses.dataclass(frozen=True, slots=True)
class _Hit:
    node: ast.AST | None  # None: the whole module
    kind: FailureKind
    why: str


_Rule = Callable[[_Context], Iterator[_Hit]]
_REGISTRY: list[tuple[str, _Rule]] = []
RULES: list[tuple[str, FailureKind, str]] = []  # (rule id, failure kind, rationale), in the order they run


def _rule(rule_id: str, kind: FailureKind, rationale: str) -> Callable[[_Rule], _Rule]:
    def register(fn: _Rule) -> _Rule:
        _REGISTRY.append((rule_id, fn))
        RULES.append((rule_id, kind, rationale))
        return fn

    return register


def run_static_checks(tree: ast.Module, code: str, *, policy: str = "strict") -> StageOutcome:
    """Run every rule over the parsed candidate (stage STATIC).

    Args:
        tree: the module `parse_candidate` returned.
        code: its source text (for quoting the offending construct).
        policy: "strict", or "partial" (same rules, but no torch-compute warnings: the runtime allows torch compute).

    Returns:
        The first violation (rule id, line, message), or ok with non-fatal warnings.
    """
    if policy not in POLICIES:
        raise ConfigError(f"static-check policy {policy!r} is not one of {POLICIES}; use 'strict' or 'partial'")
    try:
        ctx = _context(tree, code)
        for rule_id, check in _REGISTRY:
            hits = sorted(check(ctx), key=lambda h: (getattr(h.node, "lineno", 0), getattr(h.node, "col_offset", 0)))
            if hits:
                hit, line = hits[0], getattr(hits[0].node, "lineno", None)
                message = f"line {line}: `{_quote(hit.node, code)}` {hit.why}" if hit.node else hit.why
                return StageOutcome(Stage.STATIC, ok=False, failure=hit.kind, message=message, rule=rule_id, line=line)
        warnings = _forward_warnings(ctx) if policy == "strict" else ()
    except RecursionError:  # fail closed on trees too deep to walk
        too_deep = "code nested too deeply to check"
        return StageOutcome(Stage.STATIC, ok=False, failure=_K.FORBIDDEN_CONSTRUCT, message=too_deep, rule="depth")
    return StageOutcome(Stage.STATIC, ok=True, message=f"{len(RULES)} rules passed", warnings=warnings)


def _context(tree: ast.Module, code: str) -> _Context:
    names = Names(tree)
    parents = {child: node for node in ast.walk(tree) for child in ast.iter_child_nodes(node)}
    refs = import_rule.references(tree, names, parents)
    return _Context(tree, code, names, parents, refs, receiver_rule.Classes.of(tree, names))


# Rationale: fail closed. A kernel needs torch, triton and a few pure stdlib modules; everything else is the sandbox's
# business, and torch/triton submodules that load code, spawn work or expose internals are denied even as attributes.
@_rule("import-allowlist", _K.FORBIDDEN_IMPORT, "only torch, triton, pure stdlib; the rest by category")
def _import_allowlist(ctx: _Context) -> Iterator[_Hit]:
    for node, kind, why in import_rule.violations(ctx.tree, ctx.names, ctx.parents, ctx.references):
        yield _Hit(node, kind, why)


# Rationale: these builtins run strings as code, reach namespaces, read files or stdin, or stop the interpreter. Any
# reference counts (`f = eval`), unless the name is a local binding (`def forward(self, input)`).
@_rule("forbidden-builtins", _K.TAMPERING, "no exec/eval/__import__/open/...; getattr/attrgetter: public literals")
def _forbidden_builtins(ctx: _Context) -> Iterator[_Hit]:
    for node in ast.walk(ctx.tree):
        if not isinstance(node, ast.Name) or ctx.names.binding(node) is not None:
            continue
        if node.id in _FORBIDDEN_NAMES:
            yield _Hit(node, _FORBIDDEN_NAMES[node.id], f"uses the builtin {node.id}")
        elif node.id in ("getattr", "type"):
            for hit, why in reflection.builtin_call_hits(node, ctx.parents.get(node)):
                yield _Hit(hit, _K.TAMPERING, why)
    for path, node in ctx.references:  # import statements are not uses; a chain past the reader is no call of it
        reader = next((r for r in reflection.ATTRIBUTE_READERS if path == r or path.startswith(r + ".")), None)
        if reader and isinstance(node, (ast.Name, ast.Attribute)):
            call = ctx.parents.get(node) if path == reader else None
            for hit, why in reflection.attribute_reader_hits(node, call, reader):
                yield _Hit(hit, _K.TAMPERING, why)


# Rationale: dispatch modes, Triton launch hooks, the caching allocator, Tensor._version and torch._C internals live
# behind underscores, and dunders (__globals__, __subclasses__, __dict__) are the classic sandbox escapes. Honest
# kernels need only their own `self._x`, `super().__init__` and read-only names like `__name__`.
@_rule("private-attribute", _K.TAMPERING, "no `x._private` but a method's own self/cls; dunders: __init__/__name__")
def _private_attribute(ctx: _Context) -> Iterator[_Hit]:
    for node in ast.walk(ctx.tree):
        if isinstance(node, ast.Attribute) and node.attr in reflection.FRAME_ATTRIBUTES:
            yield _Hit(node, _K.TAMPERING, f"reads {node.attr}, an interpreter frame's or closure's internals")
        if not (isinstance(node, ast.Attribute) and node.attr.startswith("_")):
            continue
        attr = node.attr
        if attr.startswith("__") and attr.endswith("__") and len(attr) > 4:
            called = isinstance(call := ctx.parents.get(node), ast.Call) and call.func is node
            if (attr in reflection.SAFE_DUNDERS and isinstance(node.ctx, ast.Load)) or (attr == "__init__" and called):
                continue
            if attr == "__class__" and isinstance(node.ctx, ast.Load):  # a class object, as `type(x)` (receiver rule)
                continue
            if attr == "__init_subclass__" and called and receiver_rule.own_class(node.value, ctx.names, ctx.classes):
                continue  # super().__init_subclass__(**kwargs)
            yield _Hit(node, _K.TAMPERING, f"accesses the dunder {attr}")
        elif not (isinstance(node.value, ast.Name) and ctx.names.is_receiver(node.value)):
            if not receiver_rule.own_class(node.value, ctx.names, ctx.classes):  # Base._helper, cls._registry
                yield _Hit(node, _K.TAMPERING, f"accesses the private attribute {attr} of another object")


# Rationale: the exemption above trusts a method's self to be its class's instance; read from the class, a method
# takes any object as self (`Helper.peek(torch_obj)` reads torch_obj._x).
@_rule("receiver", _K.TAMPERING, "privileged methods are called on instances; class objects are not passed around")
def _receiver(ctx: _Context) -> Iterator[_Hit]:
    for node, kind, why in receiver_rule.violations(ctx.tree, ctx.names, ctx.parents, ctx.classes):
        yield _Hit(node, kind, why)


# Rationale: reassigning torch/triton/stdlib attributes (torch.allclose, Event.elapsed_time, triton.jit) changes what
# the harness runs in the same process.
@_rule("monkeypatch", _K.TAMPERING, "no assignment or del of attributes of imported modules or their members")
def _monkeypatch(ctx: _Context) -> Iterator[_Hit]:
    for node in ast.walk(ctx.tree):
        targets: list[ast.AST] = []
        if isinstance(node, (ast.Assign, ast.Delete)):
            targets = list(node.targets)
        elif isinstance(node, (ast.AugAssign, ast.AnnAssign, ast.For, ast.AsyncFor, ast.comprehension)):
            targets = [node.target]
        elif isinstance(node, ast.withitem) and node.optional_vars is not None:
            targets = [node.optional_vars]
        while targets:
            target = targets.pop()
            if isinstance(target, (ast.Tuple, ast.List, ast.Starred)):
                targets += target.elts if not isinstance(target, ast.Starred) else [target.value]
                continue
            if not isinstance(target, (ast.Attribute, ast.Subscript)):
                continue
            root = target
            while isinstance(root, (ast.Attribute, ast.Subscript)):
                root = root.value
            if isinstance(root, ast.Name) and (path := ctx.names.dotted(root)):
                what = ctx.names.dotted(target) or f"an attribute of {path}"
                yield _Hit(target, _K.TAMPERING, f"modifies {what}, which the harness shares")


# Rationale: a module object stored, passed or returned escapes the alias tracking the rules above rely on
# (`[torch][0].allclose = f`, `patch(torch)`); honest code only reads attributes of its modules.
@_rule("module-as-value", _K.TAMPERING, "imported modules are used only as `module.attr` (or `x = module` aliases)")
def _module_as_value(ctx: _Context) -> Iterator[_Hit]:
    for node in ast.walk(ctx.tree):
        if not (isinstance(node, ast.Name) and isinstance(node.ctx, ast.Load)):
            continue
        path = ctx.names.dotted(node)
        if not path or not is_module(path):
            continue
        parent = ctx.parents.get(node)
        if isinstance(parent, ast.Attribute) or isinstance(parent, ast.Compare):  # `triton is None` is fine
            continue
        if any(value is node for _, value in assigned_pairs(parent)) and not isinstance(parent, ast.NamedExpr):
            continue  # a tracked alias
        if isinstance(parent, ast.Call) and parent.func is node:
            continue
        if ctx.names.literal_getattr(parent, node) is not None:
            continue
        yield _Hit(node, _K.TAMPERING, f"uses the module {path} as a value")


# Rationale: KernelBench's weakness #1: work on a side stream or replayed from a CUDA graph is invisible to events on
# the current stream (CUDA-L1's 18x fake speedups). A kernel launched on the current stream needs none of it.
@_rule("stream-graph", _K.FORBIDDEN_CONSTRUCT, "no streams, events or CUDA graphs")
def _stream_graph(ctx: _Context) -> Iterator[_Hit]:
    for node in ast.walk(ctx.tree):
        if isinstance(node, ast.Attribute) and node.attr in _STREAM_GRAPH and not _is_self_attr(node):
            yield _Hit(node, _K.FORBIDDEN_CONSTRUCT, f"uses {node.attr}: side streams and graph replay hide work")
    for path, node in ctx.references:
        parts = path.split(".")
        if parts[-1] in _STREAM_GRAPH or (parts[0] == "torch" and "Event" in parts):
            yield _Hit(node, _K.FORBIDDEN_CONSTRUCT, f"uses {path}: side streams, events and graphs defeat the timer")


# Rationale: under TRITON_INTERPRET a kernel body is plain Python, so `x.handle.data` reaches the numpy array behind
# a block and host code can compute there unseen (the kernel would not even compile for a GPU); and a pre-run hook
# (`add_pre_run_hook`, config/autotune `pre_hook`/`post_hook`) runs torch ops inside Triton's launcher, where the
# runtime would credit them to Triton. Honest kernels use neither.
@_rule("kernel-escape", _K.TAMPERING, "no interpreter internals in @triton.jit bodies and no launch hooks")
def _kernel_escape(ctx: _Context) -> Iterator[_Hit]:
    for node in ast.walk(ctx.tree):
        if isinstance(node, ast.Attribute) and node.attr == "add_pre_run_hook":
            yield _Hit(node, _K.TAMPERING, "registers a pre-run hook, which runs host code inside Triton's launcher")
        if isinstance(node, ast.keyword) and node.arg in ("pre_hook", "post_hook") and not _python_hook(node, ctx):
            yield _Hit(node.value, _K.TAMPERING, f"passes {node.arg}= a callable with no Python body (e.g. a torch "
                       "method): its work inside Triton's launcher would be invisible")  # fmt: skip
    jit = list(_jit_functions(ctx))
    jit_names = {fn.name for fn in jit}
    # undecorated module-level functions (`@triton.constexpr_function` and `@tl.core.extern` ones are callable)
    plain = {
        n.name for n in ctx.tree.body if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef)) and not n.decorator_list
    } - jit_names
    for fn in jit:  # the body only: decorators (`@triton.autotune(configs=make_configs())`) are host code
        for node in (n for stmt in fn.body for n in ast.walk(stmt)):
            if isinstance(node, ast.Attribute) and node.attr in _INTERPRETER_INTERNALS:
                yield _Hit(node, _K.TAMPERING, f"reads .{node.attr} in a @triton.jit body: interpreter internals, "
                           "not Triton")  # fmt: skip
            # A jit body can call only jit functions and Triton builtins: on a GPU a call to a plain Python function
            # does not compile, while the interpreter would run it on the kernel's numpy data.
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in plain:
                yield _Hit(node, _K.TAMPERING, f"a @triton.jit body calls {node.func.id}(), a plain Python function: "
                           "only @triton.jit functions can be called from a kernel")  # fmt: skip


_INTERPRETER_INTERNALS = frozenset({"handle", "data", "numpy", "tolist", "item", "data_ptr", "__array__"})


def _python_hook(node: ast.keyword, ctx: _Context) -> bool:
    """None, a lambda, or a function defined in the candidate: Python code whose torch ops the runtime attributes to
    the candidate (an honest use: zeroing a split-K accumulator)."""
    value = node.value
    if isinstance(value, ast.Constant) and value.value is None or isinstance(value, ast.Lambda):
        return True
    defined = {n.name for n in ctx.tree.body if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))}
    return isinstance(value, ast.Name) and value.id in defined


def _jit_functions(ctx: _Context) -> Iterator[ast.FunctionDef]:
    for node in ast.walk(ctx.tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and any(
            ctx.names.dotted(d.func if isinstance(d, ast.Call) else d) == "triton.jit" for d in node.decorator_list
        ):
            yield node


# Rationale: kernels generated by torch.compile, TorchScript or FX would not be the candidate's (`torch.ops` stays
# allowed: the runtime provenance check sees what it launches). What generates nothing stays allowed: keeping a
# function out of compilation and asking whether one is under way (Liger/Unsloth style: `@torch.compiler.disable`,
# `if torch.jit.is_scripting()`; helpers' wave 5).
@_rule("torch-compile", _K.FORBIDDEN_CONSTRUCT, "no torch.compile / torch.jit / torch.fx / torch.export")
def _torch_compile(ctx: _Context) -> Iterator[_Hit]:
    for path, node in ctx.references:
        if path in _COMPILE_QUERIES:
            continue
        if any(path == c or path.startswith(c + ".") for c in _COMPILERS):
            yield _Hit(node, _K.FORBIDDEN_CONSTRUCT, f"uses {path}: the kernels it generates are not the candidate's")


# Rationale: a Tensor subclass or a __torch_function__/__torch_dispatch__ hook can defer the computation until the
# checker reads the output, outside the timed region (lazy outputs).
@_rule("tensor-subclass", _K.TAMPERING, "no Tensor subclasses and no __torch_function__/__torch_dispatch__")
def _tensor_subclass(ctx: _Context) -> Iterator[_Hit]:
    hooks = ("__torch_function__", "__torch_dispatch__")
    for node in ast.walk(ctx.tree):
        if isinstance(node, ast.ClassDef):
            for base in node.bases:
                path = ctx.names.dotted(base) or ""
                named = base.id if isinstance(base, ast.Name) else base.attr if isinstance(base, ast.Attribute) else ""
                if path in _TENSOR_BASES or named in ("Tensor", "Parameter"):
                    yield _Hit(node, _K.TAMPERING, "subclasses a Tensor; outputs must be plain tensors")
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.name in hooks:
            yield _Hit(node, _K.TAMPERING, f"defines {node.name}, which can defer or fake the computation")
        elif isinstance(node, ast.Name) and node.id in hooks and not isinstance(node.ctx, ast.Load):
            yield _Hit(node, _K.TAMPERING, f"binds {node.id}, which can defer or fake the computation")


# Rationale: `class ModelNew(Model)` inherits the reference's forward (Kevin's inheritance bypass); directly or through
# local classes and aliases.
@_rule("inherits-reference", _K.FORBIDDEN_CONSTRUCT, "ModelNew must not subclass Model (the reference)")
def _inherits_reference(ctx: _Context) -> Iterator[_Hit]:
    parents: dict[str, list[str]] = {}
    for node in ctx.tree.body:
        if isinstance(node, ast.ClassDef):
            parents[node.name] = [_last_name(b) for b in node.bases]
        for target, value in assigned_pairs(node):
            if isinstance(target, ast.Name):
                parents[target.id] = [_last_name(value)]
    if not _reaches("ModelNew", "Model", parents):  # the module-level chain, the same for every binding below
        return
    bindings = [node for node, _ in model_new_bindings(ctx.tree)]  # `class ModelNew`, `ModelNew = FastModel`
    nested = [n for n in ast.walk(ctx.tree) if isinstance(n, ast.ClassDef) and n.name == "ModelNew"]
    for node in bindings + [n for n in nested if n not in bindings]:
        yield _Hit(node, _K.FORBIDDEN_CONSTRUCT, "is or inherits from Model, the PyTorch reference")


def _reaches(start: str, target: str, parents: dict[str, list[str]]) -> bool:
    """`target` is among `start`'s bases or alias targets, followed transitively."""
    seen, todo = {start}, list(parents.get(start, []))
    while todo:
        name = todo.pop()
        if name == target:
            return True
        if name not in seen:
            seen.add(name)
            todo += parents.get(name, [])
    return False


def _last_name(node: ast.AST) -> str:
    return node.id if isinstance(node, ast.Name) else node.attr if isinstance(node, ast.Attribute) else ""


# Rationale: the task is a Triton port; without a @triton.jit function nothing can be a candidate kernel. Cheap
# format check only: whether the kernel runs is the runtime provenance check's job.
@_rule("no-triton-kernel", _K.NO_TRITON_KERNEL, "at least one function decorated with @triton.jit")
def _no_triton_kernel(ctx: _Context) -> Iterator[_Hit]:
    for node in ast.walk(ctx.tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            for deco in node.decorator_list:
                if ctx.names.dotted(deco.func if isinstance(deco, ast.Call) else deco) == "triton.jit":
                    return
        if isinstance(node, ast.Call) and node.args and ctx.names.dotted(node.func) == "triton.jit":
            return  # kernel = triton.jit(fn)
    yield _Hit(None, _K.NO_TRITON_KERNEL, "no function is decorated with @triton.jit; the task asks for a Triton port")


# --- warnings -----------------------------------------------------------------------------------------------------


def _forward_warnings(ctx: _Context) -> tuple[str, ...]:
    """Torch compute reachable from `forward`: not a failure (the runtime provenance check decides), just a flag."""
    submodules: dict[str, str] = {}  # self.<name> -> "nn.Conv2d" for compute modules built anywhere
    for node in ast.walk(ctx.tree):
        for target, value in assigned_pairs(node):
            if _is_self_attr(target) and isinstance(value, ast.Call):
                path = ctx.names.dotted(value.func) or ""
                if path.startswith("torch.nn.") and path.count(".") == 2 and path.split(".")[-1] not in _NN_CONTAINERS:
                    submodules[target.attr] = "nn." + path.split(".")[-1]
    found: dict[tuple[int, str], None] = {}
    for fn in ast.walk(ctx.tree):
        if not (isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef)) and fn.name == "forward"):
            continue
        for node in ast.walk(fn):
            line = getattr(node, "lineno", 0)
            if isinstance(node, (ast.BinOp, ast.AugAssign)) and isinstance(node.op, ast.MatMult):
                found[(line, "uses the @ operator")] = None
            elif isinstance(node, ast.Call):
                path = ctx.names.dotted(node.func) or ""
                if path.startswith("torch.") and not _is_glue(path):
                    found[(line, f"calls {path}")] = None
                elif _is_self_attr(node.func) and node.func.attr in submodules:
                    found[(line, f"calls self.{node.func.attr} ({submodules[node.func.attr]})")] = None
    messages = [f"forward {what} at line {line}: runtime provenance will decide" for line, what in sorted(found)]
    if len(messages) > MAX_WARNINGS:
        messages = [*messages[:MAX_WARNINGS], f"+{len(messages) - MAX_WARNINGS} more"]
    return tuple(messages)


def _is_glue(path: str) -> bool:
    parts = path.split(".")
    if parts[1] in ("cuda", "backends") or (len(parts) == 2 and parts[1] in _TORCH_GLUE):
        return True
    return len(parts) == 3 and parts[1] == "nn" and parts[2] in _NN_CONTAINERS  # nn.Parameter(...)


def _is_self_attr(node: ast.AST) -> bool:
    return isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id == "self"


def _quote(node: ast.AST, code: str) -> str:
    """The offending construct as written (first line), else as unparsed; at most 80 characters."""
    text = (ast.get_source_segment(code, node) or ast.unparse(node)).strip().split("\n")[0]
    return text if len(text) <= 80 else text[:77] + "..."
