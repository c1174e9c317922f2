"""The training objective of each ``--loss``, computed from a model's outputs.

Online sampling gives a class-balanced batch of paired rows: lensless embeddings
:math:`a_i` and the embeddings :math:`o_i` of the originals that were displayed, with labels
:math:`y_i`; mining happens inside the batch, anchors are lensless and references original.
Tuple sampling (the seed's fixed rows) gives per row the anchor and its positive, close
positive and negative originals; the row itself is the tuple (no mining).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any, Sequence

import torch.nn.functional as F
from torch import Tensor

from opticsfree.errors import ConfigError
from opticsfree.losses import names
from opticsfree.losses.names import LossSpec, default_mining, loss_spec
from opticsfree.losses.term import LossSettings, MetricTerm

if TYPE_CHECKING:
    from opticsfree.losses.names import LOSSES, MINING

__all__ = ["LOSSES", "MINING", "Criterion", "default_mining", "build_term"]


def __getattr__(name: str) -> Any:
    # LOSSES and MINING: the registry's, read when asked for
    if name in ("LOSSES", "MINING"):
        return getattr(names, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def build_term(spec: LossSpec, mining: str, settings: LossSettings) -> MetricTerm | None:
    """The metric term of a registered loss (None for a loss without one): the class its
    entry names (``"module:Class"``), imported now, built as ``Class(mining, settings)``."""
    if spec.term is None:
        return None
    module, _, name = spec.term.partition(":")
    return getattr(importlib.import_module(module), name)(mining, settings)


class Criterion:
    """Computes the loss of one batch for a ``--loss`` name.

    The loss's entry in the registry (:func:`opticsfree.losses.names.loss_spec`) says what it
    is made of: its metric term (:func:`build_term`), and whether a cross-entropy term of the
    classifier head is added (``uses_head``) or is all of it (``head_only``).

    Args:
        loss: one of :data:`LOSSES`.
        mining: in-batch mining (see :data:`MINING`); None for the loss's default.
        margin: triplet margin :math:`m` (Euclidean distance on the unit sphere).
        quad_margins: :math:`(m_1, m_2)` of the seed's quadruplet loss.
        chen_margins: :math:`(\\alpha_1, \\alpha_2)` of Chen's quadruplet loss (squared distances).
        ce_weight: weight of the metric term of a loss with a head (``ce+triplet``; the
            cross-entropy has weight 1).
        label_smoothing: label smoothing of the cross-entropy.

    Attributes:
        spec: the loss's registry entry.
        term: its metric term (None for ``ce``).
        originals_per_tuple: how many original images a seed-style tuple row needs (the
            positive, close positive and negative for ``quadruplet``; positive and negative
            for the triplet losses; none for ``ce``).
    """

    def __init__(self, loss: str, mining: str | None = None, margin: float = 0.2,
                 quad_margins: Sequence[float] = (0.05, 0.2), chen_margins: Sequence[float] = (0.4, 0.2),
                 ce_weight: float = 1.0, label_smoothing: float = 0.0):
        spec = loss_spec(loss)
        mining = mining or spec.default_mining
        if mining not in spec.mining:
            raise ConfigError(f"mining {mining!r} is not available for loss {loss!r} "
                              f"(expected one of {', '.join(spec.mining)})")
        self.spec = spec
        self.loss, self.mining = loss, mining
        self.margin = float(margin)
        self.quad_margins = (float(quad_margins[0]), float(quad_margins[1]))
        #: use the dense batch-all path (:mod:`opticsfree.losses.dense`) for ``mining="all"``
        self.fast = True
        self.ce_weight = float(ce_weight)
        self.label_smoothing = float(label_smoothing)
        self.term = build_term(spec, mining, LossSettings(margin, quad_margins, chen_margins))
        self.originals_per_tuple = spec.tuple_originals

    @property
    def uses_head(self) -> bool:
        """True for the losses with a cross-entropy term (the model needs a classifier head)."""
        return self.spec.uses_head

    @property
    def uses_originals(self) -> bool:
        """False for a head-only loss (``ce``: only the lensless tower and head are trained)."""
        return self.spec.uses_originals

    def _ce(self, logits: Tensor | None, labels: Tensor) -> Tensor:
        if logits is None:
            raise ValueError("the model has no classifier head")
        return F.cross_entropy(logits.float(), labels, label_smoothing=self.label_smoothing)

    def _combine(self, metric: Tensor | None, logits: Tensor | None, labels: Tensor) -> Tensor:
        if self.term is None:  # cross-entropy only
            return self._ce(logits, labels)
        if self.spec.uses_head:
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
        if self.term is not None:
            # A distinct tensor for the reference labels: PML drops the diagonal (i == j) from
            # the positives when ``ref_labels is labels``, and here j == i is the anchor's own
            # original, the most important positive.
            metric = self.term.online(anchors.float(), originals.float(), labels, labels.clone(), self.fast)
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
        if self.spec.online_only:
            raise ConfigError(f"loss {self.loss} needs --sampling online ({self.spec.online_only})")
        metric = None
        if self.term is not None:
            metric = self.term.tuples(anchors.float(), [o.float() for o in originals], labels, negative_labels)
        return self._combine(metric, logits, labels)
