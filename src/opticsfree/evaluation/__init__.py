"""Evaluation of metric-learning runs: embeddings, classifiers, metrics, seed-style tables.

Public API:

- :class:`Embedder`, :class:`TrainedEmbedder` (the contract a trained model satisfies:
  :mod:`opticsfree.evaluation.contract`)
- :func:`embed_split`, :class:`Embedded`, :func:`class_prototypes`, :func:`train_gallery`
  (embedding a split; the train originals and their class prototypes)
- :class:`PrototypeClassifier`, :class:`KNNClassifier`, :class:`ThresholdClassifier` (one
  scikit-learn style contract, :mod:`opticsfree.evaluation.classifier`: ``fit(X, y)``,
  ``predict``, ``decision_function``/``predict_proba``, ``NotFittedError`` before ``fit``;
  the threshold's reject option is ``reject(X)``)
- :func:`classification_metrics`, :func:`bootstrap_accuracy_ci`, :func:`retrieval_metrics`
- :func:`match_run` (which of the seed's published rows, :mod:`opticsfree.seed_study`, a run matches)
- :func:`evaluate_models`, :func:`evaluate_checkpoint` (``opticsfree evaluate``) and their
  typed results :class:`Evaluation`, :class:`CheckpointEvaluation`

The names are loaded on first use (PEP 562), so that :mod:`opticsfree.evaluation.contract` (the
protocols other packages type against) imports without torch, scikit-learn or matplotlib.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from opticsfree.utils.lazy import lazy_getattr

if TYPE_CHECKING:
    from opticsfree.evaluation.classifier import EmbeddingClassifier
    from opticsfree.evaluation.contract import Embedder, TrainedEmbedder
    from opticsfree.evaluation.embed import (Embedded, Gallery, class_prototypes, embed_split,
                                             train_gallery)
    from opticsfree.evaluation.knn_classifier import KNNClassifier, majority_vote
    from opticsfree.evaluation.metrics import (bootstrap_accuracy_ci, classification_metrics,
                                               retrieval_metrics)
    from opticsfree.evaluation.prototype_classifier import PrototypeClassifier, pairwise_distances
    from opticsfree.evaluation.report import (evaluate_checkpoint, evaluate_models, write_evaluation,
                                              write_tables)
    from opticsfree.evaluation.names import ALL_CLASSIFIERS, CLASSIFIERS
    from opticsfree.evaluation.results import CheckpointEvaluation, Evaluation
    from opticsfree.evaluation.seed_tables import match_run
    from opticsfree.evaluation.threshold_classifier import (UNKNOWN, ThresholdClassifier,
                                                            choose_threshold, equal_error_rate,
                                                            verification_accuracy)

__all__ = [
    "ALL_CLASSIFIERS", "CLASSIFIERS", "CheckpointEvaluation", "Embedded", "Embedder",
    "EmbeddingClassifier", "Evaluation", "Gallery", "KNNClassifier", "PrototypeClassifier",
    "ThresholdClassifier", "TrainedEmbedder", "UNKNOWN", "bootstrap_accuracy_ci",
    "choose_threshold", "class_prototypes", "classification_metrics", "embed_split",
    "equal_error_rate", "evaluate_checkpoint", "evaluate_models", "majority_vote", "match_run",
    "pairwise_distances", "retrieval_metrics", "train_gallery", "verification_accuracy",
    "write_evaluation", "write_tables",
]

__getattr__ = lazy_getattr(__name__, __all__, ("names", "classifier", "contract", "embed", "knn_classifier",
                                               "metrics", "prototype_classifier", "report",
                                               "results", "seed_tables", "threshold_classifier"))
