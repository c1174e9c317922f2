r"""The seed's distance threshold: verification of (lensless, class) pairs and a reject option.

Pairs. Each lensless embedding :math:`q` with class :math:`y` is paired with every class
prototype :math:`p_c` (the L2-normalised mean of the train originals of class :math:`c`). The
pair is *matching* when :math:`c = y` and *non-matching* otherwise, and its distance is
:math:`d = \lVert q - p_c \rVert_2`. A split of N queries and C classes gives N matching and
N (C - 1) non-matching pairs.

Decision. A pair is accepted as "same class" when :math:`d \le t`. With TAR the fraction of
matching pairs accepted and FAR the fraction of non-matching pairs accepted,

.. math:: \mathrm{FRR}(t) = 1 - \mathrm{TAR}(t), \qquad
          \mathrm{acc}_{\mathrm{ver}}(t) = \tfrac12\,\big(\mathrm{TAR}(t) + 1 - \mathrm{FAR}(t)\big).

Verification accuracy is the *balanced* accuracy (the mean of the accuracies on matching and
on non-matching pairs), so that the 1 : (C - 1) imbalance of the pairs does not reward
rejecting everything.

Threshold rule. :math:`t` maximises the balanced verification accuracy on the validation
pairs. Candidates are the midpoints between consecutive distinct sorted distances (plus one
below the smallest and the largest distance); among equally good candidates the smallest
threshold is taken.

Equal error rate. The EER is where FAR equals FRR, linearly interpolated between the two
neighbouring candidate thresholds where FAR - FRR changes sign. The candidates and their
(TAR, FAR) are the points of scikit-learn's ROC curve (``roc_curve`` on the score :math:`-d`,
every point kept).

Classification. Closed set (``predict``): the nearest prototype (as :class:`PrototypeClassifier`).
Open set (the reject option, ``reject``): a query is rejected when its nearest prototype is
farther than :math:`t`; its open-set label is then ``UNKNOWN`` (-1), otherwise the closed-set
class.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from sklearn.metrics import roc_curve

from opticsfree.evaluation.classifier import (EmbeddingClassifier, check_embeddings,
                                              check_labels)
from opticsfree.evaluation.prototype_classifier import NearestPrototype, pairwise_distances

#: The label given to a rejected query.
UNKNOWN = -1


def pair_distances(queries: np.ndarray, labels: np.ndarray,
                   prototypes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Distances of the matching and non-matching (query, prototype) pairs.

    Args:
        queries: (N, D) embeddings.
        labels: (N,) their classes.
        prototypes: (C, D) class prototypes, C >= 2.

    Returns:
        ``(matching (N,), non_matching (N (C-1),))`` float64 distances.
    """
    y = np.asarray(labels, dtype=np.int64)
    d = pairwise_distances(queries, prototypes)
    if d.shape[1] < 2:
        raise ValueError("verification needs at least two classes")
    same = np.zeros(d.shape, dtype=bool)
    same[np.arange(len(y)), y] = True
    return d[same], d[~same]


@dataclass
class Sweep:
    """Accept/reject rates at every candidate threshold (ascending).

    Attributes:
        thresholds: (T,) candidate thresholds t (accept when d <= t).
        tar: (T,) fraction of matching pairs accepted.
        far: (T,) fraction of non-matching pairs accepted.
    """

    thresholds: np.ndarray
    tar: np.ndarray
    far: np.ndarray

    @property
    def frr(self) -> np.ndarray:
        """(T,) fraction of matching pairs rejected."""
        return 1.0 - self.tar

    @property
    def balanced_accuracy(self) -> np.ndarray:
        """(T,) balanced verification accuracy (TAR + 1 - FAR) / 2."""
        return 0.5 * (self.tar + 1.0 - self.far)


def sweep(matching: np.ndarray, non_matching: np.ndarray) -> Sweep:
    """All distinct accept/reject outcomes over thresholds (see the module docstring).

    The rates are scikit-learn's ``roc_curve`` (every point kept, ``drop_intermediate=False``)
    with the negated distance as the score: its point at score ``s`` accepts ``d <= -s``. The
    candidate threshold of a point is the midpoint between its distance and the next larger one
    (the largest distance for the last point; just below the smallest distance for the
    all-rejecting first point).
    """
    m = np.asarray(matching, dtype=np.float64).ravel()
    n = np.asarray(non_matching, dtype=np.float64).ravel()
    if len(m) == 0 or len(n) == 0:
        raise ValueError("need at least one matching and one non-matching pair")
    y = np.concatenate([np.ones(len(m)), np.zeros(len(n))])
    far, tar, scores = roc_curve(y, -np.concatenate([m, n]), drop_intermediate=False)
    ds = -scores[1:]  # the distinct distances, ascending (scores[0] is +inf: nothing accepted)
    nxt = np.append(ds[1:], ds[-1])
    thresholds = np.concatenate([[np.nextafter(ds[0], -np.inf)], 0.5 * (ds + nxt)])
    return Sweep(thresholds, tar.astype(np.float64), far.astype(np.float64))


