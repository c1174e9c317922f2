"""The model-free core of the Bayesian analysis: scores in, typed results out.

:func:`analyse` takes class scores (log-likelihoods at T = 1) of validation and evaluated rows
and a prior; it fits the temperature on the validation rows and reports, at the fitted
temperature and at T = 1:

- ``kl_posterior_prior``: mean over captures of KL(posterior || prior) (nats);
- ``kl_label_meanposterior``: KL(true class distribution || mean posterior) (nats);
- ``accuracy`` (MAP, in %), ``nll`` (nats), ``brier``, ``ece`` (15 bins);
- for K frames per scene, the sequential posterior after k = 1..K frames (``frames``) and, for
  comparison, the posterior of the mean of the K frames (``mean_frame``).

The per-capture metrics are computed over every evaluated row, i.e. every (scene, frame) pair
among the first K frames of each scene; the multi-frame curves are computed per scene. Where
the scores come from (prototype distances or a classifier head) is
:mod:`opticsfree.bayes.model`'s business.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np

from opticsfree.bayes.calibration import N_BINS, calibration_metrics, nll, reliability
from opticsfree.bayes.divergence import (
    kl_label_meanposterior,
    kl_posterior_prior,
    kl_prior_posterior,
)
from opticsfree.bayes.likelihood import TemperatureFit, fit_temperature, log_likelihood
from opticsfree.bayes.posterior import log_posterior, log_prior_of, sequential_log_posteriors
from opticsfree.errors import DataError

#: Number of example captures in the prior/likelihood/posterior bar figure.
N_EXAMPLES = 4


# --------------------------------------------------------------------------------------------
# Frame grouping


@dataclass
class FrameGroups:
    """Rows of a split grouped by scene, frames in order.

    Attributes:
        scene_ids: S scene ids in order of first appearance.
        index: (S, K) int array, ``index[s, k]`` = row of frame k of scene s.
        labels: (S,) class per scene.
        available: the smallest number of frames any scene has.
        max_frames: the largest number of frames any scene has.
    """

    scene_ids: list[str]
    index: np.ndarray
    labels: np.ndarray
    available: int
    max_frames: int

    @property
    def k(self) -> int:
        """Frames used per scene."""
        return int(self.index.shape[1])

    @property
    def rows(self) -> np.ndarray:
        """Every used row, scene-major (S * K,)."""
        return self.index.reshape(-1)


def group_frames(ids: Sequence[str], labels: np.ndarray, frames: np.ndarray | None = None,
                 k: int | None = None, split: str = "test") -> FrameGroups:
    """Group rows sharing a scene id; order each scene's rows by frame index.

    Args:
        ids: scene id per row (N,).
        labels: class per row (N,).
        frames: frame index per row (N,); None = order of appearance within a scene.
        k: frames to use per scene (the first k); None = all that every scene has.
        split: split name for error messages.

    Returns:
        A :class:`FrameGroups`.

    Raises:
        DataError: ``k`` < 1 or more than the scenes have, or the frames of a scene disagree on
            the label.
    """
    y = np.asarray(labels, dtype=np.int64).reshape(-1)
    if len(ids) != len(y):
        raise ValueError(f"ids ({len(ids)}) and labels ({len(y)}) differ in length")
    if len(y) == 0:
        raise DataError(f"the {split} split has no rows")
    fr = np.arange(len(y)) if frames is None else np.asarray(frames, dtype=np.int64).reshape(-1)
    groups: dict[str, list[int]] = {}
    for i, s in enumerate(ids):
        groups.setdefault(str(s), []).append(i)
    rows = [sorted(g, key=lambda i: (fr[i], i)) for g in groups.values()]
    sizes = [len(g) for g in rows]
    available, largest = min(sizes), max(sizes)
    if k is None:
        k = available
    if k < 1:
        raise DataError(f"--frames must be >= 1, got {k}")
    if k > available:
        raise DataError(f"--frames {k}: the {split} split has only {available} frame(s) per scene")
    index = np.array([g[:k] for g in rows], dtype=np.int64)
    scene_labels = y[index[:, 0]]
    bad = np.flatnonzero((y[index] != scene_labels[:, None]).any(1))
    if bad.size:
        raise DataError(f"the {split} split: frames of scene {list(groups)[bad[0]]!r} have "
                        "different labels")
    return FrameGroups(list(groups), index, scene_labels, available, largest)


# --------------------------------------------------------------------------------------------
# Typed results


@dataclass(frozen=True)
class PosteriorMetrics:
    """The posterior prior x softmax(scores / T) scored on the evaluated rows.

    Attributes:
        temperature: T.
        accuracy: MAP accuracy (%).
        nll: mean negative log posterior of the true class (nats).
        brier: Brier score, summed over classes.
        ece: expected calibration error (15 equal-width bins).
        kl_posterior_prior: mean KL(posterior || prior) (nats).
        kl_label_meanposterior: KL(class frequencies || mean posterior) (nats).
        kl_prior_posterior: mean KL(prior || posterior) (nats).
    """

    temperature: float
    accuracy: float
    nll: float
    brier: float
    ece: float
    kl_posterior_prior: float
    kl_label_meanposterior: float
    kl_prior_posterior: float

    def to_json(self) -> dict[str, Any]:
        """The fields in order (floats; non-finite values are left to the caller)."""
        return {"temperature": self.temperature, "accuracy": self.accuracy, "nll": self.nll,
                "brier": self.brier, "ece": self.ece,
                "kl_posterior_prior": self.kl_posterior_prior,
                "kl_label_meanposterior": self.kl_label_meanposterior,
                "kl_prior_posterior": self.kl_prior_posterior}


@dataclass(frozen=True)
class FramePoint:
    """The posterior of a scene after fusing k frames (per scene, at the fitted T).

    Attributes:
        k: frames fused.
        accuracy: MAP accuracy (%) over scenes.
        kl: mean KL(posterior || prior) (nats).
        nll: mean negative log posterior of the true class (nats).
    """

    k: int
    accuracy: float
    kl: float
    nll: float

    def to_json(self) -> dict[str, Any]:
        """``{"k", "accuracy", "kl", "nll"}``."""
        return {"k": self.k, "accuracy": self.accuracy, "kl": self.kl, "nll": self.nll}


@dataclass(frozen=True)
class Example:
    """One capture of the bar figure: prior, (normalised) likelihood and posterior.

    Attributes:
        row: the capture's row in the evaluated split.
        label: its class.
        prior, likelihood, posterior: C probabilities each.
    """

    row: int
    label: int
    prior: list[float]
    likelihood: list[float]
    posterior: list[float]

    def to_json(self) -> dict[str, Any]:
        """``{"row", "label", "prior", "likelihood", "posterior"}``."""
        return {"row": self.row, "label": self.label, "prior": self.prior,
                "likelihood": self.likelihood, "posterior": self.posterior}


@dataclass
class Analysis:
    """The result of :func:`analyse`.

    Attributes:
        fitted: the metrics at the fitted temperature (the headline numbers).
        before: the same at T = 1.
        temperature_fit: how T was fitted on the validation rows.
        n: evaluated rows (scenes x frames used).
        n_scenes: evaluated scenes.
        frames_per_scene: K, the frames used per scene.
        frames: the sequential posterior after k = 1..K frames.
        mean_frame: the posterior of the mean of the K frames (K > 1 with mean scores only).
        reliability: reliability-diagram bins at the fitted T
            (:func:`opticsfree.bayes.calibration.reliability`).
        reliability_before: the same at T = 1.
        examples: the example captures of the bar figure.
    """

    fitted: PosteriorMetrics
    before: PosteriorMetrics
    temperature_fit: TemperatureFit
    n: int
    n_scenes: int
    frames_per_scene: int
    frames: list[FramePoint]
    mean_frame: FramePoint | None = None
    reliability: dict[str, Any] = field(default_factory=dict)
    reliability_before: dict[str, Any] = field(default_factory=dict)
    examples: list[Example] = field(default_factory=list)

    @property
    def temperature(self) -> float:
        """The fitted T."""
        return self.fitted.temperature

    @property
    def accuracy(self) -> float:
        """MAP accuracy (%) at the fitted T."""
        return self.fitted.accuracy

    def to_json(self) -> dict[str, Any]:
        """The report's analysis keys: the fitted metrics at the top level, then
        ``before_temperature``, ``temperature_fit``, ``n``, ``n_scenes``, ``frames_per_scene``,
        ``frames``, ``mean_frame`` and ``mean_frame_accuracy`` (K > 1), ``reliability``,
        ``reliability_before``, ``examples``."""
        out = self.fitted.to_json()
        out["before_temperature"] = self.before.to_json()
        out["temperature_fit"] = self.temperature_fit.to_dict()
        out["n"] = self.n
        out["n_scenes"] = self.n_scenes
        out["frames_per_scene"] = self.frames_per_scene
        out["frames"] = [f.to_json() for f in self.frames]
        if self.mean_frame is not None:
            out["mean_frame"] = self.mean_frame.to_json()
            out["mean_frame_accuracy"] = self.mean_frame.accuracy
        out["reliability"] = self.reliability
        out["reliability_before"] = self.reliability_before
        out["examples"] = [e.to_json() for e in self.examples]
        return out


# --------------------------------------------------------------------------------------------
# The model-free core


def _posterior_block(log_prior: np.ndarray, prior: np.ndarray, scores: np.ndarray,
                     labels: np.ndarray, temperature: float,
                     n_bins: int) -> tuple[PosteriorMetrics, dict]:
    """Metrics of prior x softmax(scores / T) on (scores, labels); plus reliability data."""
    lp = log_posterior(log_prior, log_likelihood(scores, temperature))
    q = np.exp(lp)
    m = calibration_metrics(lp, labels, n_bins)
    block = PosteriorMetrics(
        temperature=float(temperature), accuracy=100.0 * m["accuracy"], nll=m["nll"],
        brier=m["brier"], ece=m["ece"], kl_posterior_prior=kl_posterior_prior(q, prior),
        kl_label_meanposterior=kl_label_meanposterior(labels, q),
        kl_prior_posterior=kl_prior_posterior(q, prior))
    return block, reliability(q, labels, n_bins)


def _frame_point(k: int, log_post: np.ndarray, labels: np.ndarray, prior: np.ndarray) -> FramePoint:
    q = np.exp(log_post)
    return FramePoint(k=k, accuracy=100.0 * float((q.argmax(1) == labels).mean()),
                      kl=kl_posterior_prior(q, prior), nll=nll(log_post, labels))


def analyse(scores_val: np.ndarray, labels_val: np.ndarray, scores: np.ndarray,
            labels: np.ndarray, prior: np.ndarray, groups: FrameGroups | None = None,
            mean_scores: np.ndarray | None = None, n_bins: int = N_BINS,
            n_examples: int = N_EXAMPLES) -> Analysis:
    """The Bayesian analysis from scores (log-likelihoods at T = 1); no model needed.

    Args:
        scores_val: validation scores, used to fit T (Nv may be 0: T stays 1).
        labels_val: validation labels.
        scores: scores of the evaluated rows.
        labels: their labels.
        prior: prior probabilities.
        groups: frame grouping of the evaluated rows; None = every row is its own scene.
        mean_scores: scores of the mean of each scene's K frames (used when K > 1).
        n_bins: ECE bins.
        n_examples: example captures kept for the bar figure.

    Returns:
        The :class:`Analysis`.

    Shape:
        scores_val: (Nv, C); labels_val: (Nv,); scores: (N, C); labels: (N,); prior: (C,);
        mean_scores: (S, C), S the number of scenes.
    """
    s = np.asarray(scores, dtype=np.float64)
    y = np.asarray(labels, dtype=np.int64)
    prior = np.asarray(prior, dtype=np.float64)
    if s.ndim != 2 or s.shape[1] != len(prior) or len(s) != len(y):
        raise ValueError(f"scores {s.shape}, labels {y.shape} and prior {prior.shape} disagree")
    if groups is None:
        groups = FrameGroups([str(i) for i in range(len(y))], np.arange(len(y))[:, None], y, 1, 1)
    log_prior = log_prior_of(prior)

    fit: TemperatureFit = fit_temperature(scores_val, labels_val)
    T = fit.temperature

    rows = groups.rows
    before, rel_before = _posterior_block(log_prior, prior, s[rows], y[rows], 1.0, n_bins)
    after, rel_after = _posterior_block(log_prior, prior, s[rows], y[rows], T, n_bins)

    # sequential multi-frame update: posterior after frame k is the prior for frame k + 1
    lls = [log_likelihood(s[groups.index[:, k]], T) for k in range(groups.k)]
    seq = sequential_log_posteriors(log_prior, lls)
    curve = [_frame_point(k + 1, seq[k], groups.labels, prior) for k in range(groups.k)]

    mean_frame = None
    if mean_scores is not None and groups.k > 1:
        ms = np.asarray(mean_scores, dtype=np.float64)
        if ms.shape != (len(groups.scene_ids), len(prior)):
            raise ValueError(f"mean_scores must be (S, C) = ({len(groups.scene_ids)}, "
                             f"{len(prior)}), got {ms.shape}")
        lp = log_posterior(log_prior, log_likelihood(ms, T))
        mean_frame = _frame_point(groups.k, lp, groups.labels, prior)
    return Analysis(fitted=after, before=before, temperature_fit=fit, n=int(len(rows)),
                    n_scenes=len(groups.scene_ids), frames_per_scene=groups.k, frames=curve,
                    mean_frame=mean_frame, reliability=rel_after, reliability_before=rel_before,
                    examples=_examples(s, y, groups, log_prior, prior, T, n_examples))


def _examples(s: np.ndarray, y: np.ndarray, groups: FrameGroups, log_prior: np.ndarray,
              prior: np.ndarray, T: float, n: int) -> list[Example]:
    """First-frame rows of up to ``n`` scenes, one per class in order of first appearance."""
    first = groups.index[:, 0]
    chosen: list[int] = []
    seen: set[int] = set()
    for r in first:
        if int(y[r]) not in seen:
            seen.add(int(y[r]))
            chosen.append(int(r))
        if len(chosen) == n:
            break
    for r in first:  # fewer classes than n: fill with further scenes
        if len(chosen) >= n:
            break
        if int(r) not in chosen:
            chosen.append(int(r))
    ll = log_likelihood(s[chosen], T)
    post = np.exp(log_posterior(log_prior, ll))
    return [Example(row=r, label=int(y[r]), prior=prior.tolist(),
                    likelihood=np.exp(ll[i]).tolist(), posterior=post[i].tolist())
            for i, r in enumerate(chosen)]
