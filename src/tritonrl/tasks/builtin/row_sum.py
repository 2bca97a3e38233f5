"""Sum reduction over dim=1 (keepdim) of a [batch_size, dim] tensor."""

import torch
import torch.nn as nn


class Model(nn.Module):
    """Returns torch.sum(x, dim=self.dim, keepdim=True)."""

    def __init__(self, dim: int):
        super().__init__()
        self.dim = dim

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.sum(x, dim=self.dim, keepdim=True)


batch_size = 16
dim = 16384
reduce_dim = 1


def get_inputs():
    x = torch.randn(batch_size, dim)
    return [x]


def get_init_inputs():
    return [reduce_dim]
