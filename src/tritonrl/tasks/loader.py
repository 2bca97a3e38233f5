"""Load KernelBench-format task files into `Task`s by static analysis only: nothing in the file is executed.

`load_task(path)` checks for `class Model`, `get_inputs` and `get_init_inputs`, reads `Model.__init__`'s signature and
folds numeric module-level constants (`N = 2048 * 2`, `M = N // 2`, tuple elements as `input_shape[0]`, and literals
>= 16 in get_inputs()'s calls as `get_inputs:224`). Each is SIZE (scalable) or FIXED by the first rule that matches:
`roles=`; the file's optional `TRITONRL_ROLES = {"name": "size" | "fixed"}` dict literal; floats; 0 and 1; the
hyperparameter-name table; the size-name table; value >= 16. Running the reference is `tasks/reference.py`'s job.
"""

from __future__ import annotations

import ast
import hashlib
import logging
import operator
import re
from collections.abc import Callable, Mapping
from pathlib import Path

from tritonrl.errors import TaskError
from tritonrl.tasks.schema import Constant, ConstantRole, Task

log = logging.getLogger(__name__)

ROLES_VARIABLE = "TRITONRL_ROLES"  # optional module-level dict literal in a task file: {"name": "size" | "fixed"}
LITERAL_PREFIX = "get_inputs:"  # `get_inputs:224` is every literal 224 passed to a call in get_inputs()
LITERAL_MIN = 16  # smaller literals (`torch.rand(b, 3, 224, 224)`'s 3) are channel counts or flags: left alone
BUILTIN_DIR = Path(__file__).parent / "builtin"

SIZE, FIXED = ConstantRole.SIZE, ConstantRole.FIXED
_Rule = tuple[str, Callable[[int], bool] | None, str]  # (regex on the name, value predicate or None, reason)

# Hyperparameter names: changing them changes the operator, not the problem size. Checked before _SIZE_RULES.
_FIXED_RULES: tuple[_Rule, ...] = (
    (r"kernel", None, "kernel/window extent: part of the operator"),
    (r"stride", None, "stride: part of the operator"),
    (r"padding", None, "padding: part of the operator"),
    (r"dilation", None, "dilation: part of the operator"),
    (r"groups?$", None, "group count: must keep dividing the channel counts"),
    (r"pool", None, "pooling window or stride: part of the operator"),
    (r"(^|_)(eps|epsilon)$", None, "numerical epsilon"),
    (r"momentum", None, "normalisation momentum"),
    (r"^p$|dropout|_p$|prob", None, "probability"),
    (r"slope|^alpha$|^beta$|^gamma$|lambda|temperature|^tau$", None, "activation coefficient"),
    (r"scal|factor|multipl|divi|subtract|add_value|constant|weight$|offset|shift", None, "elementwise coefficient"),
    (r"(^|_)(min|max)(_|$)|clamp|hardtanh|threshold|margin|bound|limit", None, "value bound"),
    (r"(^|_)dim$|^axis$|_axis$", lambda v: v < 8, "small dim: an axis index, not an extent"),
    (r"^bias$|^use_|^has_|^return_|^is_", None, "flag"),
    (r"^top_?k$|^k$", lambda v: v < 16, "small k: a top-k count"),
    (r"layers?$|n_layer|seed", None, "model depth or seed: changes the program, not an extent"),
)
# Extent names: scaling them keeps the operator and changes the problem size. `*shape` names skip _FIXED_RULES.
_SIZE_RULES: tuple[_Rule, ...] = (
    (r"shape$", None, "tensor shape element"),
    (r"batch|^bs$", None, "batch size"),
    (r"channel", None, "channel count"),
    (r"feature", None, "feature count"),
    (r"hidden|d_model|embed|emb_", None, "hidden/embedding width"),
    (r"dim", None, "dim >= 8: an extent"),
    (r"^[a-zA-Z]$", None, "single-letter extent (N, M, K, ...)"),
    (r"len|seq|token", None, "sequence length"),
    (r"height|width|depth|^[hwdt]_|_[hwdt]$", None, "spatial extent"),
    (r"head", None, "head count"),
    (r"size|classes|vocab|^num_|count", None, "size or count"),
)

