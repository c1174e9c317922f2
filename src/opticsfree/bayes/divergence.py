"""Kullback-Leibler divergences between class distributions (nats).

Conventions are those of :func:`scipy.special.rel_entr` / :func:`scipy.stats.entropy`:
natural logarithms (nats), :math:`0 \\log(0/q) = 0`, and :math:`p \\log(p/0) = +\\infty` for
p > 0.

- :func:`kl_posterior_prior`: per capture i,

  .. math:: \\mathrm{KL}(q_i \\,\\|\\, \\pi) = \\sum_c q_{ic} \\log \\frac{q_{ic}}{\\pi_c}

  then the plain mean over captures: the information (in nats) a capture adds to the prior.
  With a uniform prior over C classes it equals :math:`\\log C - H(q_i)`, at most
  :math:`\\log C` (2.303 nats for 10 classes).
- :func:`kl_label_meanposterior`: the empirical class distribution of the evaluated labels,
  :math:`p_c = n_c / N`, against the mean posterior :math:`\\bar q_c = \\frac1N\\sum_i q_{ic}`:

  .. math:: \\mathrm{KL}(p \\,\\|\\, \\bar q) = \\sum_c p_c \\log \\frac{p_c}{\\bar q_c}

  which is 0 when the model's predicted class mix matches the true one.
"""

from __future__ import annotations

import numpy as np
from scipy.special import rel_entr


def kl(p: np.ndarray, q: np.ndarray, axis: int = -1) -> np.ndarray:
    """:math:`\\mathrm{KL}(p \\| q) = \\sum p \\log(p/q)` along ``axis`` (nats).

    Args:
        p: probabilities (rows already normalised).
        q: probabilities, broadcastable to ``p``.
        axis: the class axis.

    Returns:
        The divergences, ``p`` with ``axis`` removed (a 0-d array for 1-D inputs).
    """
    p = np.asarray(p, dtype=np.float64)
    q = np.asarray(q, dtype=np.float64)
    return rel_entr(p, q).sum(axis=axis)


def kl_posterior_prior_per_sample(post: np.ndarray, prior: np.ndarray) -> np.ndarray:
    """:math:`\\mathrm{KL}(q_i \\| \\pi)` for each row i.

    Args:
        post: (N, C) posterior probabilities.
        prior: (C,) prior probabilities.

    Returns:
        (N,) float64.
    """
    post = np.asarray(post, dtype=np.float64)
    if post.ndim != 2:
        raise ValueError(f"post must be (N, C), got {post.shape}")
    return kl(post, np.asarray(prior, dtype=np.float64)[None, :], axis=1)


def kl_posterior_prior(post: np.ndarray, prior: np.ndarray) -> float:
    """Mean over captures of :math:`\\mathrm{KL}(q_i \\| \\pi)` (nats).

    Args:
        post: (N, C) posterior probabilities.
        prior: (C,) prior probabilities.
    """
    return float(kl_posterior_prior_per_sample(post, prior).mean())


def kl_prior_posterior(post: np.ndarray, prior: np.ndarray) -> float:
    """The reverse direction, mean over captures of :math:`\\mathrm{KL}(\\pi \\| q_i)` (nats).

    Reported alongside :func:`kl_posterior_prior` because the seed study does not say which
    direction it used.
    """
    post = np.asarray(post, dtype=np.float64)
    return float(kl(np.asarray(prior, dtype=np.float64)[None, :], post, axis=1).mean())


def label_distribution(labels: np.ndarray, n_classes: int) -> np.ndarray:
    """Empirical class distribution :math:`p_c = n_c / N` of ``labels`` (C,)."""
    y = np.asarray(labels, dtype=np.int64).reshape(-1)
    if y.size == 0:
        raise ValueError("no labels")
    return np.bincount(y, minlength=n_classes).astype(np.float64) / y.size


def kl_label_meanposterior(labels: np.ndarray, post: np.ndarray) -> float:
    """:math:`\\mathrm{KL}(p \\| \\bar q)`: true class distribution vs mean posterior (nats).

    Args:
        labels: (N,) true classes.
        post: (N, C) posterior probabilities.
    """
    post = np.asarray(post, dtype=np.float64)
    p = label_distribution(labels, post.shape[1])
    return float(kl(p, post.mean(axis=0)))
