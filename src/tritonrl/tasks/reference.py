"""Run the TRUSTED reference of a task, optionally at overridden sizes.

`ReferenceProgram(task, {"batch_size": 4})` re-parses the source and inserts `batch_size = 4` after each module-level
statement binding it, so `M = batch_size // 2` further down recomputes (`get_inputs:224` rewrites that literal in
get_inputs()), then executes it in a fresh namespace with the task path as filename. Only trusted task files
(KernelBench, builtin) run here; candidate kernels run in the sandbox (`verify/`), never in this process.
Every input is passed positionally: KernelBook's `[args, kwargs]` returns are made positional when its rows are
converted (`data/sources/kernelbook.py`).
"""

from __future__ import annotations

import ast
import copy
import functools
import logging
import threading
from collections.abc import Callable, Mapping
from typing import Any

import torch

from tritonrl.errors import TaskError
from tritonrl.tasks.loader import LITERAL_PREFIX, constant_bindings, input_literals
from tritonrl.tasks.schema import Task

log = logging.getLogger(__name__)


# torch.manual_seed and the draws after it use one process-wide generator. Threads of one process (verify_many runs
# verifications in threads) must not interleave there: the inputs drawn for a seed would depend on the other thread,
# while the worker redraws timing inputs from the seed alone (an 8-thread GPU batch rejected 5/30 honest candidates).
RNG_LOCK = threading.RLock()


class ReferenceProgram:
    """The executed task module at given sizes: inputs, a seeded model and its outputs."""

    def __init__(self, task: Task, sizes: Mapping[str, int | float] | None = None) -> None:
        """Execute the task module.

        Args:
            task: a loaded task.
            sizes: overrides for the task's constants by name (`"input_shape[0]"` for a tuple element); constants not
                named keep their defaults, and derived ones recompute.

        Raises:
            TaskError: an override names no constant of the task, or the module body raised.
        """
        self.task = task
        self.sizes = _check_sizes(task, dict(sizes or {}))
        self.namespace = _execute(task, self.sizes)

    def get_inputs(self) -> list:
        """The task's `get_inputs()` (uses the global torch RNG; seed it first for reproducible inputs)."""
        return list(self._call("get_inputs", self.namespace["get_inputs"]))

    def inputs(self, seed: int) -> list:
        """`get_inputs()` under `torch.manual_seed(seed)`, atomically with respect to other threads."""
        with RNG_LOCK:
            torch.manual_seed(seed)
            return self.get_inputs()

    def get_init_inputs(self) -> list:
        """The task's `get_init_inputs()`."""
        return list(self._call("get_init_inputs", self.namespace["get_init_inputs"]))

    def make_model(self, seed: int) -> torch.nn.Module:
        """`torch.manual_seed(seed)`, then `Model(*get_init_inputs())`."""
        init_inputs = self.get_init_inputs()
        with RNG_LOCK:
            torch.manual_seed(seed)
            return self._call("Model(*get_init_inputs())", lambda: self.namespace["Model"](*init_inputs))

    def run(self, model: torch.nn.Module, inputs: list) -> tuple[torch.Tensor, ...]:
        """`model(*inputs)` without autograd; a single tensor comes back as a 1-tuple.

        Raises:
            TaskError: forward raised, or returned something other than a tensor or a tuple/list of tensors.
        """
        with torch.no_grad():
            out = self._call("Model.forward", lambda: model(*inputs))
        self.last_container = "tensor" if isinstance(out, torch.Tensor) else type(out).__name__
        outputs = (out,) if isinstance(out, torch.Tensor) else out
        if not isinstance(outputs, tuple | list) or not all(isinstance(t, torch.Tensor) for t in outputs):
            raise TaskError(
                f"task {self.task.task_id}: Model.forward returned {type(out).__name__}; a reference must return a "
                "tensor or a tuple/list of tensors. Fix the task's forward."
            )
        return tuple(outputs)

    def _call(self, what: str, fn: Callable[[], Any]) -> Any:
        try:
            return fn()
        except Exception as e:  # the reference is trusted code, but any failure in it is a task problem
            raise TaskError(f"task {self.task.task_id}: {what} raised {type(e).__name__}: {e}{self._at()}") from e

    def _at(self) -> str:
        return f" (sizes {self.sizes})" if self.sizes else " (default sizes)"