_BINOPS: dict[type, Callable] = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.Div: operator.truediv,
    ast.FloorDiv: operator.floordiv,
    ast.Mod: operator.mod,
    ast.Pow: operator.pow,
}
_Value = int | float | tuple


class _NotConstant(Exception):
    """An expression that is not foldable arithmetic of literals and earlier constants."""


def load_task(
    path_or_source: str | Path,
    *,
    task_id: str | None = None,
    level: int | None = None,
    roles: Mapping[str, str] | None = None,
) -> Task:
    """Parse a KernelBench-format task file (or its source text) into a `Task`, executing nothing.

    Args:
        path_or_source: a path, or the file's text (a str containing a newline is taken as text).
        task_id: defaults to the file stem (`inline_<hash>` for text).
        level: defaults to N when the file sits in a `levelN` folder.
        roles: per-constant overrides, {"name": "size" | "fixed"}; tuple elements as "name[0]" or the whole "name".

    Raises:
        TaskError: the file is unreadable, does not parse, or lacks `Model` / `get_inputs` / `get_init_inputs`.
    """
    path, source = _read(path_or_source)
    where = str(path) if path else "<task source>"
    try:
        tree = ast.parse(source, filename=where)
    except (SyntaxError, ValueError) as e:
        line = f" at line {e.lineno}" if getattr(e, "lineno", None) else ""
        raise TaskError(f"{where}: syntax error{line}: {getattr(e, 'msg', e)}. Fix the file; it must parse.") from e
    model = _require_shape(tree, where)
    names, n_required, varargs = _init_signature(model)
    file_roles = _file_roles(tree, where)
    folded = {**_fold_constants(tree), **{f"{LITERAL_PREFIX}{v}": (v, ()) for v in _literal_values(tree)}}
    constants = _classify(folded, dict(roles or {}), file_roles, where)
    if task_id is None:
        task_id = path.stem if path else "inline_" + hashlib.sha256(source.encode()).hexdigest()[:8]
    if level is None and path is not None:
        level = folder_level(path)
    return Task(
        task_id=task_id,
        source=source,
        path=str(path) if path else None,
        level=level,
        constants=constants,
        init_arg_names=names,
        init_n_required=n_required,
        init_has_varargs=varargs,
        solution_path=_solution_for(path, task_id),
    )


def folder_level(path: Path) -> int | None:
    """N for a task file in a KernelBench `levelN` folder, else None."""
    return int(m.group(1)) if (m := re.fullmatch(r"level(\d+)", path.parent.name)) else None


def load_task_dir(path: str | Path, *, level: int | None = None) -> list[Task]:
    """Load every `*.py` file of a folder (not recursive), sorted by file name."""
    folder = Path(path)
    if not folder.is_dir():
        raise TaskError(f"task folder {folder} does not exist or is not a folder; pass a folder of *.py task files.")
    return [load_task(f, level=level) for f in sorted(folder.glob("*.py"))]


# KernelBench levels of the bundled tasks: 1 = a single operator, 2 = a fusion of several.
BUILTIN_LEVELS = {"linear_bias_relu": 2}


def builtin_tasks() -> list[Task]:
    """The tasks bundled with tritonrl (`tasks/builtin/*.py`), with `solution_path` set where one ships."""
    if not BUILTIN_DIR.is_dir():
        return []
    return [builtin_task(p.stem) for p in sorted(BUILTIN_DIR.glob("*.py"))]


