"""Nearest class prototype (centroid) classification of embeddings."""

from __future__ import annotations

import numpy as np

from opticsfree.evaluation.embed import class_prototypes


def pairwise_distances(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    r"""Euclidean distances between the rows of ``a`` and of ``b``.

    .. math:: d_{ij} = \sqrt{\max(\lVert a_i\rVert^2 + \lVert b_j\rVert^2 - 2 a_i^\top b_j, 0)}

    Args:
        a: (N, D) array.
        b: (M, D) array.

    Returns:
        (N, M) float64 distances.
    """
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    if a.ndim != 2 or b.ndim != 2 or a.shape[1] != b.shape[1]:
        raise ValueError(f"expected (N, D) and (M, D) arrays, got {a.shape} and {b.shape}")
    sq = (a * a).sum(1)[:, None] + (b * b).sum(1)[None, :] - 2.0 * a @ b.T
    return np.sqrt(np.maximum(sq, 0.0))


class PrototypeClassifier:
    r"""Assign each embedding to the class whose prototype is nearest.

    The prototypes are the L2-normalised class means of reference embeddings (in evaluation:
    the original-image train embeddings), and

    .. math:: \hat y(q) = \arg\min_c \lVert q - p_c \rVert_2 .

    For unit-norm queries this is the class of maximal cosine similarity. Ties go to the lower
    class index.

    Attributes:
        prototypes: (C, D) float32 after :meth:`fit`.
    """

    def __init__(self) -> None:
        self.prototypes: np.ndarray | None = None

    def fit(self, embeddings: np.ndarray, labels: np.ndarray, n_classes: int) -> "PrototypeClassifier":
        """Compute the class prototypes from reference embeddings (N, D) and labels (N,)."""
        self.prototypes = class_prototypes(embeddings, labels, n_classes)
        return self

    def distances(self, queries: np.ndarray) -> np.ndarray:
        """(N, C) Euclidean distances from each query to each prototype."""
        if self.prototypes is None:
            raise RuntimeError("PrototypeClassifier.fit must be called first")
        return pairwise_distances(queries, self.prototypes)

    def predict(self, queries: np.ndarray) -> np.ndarray:
        """(N,) int64 class of the nearest prototype for each query (N, D)."""
        return self.distances(queries).argmin(axis=1).astype(np.int64)
