"""The op vocabulary of the fusion generator: each op's PyTorch form (task side) and Triton form (solution side).

`ELEMENTWISE` ops act on one value at a time (activations, scalar and per-feature affine ops, a residual add, eval-mode
BatchNorm); `ROW_OPS` reduce or normalise along dim 1 of a 2-D tensor (softmax, norms, sum/mean/max...). An op's
Triton form is a few statements on an fp32 tile `y`, which may read `feat` (the feature/channel index, broadcastable
to `y`), `fmask`, `out_offs` and `omask` (the output offsets and mask) from the kernel that inlines it. Tables only:
`fusion.py` samples and writes tasks from them, `fusion_templates.py` writes kernels.
"""

from __future__ import annotations

import dataclasses

HALF_DTYPES = ("float16", "bfloat16")


@dataclasses.dataclass(frozen=True, slots=True)
class Elementwise:
    """One elementwise op of a fused chain."""

    name: str
    kind: str  # "act" (activation), "const" (scalar hyperparameters), "param" (per-feature tensor), "residual", "bn"
    torch: str  # the forward statement on `x` in the reference Model
    triton: str  # statements on the fp32 tile `y` in a solution kernel
    consts: tuple[str, ...] = ()  # float init args / module constants it reads (same names in the kernel)
    kernel_args: tuple[str, ...] = ()  # extra kernel parameters besides `consts`
    call_args: tuple[str, ...] = ()  # what ModelNew.forward passes for `kernel_args`, in order


def _act(name: str, torch: str, triton: str, consts: tuple[str, ...] = ()) -> Elementwise:
    return Elementwise(name, "act", torch, triton, consts)


def _load_feat(ptr: str) -> str:
    return f"tl.load({ptr} + feat, mask=fmask, other=0.0).to(tl.float32)"


_BN_ARGS = ("bn_weight_ptr", "bn_bias_ptr", "bn_mean_ptr", "bn_var_ptr", "bn_eps")
_BN_CALL = ("self.bn.weight", "self.bn.bias", "self.bn.running_mean", "self.bn.running_var", "self.bn.eps")

ACTIVATIONS: dict[str, Elementwise] = {
    a.name: a
    for a in (
        _act("relu", "x = torch.relu(x)", "y = tl.maximum(y, 0.0)"),
        _act(
            "leaky_relu",
            "x = F.leaky_relu(x, negative_slope=self.negative_slope)",
            "y = tl.where(y >= 0.0, y, y * negative_slope)",
            ("negative_slope",),
        ),
        _act("gelu_erf", "x = F.gelu(x)", "y = 0.5 * y * (1.0 + tl.math.erf(y * 0.7071067811865476))"),
        _act(
            "gelu_tanh",
            'x = F.gelu(x, approximate="tanh")',
            "y = 0.5 * y * (1.0 + _tanh(0.7978845608028654 * (y + 0.044715 * y * y * y)))",
        ),
        _act("silu", "x = F.silu(x)", "y = y * tl.sigmoid(y)"),
        _act("sigmoid", "x = torch.sigmoid(x)", "y = tl.sigmoid(y)"),
        _act("tanh", "x = torch.tanh(x)", "y = _tanh(y)"),
        _act("hardswish", "x = F.hardswish(x)", "y = y * tl.minimum(tl.maximum(y + 3.0, 0.0), 6.0) / 6.0"),
        _act("elu", "x = F.elu(x)", "y = tl.where(y > 0.0, y, _expm1(tl.minimum(y, 0.0)))"),
        _act("softplus", "x = F.softplus(x)", "y = _softplus(y)"),
        _act("mish", "x = F.mish(x)", "y = y * _tanh(_softplus(y))"),
    )
}

OTHERS: dict[str, Elementwise] = {
    e.name: e
    for e in (
        Elementwise("scale", "const", "x = x * self.scale_factor", "y = y * scale_factor", ("scale_factor",)),
        Elementwise(
            "clamp",
            "const",
            "x = torch.clamp(x, min=self.clamp_min, max=self.clamp_max)",
            "y = tl.minimum(tl.maximum(y, clamp_min), clamp_max)",
            ("clamp_min", "clamp_max"),
        ),
        Elementwise(
            "bias", "param", "x = x + self.bias", f"y = y + {_load_feat('bias_ptr')}", (), ("bias_ptr",), ("self.bias",)
        ),  # fmt: skip
        Elementwise(
            "gain", "param", "x = x * self.gain", f"y = y * {_load_feat('gain_ptr')}", (), ("gain_ptr",), ("self.gain",)
        ),  # fmt: skip
        Elementwise(
            "residual",
            "residual",
            "x = x + residual",
            "y = y + tl.load(residual_ptr + out_offs, mask=omask, other=0.0).to(tl.float32)",
            (),
            ("residual_ptr",),
            ("residual",),
        ),
        Elementwise(
            "bn",
            "bn",
            "x = F.batch_norm(x, self.bn.running_mean, self.bn.running_var, self.bn.weight, self.bn.bias, "
            "training=False, eps=self.bn.eps)",
            # Eval-mode BatchNorm is a per-feature affine map: y = (x - mean) * gamma / sqrt(var + eps) + beta
            "\n".join(
                [
                    f"bn_mean = {_load_feat('bn_mean_ptr')}",
                    f"bn_var = {_load_feat('bn_var_ptr')}",
                    f"bn_scale = {_load_feat('bn_weight_ptr')} / tl.sqrt(bn_var + bn_eps)",
                    f"y = (y - bn_mean) * bn_scale + {_load_feat('bn_bias_ptr')}",
                ]
            ),
            (),
            _BN_ARGS,
            _BN_CALL,
        ),
    )
}

