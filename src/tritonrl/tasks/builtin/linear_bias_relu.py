"""Fused nn.Linear (with bias) followed by ReLU on a [batch_size, in_features] input."""

import torch
import torch.nn as nn


class Model(nn.Module):
    """Returns relu(x @ W^T + b) with W, b held by self.linear."""

    def __init__(self, in_features: int, out_features: int):
        super().__init__()
        self.linear = nn.Linear(in_features, out_features)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(self.linear(x))


batch_size = 128
in_features = 4096
out_features = 2048


def get_inputs():
    x = torch.randn(batch_size, in_features)
    return [x]


def get_init_inputs():
    return [in_features, out_features]
