"""The metric term of a loss: what a loss's module provides to the criterion.

A registered loss (:mod:`opticsfree.losses.names`) names a :class:`MetricTerm` subclass; the
criterion builds it as ``Class(mining, settings)`` and adds the cross-entropy of the losses
with a classifier head. A term holds a pytorch-metric-learning style loss (``metric``, called
as ``metric(anchors, labels, indices, references, reference_labels)``) and, for in-batch
mining, a miner (``miner``; None: the loss enumerates its own tuples); :meth:`MetricTerm.dense`
may give the same value faster for ``mining="all"``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import torch
from torch import Tensor


@dataclass(frozen=True)
class LossSettings:
    """The loss hyperparameters of a training run (the TrainConfig fields of the same names).

    Attributes:
        margin: triplet margin :math:`m` (Euclidean distance on the unit sphere).
        quad_margins: :math:`(m_1, m_2)` of the seed's quadruplet loss.
        chen_margins: :math:`(\\alpha_1, \\alpha_2)` of Chen's quadruplet loss.
    """

    margin: float = 0.2
    quad_margins: Sequence[float] = (0.05, 0.2)
    chen_margins: Sequence[float] = (0.4, 0.2)


class MetricTerm:
    """Base class of a loss's metric term.

    Subclasses set :attr:`metric` (and :attr:`miner`) in ``__init__(mining, settings)``, and
    may override :meth:`dense`.

    Args:
        mining: the in-batch mining (one of the loss's registered strategies).
        settings: the run's loss hyperparameters.
    """

    metric: Any = None
    miner: Any = None

    def __init__(self, mining: str, settings: LossSettings):
        self.mining = mining
        self.settings = settings

    def dense(self, anchors: Tensor, originals: Tensor, labels: Tensor, ref_labels: Tensor) -> Tensor | None:
        """The ``mining="all"`` value computed densely (None: not available for this batch,
        the miner and :attr:`metric` compute it)."""
        return None

    def online(self, anchors: Tensor, originals: Tensor, labels: Tensor, ref_labels: Tensor,
               fast: bool = True) -> Tensor:
        """The term of a class-balanced batch, mined in the batch.

        Args:
            anchors: (B, D) float lensless embeddings.
            originals: (B, D) float embeddings of the rows' originals.
            labels: (B,) labels of the anchors.
            ref_labels: (B,) labels of the originals (a distinct tensor equal to ``labels``).
            fast: use :meth:`dense` for ``mining="all"`` when it gives a value.
        """
        if fast and self.mining == "all":
            value = self.dense(anchors, originals, labels, ref_labels)
            if value is not None:
                return value
        idx = self.miner(anchors, labels, originals, ref_labels) if self.miner is not None else None
        return self.metric(anchors, labels, idx, originals, ref_labels)

    def tuples(self, anchors: Tensor, originals: Sequence[Tensor], labels: Tensor,
               negative_labels: Tensor) -> Tensor:
        """The term of a batch of the seed's fixed rows: ``originals`` are the positives, then
        the negative (each (B, D) float); row ``i`` is the tuple of anchor ``i``."""
        b = len(anchors)
        ar = torch.arange(b, device=anchors.device)
        ref = torch.cat(list(originals))
        ref_labels = torch.cat([labels] * (len(originals) - 1) + [negative_labels])
        idx = (ar, *(ar + i * b for i in range(len(originals))))
        return self.metric(anchors, labels, idx, ref, ref_labels)
