"""Triton kernel templates for generated fusion tasks; `fusion_templates.py` assembles them into ModelNew files.

Kernels: a tiled GEMM (tl.dot over K) with the elementwise chain fused into its epilogue; an implicit-GEMM direct
conv2d (no im2col buffer) with eval-mode BatchNorm folded into a per-channel scale and shift of the accumulator; a
GroupNorm kernel (one program per sample and group); and a row kernel (one program per row, looping over column
blocks) for softmax, log-softmax, LayerNorm, RMSNorm and row reductions with their elementwise prologue/epilogue.
Each kernel inlines its ops' Triton statements (`fusion_ops`) on an fp32 tile `y`; half-precision tasks round `y` to
the task dtype after each op (`fusion_ops.ROUND_HELPER`). Each builder returns the kernel's source text.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from tritonrl.data.fusion.ops import ELEMENTWISE, HALF_DTYPES

if TYPE_CHECKING:
    from tritonrl.data.fusion.spec import FusionSpec

GEMM_BLOCKS = (32, 64, 32)  # BLOCK_M, BLOCK_N, BLOCK_K: 4 warps; fewer, larger programs also keep the interpreter fast
CONV_BLOCKS = (64, 32, 32)  # BLOCK_P (output pixels), BLOCK_CO (output channels), BLOCK_K (C_in * KH * KW)
ROW_BLOCK_MAX = 1024  # columns per loop step of a row kernel
# Why the centred pass also sums d: the first-pass mean of a row near 100 (the verifier's offset inputs) is off by
# ~1 fp32 ulp (8e-6), which LayerNorm multiplies by rstd * weight; mean + sum(d)/n recovers it, and x - mean is exact.
_CENTERED_PASS_DOC = ["# second pass over d = x - mean (no E[x^2] - E[x]^2 cancellation); sum(d)/n corrects the mean"]
_TAIL_ARGS = {
    "layernorm": (("norm_weight_ptr", "self.norm.weight"), ("norm_bias_ptr", "self.norm.bias"),
                  ("eps", "self.norm.eps")),
    "rmsnorm": (("rms_weight_ptr", "self.rms_weight"), ("eps", "self.eps")),
}  # fmt: skip


def kernel_args(ops: tuple[str, ...]) -> list[tuple[str, str]]:
    """(kernel parameter, ModelNew expression) pairs the ops need, first use first, without repeats."""
    pairs: list[tuple[str, str]] = []
    for op in ops:
        if op in ELEMENTWISE:
            e = ELEMENTWISE[op]
            pairs += [(c, f"self.{c}") for c in e.consts] + list(zip(e.kernel_args, e.call_args, strict=True))
        pairs += _TAIL_ARGS.get(op, ())
    return list(dict.fromkeys(pairs))


def _indent(lines: list[str], n: int) -> list[str]:
    return [" " * n + line if line else "" for line in lines]


def _chain(ops: tuple[str, ...], half: bool) -> list[str]:
    """The elementwise ops as statements on `y`, each followed by rounding to the task dtype in half precision."""
    out: list[str] = []
    for op in ops:
        out += ELEMENTWISE[op].triton.split("\n")
        out += ["y = _round(y)"] if half else []
    return out


def _dot(dtype: str) -> list[str]:
    if dtype == "float32":
        # Full fp32 products, not TF32: TF32 error scales with |a||b|, not the output (see builtin linear_bias_relu)
        return ['acc += tl.dot(a, b, input_precision="ieee")']
    if dtype == "float16":
        return ["acc += tl.dot(a, b)"]
    return [
        "if DOT_FP32:  # the CPU interpreter multiplies bf16 tiles as raw integers; fp32 gives the same exact products",
        '    acc += tl.dot(a.to(tl.float32), b.to(tl.float32), input_precision="ieee")',
        "else:",
        "    acc += tl.dot(a, b)",
    ]


def wrap(items: list[str], width: int = 100) -> list[str]:
    """Comma-separated items in rows of at most `width` characters (one item may exceed it), each ending in ","."""
    rows: list[str] = []
    for item in items:
        if rows and len(rows[-1]) + len(item) + 2 <= width:
            rows[-1] += f" {item},"
        else:
            rows.append(f"{item},")
    return rows


def _signature(name: str, params: list[str]) -> list[str]:
    return ["@triton.jit", f"def {name}(", *_indent(wrap(params), 4), "):"]


def _tile_epilogue(
    feat: str, bound: str, out_offs: str, omask: str, head: list[str], rounding: str, ops: tuple, half: bool
) -> list[str]:
    """The shared tail of the GEMM and conv kernels: `y` from the accumulator (`head`), PyTorch's rounding of the
    main op's output in half precision, the fused elementwise chain, one masked store of the output tile."""
    return [
        f"feat = {feat}[None, :]",
        f"fmask = feat < {bound}",
        f"out_offs = {out_offs}",
        f"omask = {omask}",
        *head,
        *([rounding] if half else []),
        *_chain(ops, half),
        "tl.store(out_ptr + out_offs, y.to(out_ptr.dtype.element_ty), mask=omask)",
    ]