def choose_threshold(matching: np.ndarray, non_matching: np.ndarray) -> tuple[float, float]:
    """The threshold of maximal balanced verification accuracy (smallest among ties).

    Returns:
        ``(t, balanced accuracy at t in [0, 1])``.
    """
    s = sweep(matching, non_matching)
    acc = s.balanced_accuracy
    i = int(np.argmax(acc))  # first maximum = smallest threshold
    return float(s.thresholds[i]), float(acc[i])


def verification_accuracy(matching: np.ndarray, non_matching: np.ndarray, t: float) -> float:
    """Balanced verification accuracy in [0, 1] at threshold ``t`` (accept when d <= t)."""
    m = np.asarray(matching, dtype=np.float64)
    n = np.asarray(non_matching, dtype=np.float64)
    return float(0.5 * ((m <= t).mean() + (n > t).mean()))


def equal_error_rate(matching: np.ndarray, non_matching: np.ndarray) -> tuple[float, float]:
    """Equal error rate and the threshold where it occurs.

    Returns:
        ``(eer in [0, 1], threshold)``: FAR = FRR, linearly interpolated between the candidate
        thresholds where FAR - FRR changes sign.
    """
    s = sweep(matching, non_matching)
    far, frr, thr = s.far, s.frr, s.thresholds
    diff = far - frr  # nondecreasing from -1 to +1
    i = int(np.argmax(diff >= 0))
    if diff[i] == 0 or i == 0:
        return float(far[i]), float(thr[i])
    w = -diff[i - 1] / (diff[i] - diff[i - 1])
    eer = far[i - 1] + w * (far[i] - far[i - 1])
    return float(eer), float(thr[i - 1] + w * (thr[i] - thr[i - 1]))


class ThresholdClassifier(NearestPrototype, EmbeddingClassifier):
    """Nearest prototype with a distance threshold chosen on validation pairs.

    The contract is :mod:`opticsfree.evaluation.classifier`'s: ``ThresholdClassifier(prototypes)
    .fit(X_val, y_val)`` chooses the threshold on the (query, prototype) pairs of validation
    queries; ``predict(Q)`` is the closed-set class (the nearest prototype, as
    :class:`PrototypeClassifier` with the same prototypes); ``decision_function(Q)`` the negated
    distance to each prototype; and the reject option is its own decision, ``reject(Q)`` (True
    where the nearest prototype is farther than the threshold). Open-set labels:
    ``np.where(clf.reject(Q), UNKNOWN, clf.predict(Q))``.

    Args:
        prototypes: (C, D) class prototypes (kept as float32), C >= 2.

    Attributes:
        threshold: the chosen t after :meth:`fit` (None before; may also be set directly, e.g.
            to a run's validated threshold).
        fit_accuracy: balanced verification accuracy at t on the fitting (validation) pairs.
        fit_eer: EER on the fitting pairs.
    """

    threshold: float | None = None
    fit_accuracy: float | None = None
    fit_eer: float | None = None

    def __init__(self, prototypes: np.ndarray) -> None:
        self.prototypes = np.asarray(prototypes, dtype=np.float32)

    def _n_fitted_classes(self) -> int | None:
        return None if self.threshold is None else len(self.prototypes)

    def fit(self, X: np.ndarray, y: np.ndarray) -> "ThresholdClassifier":
        """Choose the threshold on (validation) queries ``X`` (N, D) with labels ``y`` (N,)."""
        lab = check_labels(check_embeddings(X), y)
        m, n = pair_distances(X, lab, self.prototypes)
        self.threshold, self.fit_accuracy = choose_threshold(m, n)
        self.fit_eer = equal_error_rate(m, n)[0]
        return self

    def reject(self, X: np.ndarray) -> np.ndarray:
        """(N,) bool: True where the nearest prototype is farther than the threshold (the open
        set's ``UNKNOWN``)."""
        return ~(self.distances(X).min(axis=1) <= self.threshold)

    def verify(self, queries: np.ndarray, labels: np.ndarray) -> dict[str, float]:
        """Verification at the fitted threshold on (test) queries.

        Returns:
            ``{"verification_accuracy", "tar", "far", "eer", "eer_threshold"}``, fractions in
            [0, 1] (the EER is the test split's own, independent of the fitted threshold).
        """
        self._check_fitted()
        m, n = pair_distances(queries, labels, self.prototypes)
        eer, t_eer = equal_error_rate(m, n)
        return {
            "verification_accuracy": verification_accuracy(m, n, self.threshold),
            "tar": float((m <= self.threshold).mean()),
            "far": float((n <= self.threshold).mean()),
            "eer": eer,
            "eer_threshold": t_eer,
        }
