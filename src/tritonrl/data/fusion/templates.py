"""Assemble a generated task's Triton solution: `solution_source(spec)` -> the text of a ModelNew candidate file.

ModelNew takes Model's `__init__` arguments and holds its parameters and buffers under the same names and dtype (the
verifier loads the reference's state dict into it by name), and its forward only allocates outputs and launches
the kernels of `fusion_kernels.py`: one for linear/conv/groupnorm/row chains, plus a row kernel when a linear is
followed by a row op. Block sizes are fixed per kernel; the chain's constants are read from the module's attributes.
"""

from __future__ import annotations

import textwrap
from typing import TYPE_CHECKING

from tritonrl.data.fusion.kernels import (
    CONV_BLOCKS,
    GEMM_BLOCKS,
    ROW_BLOCK_MAX,
    conv_folds_bn,
    conv_kernel,
    gemm_kernel,
    groupnorm_kernel,
    kernel_args,
    row_kernel,
    wrap,
)
from tritonrl.data.fusion.ops import ROW_OPS, helpers_for
from tritonrl.data.fusion.source import LABELS, init_args, model_lines

if TYPE_CHECKING:
    from tritonrl.data.fusion.spec import FusionSpec

_DESCRIBE = {
    "gemm": "a tiled GEMM (tl.dot, fp32 accumulation) with the elementwise chain fused into its epilogue",
    "conv": "an implicit-GEMM direct convolution (no im2col buffer) with the chain fused into its epilogue",
    "groupnorm": "one program per (sample, group): two-pass statistics, then normalise and apply the chain",
    "norm": "one program per row, looping over column blocks: statistics, then normalise and apply the chain",
    "row": "one program per row, looping over column blocks: the elementwise prologue is recomputed per pass",
}


def solution_source(spec: FusionSpec) -> str:
    """The ModelNew file for `spec`'s task."""
    kernels = _kernels(spec)
    helpers = helpers_for("\n".join(kernels), spec.dtype)
    init, _ = model_lines(spec, randomize=False)
    inputs = ["x", "residual"] if "residual" in spec.ops else ["x"]
    chain = " -> ".join(LABELS[o] for o in spec.ops)
    describe = _DESCRIBE[spec.family]
    if spec.family == "gemm" and spec.tail is not None:
        describe += "; the row op runs in a second kernel over the Linear chain's output"
    if spec.family == "conv" and conv_folds_bn(spec):
        describe += "; BatchNorm (eval) folded into a per-channel scale and shift of the accumulator"
    lines = [
        *textwrap.wrap(f'"""Triton solution for a generated fusion task ({chain}, {spec.dtype}): {describe}.', 116),
        '"""',
        "",
        "import torch",
        "import torch.nn as nn",
        "import triton",
        "import triton.language as tl",
        "",
        "",
        *(f"{block.strip()}\n\n" for block in [*([helpers] if helpers else []), *kernels]),
        "class ModelNew(nn.Module):",
        f"    def __init__(self, {', '.join(init_args(spec))}):",
        "        super().__init__()",
        "        # Parameter holders under the reference's names; the verifier loads the reference's values into them.",
        *("        " + line for line in init),
        "",
        f"    def forward(self, {', '.join(inputs)}):",
        *("        " + line for line in _forward(spec, "residual" in inputs)),
        "",
    ]
    return "\n".join(lines)


def _kernels(spec: FusionSpec) -> list[str]:
    if spec.family == "gemm":
        return [gemm_kernel(spec)] + ([row_kernel(spec, ())] if spec.tail else [])
    if spec.family == "conv":
        return [conv_kernel(spec)]
    if spec.family == "groupnorm":
        return [groupnorm_kernel(spec)]
    return [row_kernel(spec, spec.pre)]


def _call(kernel: str, grid: str, args: list[str]) -> list[str]:
    return [f"{kernel}[{grid}](", *("    " + r for r in wrap(args, 96)), ")"]


def _extra(ops: tuple[str, ...]) -> list[str]:
    return [expr for _, expr in kernel_args(ops)]