def gemm_kernel(spec: FusionSpec) -> str:
    half = spec.dtype in HALF_DTYPES
    extra = [k for k, _ in kernel_args(spec.pre)]
    params = ["x_ptr", "w_ptr"] + (["b_ptr"] if spec.main_bias else []) + ["out_ptr", *extra]
    params += ["M", "N", "K", "stride_xm", "stride_xk", "stride_wn", "stride_wk"]
    params += ["DOT_FP32: tl.constexpr"] if spec.dtype == "bfloat16" else []
    params += ["BLOCK_M: tl.constexpr", "BLOCK_N: tl.constexpr", "BLOCK_K: tl.constexpr"]
    body = [
        "pid_m = tl.program_id(0)",
        "pid_n = tl.program_id(1)",
        "offs_m = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)",
        "offs_n = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)",
        "acc = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.float32)",
        "for k0 in range(0, K, BLOCK_K):",
        "    ks = k0 + tl.arange(0, BLOCK_K)",
        "    a_mask = (offs_m[:, None] < M) & (ks[None, :] < K)",
        "    a = tl.load(x_ptr + offs_m[:, None] * stride_xm + ks[None, :] * stride_xk, mask=a_mask, other=0.0)",
        "    # W is [N, K] (nn.Linear layout): read a [BLOCK_K, BLOCK_N] tile of W^T through its strides",
        "    b_mask = (offs_n[None, :] < N) & (ks[:, None] < K)",
        "    b = tl.load(w_ptr + offs_n[None, :] * stride_wn + ks[:, None] * stride_wk, mask=b_mask, other=0.0)",
        *_indent(_dot(spec.dtype), 4),
        *_tile_epilogue(
            "offs_n", "N", "offs_m[:, None] * N + feat", "(offs_m[:, None] < M) & fmask",
            ["y = acc"] + (["y = y + tl.load(b_ptr + feat, mask=fmask, other=0.0).to(tl.float32)"]
                           if spec.main_bias else []),
            "y = _round(y)  # the Linear output as PyTorch materialises it", spec.pre, half,
        ),
    ]  # fmt: skip
    return "\n".join(_signature("fused_linear_kernel", params) + _indent(body, 4))


def conv_folds_bn(spec: FusionSpec) -> bool:
    """Fold a BatchNorm that follows the conv into the accumulator (skipping PyTorch's rounding of the conv output)?

    Not in bf16: with an 8-bit mantissa the folded result differs from PyTorch's by up to one bf16 ulp (0.4-0.8%) of
    every intermediate, which a later residual add can leave larger than 1% of a cancelled output. fp16's 11 bits
    keep folding well inside its 1e-2 tolerance.
    """
    return spec.pre[:1] == ("bn",) and spec.dtype != "bfloat16"


