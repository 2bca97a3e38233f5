"""Triton solution for `row_sum`: one row per program, accumulating column blocks in fp32 before one reduction."""

import torch
import torch.nn as nn
import triton
import triton.language as tl


@triton.jit
def row_sum_kernel(x_ptr, out_ptr, n_cols, stride_x, BLOCK: tl.constexpr):
    row = tl.program_id(0)
    acc = tl.zeros([BLOCK], dtype=tl.float32)
    for start in range(0, n_cols, BLOCK):
        cols = start + tl.arange(0, BLOCK)
        acc += tl.load(x_ptr + row * stride_x + cols, mask=cols < n_cols, other=0.0).to(tl.float32)
    tl.store(out_ptr + row, tl.sum(acc, axis=0))


class ModelNew(nn.Module):
    def __init__(self, dim: int):
        super().__init__()
        self.dim = dim

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # Written for the task's 2-D input reduced over its last axis (reduce_dim = 1).
        x = x.contiguous()
        n_rows, n_cols = x.shape
        out = torch.empty((n_rows, 1), dtype=x.dtype, device=x.device)
        block = min(triton.next_power_of_2(n_cols), 1024)
        row_sum_kernel[(n_rows,)](x, out, n_cols, x.stride(0), BLOCK=block)
        return out
