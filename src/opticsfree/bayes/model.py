"""The Bayesian analysis of a trained model: from a loaded model to a typed result.

:func:`analyse_model` takes a :class:`opticsfree.evaluation.contract.TrainedEmbedder` (e.g. a
:class:`opticsfree.training.TrainedModel`), builds the likelihood (metric or cross-entropy, see
:mod:`opticsfree.bayes.likelihood`) and the prior, scores the run's validation split (to fit the
temperature) and the evaluated split, and hands the scores to
:func:`opticsfree.bayes.analysis.analyse`. It writes nothing: :mod:`opticsfree.bayes.report`
writes the files.

- ``metric`` scores are :func:`~opticsfree.bayes.likelihood.metric_scores` against the class
  prototypes of the run's train originals (:func:`opticsfree.evaluation.train_gallery`, as the
  evaluation's prototype classifier);
- ``ce`` scores are the classifier head's logits.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from opticsfree.bayes.analysis import Analysis, FrameGroups, analyse, group_frames
from opticsfree.bayes.calibration import N_BINS
from opticsfree.bayes.likelihood import ce_scores, choose_likelihood, metric_scores
from opticsfree.bayes.priors import prior_label, resolve_prior
from opticsfree.errors import ConfigError, DataError, OpticsfreeError
from opticsfree.evaluation.contract import TrainedEmbedder
from opticsfree.evaluation.embed import embed_split, load_scored_split, train_gallery

if TYPE_CHECKING:
    from torch import Tensor

    from opticsfree.captures.loader import CaptureSplit

SPLITS = ("test", "val", "train")
#: Keys left out of the summary (``to_json(detail=False)``: ``bayes --json``).
DETAIL_KEYS = ("reliability", "reliability_before", "examples")
CONVENTIONS = ("natural logs (nats); KL(posterior||prior) averaged over captures; "
               "KL(label distribution||mean posterior) with the empirical class "
               "frequencies of the split; accuracy in %; Brier summed over classes; "
               f"ECE with {N_BINS} equal-width bins")


@dataclass
class BayesResult:
    """The Bayesian analysis of one checkpoint on one split.

    Attributes:
        analysis: the numbers (:class:`opticsfree.bayes.analysis.Analysis`).
        prior: the prior's label (``uniform``, ``train`` or ``file:<name>``).
        prior_probs: the prior's C probabilities.
        likelihood: ``metric`` or ``ce``.
        split: the evaluated split.
        captures: the capture set evaluated (the run's own, or the one given).
        epoch: the checkpoint's epoch.
        classes: class names in label order.
        frames_available: the frames every scene of the split has.
        tag: the name of the outputs: the split, plus ``-<set name>`` for another capture set.
        run: the run directory, as recorded in the file (None when not given).
        temperature_note: why T was not fitted (no or an empty validation split), else None.
        outputs: the files written (figures, then the JSON; empty until written).
        images: the evaluated split's lensless captures, for the bar figure (not in JSON).
    """

    analysis: Analysis
    prior: str
    prior_probs: list[float]
    likelihood: str
    split: str
    captures: str
    epoch: int
    classes: list[str]
    frames_available: int
    tag: str
    run: str | None = None
    temperature_note: str | None = None
    outputs: list[str] = field(default_factory=list)
    images: Tensor | None = field(default=None, repr=False, compare=False)

    def to_json(self, detail: bool = True) -> dict[str, Any]:
        """The report as JSON (non-finite numbers become null).

        Args:
            detail: include ``reliability``, ``reliability_before`` and ``examples`` (the
                file); False gives the object ``bayes --json`` prints.

        Returns:
            The :class:`~opticsfree.bayes.analysis.Analysis` keys (``kl_posterior_prior``,
            ``kl_label_meanposterior``, ``accuracy``, ``nll``, ``brier``, ``ece``,
            ``temperature``, ... ``frames``), then ``prior``, ``prior_probs``, ``likelihood``,
            ``split``, ``captures``, ``epoch``, ``run``, ``classes``, ``frames_available``,
            ``conventions``, ``outputs``.
        """
        out = self.analysis.to_json()
        if self.temperature_note:
            out["temperature_fit"]["reason"] = self.temperature_note
        out.update({
            "prior": self.prior,
            "prior_probs": self.prior_probs,
            "likelihood": self.likelihood,
            "split": self.split,
            "captures": self.captures,
            "epoch": self.epoch,
            "run": self.run,
            "classes": self.classes,
            "frames_available": self.frames_available,
            "conventions": CONVENTIONS,
            "outputs": list(self.outputs),
        })
        if not detail:
            out = {k: v for k, v in out.items() if k not in DETAIL_KEYS}
        return _json_safe(out)


def _json_safe(x: Any) -> Any:
    """Replace non-finite floats (not valid JSON) by None, recursively."""
    if isinstance(x, dict):
        return {k: _json_safe(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_json_safe(v) for v in x]
    if isinstance(x, (float, np.floating)):
        return float(x) if math.isfinite(float(x)) else None
    if isinstance(x, np.integer):
        return int(x)
    return x


def _labels(t: Any) -> np.ndarray:
    return np.asarray(t.cpu().numpy() if hasattr(t, "cpu") else t, dtype=np.int64)


def _load_val(model: TrainedEmbedder) -> tuple[CaptureSplit | None, str | None]:
    """The run's validation split, or (None, reason) when it has none."""
    try:
        va = model.load_split("val")
    except OpticsfreeError as e:
        return None, f"no validation split ({e})"
    if len(va.labels) == 0:
        return None, "the validation split is empty"
    return va, None


def head_logits(model: TrainedEmbedder, images: Tensor, batch: int = 256) -> np.ndarray:
    """Classifier-head logits of uint8 lensless images, as float64.

    Shape:
        images: (N, C, size, size); returns: (N, len(model.classes)).
    """
    import torch

    n_classes = len(model.classes)
    if len(images) == 0:
        return np.zeros((0, n_classes))
    out = []
    with torch.no_grad():
        for i in range(0, len(images), batch):
            z = model.logits(images[i:i + batch])
            if z is None:
                raise ConfigError("--likelihood ce: the run's model has no classifier head")
            out.append(z.detach().to("cpu", torch.float64).numpy())
    return np.concatenate(out)


@dataclass
class _Scores:
    """Class scores (log-likelihoods at T = 1) of one model, and the train rows of the prior."""

    val: np.ndarray
    val_labels: np.ndarray
    evaluated: np.ndarray
    mean: np.ndarray | None
    train_labels: np.ndarray
    train_ids: list[str]


def _metric_scores(model: TrainedEmbedder, ev: CaptureSplit, va: CaptureSplit | None,
                   groups: FrameGroups) -> _Scores:
    """Scores against the prototypes of the train originals (one per scene)."""
    gallery = train_gallery(model)
    protos = np.asarray(gallery.prototypes)
    C = len(model.classes)
    scores_val, labels_val = np.zeros((0, C)), np.zeros(0, dtype=np.int64)
    if va is not None:
        scores_val = metric_scores(embed_split(model, va, ("lensless",)).lensless, protos)
        labels_val = _labels(va.labels)
    x = np.asarray(embed_split(model, ev, ("lensless",)).lensless, dtype=np.float64)
    mean = None
    if groups.k > 1:
        m = x[groups.index].mean(axis=1)
        m /= np.maximum(np.linalg.norm(m, axis=1, keepdims=True), 1e-12)
        mean = metric_scores(m, protos)
    return _Scores(scores_val, labels_val, metric_scores(x, protos), mean,
                   _labels(gallery.train.labels), list(gallery.train.ids))


def _ce_scores(model: TrainedEmbedder, ev: CaptureSplit, va: CaptureSplit | None,
               groups: FrameGroups) -> _Scores:
    """Scores from the classifier head; the mean of K frames is the head on the mean image."""
    tr = model.load_split("train")
    C = len(model.classes)
    scores_val, labels_val = np.zeros((0, C)), np.zeros(0, dtype=np.int64)
    if va is not None:
        scores_val = ce_scores(head_logits(model, va.lensless))
        labels_val = _labels(va.labels)
    mean = None
    if groups.k > 1:
        import torch

        idx = torch.as_tensor(groups.index)
        imgs = ev.lensless[idx].float().mean(1).round().to(torch.uint8)
        mean = ce_scores(head_logits(model, imgs))
    return _Scores(scores_val, labels_val, ce_scores(head_logits(model, ev.lensless)), mean,
                   _labels(tr.labels), list(tr.ids))


def analyse_model(model: TrainedEmbedder, *, prior: str | os.PathLike = "uniform",
                  frames: int | None = None, split: str = "test", likelihood: str = "auto",
                  captures: str | os.PathLike | None = None,
                  run: str | os.PathLike | None = None) -> BayesResult:
    """Bayesian inference with a trained model: priors, posteriors, KL, calibration, frames.

    Args:
        model: the loaded checkpoint.
        prior: ``"uniform"``, ``"train"`` (training class frequencies, scenes counted once) or
            a JSON prior file.
        frames: use the first K frames of each scene; None = all frames every scene has.
        split: the evaluated split (``test``, ``val`` or ``train``).
        likelihood: ``"auto"`` (``ce`` for a cross-entropy model with a head, else
            ``metric``), ``"metric"`` or ``"ce"``.
        captures: evaluate ``split`` of *another* capture set with the same classes (e.g. a
            multi-frame set made with ``simulate --frames K``, or real captures of the same
            scenes); prototypes, prior and temperature still come from the run's own train and
            validation splits. The outputs are then tagged ``<split>-<set name>``.
        run: the run directory, recorded in the result (``"run"``).

    Returns:
        The :class:`BayesResult`; nothing is written
        (:func:`opticsfree.bayes.report.write_report` writes it).

    Raises:
        ConfigError: unknown split or likelihood, or ``train``/``val`` with ``captures``.
        DataError: bad prior, bad ``frames``, another set with different classes, or data
            problems reported by the loaders.
    """
    if split not in SPLITS:
        raise ConfigError(f"--split: expected one of {', '.join(SPLITS)}, got {split!r}")
    if frames is not None and frames < 1:
        raise DataError(f"--frames must be >= 1, got {frames}")
    classes = list(model.classes)
    kind = choose_likelihood(model.loss, bool(model.has_head), likelihood)

    tag = split
    ev = load_scored_split(model, split, captures)
    if captures is not None:
        tag = f"{split}-{Path(captures).resolve().name}"
    labels, ids = _labels(ev.labels), list(ev.ids)
    if len(labels) == 0:
        raise DataError(f"{model.captures}: split {split!r} has no captures")
    groups = group_frames(ids, labels, _labels(ev.frames), frames, split)
    va, no_val = _load_val(model)
    scores = (_metric_scores if kind == "metric" else _ce_scores)(model, ev, va, groups)
    prior_vec = resolve_prior(prior, classes, scores.train_labels, scores.train_ids)
    analysis = analyse(scores.val, scores.val_labels, scores.evaluated, labels, prior_vec, groups,
                       scores.mean)
    return BayesResult(
        analysis=analysis, prior=prior_label(prior), prior_probs=prior_vec.tolist(),
        likelihood=kind, split=split,
        captures=str(captures if captures is not None else model.captures),
        epoch=int(model.epoch), classes=classes, frames_available=groups.available, tag=tag,
        run=None if run is None else str(run), temperature_note=no_val, images=ev.lensless)