ELEMENTWISE: dict[str, Elementwise] = {**ACTIVATIONS, **OTHERS}


@dataclasses.dataclass(frozen=True, slots=True)
class RowOp:
    """An op along dim 1 of a [rows, cols] tensor, computed by one program per row in a solution."""

    name: str
    reduces: bool  # True: the output is one value per row; False: same shape as the input
    torch: str  # forward statement(s) on `x`; `{keepdim}` is filled in for reductions


ROW_OPS: dict[str, RowOp] = {
    r.name: r
    for r in (
        RowOp("softmax", False, "x = torch.softmax(x, dim=1)"),
        RowOp("log_softmax", False, "x = torch.log_softmax(x, dim=1)"),
        RowOp("layernorm", False, "x = self.norm(x)"),
        RowOp("rmsnorm", False, ""),  # written by `rmsnorm_torch` (it depends on the dtype)
        RowOp("sum", True, "x = torch.sum(x, dim=1, keepdim={keepdim})"),
        RowOp("mean", True, "x = torch.mean(x, dim=1, keepdim={keepdim})"),
        RowOp("amax", True, "x = torch.amax(x, dim=1, keepdim={keepdim})"),
        RowOp("logsumexp", True, "x = torch.logsumexp(x, dim=1, keepdim={keepdim})"),
    )
}


def rmsnorm_torch(dtype: str) -> list[str]:
    """RMSNorm as LLaMA writes it: statistics in fp32 even for half inputs (x*x overflows fp16 at |x| > 256)."""
    if dtype in HALF_DTYPES:
        return [
            "xf = x.float()",
            "x = (xf * torch.rsqrt(xf.pow(2).mean(dim=1, keepdim=True) + self.eps)).to(x.dtype) * self.rms_weight",
        ]
    return ["x = x * torch.rsqrt(x.pow(2).mean(dim=1, keepdim=True) + self.eps) * self.rms_weight"]


# Triton helpers a solution includes when its ops call them. The CPU interpreter has no libdevice, so tanh and
# expm1 are built from exp, with short series near 0 where 1 - e^(-2|y|) and e^y - 1 lose digits to cancellation.
HELPERS: dict[str, str] = {
    "_tanh": """@triton.jit
def _tanh(y):
    a = tl.abs(y)
    e = tl.exp(-2.0 * a)
    t = (1.0 - e) / (1.0 + e)
    y2 = y * y
    series = y * (1.0 + y2 * (-1.0 / 3.0 + y2 * (2.0 / 15.0 - y2 * (17.0 / 315.0))))
    return tl.where(a < 0.0625, series, tl.where(y < 0.0, -t, t))
""",
    "_expm1": """@triton.jit
def _expm1(y):
    series = y * (1.0 + y * (0.5 + y * (1.0 / 6.0 + y * (1.0 / 24.0 + y * (1.0 / 120.0)))))
    return tl.where(tl.abs(y) < 0.0625, series, tl.exp(y) - 1.0)
""",
    "_softplus": """@triton.jit
def _softplus(y):
    # torch: log1p(exp(y)), and y itself above 20. log(1 + u) keeps only u's leading digits for small u = exp(y)
    # (3% off at y = -13); scaling by u / (w - 1) cancels the rounding of w = 1 + u (log1p without libdevice).
    u = tl.exp(tl.minimum(y, 20.0))
    w = 1.0 + u
    log1p = tl.where(w == 1.0, u, tl.log(w) * (u / (w - 1.0)))
    return tl.where(y > 20.0, y, log1p)
""",
}

# Rounding to the task dtype, kept in fp32: PyTorch materialises each op's result in the task dtype, so a kernel that
# rounds at the same points reproduces the reference's rounding instead of drifting from it (which matters before a
# softmax: one bf16 ulp of a logit near 60 is 0.25). bf16 is rounded on the bits because Triton's CPU interpreter
# truncates fp32 -> bf16 casts (measured on Triton 3.6); on a GPU this equals the hardware's round-to-nearest-even.
ROUND_HELPER: dict[str, str] = {
    "float16": """@triton.jit
def _round(y):
    return y.to(tl.float16).to(tl.float32)
""",
    "bfloat16": """@triton.jit
def _round(y):
    bits = y.to(tl.uint32, bitcast=True)
    bits = (bits + 0x7FFF + ((bits >> 16) & 1)) >> 16 << 16
    return bits.to(tl.float32, bitcast=True)
""",
}
TL_DTYPE = {"float32": "tl.float32", "float16": "tl.float16", "bfloat16": "tl.bfloat16"}
TORCH_DTYPE = {"float32": "torch.float32", "float16": "torch.float16", "bfloat16": "torch.bfloat16"}


def helpers_for(triton_code: str, dtype: str) -> str:
    """The helper functions `triton_code` calls, in a fixed order, plus `_round` for half dtypes."""
    out = [ROUND_HELPER[dtype]] if dtype in HALF_DTYPES else []
    out += [text for name, text in HELPERS.items() if f"{name}(" in triton_code]
    return "\n\n".join(out)
