"""The triplet loss (pytorch-metric-learning's :class:`TripletMarginLoss` on Euclidean
distances), the metric term of ``triplet`` and ``ce+triplet``:

.. math:: \\ell(a, p, n) = [d(a,p) - d(a,n) + m]_+ ,

averaged over the triplets with a non-zero loss. Mining: ``all`` (every valid triplet; the
dense path of :mod:`opticsfree.losses.dense` on class-balanced batches), ``semihard``
(PML's :class:`TripletMarginMiner`), ``hard`` (:class:`BatchHardMiner`).
"""

from __future__ import annotations

from pytorch_metric_learning.distances import LpDistance
from pytorch_metric_learning.losses import TripletMarginLoss
from pytorch_metric_learning.miners import BatchHardMiner, TripletMarginMiner
from torch import Tensor

from opticsfree.losses.dense import batch_all_triplet
from opticsfree.losses.term import LossSettings, MetricTerm


class TripletTerm(MetricTerm):
    """The triplet term, margin ``settings.margin``."""

    def __init__(self, mining: str, settings: LossSettings):
        super().__init__(mining, settings)
        margin = settings.margin
        self.metric = TripletMarginLoss(margin=margin, distance=LpDistance())
        if mining == "semihard":
            self.miner = TripletMarginMiner(margin=margin, type_of_triplets="semihard", distance=LpDistance())
        elif mining == "hard":
            self.miner = BatchHardMiner(distance=LpDistance())

    def dense(self, anchors: Tensor, originals: Tensor, labels: Tensor, ref_labels: Tensor) -> Tensor | None:
        return batch_all_triplet(anchors, originals, labels, ref_labels, float(self.settings.margin))