def conv_kernel(spec: FusionSpec) -> str:
    half = spec.dtype in HALF_DTYPES
    folded = conv_folds_bn(spec)
    rest = spec.pre[1:] if folded else spec.pre
    extra = [k for k, _ in kernel_args(spec.pre)]
    params = ["x_ptr", "w_ptr"] + (["b_ptr"] if spec.main_bias else []) + ["out_ptr", *extra]
    params += ["N", "C_in", "H", "W", "C_out", "H_out", "W_out", "stride_xn", "stride_xc", "stride_xh", "stride_xw"]
    params += ["stride_wo", "stride_wc", "stride_wh", "stride_ww"]
    params += ["KH: tl.constexpr", "KW: tl.constexpr", "STRIDE: tl.constexpr", "PAD: tl.constexpr"]
    params += ["DOT_FP32: tl.constexpr"] if spec.dtype == "bfloat16" else []
    params += ["BLOCK_P: tl.constexpr", "BLOCK_CO: tl.constexpr", "BLOCK_K: tl.constexpr"]
    bias = "tl.load(b_ptr + feat, mask=fmask, other=0.0).to(tl.float32)"
    if folded:
        epilogue = [
            "# BatchNorm (eval) folded into the accumulator: one scale and shift per output channel",
            "bn_var = tl.load(bn_var_ptr + feat, mask=fmask, other=1.0).to(tl.float32)",
            "bn_scale = tl.load(bn_weight_ptr + feat, mask=fmask, other=0.0).to(tl.float32) / tl.sqrt(bn_var + bn_eps)",
            "bn_mean = tl.load(bn_mean_ptr + feat, mask=fmask, other=0.0).to(tl.float32)",
            "bn_shift = tl.load(bn_bias_ptr + feat, mask=fmask, other=0.0).to(tl.float32) - bn_mean * bn_scale",
            *([f"bn_shift += {bias} * bn_scale"] if spec.main_bias else []),
            "y = acc * bn_scale + bn_shift",
        ]
    else:
        epilogue = [f"y = acc + {bias}" if spec.main_bias else "y = acc"]
    body = [
        "pid_p = tl.program_id(0)  # a tile of output pixels (n, oh, ow flattened) ...",
        "pid_c = tl.program_id(1)  # ... times a tile of output channels",
        "offs_p = pid_p * BLOCK_P + tl.arange(0, BLOCK_P)",
        "offs_co = pid_c * BLOCK_CO + tl.arange(0, BLOCK_CO)",
        "hw_out = H_out * W_out",
        "n = offs_p // hw_out",
        "pix = offs_p % hw_out",
        "oh = pix // W_out",
        "ow = pix % W_out",
        "p_mask = offs_p < N * hw_out",
        "k_total = C_in * KH * KW",
        "acc = tl.zeros((BLOCK_P, BLOCK_CO), dtype=tl.float32)",
        "for k0 in range(0, k_total, BLOCK_K):  # implicit GEMM: K runs over (c_in, kh, kw)",
        "    ks = k0 + tl.arange(0, BLOCK_K)",
        "    ci = ks // (KH * KW)",
        "    kh = (ks % (KH * KW)) // KW",
        "    kw = ks % KW",
        "    ih = oh[:, None] * STRIDE - PAD + kh[None, :]",
        "    iw = ow[:, None] * STRIDE - PAD + kw[None, :]",
        "    a_mask = p_mask[:, None] & (ks[None, :] < k_total) & (ih >= 0) & (ih < H) & (iw >= 0) & (iw < W)",
        "    a_ptrs = x_ptr + n[:, None] * stride_xn + ci[None, :] * stride_xc + ih * stride_xh + iw * stride_xw",
        "    a = tl.load(a_ptrs, mask=a_mask, other=0.0)",
        "    b_mask = (ks[:, None] < k_total) & (offs_co[None, :] < C_out)",
        "    b_ptrs = w_ptr + offs_co[None, :] * stride_wo + ci[:, None] * stride_wc + kh[:, None] * stride_wh",
        "    b = tl.load(b_ptrs + kw[:, None] * stride_ww, mask=b_mask, other=0.0)",
        *_indent(_dot(spec.dtype), 4),
        *_tile_epilogue("offs_co", "C_out", "n[:, None] * (C_out * hw_out) + feat * hw_out + pix[:, None]",
                        "p_mask[:, None] & fmask", epilogue, "y = _round(y)", rest, half),
    ]  # fmt: skip
    return "\n".join(_signature("fused_conv2d_kernel", params) + _indent(body, 4))