def builtin_task(task_id: str) -> Task:
    """One bundled task by id (its file stem)."""
    path = BUILTIN_DIR / f"{task_id}.py"
    if not path.is_file():
        known = ", ".join(p.stem for p in sorted(BUILTIN_DIR.glob("*.py"))) or "none"
        raise TaskError(f"no builtin task {task_id!r}; the builtin tasks are: {known}.")
    return load_task(path, level=BUILTIN_LEVELS.get(task_id, 1))


def constant_bindings(stmt: ast.stmt) -> list[tuple[str, ast.expr | None]]:
    """The module-level names a statement binds, each with its value expression (None when not a plain value).

    `a = b = 3` binds a and b to `3`; `d, h, w = (16, 32, 32)` binds each to its element; `n *= 2` binds n to `n * 2`.
    """
    if isinstance(stmt, ast.Assign):
        out: list[tuple[str, ast.expr | None]] = []
        for target in stmt.targets:
            out.extend(_target_bindings(target, stmt.value))
        return out
    if isinstance(stmt, ast.AnnAssign) and isinstance(stmt.target, ast.Name):
        return [(stmt.target.id, stmt.value)]
    if isinstance(stmt, ast.AugAssign) and isinstance(stmt.target, ast.Name):
        return [(stmt.target.id, ast.BinOp(ast.Name(stmt.target.id, ast.Load()), stmt.op, stmt.value))]
    return [(name, None) for name in sorted(_stored_names(stmt))]


def input_literals(tree: ast.Module) -> list[ast.Constant]:
    """The int literals >= LITERAL_MIN passed to calls in `get_inputs()`, directly or inside a tuple/list argument."""
    func = next((n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == "get_inputs"), None)
    found: list[ast.Constant] = []
    for call in ast.walk(func) if func else ():
        if not isinstance(call, ast.Call):
            continue
        for arg in [*call.args, *(k.value for k in call.keywords)]:
            for node in arg.elts if isinstance(arg, ast.Tuple | ast.List) else [arg]:
                if isinstance(node, ast.Constant) and type(node.value) is int and node.value >= LITERAL_MIN:
                    found.append(node)
    return found


def source_fingerprint(task: Task) -> str:
    """sha256 of the source and the constants' roles: a cache key for anything derived from a task."""
    roles = ",".join(f"{c.name}={c.role.value}" for c in task.constants)
    return hashlib.sha256(f"{task.task_id}\0{task.source}\0{roles}".encode()).hexdigest()


def _read(path_or_source: str | Path) -> tuple[Path | None, str]:
    if isinstance(path_or_source, str) and "\n" in path_or_source:
        return None, path_or_source
    path = Path(path_or_source)
    try:
        return path, path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise TaskError(
            f"cannot read task file {path}: {e}. Pass an existing UTF-8 .py file or the source text."
        ) from e


def _require_shape(tree: ast.Module, where: str) -> ast.ClassDef:
    classes = {n.name: n for n in tree.body if isinstance(n, ast.ClassDef)}
    funcs = {n.name for n in tree.body if isinstance(n, ast.FunctionDef)}
    if "Model" not in classes:
        raise TaskError(f"{where}: no module-level `class Model(nn.Module)`; a KernelBench task file must define it.")
    for fn in ("get_inputs", "get_init_inputs"):
        if fn not in funcs:
            raise TaskError(f"{where}: no module-level `def {fn}()`; a KernelBench task file must define it.")
    return classes["Model"]


def _init_signature(model: ast.ClassDef) -> tuple[tuple[str, ...], int, bool]:
    init = next((n for n in model.body if isinstance(n, ast.FunctionDef) and n.name == "__init__"), None)
    if init is None:
        return (), 0, False
    positional = [*init.args.posonlyargs, *init.args.args][1:]  # drop self
    names = tuple(a.arg for a in positional) + tuple(a.arg for a in init.args.kwonlyargs)
    return names, len(positional) - len(init.args.defaults), init.args.vararg is not None


