"""Elementwise addition of two 1-D vectors of length n_elements."""

import torch
import torch.nn as nn


class Model(nn.Module):
    """Returns a + b."""

    def __init__(self):
        super().__init__()

    def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return a + b


n_elements = 1048576


def get_inputs():
    a = torch.randn(n_elements)
    b = torch.randn(n_elements)
    return [a, b]


def get_init_inputs():
    return []
