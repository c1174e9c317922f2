"""A physics-informed front end: a learned affine map from a capture back to the display grid.

A bare sensor mixes every display pixel into every sensor pixel, so the first thing the
lensless-imaging field does with a capture is invert that mixing (a learned inverse followed by
a network). This layer is that inverse: an affine map of the flattened capture
:math:`y \\in [0, 1]^{C_y H_y W_y}` to an image on the display grid,

.. math:: \\hat x = A\\,y + c, \\qquad A \\in \\mathbb{R}^{C_x H W \\times C_y H_y W_y},

initialised from the camera's regularised inverse and trained with the rest of the network.
Two initialisations:

- from a known transfer matrix :math:`H` (a linear camera :math:`y = H x`): the Tikhonov inverse
  :math:`A = (H^\\top H + \\lambda I)^{-1} H^\\top`, :math:`c = 0` (:func:`regularised_inverse`);
- from data: the ridge estimator from captures to originals
  (:func:`opticsfree.captures.linear.fit_affine`, the estimator of ``camera info``), which also
  absorbs what :math:`H` alone does not model (auto-exposure, gamma, sensor offsets).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn


def regularised_inverse(h: Tensor, lam: float) -> Tensor:
    """The Tikhonov inverse :math:`(H^\\top H + \\lambda I)^{-1} H^\\top` of a transfer matrix.

    Args:
        h: transfer matrix (M, P) from P scene values to M capture values.
        lam: :math:`\\lambda \\ge 0` (0 only for a full-column-rank :math:`H`).

    Returns:
        float64 (P, M).
    """
    if h.ndim != 2:
        raise ValueError(f"expected a transfer matrix (M, P), got shape {tuple(h.shape)}")
    if lam < 0:
        raise ValueError(f"lam: must be >= 0, got {lam}")
    h = h.double()
    gram = h.T @ h + lam * torch.eye(h.shape[1], dtype=torch.float64)
    return torch.linalg.solve(gram, h.T)


class InverseFrontEnd(nn.Module):
    """Affine map from a capture to the display grid, :math:`\\hat x = A y + c`.

    Args:
        in_channels: capture channels :math:`C_y`.
        out_channels: channels of the display image :math:`C_x`.
        size: side of both the capture and the output (the capture is resized to the model's
            input size before this layer).

    Shape:
        (N, in_channels, size, size) float in [0, 1] -> (N, out_channels, size, size).
    """

    def __init__(self, in_channels: int, out_channels: int, size: int):
        super().__init__()
        self.in_channels, self.out_channels, self.size = int(in_channels), int(out_channels), int(size)
        din, dout = self.in_channels * size * size, self.out_channels * size * size
        self.weight = nn.Parameter(torch.zeros(dout, din))
        self.bias = nn.Parameter(torch.zeros(dout))
        if din == dout:  # identity until initialised
            with torch.no_grad():
                self.weight.copy_(torch.eye(din))

    @torch.no_grad()
    def set_affine(self, a: Tensor, c: Tensor | None = None) -> None:
        """Set :math:`A` (out_dim, in_dim) and :math:`c` (out_dim,) (None: zero)."""
        if tuple(a.shape) != tuple(self.weight.shape):
            raise ValueError(f"front end expects A of shape {tuple(self.weight.shape)}, got {tuple(a.shape)}")
        self.weight.copy_(a.to(self.weight))
        self.bias.copy_(torch.zeros_like(self.bias) if c is None else c.reshape(-1).to(self.bias))

    def forward(self, y: Tensor) -> Tensor:
        if y.ndim != 4 or y.shape[1:] != (self.in_channels, self.size, self.size):
            raise ValueError(f"front end expects captures (N, {self.in_channels}, {self.size}, {self.size}), "
                             f"got {tuple(y.shape)}")
        n = y.shape[0]
        # float32 even under bf16 autocast: an inverse's large, cancelling weights need it
        with torch.autocast(y.device.type, enabled=False):
            x = F.linear(y.float().reshape(n, -1), self.weight.float(), self.bias.float())
        return x.reshape(n, self.out_channels, self.size, self.size)
