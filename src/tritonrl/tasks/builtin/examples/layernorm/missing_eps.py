# expect: stage=correctness failure=wrong_values  -- normalises with rsqrt(var) instead of rsqrt(var + eps); invisible when var ~ 1 (native, normal) or 1e4 (wide), but the small (randn*1e-3) distribution has var ~ 1e-6, comparable to eps = 1e-5, so outputs are off by ~3x.
"""Wrong candidate for `layernorm`: drops eps from the denominator."""

import torch
import torch.nn as nn
import triton
import triton.language as tl


@triton.jit
def layernorm_kernel(x_ptr, w_ptr, b_ptr, out_ptr, n_cols, stride_row, BLOCK: tl.constexpr):
    row = tl.program_id(0)
    cols = tl.arange(0, BLOCK)
    mask = cols < n_cols
    x = tl.load(x_ptr + row * stride_row + cols, mask=mask, other=0.0)
    mean = tl.sum(x, axis=0) / n_cols
    d = tl.where(mask, x - mean, 0.0)
    var = tl.sum(d * d, axis=0) / n_cols
    w = tl.load(w_ptr + cols, mask=mask, other=0.0)
    b = tl.load(b_ptr + cols, mask=mask, other=0.0)
    tl.store(out_ptr + row * stride_row + cols, d / tl.sqrt(var) * w + b, mask=mask)


class ModelNew(nn.Module):
    def __init__(self, features: int, eps: float = 1e-5):
        super().__init__()
        self.ln = nn.LayerNorm(normalized_shape=features, eps=eps)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.contiguous()
        out = torch.empty_like(x)
        n_rows, n_cols = x.shape
        layernorm_kernel[(n_rows,)](
            x, self.ln.weight, self.ln.bias, out, n_cols, x.stride(0), BLOCK=triton.next_power_of_2(n_cols)
        )
        return out
