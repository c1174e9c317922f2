"""Metric-learning losses: the seed's quadruplet loss, Chen's quadruplet loss, the training
criterion of every ``--loss`` (triplet from pytorch-metric-learning).

The names are loaded on first use (PEP 562), so that :mod:`opticsfree.losses.names` (the loss
and mining names, read by the command line and the training config) loads without torch.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from opticsfree.losses.names import LOSSES, MINING, default_mining

if TYPE_CHECKING:
    from opticsfree.losses.criterion import Criterion
    from opticsfree.losses.quadruplet_chen_loss import ChenQuadrupletLoss, ChenQuadrupletMiner
    from opticsfree.losses.quadruplet_loss import QuadrupletLoss, QuadrupletMiner

__all__ = ["LOSSES", "MINING", "Criterion", "default_mining", "QuadrupletLoss", "QuadrupletMiner",
           "ChenQuadrupletLoss", "ChenQuadrupletMiner"]


def __getattr__(name: str) -> Any:
    if name not in __all__:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    from opticsfree.losses import criterion, quadruplet_chen_loss, quadruplet_loss

    for module in (criterion, quadruplet_chen_loss, quadruplet_loss):
        if hasattr(module, name):
            return getattr(module, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