def _file_roles(tree: ast.Module, where: str) -> dict[str, str]:
    for stmt in tree.body:
        for name, value in constant_bindings(stmt):
            if name != ROLES_VARIABLE:
                continue
            try:
                roles = ast.literal_eval(value) if value is not None else None
            except ValueError:
                roles = None
            if not isinstance(roles, dict) or not all(isinstance(k, str) for k in roles):
                raise TaskError(
                    f"{where}: {ROLES_VARIABLE} must be a dict literal of str keys, like "
                    f'{{"batch_size": "size", "heads": "fixed"}}; got {ast.unparse(value) if value else "?"}.'
                )
            return roles
    return {}


def _stored_names(stmt: ast.stmt) -> set[str]:
    """Names a compound statement binds at module level; function and class bodies (their own scopes) are skipped."""
    bound: set[str] = set()
    todo: list[ast.AST] = [stmt]
    while todo:
        node = todo.pop()
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            bound.add(node.name)
            continue
        if isinstance(node, ast.Lambda | ast.ListComp | ast.SetComp | ast.DictComp | ast.GeneratorExp):
            continue
        if isinstance(node, ast.Import | ast.ImportFrom):
            bound.update((a.asname or a.name).split(".")[0] for a in node.names)
        elif isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
            bound.add(node.id)
        todo.extend(ast.iter_child_nodes(node))
    return bound


def _target_bindings(target: ast.expr, value: ast.expr | None) -> list[tuple[str, ast.expr | None]]:
    if isinstance(target, ast.Name):
        return [(target.id, value)]
    if isinstance(target, ast.Tuple | ast.List):
        elts = value.elts if isinstance(value, ast.Tuple | ast.List) and len(value.elts) == len(target.elts) else None
        out = []
        for i, t in enumerate(target.elts):
            out.extend(_target_bindings(t, elts[i] if elts else None))
        return out
    return []  # attribute or subscript stores bind no module-level name


def _fold(node: ast.expr, env: Mapping[str, _Value]) -> tuple[_Value, tuple[str, ...]]:
    """Evaluate arithmetic of int/float literals and known constants; returns (value, names read)."""
    if isinstance(node, ast.Constant) and type(node.value) in (int, float):
        return node.value, ()
    if isinstance(node, ast.Name) and node.id in env:
        return env[node.id], (node.id,)
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub | ast.UAdd):
        value, names = _fold(node.operand, env)
        if isinstance(value, tuple):
            raise _NotConstant
        return (-value if isinstance(node.op, ast.USub) else value), names
    if isinstance(node, ast.BinOp) and type(node.op) in _BINOPS:
        (left, ln), (right, rn) = _fold(node.left, env), _fold(node.right, env)
        if isinstance(left, tuple) or isinstance(right, tuple) or (isinstance(node.op, ast.Pow) and abs(right) > 64):
            raise _NotConstant
        try:
            return _BINOPS[type(node.op)](left, right), tuple(dict.fromkeys(ln + rn))
        except (ArithmeticError, ValueError) as e:
            raise _NotConstant from e
    if isinstance(node, ast.Tuple):
        folded = [_fold(e, env) for e in node.elts]
        if any(isinstance(v, tuple) for v, _ in folded):
            raise _NotConstant
        return tuple(v for v, _ in folded), tuple(dict.fromkeys(n for _, ns in folded for n in ns))
    raise _NotConstant


def _fold_constants(tree: ast.Module) -> dict[str, tuple[_Value, tuple]]:
    """name -> (final value, names read; per element for tuples), in first-binding order."""
    env: dict[str, _Value] = {}
    deps: dict[str, tuple] = {}
    for stmt in tree.body:
        for name, value in constant_bindings(stmt):
            try:
                if value is None or name == ROLES_VARIABLE:
                    raise _NotConstant
                folded, names = _fold(value, env)
                if isinstance(value, ast.Tuple):
                    names = tuple(_fold(e, env)[1] for e in value.elts)
            except _NotConstant:
                env.pop(name, None)
                deps.pop(name, None)
                continue
            env[name], deps[name] = folded, names
    return {name: (env[name], deps[name]) for name in env}