def groupnorm_kernel(spec: FusionSpec) -> str:
    half = spec.dtype in HALF_DTYPES
    extra = [k for k, _ in kernel_args(spec.pre)]
    params = ["x_ptr", "out_ptr", "gn_weight_ptr", "gn_bias_ptr", *extra, "G", "C", "L", "eps", "BLOCK: tl.constexpr"]
    block = [
        "idx = start + tl.arange(0, BLOCK)",
        "fmask = idx < group_size",
        "v = tl.load(x_ptr + base + idx, mask=fmask, other=0.0).to(tl.float32)",
    ]
    body = [
        "pid = tl.program_id(0)  # one program per (sample, group); a group is contiguous in NCL layout",
        "group_c = C // G",
        "group_size = group_c * L",
        "base = (pid // G) * C * L + (pid % G) * group_size",
        "acc = tl.zeros([BLOCK], dtype=tl.float32)",
        "for start in range(0, group_size, BLOCK):",
        *_indent(block, 4),
        "    acc += v",
        "mean = tl.sum(acc, axis=0) / group_size",
        *_CENTERED_PASS_DOC,
        "acc = tl.zeros([BLOCK], dtype=tl.float32)",
        "acc_d = tl.zeros([BLOCK], dtype=tl.float32)",
        "for start in range(0, group_size, BLOCK):",
        *_indent(block, 4),
        "    d = tl.where(fmask, v - mean, 0.0)",
        "    acc_d += d",
        "    acc += d * d",
        "delta = tl.sum(acc_d, axis=0) / group_size",
        "rstd = 1.0 / tl.sqrt(tl.sum(acc, axis=0) / group_size - delta * delta + eps)",
        "for start in range(0, group_size, BLOCK):",
        *_indent(block, 4),
        "    feat = (pid % G) * group_c + idx // L",
        "    out_offs = base + idx",
        "    omask = fmask",
        "    w = tl.load(gn_weight_ptr + feat, mask=fmask, other=0.0).to(tl.float32)",
        "    y = (v - mean - delta) * rstd * w + tl.load(gn_bias_ptr + feat, mask=fmask, other=0.0).to(tl.float32)",
        *_indent((["y = _round(y)"] if half else []) + _chain(spec.pre, half), 4),
        "    tl.store(out_ptr + out_offs, y.to(out_ptr.dtype.element_ty), mask=omask)",
    ]
    return "\n".join(_signature("fused_groupnorm_kernel", params) + _indent(body, 4))


