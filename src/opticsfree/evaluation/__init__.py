"""Evaluation of metric-learning runs: embeddings, classifiers, metrics, seed-style tables.

Public API:

- :func:`embed_split`, :class:`Embedded`, :func:`class_prototypes` (embedding a split)
- :class:`PrototypeClassifier`, :class:`KNNClassifier`, :class:`ThresholdClassifier`
- :func:`classification_metrics`, :func:`bootstrap_accuracy_ci`, :func:`retrieval_metrics`
- :func:`match_run` (which of the seed's published rows, :mod:`opticsfree.seed_study`, a run matches)
- :func:`evaluate_run`, :func:`evaluate_checkpoint` (``opticsfree evaluate``)
"""

from opticsfree.evaluation.embed import Embedded, class_prototypes, embed_split
from opticsfree.evaluation.knn_classifier import KNNClassifier, majority_vote
from opticsfree.evaluation.metrics import (bootstrap_accuracy_ci, classification_metrics,
                                           retrieval_metrics)
from opticsfree.evaluation.prototype_classifier import PrototypeClassifier, pairwise_distances
from opticsfree.evaluation.report import (ALL_CLASSIFIERS, CLASSIFIERS, evaluate_checkpoint,
                                          evaluate_run, summarize, write_tables)
from opticsfree.evaluation.seed_tables import match_run
from opticsfree.evaluation.threshold_classifier import (UNKNOWN, ThresholdClassifier,
                                                        choose_threshold, equal_error_rate,
                                                        verification_accuracy)

__all__ = [
    "ALL_CLASSIFIERS", "CLASSIFIERS", "Embedded", "KNNClassifier", "PrototypeClassifier",
    "ThresholdClassifier", "UNKNOWN", "bootstrap_accuracy_ci",
    "choose_threshold", "class_prototypes", "classification_metrics", "embed_split",
    "equal_error_rate", "evaluate_checkpoint", "evaluate_run", "majority_vote", "match_run",
    "pairwise_distances", "retrieval_metrics", "summarize", "verification_accuracy",
    "write_tables",
]
