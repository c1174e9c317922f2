"""Calibration metrics of a posterior: NLL, Brier score, expected calibration error, reliability.

For N captures with posterior rows :math:`q_i` over C classes and true classes :math:`y_i`:

- accuracy: fraction with :math:`\\arg\\max_c q_{ic} = y_i` (MAP decision; ties go to the
  lowest class index, as :func:`numpy.argmax`).
- NLL (nats): :math:`-\\frac1N\\sum_i \\log q_{i y_i}` (computed from log-probabilities, so
  it is exact even where :math:`q_{iy_i}` underflows).
- Brier score (multi-class, summed over classes, in [0, 2]):
  :math:`\\frac1N\\sum_i\\sum_c (q_{ic} - [c = y_i])^2`.
- ECE with B equal-width confidence bins (default 15, as Guo et al. 2017): confidence
  :math:`\\hat p_i = \\max_c q_{ic}` falls in bin b when :math:`b/B < \\hat p_i \\le (b+1)/B`;

  .. math:: \\mathrm{ECE} = \\sum_b \\frac{n_b}{N}\\,
            \\lvert \\mathrm{acc}_b - \\mathrm{conf}_b \\rvert

  with :math:`\\mathrm{acc}_b` and :math:`\\mathrm{conf}_b` the accuracy and mean confidence
  of the :math:`n_b` captures in bin b (empty bins contribute 0).
"""

from __future__ import annotations

import numpy as np

#: Number of equal-width bins for the ECE and the reliability diagram.
N_BINS = 15


def _check(probs: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    q = np.asarray(probs, dtype=np.float64)
    y = np.asarray(labels, dtype=np.int64).reshape(-1)
    if q.ndim != 2 or len(q) != len(y):
        raise ValueError(f"probs must be (N, C) with N = len(labels); got {q.shape}, "
                         f"{len(y)} labels")
    if len(y) == 0:
        raise ValueError("no samples")
    if y.min() < 0 or y.max() >= q.shape[1]:
        raise ValueError(f"labels must lie in [0, {q.shape[1]})")
    return q, y


def accuracy(probs: np.ndarray, labels: np.ndarray) -> float:
    """Fraction of MAP decisions equal to the label (in [0, 1])."""
    q, y = _check(probs, labels)
    return float((q.argmax(1) == y).mean())


def nll(log_probs: np.ndarray, labels: np.ndarray) -> float:
    """Mean negative log-probability of the true class (nats).

    Args:
        log_probs: (N, C) normalised log-probabilities.
        labels: (N,) true classes.
    """
    lp, y = _check(log_probs, labels)
    return float(-lp[np.arange(len(y)), y].mean())


def brier(probs: np.ndarray, labels: np.ndarray) -> float:
    """Multi-class Brier score :math:`\\frac1N\\sum_i\\lVert q_i - e_{y_i}\\rVert^2` (in [0, 2])."""
    q, y = _check(probs, labels)
    onehot = np.zeros_like(q)
    onehot[np.arange(len(y)), y] = 1.0
    return float(((q - onehot) ** 2).sum(1).mean())


def reliability(probs: np.ndarray, labels: np.ndarray, n_bins: int = N_BINS) -> dict:
    """Per-bin data for a reliability diagram (bins as in the module docstring).

    Args:
        probs: (N, C) probabilities.
        labels: (N,) true classes.
        n_bins: number of equal-width bins on [0, 1].

    Returns:
        ``{"edges": (B+1,), "count": (B,), "confidence": (B,), "accuracy": (B,)}`` as lists;
        mean confidence and accuracy are None for empty bins.
    """
    q, y = _check(probs, labels)
    conf = q.max(1)
    correct = (q.argmax(1) == y).astype(np.float64)
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    # bin b holds edges[b] < conf <= edges[b+1]; conf = 0 (impossible for a max) goes to bin 0
    b = np.clip(np.searchsorted(edges[1:-1], conf, side="left"), 0, n_bins - 1)
    count = np.bincount(b, minlength=n_bins)
    sum_conf = np.bincount(b, weights=conf, minlength=n_bins)
    sum_acc = np.bincount(b, weights=correct, minlength=n_bins)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_conf = sum_conf / count
        mean_acc = sum_acc / count
    return {
        "edges": edges.tolist(),
        "count": count.astype(int).tolist(),
        "confidence": [None if n == 0 else float(v) for n, v in zip(count, mean_conf)],
        "accuracy": [None if n == 0 else float(v) for n, v in zip(count, mean_acc)],
    }


def ece(probs: np.ndarray, labels: np.ndarray, n_bins: int = N_BINS) -> float:
    """Expected calibration error with ``n_bins`` equal-width bins (in [0, 1])."""
    r = reliability(probs, labels, n_bins)
    n = float(sum(r["count"]))
    terms = zip(r["count"], r["accuracy"], r["confidence"])
    return float(sum(c / n * abs(a - m) for c, a, m in terms if c > 0))


def calibration_metrics(log_probs: np.ndarray, labels: np.ndarray, n_bins: int = N_BINS) -> dict:
    """Accuracy (fraction), NLL, Brier and ECE of a normalised log posterior.

    Args:
        log_probs: (N, C) normalised log-probabilities.
        labels: (N,) true classes.
        n_bins: ECE bins.

    Returns:
        ``{"accuracy", "nll", "brier", "ece"}`` as floats.
    """
    lp = np.asarray(log_probs, dtype=np.float64)
    q = np.exp(lp)
    return {"accuracy": accuracy(q, labels), "nll": nll(lp, labels), "brier": brier(q, labels),
            "ece": ece(q, labels, n_bins)}
