"""Write a `FusionSpec` as a KernelBench-format task file: `class Model`, module constants, `get_inputs`,
`get_init_inputs`.

Sizes are module-level ints read by `get_inputs()`/`get_init_inputs()`, so the verifier's shape planner can scale
them; hyperparameters (kernel_size, stride, padding, num_groups, floats) keep their values. Learned affine parameters
and BatchNorm running statistics start random, not at identity, so a kernel that skips them fails. Text only.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from tritonrl.data.fusion.ops import ELEMENTWISE, HALF_DTYPES, ROW_OPS, TORCH_DTYPE, rmsnorm_torch

if TYPE_CHECKING:
    from tritonrl.data.fusion.spec import FusionSpec

LABELS = {
    "linear": "Linear", "conv2d": "Conv2d", "groupnorm": "GroupNorm", "bn": "BatchNorm(eval)", "relu": "ReLU",
    "leaky_relu": "LeakyReLU", "gelu_erf": "GELU", "gelu_tanh": "GELU(tanh)", "silu": "SiLU", "sigmoid": "Sigmoid",
    "tanh": "Tanh", "hardswish": "HardSwish", "elu": "ELU", "softplus": "Softplus", "mish": "Mish",
    "scale": "scale", "clamp": "clamp", "bias": "+bias", "gain": "*gain", "residual": "+residual",
    "softmax": "Softmax", "log_softmax": "LogSoftmax", "layernorm": "LayerNorm", "rmsnorm": "RMSNorm",
    "sum": "sum", "mean": "mean", "amax": "max", "logsumexp": "logsumexp",
}  # fmt: skip
_INDENT = " " * 8


def feature_name(spec: FusionSpec) -> str:
    """The size constant that per-feature parameters are as long as."""
    return {"gemm": "out_features", "conv": "out_channels", "groupnorm": "channels"}.get(spec.family, "features")


def param_shape(spec: FusionSpec) -> str:
    """Shape expression of a per-feature parameter, broadcastable against the tensor it applies to."""
    feat = feature_name(spec)
    return {"conv": f"({feat}, 1, 1)", "groupnorm": f"({feat}, 1)"}.get(spec.family, f"({feat},)")


def init_args(spec: FusionSpec) -> list[str]:
    """`Model.__init__`'s parameters (after self), which `get_init_inputs()` returns in order."""
    base = {
        "gemm": ["in_features", "out_features"],
        "conv": ["in_channels", "out_channels", "kernel_size", "stride", "padding"],
        "groupnorm": ["channels", "num_groups"],
    }.get(spec.family, ["features"])
    return base + [name for name, _ in spec.consts]


def model_lines(spec: FusionSpec, *, randomize: bool = True) -> tuple[list[str], list[str]]:
    """The reference Model's `__init__` and `forward` body lines (unindented). Without `randomize`, only the
    parameter-holding lines: what a solution's ModelNew needs to receive the reference's state dict."""
    init, forward = _main_lines(spec)
    for op in spec.pre:
        _elementwise(spec, op, init, forward)
    if spec.tail is not None:
        _tail(spec, init, forward)
    for op in spec.post:
        _elementwise(spec, op, init, forward)
    if spec.dtype in HALF_DTYPES:
        init.append(f"self.to({TORCH_DTYPE[spec.dtype]})")
    if not randomize:
        init = [line for line in init if not line.startswith(("nn.init.", "#"))]
    return init, forward