def _check_sizes(task: Task, sizes: dict[str, int | float]) -> dict[str, int | float]:
    known = {c.name: c.value for c in task.constants}
    for name, value in sizes.items():
        if name not in known:
            raise TaskError(
                f"task {task.task_id}: size override {name!r} is not a constant of the task; "
                f"the constants are {sorted(known)}. Fix the name."
            )
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise TaskError(f"task {task.task_id}: size override {name}={value!r} is not a number; pass an int.")
        if isinstance(known[name], int) and not isinstance(value, int):
            raise TaskError(
                f"task {task.task_id}: {name} is an int constant but the override is {value!r}; pass an int."
            )
    return sizes


@functools.lru_cache(maxsize=256)
def _parse(source: str, filename: str) -> ast.Module:
    return ast.parse(source, filename=filename)


def _filename(task: Task) -> str:
    return task.path or f"<task {task.task_id}>"


def _rewrite(task: Task, sizes: Mapping[str, int | float]) -> ast.Module:
    """A copy of the module with `name = <override>` after each statement that binds an overridden constant."""
    literals = {int(k.removeprefix(LITERAL_PREFIX)): v for k, v in sizes.items() if k.startswith(LITERAL_PREFIX)}
    scalars = {k: v for k, v in sizes.items() if "[" not in k and not k.startswith(LITERAL_PREFIX)}
    elements: dict[str, dict[int, int | float]] = {}
    for key, value in sizes.items():
        if "[" in key:
            base, index = key[:-1].split("[")
            elements.setdefault(base, {})[int(index)] = value
    lengths = {c.name.split("[")[0]: int(c.name[:-1].split("[")[1]) + 1 for c in task.constants if "[" in c.name}
    body: list[ast.stmt] = []
    tree = _parse(task.source, _filename(task))
    if literals:
        tree = copy.deepcopy(tree)  # the parse is cached: edit a copy
        for node in input_literals(tree):
            node.value = literals.get(node.value, node.value)
    for stmt in tree.body:
        body.append(stmt)
        for name in dict.fromkeys(n for n, _ in constant_bindings(stmt)):
            if name in scalars:
                body.append(_assign(stmt, name, ast.Constant(scalars[name])))
            elif name in elements:
                elts = [
                    ast.Constant(elements[name][i])
                    if i in elements[name]
                    else ast.Subscript(ast.Name(name, ast.Load()), ast.Constant(i), ast.Load())
                    for i in range(lengths[name])
                ]
                body.append(_assign(stmt, name, ast.Tuple(elts, ast.Load())))
    return ast.fix_missing_locations(ast.Module(body=body, type_ignores=[]))


def _assign(at: ast.stmt, name: str, value: ast.expr) -> ast.Assign:
    """`name = value`, located at the statement it follows so tracebacks point at the original line."""
    return ast.copy_location(ast.Assign(targets=[ast.Name(name, ast.Store())], value=value), at)


def _execute(task: Task, sizes: Mapping[str, int | float]) -> dict[str, Any]:
    module = _rewrite(task, sizes) if sizes else _parse(task.source, _filename(task))
    namespace: dict[str, Any] = {"__name__": f"tritonrl_task_{task.task_id}", "__file__": _filename(task)}
    try:
        exec(compile(module, _filename(task), "exec"), namespace)  # trusted reference code, see the module docstring
    except Exception as e:
        raise TaskError(
            f"task {task.task_id}: executing the task module raised {type(e).__name__}: {e}"
            f"{f' (sizes {dict(sizes)})' if sizes else ''}. Fix the task file."
        ) from e
    for name in ("Model", "get_inputs", "get_init_inputs"):
        if not callable(namespace.get(name)):
            raise TaskError(f"task {task.task_id}: after executing the module, {name} is not callable. Fix the file.")
    return namespace
