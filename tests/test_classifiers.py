"""The one classifier contract (opticsfree.evaluation.classifier) and the classifiers' numbers:
equal to scikit-learn's equivalents and to the outputs of the classifiers before the contract
(hard-coded from a run of the old code on the same fixed embeddings)."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.base import clone
from sklearn.exceptions import NotFittedError
from sklearn.neighbors import KNeighborsClassifier, NearestCentroid

from opticsfree.evaluation import (UNKNOWN, KNNClassifier, PrototypeClassifier,
                                   ThresholdClassifier)
from opticsfree.evaluation.classifier import EmbeddingClassifier

C, D = 4, 6


def _embeddings():
    """The fixed random embedding set the old outputs below were recorded on."""
    rng = np.random.default_rng(20240611)
    centres = rng.normal(size=(C, D))

    def draw(n):
        y = rng.integers(0, C, size=n)
        x = centres[y] + 0.9 * rng.normal(size=(n, D))
        x /= np.linalg.norm(x, axis=1, keepdims=True)
        return x.astype(np.float32), y

    return draw(48), draw(30), draw(25)  # gallery, validation, queries


(G, GY), (V, VY), (Q, QY) = _embeddings()
PROTOS = PrototypeClassifier(n_classes=C).fit(G, GY).prototypes

#: outputs of the classifiers before the contract, on the embeddings above
OLD_PROTO = [0, 0, 0, 1, 2, 0, 1, 3, 1, 3, 2, 3, 2, 0, 0, 2, 0, 2, 1, 3, 3, 3, 1, 1, 0]
OLD_KNN = {
    1: [2, 0, 3, 1, 0, 0, 1, 0, 2, 2, 2, 0, 2, 2, 0, 2, 3, 2, 1, 3, 3, 3, 1, 1, 2],
    3: [0, 0, 3, 1, 0, 0, 1, 0, 2, 2, 2, 3, 2, 2, 0, 2, 0, 2, 1, 3, 3, 3, 1, 1, 0],
    5: [2, 0, 3, 1, 0, 0, 1, 3, 2, 2, 2, 3, 2, 0, 0, 2, 0, 2, 1, 3, 3, 3, 1, 1, 0],
    10: [2, 0, 3, 1, 0, 0, 1, 3, 2, 3, 2, 3, 2, 0, 0, 2, 0, 1, 1, 3, 3, 3, 1, 1, 0],
}
OLD_SELECT_K = {1: 0.6333333333333333, 3: 0.6333333333333333, 5: 0.7, 10: 0.7,
                20: 0.6333333333333333}
OLD_THRESHOLD = (1.1266608196993158, 0.7833333333333333, 0.2666666666666667)
OLD_OPEN = [0, 0, 0, 1, -1, 0, 1, 3, 1, 3, 2, 3, 2, 0, 0, 2, 0, 2, 1, 3, 3, 3, 1, 1, 0]
OLD_DMIN = [0.6285741254661676, 0.7235516293653116, 1.0688116043578155, 0.6748679974344701,
            1.147216783272096, 0.8092520179715074, 0.7150854812965439, 0.7652658313241252,
            0.9175553087144278, 0.7938244662957745, 0.7512994242070834, 0.7094576171680963,
            0.8074239435930584, 0.9365133636389708, 0.7778655460015749, 0.342468907248829,
            0.4391363630050851, 1.0562103776612841, 0.7688564329295922, 0.5546546043817725,
            0.7581706406922453, 1.0374205139019106, 0.4736442863150507, 0.7909114173775921,
            0.826999259221444]
OLD_VERIFY = {"verification_accuracy": 0.7533333333333333, "tar": 0.84,
              "far": 0.3333333333333333, "eer": 0.24, "eer_threshold": 1.0362367066914189}

#: (unfitted classifier, the (X, y) it is fitted on): every classifier of the package
CLASSIFIERS = {
    "prototype": (lambda: PrototypeClassifier(n_classes=C), (G, GY)),
    "prototype-inferred": (lambda: PrototypeClassifier(), (G, GY)),
    "knn": (lambda: KNNClassifier(k=5, n_classes=C), (G, GY)),
    "knn-inferred": (lambda: KNNClassifier(k=3), (G, GY)),
    "threshold": (lambda: ThresholdClassifier(PROTOS), (V, VY)),
}


def _scores(clf, X):
    if hasattr(clf, "predict_proba"):
        return clf.predict_proba(X)
    return clf.decision_function(X)


@pytest.mark.parametrize("name", list(CLASSIFIERS))
def test_every_classifier_follows_the_one_contract(name):
    make, (X, y) = CLASSIFIERS[name]
    clf = make()
    assert isinstance(clf, EmbeddingClassifier)
    assert hasattr(clf, "decision_function") or hasattr(clf, "predict_proba")
    # before fit: NotFittedError from every method but fit
    for method in ("predict", "decision_function", "predict_proba", "reject"):
        if hasattr(clf, method):
            with pytest.raises(NotFittedError):
                getattr(clf, method)(Q)
    with pytest.raises(NotFittedError):
        clf.classes_
    # fit returns self; predict: (N,) int64 classes of classes_
    assert clf.fit(X, y) is clf
    assert clf.classes_.tolist() == list(range(C))
    pred = clf.predict(Q)
    assert pred.shape == (len(Q),) and pred.dtype == np.int64
    assert set(pred.tolist()) <= set(clf.classes_.tolist())
    # scores: (N, C) float; the prediction is a class of maximal score
    s = _scores(clf, Q)
    assert s.shape == (len(Q), C) and np.issubdtype(s.dtype, np.floating)
    assert np.all(s[np.arange(len(Q)), pred] == s.max(axis=1))
    if hasattr(clf, "predict_proba"):
        np.testing.assert_allclose(s.sum(axis=1), 1.0)
    # a scikit-learn estimator: params round-trip, clone is unfitted, score is the accuracy
    params = clone(clf).get_params()
    assert params.keys() == clf.get_params().keys()
    for key, value in clf.get_params().items():
        np.testing.assert_equal(params[key], value)
    with pytest.raises(NotFittedError):
        clone(clf).predict(Q)
    assert clf.score(Q, QY) == pytest.approx(float((pred == QY).mean()))


def test_prototype_classifier_equals_sklearn_and_the_old_outputs():
    clf = PrototypeClassifier(n_classes=C).fit(G, GY)
    assert clf.predict(Q).tolist() == OLD_PROTO
    # the prototypes are NearestCentroid's centroids L2-normalised ...
    nc = NearestCentroid().fit(G.astype(np.float64), GY)
    cent = nc.centroids_ / np.linalg.norm(nc.centroids_, axis=1, keepdims=True)
    np.testing.assert_allclose(clf.prototypes, cent, atol=1e-6)
    # ... and the class is the 1-nearest prototype
    one_nn = KNeighborsClassifier(n_neighbors=1).fit(clf.prototypes, np.arange(C))
    np.testing.assert_array_equal(clf.predict(Q), one_nn.predict(Q))
    # (raw, unnormalised centroids may disagree); the decision scores are minus the distances
    d = np.linalg.norm(Q[:, None, :].astype(np.float64) - clf.prototypes[None], axis=2)
    np.testing.assert_allclose(clf.decision_function(Q), -d, atol=1e-6)


def test_knn_equals_sklearn_where_the_vote_has_one_winner_and_the_old_outputs():
    knn = KNNClassifier(n_classes=C).fit(G, GY)
    for k, old in OLD_KNN.items():
        ours = knn.set_params(k=k).predict(Q)
        assert ours.tolist() == old
        sk = KNeighborsClassifier(n_neighbors=k, algorithm="brute").fit(G, GY)
        proba = sk.predict_proba(Q)
        np.testing.assert_allclose(knn.predict_proba(Q), proba)
        np.testing.assert_array_equal(knn.neighbours(Q)[1], sk.kneighbors(Q)[1])
        # the tie rule: sklearn gives a tied vote to the lower class, ours to the nearest tied
        # class; they agree wherever one class has the most votes
        single = (proba == proba.max(axis=1, keepdims=True)).sum(axis=1) == 1
        np.testing.assert_array_equal(ours[single], sk.predict(Q)[single])
        if k == 1:
            assert single.all()
    sel = KNNClassifier(n_classes=C).fit(G, GY)
    assert sel.select_k(V, VY) == OLD_SELECT_K and sel.k == 5
    assert sel.predict(Q).tolist() == OLD_KNN[5]


def test_threshold_classifier_equals_the_old_outputs():
    thr = ThresholdClassifier(PROTOS).fit(V, VY)
    assert (thr.threshold, thr.fit_accuracy, thr.fit_eer) == OLD_THRESHOLD
    closed = thr.predict(Q)
    assert closed.tolist() == OLD_PROTO                       # closed set = nearest prototype
    rejected = thr.reject(Q)
    assert rejected.dtype == bool and rejected.shape == (len(Q),)
    assert np.where(rejected, UNKNOWN, closed).tolist() == OLD_OPEN
    assert (-thr.decision_function(Q).max(axis=1)).tolist() == OLD_DMIN
    assert thr.verify(Q, QY) == OLD_VERIFY
    # a threshold set directly (a run's validated one) makes it usable without fit
    fixed = ThresholdClassifier(PROTOS)
    fixed.threshold = OLD_THRESHOLD[0]
    np.testing.assert_array_equal(fixed.reject(Q), rejected)
