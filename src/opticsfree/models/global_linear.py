"""A learned non-local linear layer: every output pixel sees every input pixel.

A bare sensor spreads each display pixel over the whole capture, so undoing it is non-local; a
stack of 3x3 convolutions needs many layers to see that far. This layer (FlatNet-style, initialised
to the identity) gives a network the global view in one step. The U-Net reconstruction and the
lensless tower of the embedding network (``global_features``) both use it.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class GlobalLinear(nn.Module):
    """A learned non-local linear map: 1x1 channel mixing, then a dense map over pixels.

    .. math::

        z_k = W\\,\\Bigl(\\sum_c m_{kc}\\, x_c\\Bigr) + b, \\qquad W \\in \\mathbb{R}^{P \\times P}

    Args:
        in_channels: input channels.
        features: output maps :math:`k`.
        size: image side (:math:`P = \\mathrm{size}^2`).

    Shape:
        (N, in_channels, size, size) -> (N, features, size, size).
    """

    def __init__(self, in_channels: int, features: int, size: int):
        super().__init__()
        self.size = size
        p = size * size
        self.mix = nn.Conv2d(in_channels, features, 1)
        self.weight = nn.Parameter(torch.eye(p))
        self.bias = nn.Parameter(torch.zeros(p))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[-2:] != (self.size, self.size):
            raise ValueError(f"GlobalLinear was built for {self.size}x{self.size} images, got "
                             f"{tuple(x.shape[-2:])}")
        z = self.mix(x)
        n, k = z.shape[:2]
        z = F.linear(z.reshape(n, k, -1), self.weight, self.bias)
        return z.reshape(n, k, self.size, self.size)
