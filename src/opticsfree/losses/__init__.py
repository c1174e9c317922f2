"""Metric-learning losses: the seed's quadruplet loss, Chen's quadruplet loss, the training
criterion of every ``--loss`` (triplet from pytorch-metric-learning).

The names are loaded on first use (PEP 562), so that :mod:`opticsfree.losses.names` (the loss
registry, read by the command line and the training config) loads without torch; ``LOSSES``
and ``MINING`` are read from the registry when asked for.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from opticsfree.utils.lazy import lazy_getattr

from opticsfree.losses.names import LossSpec, default_mining, loss_spec, register_loss

if TYPE_CHECKING:
    from opticsfree.losses.criterion import Criterion
    from opticsfree.losses.names import LOSSES, MINING
    from opticsfree.losses.quadruplet_chen_loss import ChenQuadrupletLoss, ChenQuadrupletMiner
    from opticsfree.losses.quadruplet_loss import QuadrupletLoss, QuadrupletMiner

__all__ = ["LOSSES", "MINING", "LossSpec", "loss_spec", "register_loss", "Criterion", "default_mining",
           "QuadrupletLoss", "QuadrupletMiner", "ChenQuadrupletLoss", "ChenQuadrupletMiner"]


__getattr__ = lazy_getattr(__name__, __all__, ('names', 'criterion', 'quadruplet_chen_loss', 'quadruplet_loss'))
