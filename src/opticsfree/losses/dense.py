"""Fast "batch-all" losses for class-balanced batches (same value and gradient as PML's path).

With ``mining="all"`` and :class:`AvgNonZeroReducer`, the triplet loss (PML's
:class:`TripletMarginLoss` over every valid triplet) and the seed's quadruplet loss
(:class:`~opticsfree.losses.quadruplet_loss.QuadrupletLoss` over every valid tuple) are

.. math:: L = \\frac{1}{|\\{t: \\ell_t > 0\\}|} \\sum_t \\ell_t ,

the mean of the non-zero tuple losses. PML enumerates the tuples as index tensors (about 1.4
million at :math:`B = 250` with 10 classes) and gathers and scatters every one of them, which
costs more than a small network's training step on a CPU. In a class-balanced batch every
anchor has the same number :math:`P` of positives and :math:`N` of negatives, so the same
tuples form a dense :math:`(B, P, N)` block built from two small gathers of the distance
matrix. These functions return None when the batch is not balanced (the caller then uses
the PML path); the tests check that both paths agree.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor


def _euclid(a: Tensor, b: Tensor) -> Tensor:
    """Euclidean distances between L2-normalised rows (as PML's LpDistance computes them)."""
    return torch.cdist(F.normalize(a, dim=1), F.normalize(b, dim=1))


def _rows(mask: Tensor) -> Tensor | None:
    """Column indices of the True entries of each row, (R, K), or None if the counts differ."""
    counts = mask.sum(1)
    if len(counts) == 0 or bool((counts != counts[0]).any()) or int(counts[0]) == 0:
        return None
    return torch.nonzero(mask)[:, 1].view(len(mask), int(counts[0]))


def _mean_nonzero(loss: Tensor) -> Tensor:
    n = int((loss > 0).sum())
    return loss.sum() / n if n else loss.sum() * 0.0


def batch_all_triplet(anchors: Tensor, refs: Tensor, labels: Tensor, ref_labels: Tensor,
                      margin: float) -> Tensor | None:
    """Mean non-zero :math:`[d(a_i, r_p) - d(a_i, r_n) + m]_+` over all :math:`y_p = y_i \\ne y_n`.

    Args:
        anchors: (B, D) anchor embeddings; refs: (M, D) reference embeddings (every reference
            of the anchor's class is a positive, including the anchor's own original).
        labels: (B,); ref_labels: (M,).
        margin: :math:`m`.

    Returns:
        Scalar loss, or None when anchors differ in their number of positives or negatives.
    """
    pos = labels[:, None] == ref_labels[None, :]
    pi, ni = _rows(pos), _rows(~pos)
    if pi is None or ni is None:
        return None
    mat = _euclid(anchors, refs)
    dp, dn = mat.gather(1, pi), mat.gather(1, ni)
    return _mean_nonzero(F.relu(dp[:, :, None] - dn[:, None, :] + margin))


def batch_all_quadruplet(anchors: Tensor, refs: Tensor, labels: Tensor, ref_labels: Tensor,
                         margin_close: float, margin: float) -> Tensor | None:
    """Mean non-zero seed quadruplet loss over all (anchor, close positive, negative) of a paired
    batch (``refs[i]`` is anchor ``i``'s own original):

    .. math:: \\ell_{icn} = [d(a_i, r_i) - d(a_i, r_c) + m_1]_+ + [d(a_i, r_c) - d(a_i, r_n) + m_2]_+

    for :math:`c \\ne i`, :math:`y_c = y_i \\ne y_n`. Returns None for an unbalanced batch.
    """
    b = len(anchors)
    if len(refs) != b:
        return None
    same = labels[:, None] == ref_labels[None, :]
    ci = _rows(same & ~torch.eye(b, dtype=torch.bool, device=same.device))
    ni = _rows(~same)
    if ci is None or ni is None:
        return None
    mat = _euclid(anchors, refs)
    dc, dn = mat.gather(1, ci), mat.gather(1, ni)
    t1 = F.relu(mat.diagonal()[:, None] - dc + margin_close)
    t2 = F.relu(dc[:, :, None] - dn[:, None, :] + margin)
    return _mean_nonzero(t1[:, :, None] + t2)
