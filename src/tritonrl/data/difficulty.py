"""Difficulty and level of a task: from its structure (static), then refined by measured pass rates.

`profile(task)` reads `Model.forward` (and the layers `__init__` builds) with `ast`: which compute ops it calls,
and whether a GEMM, a convolution or a reduction is among them. `infer_level` maps that to KernelBench's levels
(1 single op, 2 a fusion of ops, 3 a model: layer containers, loops over layers, or many ops), and
`structural_difficulty` to easy / medium / hard. `relabel_by_pass_rate` replaces a label by what a model actually
achieved (fraction of verified samples passing), once a task has enough samples. Static; executes nothing.
"""

from __future__ import annotations

import ast
import dataclasses
from collections.abc import Iterable, Mapping

from tritonrl.tasks.edits import dotted
from tritonrl.tasks.schema import Task

LEVELS = (1, 2, 3)
DIFFICULTIES = ("easy", "medium", "hard")

GEMM_OPS = frozenset({"matmul", "mm", "bmm", "addmm", "baddbmm", "linear", "bilinear", "einsum", "matmul_op"})
CONV_OPS = frozenset(
    {"conv1d", "conv2d", "conv3d", "conv_transpose1d", "conv_transpose2d", "conv_transpose3d", "convolution"}
    | {"convtranspose1d", "convtranspose2d", "convtranspose3d", "unfold", "fold"}
)
REDUCTION_OPS = frozenset(
    {"sum", "mean", "max", "min", "amax", "amin", "argmax", "argmin", "prod", "norm", "var", "std", "logsumexp"}
    | {"softmax", "log_softmax", "softmin", "cumsum", "cumprod", "layer_norm", "layernorm", "group_norm", "groupnorm"}
    | {"batch_norm", "batchnorm1d", "batchnorm2d", "batchnorm3d", "instance_norm", "instancenorm1d", "instancenorm2d"}
    | {"instancenorm3d", "rms_norm", "rmsnorm", "normalize", "cross_entropy", "nll_loss", "mse_loss", "kl_div"}
    | {"l1_loss", "smooth_l1_loss", "huber_loss", "cosine_similarity", "pairwise_distance", "avg_pool1d"}
    | {"avg_pool2d", "avg_pool3d", "max_pool1d", "max_pool2d", "max_pool3d", "adaptive_avg_pool1d"}
    | {"adaptive_avg_pool2d", "adaptive_avg_pool3d", "adaptive_max_pool2d", "avgpool2d", "maxpool2d", "maxpool1d"}
    | {"maxpool3d", "avgpool1d", "avgpool3d", "adaptiveavgpool2d", "adaptiveavgpool1d", "adaptiveavgpool3d"}
    | {"scaled_dot_product_attention", "multiheadattention", "topk", "sort", "median", "mode", "all", "any"}
)
_CONTAINERS = frozenset({"sequential", "modulelist", "moduledict"})
_NOT_OPS = frozenset(  # views, copies, allocations and Python builtins: not compute ops
    {"view", "reshape", "permute", "transpose", "contiguous", "size", "dim", "unsqueeze", "squeeze", "flatten"}
    | {"expand", "to", "float", "half", "chunk", "split", "t", "shape", "super", "len", "range", "int", "tuple"}
    | {"list", "isinstance", "getattr", "print", "type", "zip", "enumerate", "__init__", "clone", "detach", "cpu"}
    | {"cuda", "numel", "new_zeros", "zeros_like", "ones_like", "empty_like", "empty", "zeros", "ones", "tensor"}
    | {"expand_as", "view_as"}
)
_BINOPS = {ast.Add: "add", ast.Sub: "sub", ast.Mult: "mul", ast.Div: "div", ast.MatMult: "matmul_op",
           ast.Pow: "pow", ast.FloorDiv: "floordiv", ast.Mod: "remainder"}  # fmt: skip
MODEL_MIN_OPS = 10  # a forward calling this many compute ops reads as a model (level 3), not a fusion


@dataclasses.dataclass(frozen=True, slots=True)
class Profile:
    """What a task's forward computes, by static reading."""

    ops: tuple[str, ...]  # compute ops in call order, lower-cased ("conv2d", "relu", "add", ...), repeats kept
    has_gemm: bool
    has_conv: bool
    has_reduction: bool
    model_like: bool  # layer containers, a loop over layers, or MODEL_MIN_OPS ops or more

    @property
    def n_ops(self) -> int:
        return len(self.ops)


def profile(task: Task) -> Profile:
    """The static profile of a task's `Model` (an empty profile when the source has no readable Model)."""
    try:
        tree = ast.parse(task.source)
    except SyntaxError:
        return Profile((), False, False, False, False)
    model = next((n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == "Model"), None)
    if model is None:
        return Profile((), False, False, False, False)
    layers = _layers(model)
    forward = next((n for n in model.body if isinstance(n, ast.FunctionDef) and n.name == "forward"), None)
    ops: list[str] = []
    loops = False
    for node in _postorder(forward) if forward else ():  # evaluation order: relu(fc(x)) gives linear, relu
        loops |= isinstance(node, ast.For | ast.While)
        if isinstance(node, ast.BinOp) and type(node.op) in _BINOPS:
            ops.append(_BINOPS[type(node.op)])
        elif isinstance(node, ast.Call) and (name := _op_name(node, layers)):
            ops.append(name)
    containers = any(kind in _CONTAINERS or kind.startswith("_") for kind in layers.values())  # _make_layer(...)
    return Profile(
        ops=tuple(ops),
        has_gemm=any(op in GEMM_OPS for op in ops),
        has_conv=any(op in CONV_OPS for op in ops),
        has_reduction=any(op in REDUCTION_OPS for op in ops),
        model_like=containers or (loops and bool(layers)) or len(ops) >= MODEL_MIN_OPS,
    )


