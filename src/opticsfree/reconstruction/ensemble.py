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

averaged before the image is rounded to 8 bits. The result is an ordinary MODEL directory:
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
    """The mean of several lensless -> original networks.

    Args:
        members: networks taking the same input and giving outputs of the same shape.

    Shape:
        (N, C, H, W) in [-1, 1] -> (N, C', H, W): :math:`\\frac{1}{K}\\sum_k G_k(y)`, float32.
    """

    def __init__(self, members: Sequence[nn.Module]):
        super().__init__()
        if len(members) < 2:
            raise ValueError(f"an ensemble needs at least 2 members, got {len(members)}")
        self.members = nn.ModuleList(members)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return ensemble_mean([m(x) for m in self.members])


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
