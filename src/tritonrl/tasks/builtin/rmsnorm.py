"""RMSNorm over the last dimension of a [batch_size, features] tensor with a learned (random) weight."""

import torch
import torch.nn as nn


class Model(nn.Module):
    """Computes x * rsqrt(mean(x^2, dim=-1, keepdim=True) + eps) * weight.

    The weight starts as randn, not ones, so a candidate that forgets to apply it is caught.
    """

    def __init__(self, features: int, eps: float = 1e-6):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.randn(features))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        rms_inv = torch.rsqrt(torch.mean(x * x, dim=-1, keepdim=True) + self.eps)
        return x * rms_inv * self.weight


batch_size = 16
features = 4096
eps = 1e-6


def get_inputs():
    x = torch.randn(batch_size, features)
    return [x]


def get_init_inputs():
    return [features, eps]
