"""ReLU activation on a [batch_size, dim] tensor (KernelBench level 1 style)."""

import torch
import torch.nn as nn


class Model(nn.Module):
    """Applies torch.relu elementwise."""

    def __init__(self):
        super().__init__()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(x)


batch_size = 16
dim = 16384


def get_inputs():
    # Uniform [0, 1) like KernelBench v0.1: a candidate that forgets the negative branch passes this
    # distribution, so the verifier's extra distributions (normal, wide, small) are what catch it.
    x = torch.rand(batch_size, dim)
    return [x]


def get_init_inputs():
    return []
