"""Task augmentation: shape variants (size constants scaled) and dtype variants (float16 / bfloat16 inputs and
parameters), each a new task of the same family, kept only where the reference still runs at CPU scale.

`scale_variant(task, 2.0)` rewrites the literal of every free SIZE constant (`batch_size = 16` -> `batch_size = 32`;
tuple elements and get_inputs() literals too); derived constants recompute. `dtype_variant(task, "float16")` adds
`dtype=torch.float16` to the floating tensor factories of get_inputs() (an explicit float dtype is replaced) and, when
`Model.__init__` builds layers or parameters, ends it with `self.to(torch.float16)`. Both edit only those characters.
`augment(entries, ...)` runs `tasks check` on each variant and keeps those that pass. The original's solution is
carried over: the export verifies it against the variant before using it.
"""

from __future__ import annotations

import ast
import dataclasses
import logging
from collections.abc import Callable, Iterable, Sequence

from tritonrl.data.suites import SuiteTask
from tritonrl.errors import TaskError
from tritonrl.tasks.edits import Edit, LineIndex, apply_edits, dotted, top_level
from tritonrl.tasks.loader import LITERAL_PREFIX, constant_bindings, input_literals, load_task
from tritonrl.tasks.schema import Task

log = logging.getLogger(__name__)

DTYPES = ("float16", "bfloat16")
FLOAT_FACTORIES = frozenset({"rand", "randn", "ones", "zeros", "full", "empty", "linspace", "logspace", "eye"})
_FLOAT_NAMES = frozenset({"float", "float32", "float64", "double", "half", "float16", "bfloat16"})
_LAYER_CALL_PREFIXES = ("nn.", "torch.nn.")


def variant_id(task_id: str, variant: str) -> str:
    return f"{task_id}+{variant}"


def scale_variant(task: Task, factor: float) -> Task | None:
    """`task` with its free SIZE constants scaled by `factor` (rounded, at least 1); None when nothing changes."""
    if factor <= 0:
        raise ValueError(f"scale factor {factor}: must be positive, e.g. 0.5 or 2.")
    tree = ast.parse(task.source)
    index = LineIndex(task.source)
    edits: list[Edit] = []
    for name, value in task.free_size_constants.items():
        new = max(1, round(value * factor))
        if new != value:
            edits.extend((*index.span(node), str(new)) for node in _value_nodes(tree, name, value))
    if not edits:
        return None
    try:
        source = apply_edits(task.source, edits)
    except ValueError:  # two constants share a literal node (never in practice): skip this variant
        return None
    return _reload(task, source, f"x{factor:g}")


def dtype_variant(task: Task, dtype: str) -> Task | None:
    """`task` with floating inputs (and parameters) in `dtype`; None when get_inputs() makes no floating tensor."""
    if dtype not in DTYPES:
        raise ValueError(f"dtype {dtype!r}: must be one of {DTYPES}.")
    tree = ast.parse(task.source)
    index = LineIndex(task.source)
    get_inputs = top_level(tree, ast.FunctionDef, "get_inputs")
    edits: list[Edit] = []
    for call in (n for n in ast.walk(get_inputs) if isinstance(n, ast.Call)) if get_inputs else ():
        if _callee(call).split(".")[-1] not in FLOAT_FACTORIES or not _callee(call).startswith("torch."):
            continue
        given = next((k for k in call.keywords if k.arg == "dtype"), None)
        if given is None:
            close = index.offset(call.end_lineno, call.end_col_offset) - 1
            edits.append((close, close, f"{', ' if call.args or call.keywords else ''}dtype=torch.{dtype}"))
        elif dotted(given.value).split(".")[-1] in _FLOAT_NAMES:
            edits.append((*index.span(given.value), f"torch.{dtype}"))
    if not edits:
        return None
    model = top_level(tree, ast.ClassDef, "Model")
    init = top_level(model, ast.FunctionDef, "__init__") if model else None
    if init is not None and _builds_parameters(init):
        last = init.body[-1]
        at = index.line_span(last)[1]
        edits.append((at, at, " " * last.col_offset + f"self.to(torch.{dtype})\n"))
    return _reload(task, apply_edits(task.source, edits), dtype)