def _literal_values(tree: ast.Module) -> list[int]:
    return sorted({node.value for node in input_literals(tree)}, reverse=True)


def _classify(
    folded: Mapping[str, tuple[_Value, tuple]], explicit: Mapping[str, str], in_file: Mapping[str, str], where: str
) -> tuple[Constant, ...]:
    out: list[Constant] = []
    for name, (value, names) in folded.items():
        if isinstance(value, tuple):
            for i, v in enumerate(value):
                element = f"{name}[{i}]"
                declared = _declared((element, name), explicit, in_file)
                out.append(_constant(element, name, v, declared, tuple(names[i]) if names else (), where))
        else:
            out.append(_constant(name, name, value, _declared((name,), explicit, in_file), tuple(names), where))
    known = {c.name for c in out} | {c.name.split("[")[0] for c in out}
    unknown = sorted((set(explicit) | set(in_file)) - known)
    if unknown:
        raise TaskError(
            f"{where}: roles given for {unknown}, which are not numeric module-level constants of the task; "
            f"the constants are {sorted(c.name for c in out)}. Fix the names in roles= or {ROLES_VARIABLE}."
        )
    return tuple(out)


def _declared(keys: tuple[str, ...], explicit: Mapping[str, str], in_file: Mapping[str, str]) -> tuple[str, str] | None:
    """(role, reason) from roles= first, then the file's TRITONRL_ROLES; the most specific key wins in each."""
    for roles, reason in ((explicit, "declared (roles=)"), (in_file, f"declared in {ROLES_VARIABLE}")):
        for key in keys:
            if key in roles:
                return roles[key], reason
    return None


def _constant(
    name: str, base: str, value: int | float, declared: tuple[str, str] | None, deps: tuple, where: str
) -> Constant:
    if declared is not None:
        role, reason = declared
        if role not in ("size", "fixed"):
            raise TaskError(f'{where}: role {role!r} for {name} is not "size" or "fixed"; use one of those.')
        if role == "size" and isinstance(value, float):
            raise TaskError(f"{where}: {name} = {value} is a float and cannot be a size; declare it 'fixed'.")
        return Constant(name, value, ConstantRole(role), reason, deps)
    role, reason = _role(base, value)
    if deps:
        reason += f"; derived from {', '.join(deps)}: recomputes when they change"
    return Constant(name, value, role, reason, deps)


def _role(name: str, value: int | float) -> tuple[ConstantRole, str]:
    if isinstance(value, float):
        return FIXED, "float: a coefficient, never an extent"
    if name.startswith(LITERAL_PREFIX):
        return SIZE, f"integer literal >= {LITERAL_MIN} in a get_inputs() call: taken as an extent"
    if value in (0, 1):
        return FIXED, "0 or 1: a flag, an axis or a unit extent that must stay as is"
    rule_sets = ((_SIZE_RULES, SIZE),) if name.endswith("shape") else ((_FIXED_RULES, FIXED), (_SIZE_RULES, SIZE))
    for rules, role in rule_sets:
        for pattern, predicate, reason in rules:
            if re.search(pattern, name, re.IGNORECASE) and (predicate is None or predicate(value)):
                return role, f"name looks like a {'hyperparameter' if role is FIXED else 'size'} ({reason})"
    if value >= 16:
        return SIZE, "unrecognised name, value >= 16: taken as an extent"
    return FIXED, "unrecognised name, value < 16: taken as a hyperparameter"


def _solution_for(path: Path | None, task_id: str) -> str | None:
    if path is None:
        return None
    solution = path.parent / "solutions" / f"{task_id}.py"
    return str(solution) if solution.is_file() else None