def infer_level(task: Task) -> int:
    """KernelBench level from structure: 3 model-like, 1 one compute op, else 2."""
    found = profile(task)
    if found.model_like:
        return 3
    return 1 if found.n_ops <= 1 else 2


def structural_difficulty(task: Task, level: int | None = None) -> str:
    """easy / medium / hard from structure.

    hard: a model (level 3), a convolution fused with other ops, or 6+ ops; medium: a GEMM, a convolution, a
    reduction, or 3+ ops; easy: one or two elementwise ops.
    """
    found = profile(task)
    level = level if level is not None else task.level
    if (level or 1) >= 3 or found.model_like or (found.has_conv and found.n_ops > 1) or found.n_ops >= 6:
        return "hard"
    if found.has_gemm or found.has_conv or found.has_reduction or found.n_ops >= 3:
        return "medium"
    return "easy"


def pass_rates(records: Iterable[Mapping]) -> dict[str, tuple[int, int]]:
    """(passed, total) per task id from verdict records (dicts with `task_id` and `passed`, e.g. `tritonrl report
    --jsonl` output or a verification cache)."""
    counts: dict[str, list[int]] = {}
    for record in records:
        slot = counts.setdefault(str(record["task_id"]), [0, 0])
        slot[0] += bool(record["passed"])
        slot[1] += 1
    return {task_id: (passed, total) for task_id, (passed, total) in counts.items()}


def relabel_by_pass_rate(
    labels: Mapping[str, str],
    rates: Mapping[str, tuple[int, int]],
    *,
    easy_above: float = 0.7,
    hard_below: float = 0.3,
    min_samples: int = 4,
) -> dict[str, str]:
    """Labels refined by measured pass rates: >= easy_above easy, < hard_below hard, else medium. Tasks with fewer
    than `min_samples` samples keep their label.

    >>> relabel_by_pass_rate({"a": "hard", "b": "easy", "c": "easy"}, {"a": (9, 10), "b": (1, 10), "c": (1, 2)})
    {'a': 'easy', 'b': 'hard', 'c': 'easy'}
    """
    if not 0.0 <= hard_below <= easy_above <= 1.0:
        raise ValueError(f"thresholds hard_below={hard_below}, easy_above={easy_above}: need 0 <= hard <= easy <= 1.")
    out = dict(labels)
    for task_id, (passed, total) in rates.items():
        if task_id not in out or total < min_samples:
            continue
        rate = passed / total
        out[task_id] = "easy" if rate >= easy_above else "hard" if rate < hard_below else "medium"
    return out


def _layers(model: ast.ClassDef) -> dict[str, str]:
    """`self.<name> = nn.<Kind>(...)` in __init__ -> {name: kind lower-cased}."""
    init = next((n for n in model.body if isinstance(n, ast.FunctionDef) and n.name == "__init__"), None)
    out: dict[str, str] = {}
    for node in ast.walk(init) if init else ():
        if isinstance(node, ast.Assign) and isinstance(node.value, ast.Call):
            kind = _callee(node.value).rsplit(".", 1)[-1].lower()
            for target in node.targets:
                if isinstance(target, ast.Attribute) and _dotted_self(target):
                    out[target.attr] = kind
    return out


def _postorder(node: ast.AST):  # noqa: ANN202 (Iterator[ast.AST])
    """Children before their parent, left to right: the order Python evaluates nested calls and operators."""
    stack: list[tuple[ast.AST, bool]] = [(node, False)]
    while stack:
        current, expanded = stack.pop()
        if expanded:
            yield current
            continue
        stack.append((current, True))
        stack.extend((child, False) for child in reversed(list(ast.iter_child_nodes(current))))


def _dotted_self(target: ast.Attribute) -> bool:
    return isinstance(target.value, ast.Name) and target.value.id == "self"


def _callee(call: ast.Call) -> str:
    return dotted(call.func)


def _op_name(call: ast.Call, layers: Mapping[str, str]) -> str | None:
    name = _callee(call)
    parts = name.split(".")
    if len(parts) == 2 and parts[0] == "self" and parts[1] in layers:  # self.conv(x): the layer's kind
        kind = layers[parts[1]]
        return None if kind in ("parameter", "identity") or kind.startswith("_") else kind
    last = parts[-1].lower().rstrip("_") if parts[-1] else ""
    if not last or last in _NOT_OPS or parts[0] in ("self", "math"):  # math.sqrt(2.0): a constant, not an op
        return None
    if parts[0] in ("torch", "F", "functional", "nn") or len(parts) >= 2:  # torch.relu, F.gelu, x.sum()
        return last
    return None
