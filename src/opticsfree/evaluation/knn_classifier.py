"""k-nearest-neighbour classification against a gallery of embeddings.

Exact L2 search with ``torch.cdist`` + ``topk``, the queries in chunks. faiss-cpu's
``IndexFlatL2`` (used before) measured 1.3-1.75x as fast as this with 2 threads and 2.1-2.6x
with 1 thread (the setting ``evaluate`` runs in) at the default scale (45,000 x 128 gallery,
10,000 queries, k 1-20: about 2.5 s more per 10,000 queries on one core; ``bench/bench_knn.py``,
``bench/results/knn.md``), which was judged not worth a dependency.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch

from opticsfree.evaluation.classifier import EmbeddingClassifier
#: The k values tried on the validation split.
DEFAULT_KS = (1, 3, 5, 10, 20)

#: Queries per distance block in :func:`exact_knn` (1024 x 45,000 float32 = 184 MB).
QUERY_CHUNK = 1024


def exact_knn(queries: torch.Tensor, gallery: torch.Tensor, k: int,
              chunk: int = QUERY_CHUNK) -> tuple[torch.Tensor, torch.Tensor]:
    """The ``k`` nearest gallery rows of every query (exact L2, ``torch.cdist`` + ``topk``).

    Args:
        queries: (N, D) float32.
        gallery: (M, D) float32, M >= k.
        k: neighbours per query.
        chunk: queries per (chunk, M) distance block, which bounds the memory.

    Returns:
        ``(squared distances (N, k) float32, gallery indices (N, k) int64)``, nearest first.
    """
    dists, idx = [], []
    for i in range(0, len(queries), chunk):
        d, j = torch.cdist(queries[i:i + chunk], gallery).topk(k, dim=1, largest=False, sorted=True)
        dists.append(d.square_())
        idx.append(j)
    if not dists:
        return torch.empty(0, k), torch.empty(0, k, dtype=torch.int64)
    return torch.cat(dists), torch.cat(idx)


def majority_vote(neighbour_labels: np.ndarray, n_classes: int) -> np.ndarray:
    """Majority class of each row of neighbour labels, ties to the nearest tied class.

    Args:
        neighbour_labels: (N, k) int labels of the k nearest neighbours, nearest first.
        n_classes: number of classes C.

    Returns:
        (N,) int64 predictions. Each class scores its vote count; among classes with the most
        votes the one whose first neighbour is nearest wins (for k = 1 that is the nearest
        neighbour's class).
    """
    lab = np.asarray(neighbour_labels, dtype=np.int64)
    n, k = lab.shape
    rows = np.repeat(np.arange(n), k)
    counts = np.zeros((n, n_classes), dtype=np.int64)
    np.add.at(counts, (rows, lab.ravel()), 1)
    first = np.full((n, n_classes), k, dtype=np.int64)
    np.minimum.at(first, (rows, lab.ravel()), np.tile(np.arange(k), n))
    # count dominates (weight k+1 > any rank difference); then an earlier first rank wins
    score = counts * (k + 1) + (k - first)
    return score.argmax(axis=1).astype(np.int64)


class KNNClassifier(EmbeddingClassifier):
    """Majority vote of the k nearest gallery embeddings (exact L2 search, :func:`exact_knn`).

    The contract is :mod:`opticsfree.evaluation.classifier`'s: ``KNNClassifier(k, n_classes)
    .fit(gallery, labels).predict(Q)``; ``predict_proba(Q)`` is the vote fractions, as
    scikit-learn's ``KNeighborsClassifier(k)`` (uniform weights) gives them. The predicted class
    is the most voted, ties to the tied class whose first neighbour is nearest
    (:func:`majority_vote`; scikit-learn gives ties to the lower class index, so the two agree
    wherever the vote has one winner).

    Args:
        k: the number of neighbours (at most the gallery size is used); :meth:`select_k`
            chooses it on validation queries.
        n_classes: number of classes C; None: ``max(labels) + 1``.

    Attributes:
        n_classes_: C after :meth:`fit`.
    """

    _gallery: torch.Tensor | None = None
    _labels: np.ndarray | None = None
    n_classes_: int | None = None

    def __init__(self, k: int = 5, n_classes: int | None = None) -> None:
        if k < 1:
            raise ValueError(f"k must be >= 1, got {k}")
        self.k = int(k)
        self.n_classes = n_classes

    def _n_fitted_classes(self) -> int | None:
        return self.n_classes_

    def fit(self, X: np.ndarray, y: np.ndarray) -> "KNNClassifier":
        """Keep the gallery embeddings ``X`` (M, D) with their labels ``y`` (M,)."""
        g = np.ascontiguousarray(X, dtype=np.float32)
        lab = np.asarray(y, dtype=np.int64)
        if g.ndim != 2 or len(g) != len(lab) or len(g) == 0:
            raise ValueError(f"expected a non-empty gallery (M, D) and labels (M,), got "
                             f"{g.shape} and {lab.shape}")
        self._gallery = torch.from_numpy(g)
        self._labels = lab
        self.n_classes_ = int(self.n_classes) if self.n_classes is not None else int(lab.max()) + 1
        return self

    @property
    def gallery_size(self) -> int:
        """Number of gallery embeddings."""
        return 0 if self._labels is None else len(self._labels)

    def neighbours(self, X: np.ndarray, k: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """The k (default ``self.k``, at most the gallery size) nearest gallery items of each
        query.

        Returns:
            ``(squared distances (N, k) float32, gallery indices (N, k) int64)``, nearest first.
        """
        self._check_fitted()
        k = min(int(self.k if k is None else k), self.gallery_size)
        q = torch.from_numpy(np.ascontiguousarray(X, dtype=np.float32))
        dist, idx = exact_knn(q, self._gallery, k)
        return dist.numpy(), idx.numpy()

    def predict(self, X: np.ndarray) -> np.ndarray:
        """(N,) int64 majority-vote classes of queries (N, D) with ``self.k`` neighbours."""
        _, idx = self.neighbours(X)
        return majority_vote(self._labels[idx], self.n_classes_)

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        """(N, C) float64 fraction of the k nearest neighbours in each class."""
        _, idx = self.neighbours(X)
        lab = self._labels[idx]
        counts = np.zeros((len(lab), self.n_classes_), dtype=np.float64)
        np.add.at(counts, (np.repeat(np.arange(len(lab)), lab.shape[1]), lab.ravel()), 1.0)
        return counts / max(lab.shape[1], 1)

    def select_k(self, queries: np.ndarray, labels: np.ndarray,
                 ks: Sequence[int] = DEFAULT_KS) -> dict[int, float]:
        """Choose ``k`` on validation queries: the k of highest accuracy, ties to the smaller k.

        Sets the parameter ``self.k`` (as ``set_params(k=...)`` would). One search with the
        largest k; each k votes over its prefix.

        Args:
            queries: (N, D) validation embeddings (lensless).
            labels: (N,) their classes.
            ks: candidate k values; those larger than the gallery are dropped.

        Returns:
            ``{k: validation accuracy in [0, 1]}`` for every candidate tried.
        """
        y = np.asarray(labels, dtype=np.int64)
        cands = sorted({int(k) for k in ks if 1 <= int(k) <= self.gallery_size})
        if not cands:
            cands = [min(max(ks), self.gallery_size)]
        _, idx = self.neighbours(queries, max(cands))
        nl = self._labels[idx]
        acc = {k: float((majority_vote(nl[:, :k], self.n_classes_) == y).mean()) for k in cands}
        best = max(acc.values())
        self.k = min(k for k, a in acc.items() if a == best)
        return acc
