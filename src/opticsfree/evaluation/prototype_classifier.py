"""Nearest class prototype (centroid) classification of embeddings."""

from __future__ import annotations

import numpy as np

from opticsfree.evaluation.classifier import (EmbeddingClassifier, check_embeddings,
                                              check_labels)
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


class NearestPrototype:
    """Scores and classes by distance to the class prototypes ``self.prototypes`` (C, D): the
    part the prototype and threshold classifiers share (the latter adds the reject option)."""

    prototypes: np.ndarray | None

    def distances(self, X: np.ndarray) -> np.ndarray:
        """(N, C) float64 Euclidean distances from each query to each prototype."""
        self._check_fitted()
        return pairwise_distances(X, self.prototypes)

    def decision_function(self, X: np.ndarray) -> np.ndarray:
        """(N, C) float64 scores: minus the distance to each prototype (larger is nearer)."""
        return -self.distances(X)

    def predict(self, X: np.ndarray) -> np.ndarray:
        """(N,) int64 class of the nearest prototype for each query (N, D) (closed set)."""
        return self.distances(X).argmin(axis=1).astype(np.int64)


class PrototypeClassifier(NearestPrototype, EmbeddingClassifier):
    r"""Assign each embedding to the class whose prototype is nearest.

    The prototypes are the L2-normalised class means of reference embeddings (in evaluation:
    the original-image train embeddings), and

    .. math:: \hat y(q) = \arg\min_c \lVert q - p_c \rVert_2 .

    For unit-norm queries this is the class of maximal cosine similarity. Ties go to the lower
    class index. The contract is :mod:`opticsfree.evaluation.classifier`'s:
    ``PrototypeClassifier(n_classes=None).fit(X, y).predict(Q)``; ``decision_function(Q)`` is
    the negated distance to each prototype. It is scikit-learn's ``NearestCentroid`` with the
    centroids L2-normalised (and every class required to have a reference embedding).

    Args:
        n_classes: number of classes C; None: ``max(y) + 1``.

    Attributes:
        prototypes: (C, D) float32 after :meth:`fit` (None before; may also be set directly).
    """

    prototypes: np.ndarray | None = None

    def __init__(self, n_classes: int | None = None) -> None:
        self.n_classes = n_classes

    def _n_fitted_classes(self) -> int | None:
        return None if self.prototypes is None else len(self.prototypes)

    def fit(self, X: np.ndarray, y: np.ndarray) -> "PrototypeClassifier":
        """Compute the class prototypes from reference embeddings ``X`` (N, D) and labels ``y``
        (N,); every class ``0 .. C-1`` needs one (DataError otherwise)."""
        lab = check_labels(check_embeddings(X), y)
        n = self.n_classes if self.n_classes is not None else int(lab.max()) + 1
        self.prototypes = class_prototypes(X, lab, int(n))
        return self

