"""PatchGAN discriminator (pix2pix / CycleGAN), scaled to the image size.

The discriminator classifies overlapping patches as real or fake: a stack of 4x4 convolutions,
``n_layers`` of them with stride 2, then two with stride 1, giving an (N, 1, h, w) map of
scores. Each score sees a patch of side :func:`receptive_field` (70 px for ``n_layers = 3``,
the CycleGAN choice for 256 px images). :func:`patch_layers_for` picks ``n_layers`` so that the
patch is about the whole image for 32 px images and about a quarter of it for larger ones:
8-16 px: 1 layer (16 px patches), 32 px: 2 (34 px), 64 px: 3 (70 px), 128+ px: 4 (142 px).
"""

from __future__ import annotations

import math

import torch
from torch import nn

from opticsfree.reconstruction.generators import norm_layer


def receptive_field(n_layers: int) -> int:
    """Side (px) of the input patch each output score depends on.

    With kernels ``k = 4``, the receptive field obeys ``r <- r + (k - 1) * j`` and ``j <- j * s``
    over the layers (``j``: product of strides so far), starting at ``r = 1, j = 1``.
    """
    r, j = 1, 1
    for s in [2] * n_layers + [1, 1]:
        r += 3 * j
        j *= s
    return r


def patch_layers_for(size: int) -> int:
    """Stride-2 layers of the PatchGAN for images of side ``size`` (1..4)."""
    return int(min(4, max(1, int(math.log2(max(size, 2))) - 3)))


def default_discriminator_width(size: int) -> int:
    """Default filters ``ndf`` of the PatchGAN's first layer for images of side ``size``: 16 up to
    32 px (15x fewer multiply-adds than 64 with 2 stride-2 layers), 64 (CycleGAN) above."""
    return 16 if size <= 32 else 64


class PatchDiscriminator(nn.Module):
    """PatchGAN: ``C64-C128-C256-C512`` style stack with LeakyReLU(0.2).

    Args:
        in_channels: channels of the judged images.
        width: filters of the first layer (``ndf``), doubled per layer up to ``8 * width``.
        n_layers: stride-2 layers (see :func:`patch_layers_for`).
        norm: normalisation (not applied to the first layer).

    Shape:
        (N, in_channels, H, W) -> (N, 1, h, w) raw scores (least-squares GAN: no sigmoid).
    """

    def __init__(self, in_channels: int, width: int = 64, n_layers: int = 3, norm: str = "instance"):
        super().__init__()
        if n_layers < 1:
            raise ValueError(f"n_layers must be >= 1, got {n_layers}")
        self.in_channels, self.n_layers = in_channels, n_layers
        layers: list[nn.Module] = [nn.Conv2d(in_channels, width, 4, stride=2, padding=1),
                                   nn.LeakyReLU(0.2, inplace=True)]
        ch = width
        for n in range(1, n_layers):
            nxt = width * min(2 ** n, 8)
            layers += [nn.Conv2d(ch, nxt, 4, stride=2, padding=1), norm_layer(norm, nxt),
                       nn.LeakyReLU(0.2, inplace=True)]
            ch = nxt
        nxt = width * min(2 ** n_layers, 8)
        layers += [nn.Conv2d(ch, nxt, 4, stride=1, padding=1), norm_layer(norm, nxt),
                   nn.LeakyReLU(0.2, inplace=True), nn.Conv2d(nxt, 1, 4, stride=1, padding=1)]
        self.model = nn.Sequential(*layers)

    @property
    def patch_size(self) -> int:
        """Receptive field of one output score (px)."""
        return receptive_field(self.n_layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim != 4 or x.shape[1] != self.in_channels:
            raise ValueError(f"expected (N, {self.in_channels}, H, W), got {tuple(x.shape)}")
        if min(x.shape[-2:]) // 2 ** self.n_layers < 3:
            raise ValueError(f"images of side {min(x.shape[-2:])} are too small for a PatchGAN with "
                             f"{self.n_layers} stride-2 layers")
        return self.model(x)
