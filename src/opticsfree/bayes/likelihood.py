"""Likelihoods p(x | c) from a trained model, and temperature fitting.

Both models are written as *scores* :math:`s_c(x)` (the log-likelihood at temperature 1, up to
a constant in c) divided by a temperature T:

.. math::

    \\log p(x \\mid c) = s_c(x) / T + \\text{const}(x)

- metric model: :math:`s_c(x) = -d(x, \\mu_c)^2 = -\\lVert x - \\mu_c \\rVert_2^2`, with
  :math:`\\mu_c` the class prototype (L2-normalised mean of the *original* training embeddings
  of class c) and x the L2-normalised embedding of the lensless capture. For unit vectors
  :math:`d^2 = 2 - 2\\cos(x, \\mu_c) \\in [0, 4]`, so the nearest prototype is the most likely
  class and a uniform prior reproduces the prototype classifier.
- cross-entropy model: :math:`s_c(x)` = the classifier head's logits, so that the normalised
  likelihood is :math:`\\operatorname{softmax}(\\text{logits} / T)`.

The constant in x cancels in the posterior, so only the normalised distribution
:math:`\\operatorname{log\\_softmax}(s / T)` matters (:func:`log_likelihood`).

Temperature scaling (Guo et al., 2017): T is chosen on the validation split by minimising the
negative log-likelihood of the true class under :math:`\\operatorname{softmax}(s / T + \\log\\pi)`
(``log_prior`` defaults to uniform), searching :math:`\\log T` on a bounded interval with
:func:`scipy.optimize.minimize_scalar`. The NLL is convex in :math:`1/T`, hence unimodal in
:math:`\\log T`, so the bounded Brent search finds the global minimum within the bounds.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np
from scipy.optimize import minimize_scalar
from scipy.special import log_softmax

from opticsfree.bayes.names import likelihood_names, likelihood_spec
from opticsfree.errors import ConfigError
from opticsfree.losses.names import classified_by_head

#: Search interval for the temperature (metric scores live in [-4, 0]; logits can be large).
TEMPERATURE_BOUNDS = (1e-4, 1e4)


def choose_likelihood(loss: str | None, has_head: bool, likelihood: str = "auto") -> str:
    """A registered likelihood (:mod:`opticsfree.bayes.names`: ``metric`` or ``ce``) for a run
    trained with ``loss``; ``auto`` uses the classifier head only for a head-only loss
    (:func:`opticsfree.losses.names.classified_by_head`: its original tower never learned, so
    distances mean nothing). ``bayes`` and ``predict`` both choose here.

    Raises:
        ConfigError: an unknown name, or one that needs a classifier head (``ce``) for a model
            without one.
    """
    if likelihood == "auto":
        return "ce" if has_head and classified_by_head(loss) else "metric"
    names = likelihood_names()
    if likelihood not in names:
        raise ConfigError(f"--likelihood: expected auto, {', '.join(names[:-1])} or {names[-1]}, "
                          f"got {likelihood!r}")
    if likelihood_spec(likelihood).needs_head and not has_head:
        raise ConfigError(f"--likelihood {likelihood}: the run's model has no classifier head")
    return likelihood


def _as2d(a: np.ndarray, name: str) -> np.ndarray:
    a = np.asarray(a, dtype=np.float64)
    if a.ndim != 2:
        raise ValueError(f"{name} must be 2-D, got shape {a.shape}")
    return a


def squared_distances(x: np.ndarray, prototypes: np.ndarray) -> np.ndarray:
    """Squared Euclidean distances between embeddings and prototypes, in float64.

    .. math:: d(x_i, \\mu_c)^2 = \\lVert x_i\\rVert^2 + \\lVert\\mu_c\\rVert^2 - 2 x_i\\cdot\\mu_c

    (clipped at 0 against rounding).

    Args:
        x: embeddings, shape (N, D).
        prototypes: class prototypes, shape (C, D).

    Returns:
        float64 array of shape (N, C).
    """
    x = _as2d(x, "x")
    mu = _as2d(prototypes, "prototypes")
    if x.shape[1] != mu.shape[1]:
        raise ValueError(f"embedding dim {x.shape[1]} != prototype dim {mu.shape[1]}")
    d2 = (x * x).sum(1, keepdims=True) + (mu * mu).sum(1)[None, :] - 2.0 * x @ mu.T
    return np.maximum(d2, 0.0)


def metric_scores(x: np.ndarray, prototypes: np.ndarray) -> np.ndarray:
    """Metric-model scores :math:`s_c(x) = -d(x, \\mu_c)^2` (log-likelihood at T = 1).

    Args:
        x: lensless embeddings, shape (N, D).
        prototypes: class prototypes, shape (C, D).

    Returns:
        float64 array of shape (N, C).
    """
    return -squared_distances(x, prototypes)


def ce_scores(logits: np.ndarray) -> np.ndarray:
    """Cross-entropy-model scores: the logits themselves, as float64 (N, C)."""
    return _as2d(logits, "logits").copy()


def log_likelihood(scores: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    """Normalised log-likelihood :math:`\\log\\operatorname{softmax}_c(s_c / T)`.

    Args:
        scores: (N, C) scores at T = 1.
        temperature: T > 0.

    Returns:
        float64 (N, C); each row is the log of a distribution over classes (finite for any
        finite scores, however large: the normalisation is done with logsumexp).
    """
    if not (temperature > 0 and math.isfinite(temperature)):
        raise ValueError(f"temperature must be a positive finite number, got {temperature}")
    return log_softmax(_as2d(scores, "scores") / temperature, axis=1)


def nll_at(scores: np.ndarray, labels: np.ndarray, temperature: float,
           log_prior: np.ndarray | None = None) -> float:
    """Mean NLL of the true class under :math:`\\operatorname{softmax}(s/T + \\log\\pi)` (nats).

    Args:
        scores: (N, C) scores at T = 1.
        labels: (N,) true class indices.
        temperature: T > 0.
        log_prior: (C,) log prior; None = uniform.

    Returns:
        :math:`-\\frac1N\\sum_i \\log q_{i, y_i}`.
    """
    z = _as2d(scores, "scores") / temperature
    if log_prior is not None:
        z = z + np.asarray(log_prior, dtype=np.float64)[None, :]
    lp = log_softmax(z, axis=1)
    y = np.asarray(labels, dtype=np.int64)
    return float(-lp[np.arange(len(y)), y].mean())


@dataclass
class TemperatureFit:
    """Result of :func:`fit_temperature`.

    Attributes:
        temperature: the fitted T (1.0 when nothing was fitted).
        nll_before: validation NLL at T = 1 (nats; NaN without validation rows).
        nll_after: validation NLL at the fitted T.
        n: number of validation rows used.
        fitted: False when there were no validation rows (T stays 1).
        at_bound: True when the optimum lies at an end of the search interval.
    """

    temperature: float
    nll_before: float
    nll_after: float
    n: int
    fitted: bool
    at_bound: bool = False

    def to_dict(self) -> dict:
        """JSON-ready dict (NaN becomes None)."""
        return {k: (None if isinstance(v, float) and not math.isfinite(v) else v)
                for k, v in asdict(self).items()}


def fit_temperature(scores: np.ndarray, labels: np.ndarray,
                    log_prior: np.ndarray | None = None,
                    bounds: tuple[float, float] = TEMPERATURE_BOUNDS) -> TemperatureFit:
    """Fit T by minimising the validation NLL over :math:`\\log T` (bounded Brent).

    .. math:: T^* = \\arg\\min_{T \\in [T_{lo}, T_{hi}]}
              -\\frac1N \\sum_i \\log\\operatorname{softmax}(s_i / T + \\log\\pi)_{y_i}

    Args:
        scores: (N, C) validation scores at T = 1.
        labels: (N,) validation labels.
        log_prior: (C,) log prior used in the objective; None = uniform.
        bounds: (T_lo, T_hi) search interval.

    Returns:
        A :class:`TemperatureFit`. With N = 0, ``fitted`` is False and T = 1.
    """
    s = _as2d(scores, "scores")
    y = np.asarray(labels, dtype=np.int64).reshape(-1)
    if len(y) != len(s):
        raise ValueError(f"scores ({len(s)}) and labels ({len(y)}) differ in length")
    if len(y) == 0:
        return TemperatureFit(1.0, float("nan"), float("nan"), 0, fitted=False)
    lo, hi = math.log(bounds[0]), math.log(bounds[1])

    def objective(u: float) -> float:
        return nll_at(s, y, math.exp(u), log_prior)

    res = minimize_scalar(objective, bounds=(lo, hi), method="bounded",
                          options={"xatol": 1e-6, "maxiter": 500})
    # Brent's bounded method never evaluates the end points; check them (and T = 1).
    candidates = [(float(res.fun), float(res.x)), (objective(lo), lo), (objective(hi), hi),
                  (objective(0.0), 0.0)]
    best_nll, best_u = min(candidates, key=lambda t: t[0])
    at_bound = abs(best_u - lo) < 1e-3 or abs(best_u - hi) < 1e-3
    return TemperatureFit(temperature=math.exp(best_u), nll_before=objective(0.0),
                          nll_after=best_nll, n=len(y), fitted=True, at_bound=at_bound)
