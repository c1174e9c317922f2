"""Posteriors: prior x likelihood, normalised in log space, and sequential multi-frame updates.

Bayes' rule over C classes, computed entirely with log-probabilities so that huge distances
(scores of -1e6) or tiny temperatures neither underflow to 0/0 nor produce NaN:

.. math::

    \\log q_c = \\log\\pi_c + \\log p(x \\mid c)
               - \\operatorname{logsumexp}_k\\left(\\log\\pi_k + \\log p(x \\mid k)\\right)

With K conditionally independent frames :math:`x_1..x_K` of one scene, the posterior after
frame k is the prior for frame k+1:

.. math::

    \\log q^{(k)}_c = \\log q^{(k-1)}_c + \\log p(x_k \\mid c) - \\operatorname{logsumexp}(\\cdot),
    \\qquad q^{(0)} = \\pi

which equals the batch form :math:`q^{(K)} \\propto \\pi \\prod_k p(x_k \\mid c)`.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
from scipy.special import logsumexp


def log_prior_of(prior: np.ndarray) -> np.ndarray:
    """:math:`\\log\\pi` (float64, -inf where :math:`\\pi_c = 0`).

    Args:
        prior: (C,) probabilities.
    """
    p = np.asarray(prior, dtype=np.float64)
    if p.ndim != 1 or (p < 0).any():
        raise ValueError("prior must be a 1-D array of non-negative probabilities")
    with np.errstate(divide="ignore"):
        return np.log(p)


def normalise_log(z: np.ndarray) -> np.ndarray:
    """Subtract the row-wise logsumexp so that each row of ``exp(z)`` sums to 1.

    Args:
        z: (..., C) unnormalised log-probabilities.

    Returns:
        Same shape, float64.
    """
    z = np.asarray(z, dtype=np.float64)
    return z - logsumexp(z, axis=-1, keepdims=True)


def log_posterior(log_prior: np.ndarray, log_lik: np.ndarray) -> np.ndarray:
    """Normalised log posterior :math:`\\log q = \\log\\pi + \\log p(x|c) - \\text{lse}`.

    Args:
        log_prior: (C,) or (N, C) log prior.
        log_lik: (N, C) log-likelihood (normalised or not: constants in c cancel).

    Returns:
        (N, C) float64 log posterior.

    Shape:
        Broadcasting of ``log_prior`` over rows.
    """
    ll = np.asarray(log_lik, dtype=np.float64)
    if ll.ndim != 2:
        raise ValueError(f"log_lik must be (N, C), got {ll.shape}")
    lp = np.asarray(log_prior, dtype=np.float64)
    if lp.shape[-1] != ll.shape[1]:
        raise ValueError(f"prior has {lp.shape[-1]} classes, likelihood {ll.shape[1]}")
    return normalise_log(lp + ll)


def posterior(prior: np.ndarray, log_lik: np.ndarray) -> np.ndarray:
    """Posterior probabilities :math:`q \\propto \\pi \\cdot p(x|c)` (N, C), rows sum to 1.

    Args:
        prior: (C,) prior probabilities.
        log_lik: (N, C) log-likelihood.
    """
    return np.exp(log_posterior(log_prior_of(prior), log_lik))


def sequential_log_posteriors(log_prior: np.ndarray,
                              log_liks: Sequence[np.ndarray] | np.ndarray) -> np.ndarray:
    """Frame-by-frame Bayesian update; the posterior after frame k is the prior for frame k+1.

    Args:
        log_prior: (C,) log prior.
        log_liks: K arrays of shape (N, C) (or one (K, N, C) array): the log-likelihood of
            frame k of each of the N scenes.

    Returns:
        (K, N, C) float64: the normalised log posterior after frames 1..k, for k = 1..K.
    """
    frames = [np.asarray(f, dtype=np.float64) for f in log_liks]
    if not frames:
        raise ValueError("need at least one frame")
    out = np.empty((len(frames),) + frames[0].shape, dtype=np.float64)
    current: np.ndarray = np.asarray(log_prior, dtype=np.float64)
    for k, ll in enumerate(frames):
        current = log_posterior(current, ll)
        out[k] = current
    return out


def batch_log_posterior(log_prior: np.ndarray,
                        log_liks: Sequence[np.ndarray] | np.ndarray) -> np.ndarray:
    """Log posterior after all frames at once, :math:`\\pi \\prod_k p(x_k|c)` normalised.

    Args:
        log_prior: (C,) log prior.
        log_liks: K arrays of shape (N, C) (or one (K, N, C) array).

    Returns:
        (N, C) float64 log posterior.
    """
    stack = np.stack([np.asarray(f, dtype=np.float64) for f in log_liks])
    return log_posterior(log_prior, stack.sum(axis=0))
