"""Chen et al. (2017) quadruplet loss, "Beyond triplet loss", with a shared first negative.

For a lensless anchor :math:`a`, a same-class original :math:`p`, an original :math:`n_1` of
another class and an original :math:`n_2` of a class different from both,

.. math::

    \\ell = [d(a,p)^2 - d(a,n_1)^2 + \\alpha_1]_+ + [d(a,p)^2 - d(n_1,n_2)^2 + \\alpha_2]_+ ,

with :math:`d` the Euclidean distance between L2-normalised embeddings (so :math:`d^2 \\in
[0, 4]`). The second term pushes the anchor's positive distance below distances between
*other* pairs of classes, which tightens classes globally (Chen et al. use
:math:`\\alpha_2 < \\alpha_1`). The default distance is :class:`LpDistance` with ``power=2``
(squared Euclidean), so the loss uses the distance object's values directly.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from pytorch_metric_learning.distances import LpDistance
from pytorch_metric_learning.losses import BaseMetricLossFunction
from pytorch_metric_learning.miners import BaseMiner
from pytorch_metric_learning.reducers import AvgNonZeroReducer
from torch import Tensor

from opticsfree.losses.quadruplet_loss import IndexTuple, _check_paired, _empty
from opticsfree.losses.term import LossSettings, MetricTerm


def hardest_second_negative(ref_dist: Tensor, ref_labels: Tensor, anchor_label: Tensor,
                            inverted: bool = False) -> tuple[Tensor, Tensor]:
    """For each anchor class and each reference :math:`n_1`, the nearest valid :math:`n_2`.

    Args:
        ref_dist: (M, M) distances between references.
        ref_labels: (M,) reference labels.
        anchor_label: (K,) anchor class per row of the output.
        inverted: distances are similarities (larger = nearer).

    Returns:
        ``(index, valid)``, both (K, M): the index of the nearest reference whose class differs
        from the anchor's and from :math:`n_1`'s, and whether one exists.
    """
    classes, inv = torch.unique(anchor_label, return_inverse=True)
    big = torch.finfo(ref_dist.dtype).max
    diff = ref_labels[:, None] != ref_labels[None, :]                                # (M, M)
    mask = diff[None] & (ref_labels[None, None, :] != classes[:, None, None])       # (C, M, M)
    if inverted:
        idx = ref_dist[None].masked_fill(~mask, -big).argmax(2)
    else:
        idx = ref_dist[None].masked_fill(~mask, big).argmin(2)
    return idx[inv], mask.any(2)[inv]


class ChenQuadrupletMiner(BaseMiner):
    """Mine (anchor, positive, first negative, second negative) tuples in a batch.

    Positives are all same-class references (class level, like the triplet loss), so the
    references need not be paired with the anchors. :math:`n_2` is always the reference
    nearest to :math:`n_1` among the classes other than the anchor's and :math:`n_1`'s.

    Args:
        type_of_tuples: ``"hard"`` (Chen et al.'s batch-hard mining): per anchor the farthest
            positive and the nearest first negative; ``"all"``: every (anchor, positive, first
            negative) combination.
        **kwargs: passed to PML's :class:`BaseMiner` (e.g. ``distance``).

    Returns (from ``forward(embeddings, labels, ref_emb, ref_labels)``):
        ``(a, p, n1, n2)`` int64 index tensors; ``a`` into ``embeddings``, the rest into
        ``ref_emb``.
    """

    def __init__(self, type_of_tuples: str = "hard", **kwargs):
        super().__init__(**kwargs)
        if type_of_tuples not in ("all", "hard"):
            raise ValueError(f"type_of_tuples must be 'all' or 'hard', got {type_of_tuples!r}")
        self.type_of_tuples = type_of_tuples

    def mine(self, embeddings: Tensor, labels: Tensor, ref_emb: Tensor, ref_labels: Tensor) -> IndexTuple:
        _check_paired(embeddings, labels, ref_emb, ref_labels, "ChenQuadrupletMiner")
        dev = embeddings.device
        inv = self.distance.is_inverted
        mat = self.distance(embeddings, ref_emb)
        rr = self.distance(ref_emb, ref_emb)
        n2_idx, n2_ok = hardest_second_negative(rr, ref_labels, labels, inv)        # (N, M)
        pos = labels[:, None] == ref_labels[None, :]
        neg = ~pos & n2_ok
        if self.type_of_tuples == "all":
            a, p, n1 = torch.where(pos[:, :, None] & neg[:, None, :])
            return a, p, n1, n2_idx[a, n1]
        keep = pos.any(1) & neg.any(1)
        if not keep.any():
            return _empty(dev)
        big = torch.finfo(mat.dtype).max
        far = (lambda m, k: m.masked_fill(~k, big).argmin(1)) if inv else (lambda m, k: m.masked_fill(~k, -big).argmax(1))
        near = (lambda m, k: m.masked_fill(~k, -big).argmax(1)) if inv else (lambda m, k: m.masked_fill(~k, big).argmin(1))
        p = far(mat, pos)
        n1 = near(mat, neg)
        a = torch.arange(len(embeddings), device=dev)
        return a[keep], p[keep], n1[keep], n2_idx[a, n1][keep]


class ChenQuadrupletLoss(BaseMetricLossFunction):
    """Chen et al.'s quadruplet loss (see the module docstring) as a PML loss function.

    Args:
        alpha1: :math:`\\alpha_1` (default 0.4, on squared distances).
        alpha2: :math:`\\alpha_2` (default 0.2).
        **kwargs: passed to PML's :class:`BaseMetricLossFunction`; the default ``distance`` is
            squared Euclidean (``LpDistance(power=2)``), the default reducer
            :class:`AvgNonZeroReducer`.

    ``forward(embeddings, labels, indices_tuple, ref_emb, ref_labels)``: ``indices_tuple`` is
    ``(a, p, n1, n2)``; when None, :class:`ChenQuadrupletMiner` ``"hard"`` mines it.
    """

    def __init__(self, alpha1: float = 0.4, alpha2: float = 0.2, **kwargs):
        super().__init__(**kwargs)
        self.alpha1 = float(alpha1)
        self.alpha2 = float(alpha2)
        self.add_to_recordable_attributes(list_of_names=["alpha1", "alpha2"], is_stat=False)

    def compute_loss(self, embeddings, labels, indices_tuple, ref_emb, ref_labels):
        if indices_tuple is None:
            indices_tuple = ChenQuadrupletMiner("hard", distance=self.distance)(
                embeddings, labels, ref_emb, ref_labels)
        if len(indices_tuple) != 4:
            raise ValueError("ChenQuadrupletLoss needs (anchor, positive, negative1, negative2) indices")
        a, p, n1, n2 = indices_tuple
        if len(a) == 0:
            return self.zero_losses()
        mat = self.distance(embeddings, ref_emb)
        rr = self.distance(ref_emb, ref_emb)
        mg = self.distance.margin
        d_ap = mat[a, p]
        losses = F.relu(mg(d_ap, mat[a, n1]) + self.alpha1) + F.relu(mg(d_ap, rr[n1, n2]) + self.alpha2)
        return {"loss": {"losses": losses, "indices": a, "reduction_type": "element"}}

    def get_default_reducer(self):
        return AvgNonZeroReducer()

    def get_default_distance(self):
        return LpDistance(normalize_embeddings=True, p=2, power=2)


class ChenQuadrupletTerm(MetricTerm):
    """The metric term of ``--loss quadruplet-chen``: :class:`ChenQuadrupletLoss` with margins
    ``settings.chen_margins``, fed by :class:`ChenQuadrupletMiner` (``hard`` or ``all``);
    online sampling only (the seed's tuples have no second negative)."""

    def __init__(self, mining: str, settings: LossSettings):
        super().__init__(mining, settings)
        a1, a2 = settings.chen_margins
        self.metric = ChenQuadrupletLoss(alpha1=a1, alpha2=a2)
        self.miner = ChenQuadrupletMiner(mining, distance=LpDistance())

