"""Inclusive prefix sum along dim=1 of a [batch_size, length] tensor."""

import torch
import torch.nn as nn


class Model(nn.Module):
    """Returns torch.cumsum(x, dim=1): out[i, j] = x[i, 0] + ... + x[i, j]."""

    def __init__(self):
        super().__init__()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # The scan axis is fixed here (like softmax's dim=1) rather than a module constant named `dim`, which in
        # the other tasks is a size that the CPU harness scales.
        return torch.cumsum(x, dim=1)


batch_size = 128
length = 4000


def get_inputs():
    x = torch.randn(batch_size, length)
    return [x]


def get_init_inputs():
    return []
