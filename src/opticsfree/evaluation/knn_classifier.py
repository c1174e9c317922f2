"""k-nearest-neighbour classification against a gallery of embeddings (faiss-cpu)."""

from __future__ import annotations

from typing import Sequence

import numpy as np

#: The k values tried on the validation split.
DEFAULT_KS = (1, 3, 5, 10, 20)


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


class KNNClassifier:
    """Majority vote of the k nearest gallery embeddings (exact L2 search, ``faiss.IndexFlatL2``).

    Attributes:
        k: the number of neighbours.
        n_classes: number of classes.
    """

    def __init__(self, k: int = 5, n_classes: int | None = None) -> None:
        if k < 1:
            raise ValueError(f"k must be >= 1, got {k}")
        self.k = int(k)
        self.n_classes = n_classes
        self._index = None
        self._labels: np.ndarray | None = None

    def fit(self, gallery: np.ndarray, labels: np.ndarray) -> "KNNClassifier":
        """Index the gallery embeddings (M, D) with their labels (M,)."""
        import faiss

        g = np.ascontiguousarray(gallery, dtype=np.float32)
        y = np.asarray(labels, dtype=np.int64)
        if g.ndim != 2 or len(g) != len(y) or len(g) == 0:
            raise ValueError(f"expected a non-empty gallery (M, D) and labels (M,), got "
                             f"{g.shape} and {y.shape}")
        self._index = faiss.IndexFlatL2(g.shape[1])
        self._index.add(g)
        self._labels = y
        if self.n_classes is None:
            self.n_classes = int(y.max()) + 1
        return self

    @property
    def gallery_size(self) -> int:
        """Number of indexed gallery embeddings."""
        return 0 if self._labels is None else len(self._labels)

    def neighbours(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """The k nearest gallery items of each query.

        Returns:
            ``(squared distances (N, k) float32, gallery indices (N, k) int64)``, nearest first.
        """
        if self._index is None:
            raise RuntimeError("KNNClassifier.fit must be called first")
        k = min(int(k), self.gallery_size)
        q = np.ascontiguousarray(queries, dtype=np.float32)
        dist, idx = self._index.search(q, k)
        return dist, idx.astype(np.int64)

    def predict(self, queries: np.ndarray, k: int | None = None) -> np.ndarray:
        """(N,) int64 majority-vote classes of queries (N, D) with ``k`` (default ``self.k``)."""
        _, idx = self.neighbours(queries, k or self.k)
        return majority_vote(self._labels[idx], self.n_classes)

    def select_k(self, queries: np.ndarray, labels: np.ndarray,
                 ks: Sequence[int] = DEFAULT_KS) -> dict[int, float]:
        """Choose ``k`` on validation queries: the k of highest accuracy, ties to the smaller k.

        Sets ``self.k``. One search with the largest k; each k votes over its prefix.

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
        acc = {k: float((majority_vote(nl[:, :k], self.n_classes) == y).mean()) for k in cands}
        best = max(acc.values())
        self.k = min(k for k, a in acc.items() if a == best)
        return acc