def _bf16(spec: FusionSpec) -> list[str]:
    return ["DOT_FP32=not x.is_cuda"] if spec.dtype == "bfloat16" else []


def _row_launch(spec: FusionSpec, src: str, pre: tuple[str, ...], rows: str, cols: str) -> list[str]:
    tail = spec.tail
    shape = f"({rows},)" if tail is None or not ROW_OPS[tail].reduces else None
    if tail is None or not ROW_OPS[tail].reduces:
        shape = f"({rows}, {cols})"
    elif spec.keepdim:
        shape = f"({rows}, 1)"
    else:
        shape = f"({rows},)"
    ops = (*pre, *((tail,) if tail else ()), *spec.post)
    return [
        f"out = torch.empty({shape}, dtype=x.dtype, device=x.device)",
        f"block = min(triton.next_power_of_2({cols}), {ROW_BLOCK_MAX})",
        *_call("fused_row_kernel", f"({rows},)", [src, "out", *_extra(ops), cols, "BLOCK=block"]),
        "return out",
    ]


def _forward(spec: FusionSpec, residual: bool) -> list[str]:
    lines = ["x = x.contiguous()"] + (["residual = residual.contiguous()"] if residual else [])
    bias = ["self.{}.bias".format("linear" if spec.family == "gemm" else "conv")] if spec.main_bias else []
    if spec.family == "gemm":
        bm, bn, bk = GEMM_BLOCKS
        lines += [
            "w = self.linear.weight",
            "M, K = x.shape",
            "N = w.shape[0]",
            "h = torch.empty((M, N), dtype=x.dtype, device=x.device)",
            *_call("fused_linear_kernel", f"(triton.cdiv(M, {bm}), triton.cdiv(N, {bn}))",
                   ["x", "w", *bias, "h", *_extra(spec.pre), "M", "N", "K", "x.stride(0)", "x.stride(1)",
                    "w.stride(0)", "w.stride(1)", *_bf16(spec), f"BLOCK_M={bm}", f"BLOCK_N={bn}", f"BLOCK_K={bk}"]),
        ]  # fmt: skip
        return lines + (_row_launch(spec, "h", (), "M", "N") if spec.tail else ["return h"])
    if spec.family == "conv":
        bp, bc, bk = CONV_BLOCKS
        lines += [
            "w = self.conv.weight",
            "N, C_in, H, W = x.shape",
            "C_out, _, KH, KW = w.shape",
            "stride, pad = self.conv.stride[0], self.conv.padding[0]",
            "H_out = (H + 2 * pad - KH) // stride + 1",
            "W_out = (W + 2 * pad - KW) // stride + 1",
            "out = torch.empty((N, C_out, H_out, W_out), dtype=x.dtype, device=x.device)",
            *_call("fused_conv2d_kernel", f"(triton.cdiv(N * H_out * W_out, {bp}), triton.cdiv(C_out, {bc}))",
                   ["x", "w", *bias, "out", *_extra(spec.pre), "N", "C_in", "H", "W", "C_out", "H_out", "W_out",
                    "*x.stride()", "*w.stride()", "KH=KH", "KW=KW", "STRIDE=stride", "PAD=pad", *_bf16(spec),
                    f"BLOCK_P={bp}", f"BLOCK_CO={bc}", f"BLOCK_K={bk}"]),
            "return out",
        ]  # fmt: skip
        return lines
    if spec.family == "groupnorm":
        return lines + [
            "B, C, L = x.shape",
            "G = self.gn.num_groups",
            "out = torch.empty_like(x)",
            f"block = min(triton.next_power_of_2(C // G * L), {ROW_BLOCK_MAX})",
            *_call("fused_groupnorm_kernel", "(B * G,)",
                   ["x", "out", "self.gn.weight", "self.gn.bias", *_extra(spec.pre), "G", "C", "L", "self.gn.eps",
                    "BLOCK=block"]),
            "return out",
        ]  # fmt: skip
    return lines + ["n_rows, n_cols = x.shape"] + _row_launch(spec, "x", spec.pre, "n_rows", "n_cols")
