"""An ensemble of reconstruction networks (the network of ``opticsfree reconstruct ensemble``).

Members trained from one command with ``--set member=K`` (``K = 0, 1, ...``; other initial
weights, batch order and augmented copies, the same validation hold-out) make different errors
on the same capture; their mean is a better estimate of the scene than any one of them (a deep
ensemble; for a squared error the ensemble's error is the members' mean error minus their
spread around it, so it is never worse than the average member).

For captures :math:`y` and members :math:`G_1, \\dots, G_K` (each a lensless -> original network
with outputs in [-1, 1]):

.. math::

    \\hat x = \\frac{1}{K} \\sum_{k=1}^{K} G_k(y)

averaged before the image is rounded to 8 bits.

Test-time mirroring (``mirror``, ``reconstruct ensemble --mirror``) also feeds every member the
left-right mirrored capture :math:`F y` and mirrors its output back (for members with a Tikhonov
front end, ``cyclegan`` with ``front_end``, the input mirrored is the network's: the Tikhonov
reconstruction of the capture):

.. math::

    \\hat x = \\frac{1}{2K} \\sum_{k=1}^{K} \\bigl(G_k(y) + F\\,G_k(F y)\\bigr)

with :math:`F` the left-right flip of the image grid. :math:`F G_k(F y)` estimates the scene only
as well as the camera is left-right symmetric: the capture of the mirrored scene is
:math:`H F x`, the mirrored capture :math:`F H x`, and the two agree when :math:`F H F = H` (a
bare sensor centred on the display; a coded mask or an off-centre sensor breaks it). Whether it
helps is therefore a property of the camera, measured on the validation hold-out by
``reconstruct ensemble`` (it reports the mean with and without mirroring); with ``mirror`` a
single model is allowed (:math:`K = 1`). The result is an ordinary MODEL directory:
``reconstruct apply``, the derived-set classification and the run bundles load it like a
trained model (``model.pt`` holds the members' weights, ``config.json`` the members, their
hold-out and the validation quality of each member and of the ensemble, measured on the shared
hold-out's scenes; :mod:`.combine` makes it).
"""

from __future__ import annotations

from typing import Sequence

import torch
from torch import nn


class EnsembleNet(nn.Module):
    """The mean of several lensless -> original networks (and of their mirrored use).

    Args:
        members: networks taking the same input and giving outputs of the same shape.
        mirror: also average :math:`F\\,G_k(F y)` (left-right flips; see the module doc). One
            member is then enough.

    Shape:
        (N, C, H, W) in [-1, 1] -> (N, C', H, W): :math:`\\frac{1}{K}\\sum_k G_k(y)`, or with
        ``mirror`` :math:`\\frac{1}{2K}\\sum_k (G_k(y) + F G_k(F y))`, float32.
    """

    def __init__(self, members: Sequence[nn.Module], mirror: bool = False):
        super().__init__()
        need = 1 if mirror else 2
        if len(members) < need:
            raise ValueError(f"an ensemble needs at least {need} member{'s' if need > 1 else ''}"
                             f"{' (or one with mirror)' if not mirror else ''}, got {len(members)}")
        self.members = nn.ModuleList(members)
        self.mirror = bool(mirror)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        outputs = [m(x) for m in self.members]
        if self.mirror:
            xm = x.flip(-1)
            outputs += [m(xm).flip(-1) for m in self.members]
        return ensemble_mean(outputs)


def ensemble_mean(outputs: Sequence[torch.Tensor]) -> torch.Tensor:
    """:math:`\\frac{1}{K}\\sum_k G_k(y)` of the members' outputs, in float32.

    Raises:
        ValueError: no outputs, or outputs of different shapes.
    """
    if not outputs:
        raise ValueError("no member outputs to average")
    shapes = {tuple(o.shape) for o in outputs}
    if len(shapes) > 1:
        raise ValueError(f"member outputs differ in shape: {sorted(shapes)}")
    return torch.stack([o.float() for o in outputs]).mean(0)