def augment(
    entries: Iterable[SuiteTask],
    *,
    dtypes: Sequence[str] = (),
    scales: Sequence[float] = (),
    usable: Callable[[Task], str] | None = None,
    on_variant: Callable[[SuiteTask | None], None] | None = None,
) -> tuple[list[SuiteTask], list[tuple[str, str]]]:
    """Variants of each entry (original entries not included) and [(variant id, why dropped)].

    Args:
        dtypes: "float16" / "bfloat16" variants to make.
        scales: size factors (e.g. 0.5, 2.0).
        usable: returns "" when a variant can be verified, else why not; default: `tasks check` at CPU scale.
        on_variant: called once per variant tried (with the kept entry, or None), for progress display.
    """
    usable = usable or _checks_ok
    kept: list[SuiteTask] = []
    dropped: list[tuple[str, str]] = []
    for item in entries:
        makers = [(d, lambda t, d=d: dtype_variant(t, d)) for d in dtypes]
        makers += [(f"x{s:g}", lambda t, s=s: scale_variant(t, s)) for s in scales]
        for name, make in makers:
            vid = variant_id(item.task_id, name)
            try:
                task = make(item.task)
            except (TaskError, SyntaxError, ValueError) as e:
                task, why = None, f"conversion failed: {e}"
            else:
                same = task is None or task.source == item.task.source  # e.g. float16 asked of a float16 task
                why = "nothing to vary" if same else usable(task)
            if why:
                dropped.append((vid, why))
                if on_variant:
                    on_variant(None)
                continue
            variant = dataclasses.replace(item, task=task, variant=name, family=item.family, label=item.label)
            kept.append(variant)
            if on_variant:
                on_variant(variant)
    return kept, dropped


def _checks_ok(task: Task) -> str:
    from tritonrl.data.check import check_task

    result = check_task(task)
    return "" if result.ok else f"reference not usable: {result.error}"


def _reload(task: Task, source: str, variant: str) -> Task:
    """The edited source as a task: same level, id `<id>+<variant>`; roles of the original constants kept."""
    roles = {c.name: c.role.value for c in task.constants if not c.name.startswith(LITERAL_PREFIX)}
    new = load_task(source, task_id=variant_id(task.task_id, variant), level=task.level, roles=_known(source, roles))
    return dataclasses.replace(new, path=None, solution_path=None)


def _known(source: str, roles: dict[str, str]) -> dict[str, str]:
    """Roles of constants that still exist in `source` (a scaled literal changes a get_inputs:N name)."""
    probe = load_task(source, task_id="probe")
    names = {c.name for c in probe.constants}
    return {k: v for k, v in roles.items() if k in names}


def _value_nodes(tree: ast.Module, name: str, value: int) -> list[ast.AST]:
    """The expression that defines free constant `name` (a scalar, `base[i]`, or every `get_inputs:V` literal)."""
    if name.startswith(LITERAL_PREFIX):
        return [n for n in input_literals(tree) if n.value == value]
    base, _, element = name.partition("[")
    found = []
    for stmt in tree.body:
        for bound, expr in constant_bindings(stmt):
            if bound != base or expr is None:
                continue
            if element:
                i = int(element.rstrip("]"))
                expr = expr.elts[i] if isinstance(expr, ast.Tuple) and i < len(expr.elts) else None
            if expr is not None and not any(isinstance(n, ast.Name) for n in ast.walk(expr)):
                found.append(expr)  # a literal, or arithmetic of literals (`2048 * 2`): replaced whole
    return found[-1:]  # the last binding is the one that counts


def _builds_parameters(init: ast.FunctionDef) -> bool:
    for node in ast.walk(init):
        if isinstance(node, ast.Call):
            name = _callee(node)
            if name.startswith(_LAYER_CALL_PREFIXES) or name.endswith("Parameter"):
                return True
    return False


def _callee(call: ast.Call) -> str:
    return dotted(call.func)
