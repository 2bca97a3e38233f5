"""Triton solution for `rmsnorm`: a tile of several rows per program, each row held whole in the tile."""

import torch
import torch.nn as nn
import triton
import triton.language as tl


@triton.jit
def rmsnorm_kernel(
    x_ptr, w_ptr, out_ptr, n_rows, n_cols, stride_x, stride_out, eps, ROWS: tl.constexpr, BLOCK: tl.constexpr
):
    rows = tl.program_id(0) * ROWS + tl.arange(0, ROWS)
    cols = tl.arange(0, BLOCK)
    mask = (rows[:, None] < n_rows) & (cols[None, :] < n_cols)
    x = tl.load(x_ptr + rows[:, None] * stride_x + cols[None, :], mask=mask, other=0.0).to(tl.float32)
    mean_sq = tl.sum(x * x, axis=1) / n_cols
    rms_inv = 1.0 / tl.sqrt(mean_sq + eps)
    w = tl.load(w_ptr + cols, mask=cols < n_cols, other=0.0)
    y = x * rms_inv[:, None] * w[None, :]
    tl.store(out_ptr + rows[:, None] * stride_out + cols[None, :], y, mask=mask)


class ModelNew(nn.Module):
    def __init__(self, features: int, eps: float = 1e-6):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(features))  # overwritten by the reference's state dict

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x2 = x.reshape(-1, x.shape[-1]).contiguous()
        out = torch.empty_like(x2)
        n_rows, n_cols = x2.shape
        block = triton.next_power_of_2(n_cols)
        rows = max(1, min(8, 4096 // block))  # keep a tile at ~4K elements
        rmsnorm_kernel[(triton.cdiv(n_rows, rows),)](
            x2, self.weight, out, n_rows, n_cols, x2.stride(0), out.stride(0), self.eps, ROWS=rows, BLOCK=block
        )
        return out.reshape(x.shape)
