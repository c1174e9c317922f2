"""A patch-whitened VGG-style network: the backbone of the fast CIFAR-10 training recipes.

The first layer is a fixed 2x2 convolution that *whitens* image patches: with
:math:`\\Sigma = V \\operatorname{diag}(\\lambda) V^\\top` the covariance of the (flattened)
2x2 patches of the training images (:math:`d = 4C` values each), its filters are

.. math:: w_k = \\frac{v_k}{\\sqrt{\\lambda_k + \\epsilon}}, \\qquad
    W = [\\,w_1, \\dots, w_d, -w_1, \\dots, -w_d\\,],

so every output channel has unit variance on the training data and the positive and negative
halves survive the following non-linearity. Three groups of (3x3 conv, 2x2 max pool, batch norm,
GELU, 3x3 conv, batch norm, GELU) with widths :math:`w, 4w, 4w` follow. With a 32 x 32 input the
feature map is 3 x 3 (31 -> 15 -> 7 -> 3); the tower's ``max`` pooling reduces it to a vector.

Whitening is a data-dependent initialisation: :meth:`WhitenedVGG.init_from_data` sets it from
a sample of the images the backbone sees (after the tower's input standardisation). Until then
the layer holds an orthonormal basis (unit eigenvalues), so an uninitialised network still works.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from opticsfree.models.pooling import MaxPool2x2

#: :math:`\epsilon` added to the patch-covariance eigenvalues.
WHITEN_EPS = 5e-4
#: Patches used to estimate the covariance (a random subset of all patches of the sample).
WHITEN_MAX_PATCHES = 200_000


def patch_whitening(x: Tensor, patch: int = 2, eps: float = WHITEN_EPS,
                    max_patches: int = WHITEN_MAX_PATCHES, seed: int = 0) -> Tensor:
    """The whitening filters of the ``patch`` x ``patch`` patches of images ``x``.

    Args:
        x: float images (N, C, H, W).
        patch: patch side :math:`p`.
        eps: :math:`\\epsilon` added to the eigenvalues.
        max_patches: covariance from at most this many patches (a seeded random subset).
        seed: seed of that subset.

    Returns:
        float32 filters (2 d, C, p, p), :math:`d = C p^2`: :math:`w_k` then :math:`-w_k`.

    Shape:
        x: (N, C, H, W) with H, W >= p.
    """
    if x.ndim != 4 or min(x.shape[-2:]) < patch:
        raise ValueError(f"expected images (N, C, H, W) of at least {patch}x{patch}, got {tuple(x.shape)}")
    c = x.shape[1]
    cols = F.unfold(x.float(), patch).transpose(1, 2).reshape(-1, c * patch * patch).double()
    if len(cols) > max_patches:
        g = torch.Generator().manual_seed(seed)
        cols = cols[torch.randperm(len(cols), generator=g)[:max_patches]]
    cols = cols - cols.mean(0)
    cov = cols.T @ cols / max(1, len(cols) - 1)
    lam, v = torch.linalg.eigh(cov)
    w = (v / torch.sqrt(lam.clamp_min(0) + eps)).T  # (d, d): row k is w_k
    w = w.reshape(-1, c, patch, patch).float()
    return torch.cat([w, -w])


def conv_bn(c_in: int, c_out: int, pool: bool) -> nn.Sequential:
    """3x3 convolution, an optional 2x2 max pool, batch norm and GELU."""
    layers: list[nn.Module] = [nn.Conv2d(c_in, c_out, 3, padding=1, bias=False)]
    if pool:
        layers.append(MaxPool2x2())  # nn.MaxPool2d(2), faster on the CPU
    layers += [nn.BatchNorm2d(c_out, momentum=0.4), nn.GELU()]
    return nn.Sequential(*layers)


class WhitenedVGG(nn.Module):
    """Fixed 2x2 patch whitening, then three VGG groups of widths ``w, 4w, 4w``.

    Args:
        in_channels: input channels (any positive number).
        width: channels of the first group (default 32: half the width of the fast-CIFAR
            network this follows).

    Shape:
        - input: (N, in_channels, H, W), float, H and W >= 16.
        - output: (N, 4 * width, ((H - 1) // 2 // 2 // 2), ...), 3 x 3 for 32 x 32 input.

    Attributes:
        out_channels: channels of the output feature map.
    """

    def __init__(self, in_channels: int, width: int = 32):
        super().__init__()
        if in_channels < 1 or width < 1:
            raise ValueError(f"in_channels and width must be positive, got {in_channels}, {width}")
        d = in_channels * 4
        self.whiten = nn.Conv2d(in_channels, 2 * d, 2, bias=True)
        self.whiten.weight.requires_grad_(False)
        with torch.no_grad():
            eye = torch.eye(d).reshape(d, in_channels, 2, 2)
            self.whiten.weight.copy_(torch.cat([eye, -eye]))
            self.whiten.bias.zero_()
        widths = (width, 4 * width, 4 * width)
        groups, c = [], 2 * d
        for w in widths:
            groups.append(nn.Sequential(conv_bn(c, w, pool=True), conv_bn(w, w, pool=False)))
            c = w
        self.groups = nn.Sequential(*groups)
        self.out_channels = c
        for m in self.groups.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_in", nonlinearity="relu")

    @torch.no_grad()
    def init_from_data(self, x: Tensor, seed: int = 0) -> None:
        """Set the whitening filters from a sample of input images (see :func:`patch_whitening`).

        Args:
            x: float images (N, C, H, W) as this backbone sees them.
            seed: seed of the patch subset.
        """
        w = patch_whitening(x, 2, seed=seed)
        self.whiten.weight.copy_(w.to(self.whiten.weight))

    def train_whitening_bias(self, trainable: bool) -> None:
        """Train the whitening layer's bias (its filters stay fixed) or freeze it.

        Frozen, the first layer's output no longer depends on a parameter, so the backward
        pass stops at the first 3x3 convolution's weights instead of also computing the
        gradient of its (largest) input map: about 14% of a width-16 training step of 32 x 32
        images on the CPU. The fast CIFAR recipes train the bias for the first few epochs only.
        """
        self.whiten.bias.requires_grad_(trainable)

    def forward(self, x: Tensor) -> Tensor:
        return self.groups(F.gelu(self.whiten(x)))
