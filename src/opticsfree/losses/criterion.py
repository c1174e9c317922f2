"""The training objective of each ``--loss``, computed from a model's outputs.

Online sampling gives a class-balanced batch of paired rows: lensless embeddings
:math:`a_i` and the embeddings :math:`o_i` of the originals that were displayed, with labels
:math:`y_i`; mining happens inside the batch, anchors are lensless and references original.
Tuple sampling (the seed's fixed rows) gives per row the anchor and its positive, close
positive and negative originals; the row itself is the tuple (no mining).
"""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
from pytorch_metric_learning.distances import LpDistance
from pytorch_metric_learning.losses import TripletMarginLoss
from pytorch_metric_learning.miners import BatchHardMiner, TripletMarginMiner
from torch import Tensor

from opticsfree.errors import ConfigError
from opticsfree.losses.dense import batch_all_quadruplet, batch_all_triplet
from opticsfree.losses.names import LOSSES, MINING, default_mining
from opticsfree.losses.quadruplet_chen_loss import ChenQuadrupletLoss, ChenQuadrupletMiner
from opticsfree.losses.quadruplet_loss import QuadrupletLoss, QuadrupletMiner

__all__ = ["LOSSES", "MINING", "Criterion", "default_mining"]


class Criterion:
    """Computes the loss of one batch for a ``--loss`` name.

    Args:
        loss: one of :data:`LOSSES`.
        mining: in-batch mining (see :data:`MINING`); None for the loss's default.
        margin: triplet margin :math:`m` (Euclidean distance on the unit sphere).
        quad_margins: :math:`(m_1, m_2)` of the seed's quadruplet loss.
        chen_margins: :math:`(\\alpha_1, \\alpha_2)` of Chen's quadruplet loss (squared distances).
        ce_weight: weight of the metric term in ``ce+triplet`` (the cross-entropy has weight 1).
        label_smoothing: label smoothing of the cross-entropy.

    Attributes:
        originals_per_tuple: how many original images a seed-style tuple row needs (the
            positive, close positive and negative for ``quadruplet``; positive and negative
            for the triplet losses; none for ``ce``).
    """

    def __init__(self, loss: str, mining: str | None = None, margin: float = 0.2,
                 quad_margins: Sequence[float] = (0.05, 0.2), chen_margins: Sequence[float] = (0.4, 0.2),
                 ce_weight: float = 1.0, label_smoothing: float = 0.0):
        if loss not in LOSSES:
            raise ConfigError(f"loss {loss!r}: expected one of {', '.join(LOSSES)}")
        mining = mining or default_mining(loss)
        if mining not in MINING[loss]:
            raise ConfigError(f"mining {mining!r} is not available for loss {loss!r} "
                              f"(expected one of {', '.join(MINING[loss])})")
        self.loss, self.mining = loss, mining
        self.margin = float(margin)
        self.quad_margins = (float(quad_margins[0]), float(quad_margins[1]))
        #: use the dense batch-all path (:mod:`opticsfree.losses.dense`) for ``mining="all"``
        self.fast = True
        self.ce_weight = float(ce_weight)
        self.label_smoothing = float(label_smoothing)
        self.metric = None
        self.miner = None
        if loss in ("triplet", "ce+triplet"):
            self.metric = TripletMarginLoss(margin=margin, distance=LpDistance())
            if mining == "semihard":
                self.miner = TripletMarginMiner(margin=margin, type_of_triplets="semihard",
                                                distance=LpDistance())
            elif mining == "hard":
                self.miner = BatchHardMiner(distance=LpDistance())
        elif loss == "quadruplet":
            m1, m2 = quad_margins
            self.metric = QuadrupletLoss(margin_close=m1, margin=m2)
            self.miner = QuadrupletMiner(mining, margin_close=m1, margin=m2, distance=LpDistance())
        elif loss == "quadruplet-chen":
            a1, a2 = chen_margins
            self.metric = ChenQuadrupletLoss(alpha1=a1, alpha2=a2)
            self.miner = ChenQuadrupletMiner(mining, distance=LpDistance())
        self.originals_per_tuple = {"quadruplet": 3, "quadruplet-chen": 0, "ce": 0}.get(loss, 2)

    @property
    def uses_head(self) -> bool:
        """True for the losses with a cross-entropy term (the model needs a classifier head)."""
        return self.loss in ("ce", "ce+triplet")

    @property
    def uses_originals(self) -> bool:
        """False for ``ce`` (only the lensless tower and head are trained)."""
        return self.loss != "ce"

    def _ce(self, logits: Tensor | None, labels: Tensor) -> Tensor:
        if logits is None:
            raise ValueError("the model has no classifier head")
        return F.cross_entropy(logits.float(), labels, label_smoothing=self.label_smoothing)

    def _combine(self, metric: Tensor | None, logits: Tensor | None, labels: Tensor) -> Tensor:
        if self.loss == "ce":
            return self._ce(logits, labels)
        if self.loss == "ce+triplet":
            return self._ce(logits, labels) + self.ce_weight * metric
        return metric

    def online(self, anchors: Tensor | None, originals: Tensor | None, labels: Tensor,
               logits: Tensor | None = None) -> Tensor:
        """Loss of a class-balanced batch with in-batch mining.

        Args:
            anchors: (B, D) lensless embeddings (unused for ``ce``).
            originals: (B, D) embeddings of the rows' originals (row ``i`` is the original that
                was displayed for capture ``i``); None for ``ce``.
            labels: (B,) class labels.
            logits: (B, n_classes) for the losses with a cross-entropy term.

        Returns:
            The scalar loss.
        """
        metric = None
        if self.metric is not None:
            a, o = anchors.float(), originals.float()
            # A distinct tensor for the reference labels: PML drops the diagonal (i == j) from
            # the positives when ``ref_labels is labels``, and here j == i is the anchor's own
            # original, the most important positive.
            ref_labels = labels.clone()
            if self.fast and self.mining == "all":
                # Same value and gradient as the PML path below, much faster on balanced batches.
                if self.loss == "quadruplet":
                    metric = batch_all_quadruplet(a, o, labels, ref_labels, *self.quad_margins)
                else:
                    metric = batch_all_triplet(a, o, labels, ref_labels, self.margin)
            if metric is None:
                idx = self.miner(a, labels, o, ref_labels) if self.miner is not None else None
                metric = self.metric(a, labels, idx, o, ref_labels)
        return self._combine(metric, logits, labels)

    def tuples(self, anchors: Tensor | None, originals: Sequence[Tensor], labels: Tensor,
               negative_labels: Tensor, logits: Tensor | None = None) -> Tensor:
        """Loss of a batch of the seed's fixed tuples (no mining: each row is one tuple).

        Args:
            anchors: (B, D) lensless embeddings.
            originals: ``[positive, negative]`` (triplet losses) or ``[positive, close
                positive, negative]`` (quadruplet) embeddings, each (B, D); empty for ``ce``.
            labels: (B,) anchor labels.
            negative_labels: (B,) labels of the negatives.
            logits: (B, n_classes) for the losses with a cross-entropy term.

        Returns:
            The scalar loss.
        """
        if self.loss == "quadruplet-chen":
            raise ConfigError("loss quadruplet-chen needs --sampling online (seed tuples have no "
                              "second negative)")
        metric = None
        if self.metric is not None:
            a = anchors.float()
            b = len(a)
            ar = torch.arange(b, device=a.device)
            ref = torch.cat([o.float() for o in originals])
            if self.loss == "quadruplet":
                ref_labels = torch.cat([labels, labels, negative_labels])
                idx = (ar, ar, ar + b, ar + 2 * b)
            else:
                ref_labels = torch.cat([labels, negative_labels])
                idx = (ar, ar, ar + b)
            metric = self.metric(a, labels, idx, ref, ref_labels)
        return self._combine(metric, logits, labels)
