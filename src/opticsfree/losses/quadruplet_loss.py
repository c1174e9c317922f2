"""The seed's quadruplet loss: rank own original, close positive and negative.

For a lensless anchor :math:`a`, its own original :math:`p`, another original of the same
class :math:`c` ("close positive") and an original of another class :math:`n`,

.. math::

    \\ell(a, p, c, n) = [d(a,p) - d(a,c) + m_1]_+ + [d(a,c) - d(a,n) + m_2]_+,

with :math:`d` the Euclidean distance between L2-normalised embeddings: the anchor should be
closest to its own original, then to its class, then to everything else. Written as a
pytorch-metric-learning loss (any PML distance and reducer; default :class:`LpDistance` and
:class:`AvgNonZeroReducer`: the mean over the tuples with a non-zero loss) fed by
:class:`QuadrupletMiner`, or by explicit index tuples (the seed's fixed rows).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from pytorch_metric_learning.distances import LpDistance
from pytorch_metric_learning.losses import BaseMetricLossFunction
from pytorch_metric_learning.miners import BaseMiner
from pytorch_metric_learning.reducers import AvgNonZeroReducer
from torch import Tensor

from opticsfree.losses.dense import batch_all_quadruplet
from opticsfree.losses.term import LossSettings, MetricTerm

IndexTuple = tuple[Tensor, Tensor, Tensor, Tensor]


def _empty(device: torch.device) -> IndexTuple:
    e = torch.empty(0, dtype=torch.long, device=device)
    return e, e, e, e


def _check_paired(embeddings: Tensor, labels: Tensor | None, ref_emb: Tensor, ref_labels: Tensor | None,
                  who: str) -> None:
    if labels is None or ref_labels is None:
        raise ValueError(f"{who} needs labels and ref_labels")
    if ref_emb is embeddings:
        raise ValueError(f"{who} needs ref_emb: the original embeddings paired with the anchors")


class QuadrupletMiner(BaseMiner):
    """Mine (anchor, positive, close positive, negative) tuples from a class-balanced batch.

    The references are paired with the anchors: ``ref_emb[i]`` is the original of anchor
    ``i`` (its positive), so every scene must appear at most once in the batch. Close
    positives are the other same-class references, negatives the other-class references.

    Args:
        type_of_tuples: ``"all"``: every (anchor, close positive, negative) combination whose
            loss is positive; ``"hard"``: per anchor, the highest-loss tuple (the nearest
            negative :math:`n^*`, then the close positive maximising
            :math:`[d(a,p) - d(a,c) + m_1]_+ + [d(a,c) - d(a,n^*) + m_2]_+`).
        margin_close: :math:`m_1`.
        margin: :math:`m_2`.
        **kwargs: passed to PML's :class:`BaseMiner` (e.g. ``distance``).

    Returns (from ``forward(embeddings, labels, ref_emb, ref_labels)``):
        A 4-tuple of int64 index tensors ``(a, p, c, n)``: ``a`` into ``embeddings``, the
        others into ``ref_emb``.
    """

    def __init__(self, type_of_tuples: str = "all", margin_close: float = 0.05, margin: float = 0.2,
                 **kwargs):
        super().__init__(**kwargs)
        if type_of_tuples not in ("all", "hard"):
            raise ValueError(f"type_of_tuples must be 'all' or 'hard', got {type_of_tuples!r}")
        self.type_of_tuples = type_of_tuples
        self.margin_close = float(margin_close)
        self.margin = float(margin)
        self.chunk = 64

    def mine(self, embeddings: Tensor, labels: Tensor, ref_emb: Tensor, ref_labels: Tensor) -> IndexTuple:
        _check_paired(embeddings, labels, ref_emb, ref_labels, "QuadrupletMiner")
        b = len(embeddings)
        if len(ref_emb) != b:
            raise ValueError(f"QuadrupletMiner: {b} anchors but {len(ref_emb)} paired references")
        dev = embeddings.device
        mat = self.distance(embeddings, ref_emb)
        mg = self.distance.margin
        same = labels[:, None] == ref_labels[None, :]
        eye = torch.eye(b, dtype=torch.bool, device=dev)
        close_mask = same & ~eye
        neg_mask = ~same
        d_ap = mat.diagonal()
        if self.type_of_tuples == "all":
            t1 = F.relu(mg(d_ap[:, None], mat) + self.margin_close)            # (a, c)
            out = []
            for s in range(0, b, self.chunk):  # bounded (chunk, B, B) memory
                m = mat[s:s + self.chunk]
                t2 = F.relu(mg(m[:, :, None], m[:, None, :]) + self.margin)    # (a, c, n)
                valid = (close_mask[s:s + self.chunk, :, None] & neg_mask[s:s + self.chunk, None, :]
                         & ((t1[s:s + self.chunk, :, None] + t2) > 0))
                a, c, n = torch.where(valid)
                out.append((a + s, c, n))
            a, c, n = (torch.cat(t) for t in zip(*out))
            return a, a, c, n
        big = torch.finfo(mat.dtype).max
        keep = close_mask.any(1) & neg_mask.any(1)
        if not keep.any():
            return _empty(dev)
        # Nearest negative (the smallest distance; PML's inverted distances are similarities).
        if self.distance.is_inverted:
            n_star = mat.masked_fill(~neg_mask, -big).argmax(1)
        else:
            n_star = mat.masked_fill(~neg_mask, big).argmin(1)
        d_an = mat.gather(1, n_star[:, None])
        score = (F.relu(mg(d_ap[:, None], mat) + self.margin_close)
                 + F.relu(mg(mat, d_an) + self.margin))
        c_star = score.masked_fill(~close_mask, -1.0).argmax(1)
        a = torch.arange(b, device=dev)[keep]
        return a, a, c_star[keep], n_star[keep]


class QuadrupletLoss(BaseMetricLossFunction):
    """The seed's quadruplet loss (see the module docstring), as a PML loss function.

    Args:
        margin_close: :math:`m_1`, own original versus close positive (default 0.05).
        margin: :math:`m_2`, close positive versus negative (default 0.2).
        **kwargs: passed to PML's :class:`BaseMetricLossFunction` (``distance``, ``reducer``,
            ``embedding_regularizer``).

    ``forward(embeddings, labels, indices_tuple, ref_emb, ref_labels)``: ``indices_tuple`` is
    ``(a, p, c, n)`` (``a`` into ``embeddings``, the rest into ``ref_emb``); when it is None,
    all tuples of a paired batch are used (as :class:`QuadrupletMiner` ``"all"``).

    Shape:
        - embeddings: (N, D); ref_emb: (M, D); labels (N,); ref_labels (M,).
        - output: scalar.
    """

    def __init__(self, margin_close: float = 0.05, margin: float = 0.2, **kwargs):
        super().__init__(**kwargs)
        self.margin_close = float(margin_close)
        self.margin = float(margin)
        self.add_to_recordable_attributes(list_of_names=["margin_close", "margin"], is_stat=False)

    def compute_loss(self, embeddings, labels, indices_tuple, ref_emb, ref_labels):
        if indices_tuple is None:
            indices_tuple = QuadrupletMiner("all", self.margin_close, self.margin,
                                            distance=self.distance)(embeddings, labels, ref_emb, ref_labels)
        if len(indices_tuple) != 4:
            raise ValueError("QuadrupletLoss needs (anchor, positive, close positive, negative) indices")
        a, p, c, n = indices_tuple
        if len(a) == 0:
            return self.zero_losses()
        mat = self.distance(embeddings, ref_emb)
        mg = self.distance.margin
        losses = (F.relu(mg(mat[a, p], mat[a, c]) + self.margin_close)
                  + F.relu(mg(mat[a, c], mat[a, n]) + self.margin))
        return {"loss": {"losses": losses, "indices": a, "reduction_type": "element"}}

    def get_default_reducer(self):
        return AvgNonZeroReducer()

    def get_default_distance(self):
        return LpDistance(normalize_embeddings=True, p=2, power=1)


class QuadrupletTerm(MetricTerm):
    """The metric term of ``--loss quadruplet``: :class:`QuadrupletLoss` with margins
    ``settings.quad_margins``, fed by :class:`QuadrupletMiner` (``all`` or ``hard``); seed
    tuple rows hold the positive, the close positive and the negative."""

    def __init__(self, mining: str, settings: LossSettings):
        super().__init__(mining, settings)
        m1, m2 = settings.quad_margins
        self.metric = QuadrupletLoss(margin_close=m1, margin=m2)
        self.miner = QuadrupletMiner(mining, margin_close=m1, margin=m2, distance=LpDistance())

    def dense(self, anchors: Tensor, originals: Tensor, labels: Tensor, ref_labels: Tensor) -> Tensor | None:
        m1, m2 = self.settings.quad_margins
        return batch_all_quadruplet(anchors, originals, labels, ref_labels, float(m1), float(m2))
