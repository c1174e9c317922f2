"""The one contract of the embedding classifiers (scikit-learn style).

Every classifier of :mod:`opticsfree.evaluation` (:class:`~.prototype_classifier.PrototypeClassifier`,
:class:`~.knn_classifier.KNNClassifier`, :class:`~.threshold_classifier.ThresholdClassifier`)
is a scikit-learn estimator (``BaseEstimator`` + ``ClassifierMixin``: ``get_params``,
``set_params``, ``clone`` and ``score`` work) with:

- ``__init__(**params)``: settings only (the number of classes, ``k``, the prototypes a
  threshold is chosen for); ``n_classes=None`` infers the classes from ``y`` as
  ``max(y) + 1``.
- ``fit(X, y) -> self``: ``X`` (N, D) embeddings, ``y`` (N,) int labels in ``0 .. C-1``.
- ``predict(X) -> (N,) int64``: a class of ``classes_`` for every row.
- ``decision_function(X) -> (N, C) float64`` (larger is more likely; the prototype and threshold
  classifiers: the negated distance to each prototype) or ``predict_proba(X) -> (N, C)``
  (kNN: the vote fractions), where such a score means something.
- ``classes_``: ``np.arange(C)`` once fitted.
- Any method but ``fit`` before ``fit`` raises :class:`sklearn.exceptions.NotFittedError`.

The threshold classifier's reject option is a separate decision, ``reject(X) -> (N,) bool``
(True: the nearest prototype is farther than the threshold), so that ``predict`` keeps the
classifier contract (it always returns a class of ``classes_``); the open-set labels are
``np.where(clf.reject(X), UNKNOWN, clf.predict(X))`` with ``UNKNOWN = -1``.
"""

from __future__ import annotations

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.utils.validation import check_is_fitted

__all__ = ["EmbeddingClassifier", "check_embeddings", "check_labels"]


def check_embeddings(X: np.ndarray, dtype: type = np.float64) -> np.ndarray:
    """``X`` as a 2-D array of ``dtype`` (ValueError otherwise)."""
    a = np.asarray(X, dtype=dtype)
    if a.ndim != 2:
        raise ValueError(f"expected (N, D) embeddings, got shape {a.shape}")
    return a


def check_labels(X: np.ndarray, y: np.ndarray) -> np.ndarray:
    """``y`` as (N,) int64 labels matching the N >= 1 rows of ``X`` (ValueError otherwise)."""
    lab = np.asarray(y, dtype=np.int64)
    if lab.ndim != 1 or len(lab) != len(X):
        raise ValueError(f"expected (N,) labels for {len(X)} embeddings, got shape {lab.shape}")
    if len(lab) == 0:
        raise ValueError("fit needs at least one embedding")
    return lab


class EmbeddingClassifier(ClassifierMixin, BaseEstimator):
    """Base of the embedding classifiers: the fitted check and ``classes_``.

    Subclasses define :meth:`_n_fitted_classes` (None before ``fit``).
    """

    def _n_fitted_classes(self) -> int | None:  # pragma: no cover - abstract
        raise NotImplementedError

    def __sklearn_is_fitted__(self) -> bool:
        return self._n_fitted_classes() is not None

    def _check_fitted(self) -> None:
        check_is_fitted(self, msg=f"{type(self).__name__} is not fitted yet: call fit(X, y) first")

    @property
    def classes_(self) -> np.ndarray:
        """(C,) int64 class labels ``0 .. C-1`` (NotFittedError before ``fit``)."""
        self._check_fitted()
        return np.arange(self._n_fitted_classes(), dtype=np.int64)
