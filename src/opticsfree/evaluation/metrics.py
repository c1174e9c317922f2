"""Classification and retrieval metrics, in percent (0-100).

Conventions (as in the seed's tables, where recall equals accuracy in every row):

- ``precision``, ``recall``, ``f1``: support-weighted averages over classes,
  :math:`\\sum_c \\frac{n_c}{N} m_c` with :math:`n_c` the true count of class c. Weighted recall
  equals accuracy.
- ``macro_precision``, ``macro_recall``, ``macro_f1``: unweighted means over classes.
- A class that is never predicted has precision 0 (scikit-learn ``zero_division=0``).
- ``accuracy_ci``: percentile bootstrap 95% interval of the accuracy (test rows resampled with
  replacement, 1000 resamples, fixed seed).
- Retrieval (PyTorch Metric Learning's ``AccuracyCalculator``): queries are lensless
  embeddings, references the originals of the same split (one per scene); ``precision_at_1``
  is the fraction of queries whose nearest original has the query's class, ``map_at_r`` is
  MAP@R (Musgrave et al. 2020) with R the number of originals of the query's class.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np


def _as_labels(y: Any) -> np.ndarray:
    return np.asarray(y, dtype=np.int64).ravel()


def classification_metrics(y_true: Any, y_pred: Any, n_classes: int,
                           class_names: Sequence[str] | None = None) -> dict[str, Any]:
    """Accuracy, weighted and macro precision/recall/F1, per-class report, confusion matrix.

    Args:
        y_true: (N,) true classes in ``[0, n_classes)``.
        y_pred: (N,) predicted classes; a value outside ``[0, n_classes)`` (e.g. -1 for
            "unknown") counts as wrong and is in no class's column.
        n_classes: number of classes C.
        class_names: C names for the per-class report (default ``"0"``, ``"1"``, ...).

    Returns:
        ``{"n", "accuracy", "precision", "recall", "f1", "macro_precision", "macro_recall",
        "macro_f1", "per_class": [{"class", "precision", "recall", "f1", "support"}],
        "confusion_matrix": C x C list (rows true, columns predicted)}``, metrics in percent.
    """
    from sklearn.metrics import confusion_matrix, precision_recall_fscore_support

    t, p = _as_labels(y_true), _as_labels(y_pred)
    if len(t) != len(p):
        raise ValueError(f"y_true and y_pred differ in length: {len(t)} vs {len(p)}")
    if len(t) == 0:
        raise ValueError("no samples to score")
    names = list(class_names) if class_names is not None else [str(c) for c in range(n_classes)]
    if len(names) != n_classes:
        raise ValueError(f"{len(names)} class names for {n_classes} classes")
    labels = list(range(n_classes))
    out: dict[str, Any] = {"n": int(len(t)), "accuracy": 100.0 * float((t == p).mean())}
    for avg, prefix in (("weighted", ""), ("macro", "macro_")):
        pr, rc, f1, _ = precision_recall_fscore_support(t, p, labels=labels, average=avg,
                                                        zero_division=0)
        out[prefix + "precision"] = 100.0 * float(pr)
        out[prefix + "recall"] = 100.0 * float(rc)
        out[prefix + "f1"] = 100.0 * float(f1)
    pr, rc, f1, sup = precision_recall_fscore_support(t, p, labels=labels, average=None,
                                                      zero_division=0)
    out["per_class"] = [
        {"class": names[c], "precision": 100.0 * float(pr[c]), "recall": 100.0 * float(rc[c]),
         "f1": 100.0 * float(f1[c]), "support": int(sup[c])}
        for c in labels
    ]
    out["confusion_matrix"] = confusion_matrix(t, p, labels=labels).tolist()
    return out


def bootstrap_accuracy_ci(y_true: Any, y_pred: Any, n_resamples: int = 1000, seed: int = 0,
                          level: float = 0.95, chunk: int = 100) -> tuple[float, float]:
    r"""Percentile bootstrap confidence interval of the accuracy, in percent.

    Each resample draws N rows with replacement (``numpy.random.default_rng(seed)``) and
    computes :math:`\mathrm{acc}_b = \frac1N \sum_i [\hat y_{j_i} = y_{j_i}]`; the interval is the
    :math:`(1-\text{level})/2` and :math:`(1+\text{level})/2` quantiles of the
    :math:`\mathrm{acc}_b`.

    Args:
        y_true: (N,) true classes.
        y_pred: (N,) predictions.
        n_resamples: number of bootstrap resamples B.
        seed: RNG seed (same inputs and seed give the same interval).
        level: confidence level.
        chunk: resamples drawn at once (bounds memory at ``chunk * N`` indices).

    Returns:
        ``(lo, hi)`` in percent.
    """
    correct = (_as_labels(y_true) == _as_labels(y_pred)).astype(np.float64)
    n = len(correct)
    if n == 0:
        raise ValueError("no samples to bootstrap")
    if not 0 < level < 1 or n_resamples < 1:
        raise ValueError(f"need 0 < level < 1 and n_resamples >= 1, got {level}, {n_resamples}")
    rng = np.random.default_rng(seed)
    accs = np.empty(n_resamples)
    for start in range(0, n_resamples, chunk):
        b = min(chunk, n_resamples - start)
        accs[start:start + b] = correct[rng.integers(0, n, size=(b, n))].mean(axis=1)
    lo, hi = np.quantile(accs, [(1 - level) / 2, (1 + level) / 2])
    return 100.0 * float(lo), 100.0 * float(hi)


def retrieval_metrics(query: np.ndarray, query_labels: Any, reference: np.ndarray,
                      reference_labels: Any) -> dict[str, float]:
    """Precision@1 and MAP@R of queries against a separate reference set, in percent.

    Args:
        query: (N, D) query embeddings (lensless).
        query_labels: (N,) their classes.
        reference: (M, D) reference embeddings (originals, one per scene).
        reference_labels: (M,) their classes.

    Returns:
        ``{"precision_at_1", "map_at_r"}`` from PyTorch Metric Learning's AccuracyCalculator
        (``k="max_bin_count"``, so that MAP@R sees all R relevant references; exact Euclidean
        neighbours from PML's ``CustomKNN`` with ``LpDistance``).
    """
    import logging

    import torch
    from pytorch_metric_learning.utils.accuracy_calculator import AccuracyCalculator

    from pytorch_metric_learning.distances import LpDistance
    from pytorch_metric_learning.utils.inference import CustomKNN

    # exact Euclidean neighbours with torch (PML's default search needs faiss, which we do not
    # depend on: bench/results/knn.md); batched to bound memory
    knn = CustomKNN(LpDistance(normalize_embeddings=False, p=2), batch_size=1024)
    calc = AccuracyCalculator(include=("precision_at_1", "mean_average_precision_at_r"),
                              k="max_bin_count", device=torch.device("cpu"), knn_func=knn)
    pml_logger = logging.getLogger("PML")
    level = pml_logger.level
    pml_logger.setLevel(logging.ERROR)  # PML warns on queries whose label has no reference
    try:
        res = calc.get_accuracy(
            np.ascontiguousarray(query, dtype=np.float32), _as_labels(query_labels),
            np.ascontiguousarray(reference, dtype=np.float32), _as_labels(reference_labels),
            ref_includes_query=False)
    finally:
        pml_logger.setLevel(level)
    return {"precision_at_1": 100.0 * float(res["precision_at_1"]),
            "map_at_r": 100.0 * float(res["mean_average_precision_at_r"])}