def task_source(spec: FusionSpec) -> str:
    """The task file's text."""
    init, forward = model_lines(spec)
    args = init_args(spec)
    inputs = ["x", "residual"] if "residual" in spec.ops else ["x"]
    chain = " -> ".join(LABELS[o] for o in spec.ops)
    lines = [
        f'"""Generated Level-2 fusion task: {chain}, in {spec.dtype}.',
        "",
        f"Written by tritonrl.data.fusion.spec from spec {spec.digest()}; ops: {', '.join(spec.ops)}.",
        '"""',
        "",
        "import torch",
        "import torch.nn as nn",
        "import torch.nn.functional as F",
        "",
        "",
        "class Model(nn.Module):",
        f'    """{chain}."""',
        "",
        f"    def __init__(self, {', '.join(args)}):",
        "        super().__init__()",
        *(_INDENT + line for line in init),
        "",
        f"    def forward(self, {', '.join(inputs)}):",
        *(_INDENT + line for line in forward),
        "        return x",
        "",
        "",
        *(f"{name} = {value!r}" for name, value in (*spec.sizes, *spec.consts)),
        "",
        "",
        "def get_inputs():",
        *_inputs(spec, "residual" in inputs),
        "",
        "",
        "def get_init_inputs():",
        f"    return [{', '.join(args)}]",
        "",
    ]
    return "\n".join(lines)


def _randomize(attr: str, *names: str) -> list[str]:
    return [f"nn.init.normal_(self.{attr}.{n})" for n in names]


def _main_lines(spec: FusionSpec) -> tuple[list[str], list[str]]:
    no_bias = "" if spec.main_bias else ", bias=False"
    if spec.main == "linear":
        return [f"self.linear = nn.Linear(in_features, out_features{no_bias})"], ["x = self.linear(x)"]
    if spec.main == "conv2d":
        conv = "self.conv = nn.Conv2d(in_channels, out_channels, kernel_size, stride=stride, padding=padding"
        return [f"{conv}{no_bias})"], ["x = self.conv(x)"]
    if spec.main == "groupnorm":
        init = ["self.gn = nn.GroupNorm(num_groups, channels, eps=eps)", *_randomize("gn", "weight", "bias")]
        return init, ["x = self.gn(x)"]
    return [], []


def _elementwise(spec: FusionSpec, op: str, init: list[str], forward: list[str]) -> None:
    e = ELEMENTWISE[op]
    for name in e.consts:
        line = f"self.{name} = {name}"
        if line not in init:
            init.append(line)
    if e.kind == "param":
        init.append(f"self.{op} = nn.Parameter(torch.randn{param_shape(spec)})")
    elif e.kind == "bn":
        dims = "2d" if spec.family == "conv" else "1d"
        init += [
            f"self.bn = nn.BatchNorm{dims}({feature_name(spec)})",
            "# Random statistics and affine: at the defaults (mean 0, var 1, weight 1, bias 0) BatchNorm is ~identity.",
            *_randomize("bn", "weight", "bias", "running_mean"),
            "nn.init.uniform_(self.bn.running_var, 0.5, 1.5)",
        ]
    forward.append(e.torch)


def _tail(spec: FusionSpec, init: list[str], forward: list[str]) -> None:
    feat = feature_name(spec)
    if spec.tail == "layernorm":
        init += [f"self.norm = nn.LayerNorm({feat}, eps=eps)", *_randomize("norm", "weight", "bias")]
    elif spec.tail == "rmsnorm":
        init += ["self.eps = eps", f"self.rms_weight = nn.Parameter(torch.randn({feat}))"]
        forward += rmsnorm_torch(spec.dtype)
        return
    forward.append(ROW_OPS[spec.tail].torch.format(keepdim=spec.keepdim))


def _inputs(spec: FusionSpec, residual: bool) -> list[str]:
    dtype = f", dtype={TORCH_DTYPE[spec.dtype]}" if spec.dtype in HALF_DTYPES else ""
    shape = {
        "gemm": ("batch_size, in_features", "batch_size, out_features"),
        "conv": ("batch_size, in_channels, height, width", "batch_size, out_channels, height_out, width_out"),
        "groupnorm": ("batch_size, channels, length", "batch_size, channels, length"),
    }.get(spec.family, ("batch_size, features", "batch_size, features"))
    lines = [f"    x = torch.randn({shape[0]}{dtype})"]
    if not residual:
        return [*lines, "    return [x]"]
    if spec.family == "conv":
        lines += [
            "    height_out = (height + 2 * padding - kernel_size) // stride + 1",
            "    width_out = (width + 2 * padding - kernel_size) // stride + 1",
        ]
    return [*lines, f"    residual = torch.randn({shape[1]}{dtype})", "    return [x, residual]"]
