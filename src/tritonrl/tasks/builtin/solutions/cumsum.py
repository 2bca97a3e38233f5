"""Triton solution for `cumsum`: one row per program, block-wise tl.cumsum with a running fp64 carry."""

import torch
import torch.nn as nn
import triton
import triton.language as tl


@triton.jit
def cumsum_kernel(x_ptr, out_ptr, n_cols, stride_x, stride_out, BLOCK: tl.constexpr):
    row = tl.program_id(0)
    # Accumulate in fp64, as torch's CPU cumsum does: an fp32 running sum drifts by ~sqrt(n) ulps of the largest
    # prefix, measured 5.7e-5 absolute at length 2500 for randn rows and 6e-3 for randn*100 rows, which is at or
    # past the fp32 tolerance (1e-4 + 1e-4*|ref|) wherever the prefix sum crosses zero.
    carry = tl.zeros([1], dtype=tl.float64)
    for start in range(0, n_cols, BLOCK):
        cols = start + tl.arange(0, BLOCK)
        mask = cols < n_cols
        x = tl.load(x_ptr + row * stride_x + cols, mask=mask, other=0.0).to(tl.float64)
        scan = tl.cumsum(x, axis=0) + carry
        tl.store(out_ptr + row * stride_out + cols, scan.to(tl.float32), mask=mask)
        carry += tl.sum(x, axis=0)


class ModelNew(nn.Module):
    def __init__(self):
        super().__init__()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.contiguous()
        out = torch.empty_like(x)
        n_rows, n_cols = x.shape
        block = min(triton.next_power_of_2(n_cols), 1024)
        cumsum_kernel[(n_rows,)](x, out, n_cols, x.stride(0), out.stride(0), BLOCK=block)
        return out
