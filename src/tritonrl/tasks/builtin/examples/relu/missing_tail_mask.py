# expect: stage=correctness failure=unwritten_output  -- launches n // BLOCK unmasked programs, so the last n % BLOCK elements are never stored; a base shape that is a multiple of 64 passes, the odd-sized shape-family variants leave poisoned elements.
"""Wrong candidate for `relu`: assumes the element count is a multiple of BLOCK."""

import torch
import torch.nn as nn
import triton
import triton.language as tl


@triton.jit
def relu_kernel(x_ptr, out_ptr, BLOCK: tl.constexpr):
    offs = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    x = tl.load(x_ptr + offs)
    tl.store(out_ptr + offs, tl.maximum(x, 0.0))


class ModelNew(nn.Module):
    def __init__(self):
        super().__init__()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.contiguous()
        out = torch.empty_like(x)
        block = 64
        n_full_blocks = x.numel() // block
        if n_full_blocks > 0:
            relu_kernel[(n_full_blocks,)](x, out, BLOCK=block)
        return out
