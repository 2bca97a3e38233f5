"""KernelBook rows -> tasks (the PyTorch module) and candidate ports (its Inductor-generated Triton code).

A KernelBook row (GPUMODE/KernelBook: a PyTorch module from a GitHub repo, compiled by TorchInductor 2.5) has
`python_code` (the module with `get_inputs()`/`get_init_inputs()`), `triton_code` (Inductor's kernels plus a
`<EntryPoint>New` module calling them), `entry_point` (the module's class name) and provenance (`uuid`, `repo_name`,
`module_name`, `licenses`, `stars`, `sha`, `repo_link`, `synthetic`). `convert_row` makes:
- the task: `python_code` with the entry-point class renamed to `Model` (every other character kept), and
  `get_inputs()`/`get_init_inputs()` that return KernelBook's `[args, kwargs]` rewritten to one positional list
  (keywords placed by the signature of `Model.__init__`/`forward`, skipped parameters given their default);
- the candidate: `triton_code` with `<EntryPoint>New` renamed to `ModelNew` and Inductor's glue ported
  (`data/sources/inductor.py`). Nothing here verifies; `data/curate.py` does, with the real verifier.
"""

from __future__ import annotations

import ast
import dataclasses
import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from tritonrl.data.sources.inductor import Port, port_inductor
from tritonrl.data.sources.rows import read_rows
from tritonrl.errors import TaskError
from tritonrl.tasks.edits import LineIndex, apply_edits, rename, top_level
from tritonrl.tasks.loader import load_task
from tritonrl.tasks.schema import Task

log = logging.getLogger(__name__)

FIELDS = ("python_code", "triton_code", "entry_point")
META_FIELDS = ("uuid", "repo_name", "module_name", "licenses", "stars", "sha", "repo_link", "synthetic")
ID_PREFIX = "kernelbook/"


@dataclasses.dataclass(frozen=True, slots=True)
class KernelBookItem:
    """One converted row."""

    task_id: str  # "kernelbook/<uuid>_<entry_point>" (the row index when there is no uuid)
    task: Task | None  # None when python_code did not convert (see `error`)
    port: Port | None  # the ported triton_code; None when it is empty or has no <entry_point>New class
    error: str  # why the row gave no task, or why it gave no candidate; "" when both converted
    meta: tuple[tuple[str, str], ...]  # provenance fields as text, sorted by name

    @property
    def candidate(self) -> str | None:
        """The ported ModelNew text, when the port has no blockers."""
        return self.port.code if self.port is not None and not self.port.blockers else None


def load_kernelbook(source: str | Path) -> list[KernelBookItem]:
    """Every row of a KernelBook export (JSONL/parquet file or folder, or a hub name), converted; never raises for
    a bad row (its `error` says why), only for an unreadable source."""
    rows = read_rows(source, required=FIELDS)
    items = [convert_row(row, i) for i, row in enumerate(rows)]
    n_tasks = sum(item.task is not None for item in items)
    log.info("kernelbook %s: %d rows, %d converted to tasks", source, len(items), n_tasks)
    return items


def convert_row(row: Mapping[str, Any], index: int = 0) -> KernelBookItem:
    """Convert one row (see the module docstring)."""
    entry = str(row.get("entry_point") or "")
    uuid = row.get("uuid")
    task_id = f"{ID_PREFIX}{uuid if uuid is not None else index}_{entry or 'unnamed'}"
    meta = tuple(sorted((k, _text(row[k])) for k in META_FIELDS if k in row and row[k] is not None))
    try:
        source = task_source(str(row.get("python_code") or ""), entry)
        task = load_task(source, task_id=task_id)
    except TaskError as e:
        return KernelBookItem(task_id, None, None, f"load failure: {e}", meta)
    triton_code = str(row.get("triton_code") or "")
    try:
        port = port_inductor(candidate_source(triton_code, entry))
    except TaskError as e:
        return KernelBookItem(task_id, task, None, f"no candidate: {e}", meta)
    return KernelBookItem(task_id, task, port, "", meta)


def task_source(python_code: str, entry_point: str) -> str:
    """KernelBook's python_code in our task form: `Model` and positional input lists. Raises TaskError."""
    tree = _parse(python_code, "python_code")
    if not entry_point or top_level(tree, ast.ClassDef, entry_point) is None:
        classes = [n.name for n in tree.body if isinstance(n, ast.ClassDef)]
        raise TaskError(f"python_code has no module-level class {entry_point!r} (entry_point); classes: {classes}.")
    if entry_point != "Model":
        if "Model" in _bound_names(tree):
            raise TaskError("python_code already binds the name `Model`; cannot rename the entry point to it.")
        python_code = rename(python_code, entry_point, "Model")
    return positional_inputs(python_code)


