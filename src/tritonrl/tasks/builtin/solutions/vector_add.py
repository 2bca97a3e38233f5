"""Triton solution for `vector_add`: a capped grid where each program strides over several blocks."""

import torch
import torch.nn as nn
import triton
import triton.language as tl


@triton.jit
def add_kernel(a_ptr, b_ptr, out_ptr, n_elements, n_programs, n_iters, BLOCK: tl.constexpr):
    pid = tl.program_id(0)
    # The loop bound is a plain argument, not derived from program_id/num_programs: the Triton interpreter
    # (TRITON_INTERPRET=1) cannot use a program_id-dependent value as a range() bound.
    for it in range(0, n_iters):
        offs = (it * n_programs + pid) * BLOCK + tl.arange(0, BLOCK)
        mask = offs < n_elements
        a = tl.load(a_ptr + offs, mask=mask)
        b = tl.load(b_ptr + offs, mask=mask)
        tl.store(out_ptr + offs, a + b, mask=mask)


class ModelNew(nn.Module):
    def __init__(self):
        super().__init__()

    def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        a = a.contiguous()
        b = b.contiguous()
        out = torch.empty_like(a)
        n = a.numel()
        block = 256
        n_programs = max(1, min(triton.cdiv(n, block), 128))
        n_iters = triton.cdiv(n, n_programs * block)
        add_kernel[(n_programs,)](a, b, out, n, n_programs, n_iters, BLOCK=block)
        return out