def row_kernel(spec: FusionSpec, pre: tuple[str, ...]) -> str:
    """One program per row of a contiguous [rows, n_cols] input: `pre` ops, then the tail, then `post` ops."""
    half = spec.dtype in HALF_DTYPES
    rnd = ["y = _round(y)"] if half else []
    tail = spec.tail
    extra = [k for k, _ in kernel_args((*pre, *((tail,) if tail else ()), *spec.post))]
    params = ["x_ptr", "out_ptr", *extra, "n_cols", "BLOCK: tl.constexpr"]
    load = [
        "cols = start + tl.arange(0, BLOCK)",
        "feat = cols",
        "fmask = cols < n_cols",
        "out_offs = row * n_cols + cols",
        "omask = fmask",
        "y = tl.load(x_ptr + out_offs, mask=fmask, other=0.0).to(tl.float32)",
        *_chain(pre, half),
    ]
    loop = ["for start in range(0, n_cols, BLOCK):", *_indent(load, 4)]
    store = ["    tl.store(out_ptr + out_offs, y.to(out_ptr.dtype.element_ty), mask=omask)"]
    post = _indent(_chain(spec.post, half), 4)
    body = ["row = tl.program_id(0)"]
    if tail is None:
        body += [*loop, *store]
    elif tail in ("softmax", "log_softmax", "logsumexp"):
        body += [
            'm_acc = tl.full([BLOCK], float("-inf"), tl.float32)',
            *loop,
            '    m_acc = tl.maximum(m_acc, tl.where(fmask, y, float("-inf")))',
            "row_max = tl.max(m_acc, axis=0)",
            "s_acc = tl.zeros([BLOCK], dtype=tl.float32)",
            *loop,
            "    s_acc += tl.where(fmask, tl.exp(y - row_max), 0.0)",
            "denom = tl.sum(s_acc, axis=0)",
        ]
        if tail == "logsumexp":
            body += ["y = row_max + tl.log(denom)", *rnd, "tl.store(out_ptr + row, y.to(out_ptr.dtype.element_ty))"]
        else:
            out = "tl.exp(y - row_max) / denom" if tail == "softmax" else "y - row_max - tl.log(denom)"
            body += [*loop, f"    y = {out}", *_indent(rnd, 4), *post, *store]
    elif tail in ("layernorm", "rmsnorm"):
        if tail == "layernorm":
            body += ["acc = tl.zeros([BLOCK], dtype=tl.float32)", *loop, "    acc += tl.where(fmask, y, 0.0)",
                     "mean = tl.sum(acc, axis=0) / n_cols"]  # fmt: skip
        if tail == "layernorm":
            body += [
                *_CENTERED_PASS_DOC,
                "acc = tl.zeros([BLOCK], dtype=tl.float32)",
                "acc_d = tl.zeros([BLOCK], dtype=tl.float32)",
                *loop,
                "    d = tl.where(fmask, y - mean, 0.0)",
                "    acc_d += d",
                "    acc += d * d",
                "delta = tl.sum(acc_d, axis=0) / n_cols",
                "rstd = 1.0 / tl.sqrt(tl.sum(acc, axis=0) / n_cols - delta * delta + eps)",
            ]
        else:
            body += [
                "acc = tl.zeros([BLOCK], dtype=tl.float32)",
                *loop,
                "    d = tl.where(fmask, y, 0.0)",
                "    acc += d * d",
                "rstd = 1.0 / tl.sqrt(tl.sum(acc, axis=0) / n_cols + eps)",
            ]
        body += loop
        if tail == "layernorm":
            body += [
                "    w = tl.load(norm_weight_ptr + cols, mask=fmask, other=0.0).to(tl.float32)",
                "    b = tl.load(norm_bias_ptr + cols, mask=fmask, other=0.0).to(tl.float32)",
                "    y = (y - mean - delta) * rstd * w + b",
            ]
        else:  # the reference rounds x * rstd to the task dtype before the weight multiply
            body += ["    y = y * rstd", *_indent(rnd, 4),
                     "    y = y * tl.load(rms_weight_ptr + cols, mask=fmask, other=0.0).to(tl.float32)"]  # fmt: skip
        body += [*_indent(rnd, 4), *post, *store]
    else:  # sum, mean, amax: one value per row
        if tail == "amax":
            body += [
                'acc = tl.full([BLOCK], float("-inf"), tl.float32)',
                *loop,
                '    acc = tl.maximum(acc, tl.where(fmask, y, float("-inf")))',
                "y = tl.max(acc, axis=0)",
            ]
        else:
            body += ["acc = tl.zeros([BLOCK], dtype=tl.float32)", *loop, "    acc += tl.where(fmask, y, 0.0)",
                     "y = tl.sum(acc, axis=0)" + (" / n_cols" if tail == "mean" else "")]  # fmt: skip
        body += [*rnd, "tl.store(out_ptr + row, y.to(out_ptr.dtype.element_ty))"]
    for name in ("feat", "omask"):  # defined for the ops; dropped when none reads them
        if not any(name in line for line in body if not line.strip().startswith(f"{name} =")):
            body = [line for line in body if not line.strip().startswith(f"{name} =")]
    return "\n".join(_signature("fused_row_kernel", params) + _indent(body, 4))