def candidate_source(triton_code: str, entry_point: str) -> str:
    """triton_code with `<entry_point>New` renamed to `ModelNew`. Raises TaskError when that class is missing."""
    if not triton_code.strip():
        raise TaskError("triton_code is empty.")
    tree = _parse(triton_code, "triton_code")
    new = f"{entry_point}New"
    if top_level(tree, ast.ClassDef, new) is None:
        if top_level(tree, ast.ClassDef, "ModelNew") is not None:
            return triton_code
        raise TaskError(f"triton_code has no module-level class {new!r}.")
    return rename(triton_code, new, "ModelNew")


def positional_inputs(source: str) -> str:
    """Rewrite `return [args, kwargs]` in get_inputs()/get_init_inputs() to one positional list (the signature of
    Model.forward / Model.__init__ decides the order). Sources without that form come back unchanged.

    >>> src = ("class Model:\\n    def __init__(self, a, b=2, c=3):\\n        pass\\n"
    ...        "def get_init_inputs():\\n    return [[], {'a': 1, 'c': 4}]\\n")
    >>> positional_inputs(src).splitlines()[-1]
    '    return [1, 2, 4]'
    """
    tree = _parse(source, "python_code")
    index = LineIndex(source)
    model = top_level(tree, ast.ClassDef, "Model")
    edits = []
    for fn_name, method in (("get_inputs", "forward"), ("get_init_inputs", "__init__")):
        fn = top_level(tree, ast.FunctionDef, fn_name)
        for node in ast.walk(fn) if fn is not None else ():
            if isinstance(node, ast.Return) and _is_args_kwargs(node.value):
                args, kwargs = node.value.elts
                target = _method(model, method)
                exprs = _place(args, kwargs, target, index, f"{fn_name}() for Model.{method}")
                edits.append((*index.span(node.value), "[" + ", ".join(exprs) + "]"))
    return apply_edits(source, edits)


def _is_args_kwargs(value: ast.expr | None) -> bool:
    return (isinstance(value, ast.List | ast.Tuple) and len(value.elts) == 2
            and isinstance(value.elts[0], ast.List | ast.Tuple) and isinstance(value.elts[1], ast.Dict))  # fmt: skip


def _method(model: ast.ClassDef | None, name: str) -> ast.FunctionDef | None:
    if model is None:
        return None
    return next((n for n in model.body if isinstance(n, ast.FunctionDef) and n.name == name), None)


def _place(args: ast.expr, kwargs: ast.Dict, method: ast.FunctionDef | None, index: LineIndex, where: str) -> list:
    """Positional argument texts: `args`, then each parameter up to the last keyword given (its default if skipped)."""
    exprs = [index.text(e) for e in args.elts]
    given: dict[str, str] = {}
    for key, value in zip(kwargs.keys, kwargs.values, strict=True):
        if not (isinstance(key, ast.Constant) and isinstance(key.value, str)):
            raise TaskError(f"{where}: keyword names must be string literals; got {ast.unparse(key) if key else '**'}.")
        given[key.value] = index.text(value)
    if not given:
        return exprs
    if method is None:
        raise TaskError(f"{where}: keywords {sorted(given)} given but the method is not defined in Model.")
    params = [*method.args.posonlyargs, *method.args.args][1:]  # drop self
    defaults = dict(zip([p.arg for p in params][len(params) - len(method.args.defaults):], method.args.defaults,
                        strict=True))  # fmt: skip
    unknown = sorted(set(given) - {p.arg for p in params})
    if unknown:
        names = [p.arg for p in params]
        raise TaskError(f"{where}: keywords {unknown} are not positional parameters of Model ({names}).")
    last = max(i for i, p in enumerate(params) if p.arg in given)
    for i, param in enumerate(params[: last + 1]):
        if i < len(exprs):
            if param.arg in given:
                raise TaskError(f"{where}: {param.arg!r} is given both positionally and as a keyword.")
            continue
        if param.arg in given:
            exprs.append(given[param.arg])
        elif param.arg in defaults:
            exprs.append(index.text(defaults[param.arg]))
        else:
            raise TaskError(f"{where}: required parameter {param.arg!r} is neither positional nor a keyword.")
    return exprs


def _bound_names(tree: ast.Module) -> set[str]:
    names = set()
    for stmt in tree.body:
        if isinstance(stmt, ast.ClassDef | ast.FunctionDef):
            names.add(stmt.name)
        elif isinstance(stmt, ast.Assign):
            names.update(t.id for t in stmt.targets if isinstance(t, ast.Name))
        elif isinstance(stmt, ast.Import | ast.ImportFrom):
            names.update((a.asname or a.name).split(".")[0] for a in stmt.names)
    return names


def _parse(code: str, what: str) -> ast.Module:
    try:
        return ast.parse(code)
    except SyntaxError as e:
        raise TaskError(f"{what} does not parse (line {e.lineno}: {e.msg}).") from e


def _text(value: Any) -> str:
    if isinstance(value, list | tuple):
        return ",".join(str(v) for v in value)
    return str(value)
