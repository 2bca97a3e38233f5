"""LayerNorm over the last dimension of a [batch_size, features] tensor, with a non-trivial affine."""

import torch
import torch.nn as nn


class Model(nn.Module):
    """Applies nn.LayerNorm(features, eps).

    The affine parameters are re-initialised with randn (nn.LayerNorm's default is weight=1, bias=0). With the default
    init a candidate that forgets the weight and bias would be indistinguishable from a correct one, because the
    verifier copies this module's state dict into the candidate.
    """

    def __init__(self, features: int, eps: float = 1e-5):
        super().__init__()
        self.ln = nn.LayerNorm(normalized_shape=features, eps=eps)
        with torch.no_grad():
            self.ln.weight.copy_(torch.randn(features))
            self.ln.bias.copy_(torch.randn(features))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.ln(x)


batch_size = 16
features = 4096
eps = 1e-5


def get_inputs():
    x = torch.randn(batch_size, features)
    return [x]


def get_init_inputs():
    return [features, eps]
