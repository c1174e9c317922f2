"""``opticsfree bayes``: the Bayesian analysis of a trained run.

:func:`bayes_run` loads a checkpoint of a metric-learning RUN, builds the likelihood (metric or
cross-entropy, see :mod:`opticsfree.bayes.likelihood`), fits its temperature on the run's
validation split, combines it with a prior, and reports on the evaluated split:

- ``kl_posterior_prior``: mean over captures of KL(posterior || prior) (nats);
- ``kl_label_meanposterior``: KL(true class distribution || mean posterior) (nats);
- ``accuracy`` (MAP, in %), ``nll`` (nats), ``brier``, ``ece`` (15 bins) at the fitted
  temperature, and the same before temperature fitting (T = 1) under ``before_temperature``;
- for capture sets with K frames per scene, the sequential posterior after k = 1..K frames
  (``frames``) and, for comparison, the posterior of the mean of the K frame embeddings
  (``mean_frame``).

:func:`analyse` is the model-free core (scores in, report out) that :func:`bayes_run` calls; it
is what the tests exercise with synthetic scores.

The per-capture metrics (top-level keys, ``before_temperature``) are computed over every
evaluated row, i.e. every (scene, frame) pair among the first K frames of each scene; the
multi-frame curves are computed per scene.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from opticsfree.bayes.calibration import N_BINS, calibration_metrics, nll, reliability
from opticsfree.bayes.divergence import (
    kl_label_meanposterior,
    kl_posterior_prior,
    kl_prior_posterior,
)
from opticsfree.bayes.likelihood import (
    LIKELIHOODS,
    TemperatureFit,
    ce_scores,
    fit_temperature,
    log_likelihood,
    metric_scores,
)
from opticsfree.bayes.posterior import log_posterior, log_prior_of, sequential_log_posteriors
from opticsfree.bayes.priors import prior_label, resolve_prior
from opticsfree.errors import ConfigError, DataError, OpticsfreeError
from opticsfree.utils.io import write_json

SPLITS = ("test", "val", "train")
#: Config ``loss`` names that make ``likelihood="auto"`` use the classifier head.
CE_LOSS_NAMES = ("ce", "cross_entropy", "cross-entropy", "crossentropy", "softmax")
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
# The model-free core


def _posterior_block(log_prior: np.ndarray, prior: np.ndarray, scores: np.ndarray,
                     labels: np.ndarray, temperature: float, n_bins: int) -> tuple[dict, dict]:
    """Metrics of prior x softmax(scores / T) on (scores, labels); plus reliability data."""
    lp = log_posterior(log_prior, log_likelihood(scores, temperature))
    q = np.exp(lp)
    m = calibration_metrics(lp, labels, n_bins)
    block = {
        "temperature": float(temperature),
        "accuracy": 100.0 * m["accuracy"],
        "nll": m["nll"],
        "brier": m["brier"],
        "ece": m["ece"],
        "kl_posterior_prior": kl_posterior_prior(q, prior),
        "kl_label_meanposterior": kl_label_meanposterior(labels, q),
        "kl_prior_posterior": kl_prior_posterior(q, prior),
    }
    return block, reliability(q, labels, n_bins)


def analyse(scores_val: np.ndarray, labels_val: np.ndarray, scores: np.ndarray,
            labels: np.ndarray, prior: np.ndarray, groups: FrameGroups | None = None,
            mean_scores: np.ndarray | None = None, n_bins: int = N_BINS,
            n_examples: int = N_EXAMPLES) -> dict[str, Any]:
    """The Bayesian report from scores (log-likelihoods at T = 1); no model needed.

    Args:
        scores_val: (Nv, C) validation scores, used to fit T (Nv may be 0: T stays 1).
        labels_val: (Nv,) validation labels.
        scores: (N, C) scores of the evaluated rows.
        labels: (N,) their labels.
        prior: (C,) prior probabilities.
        groups: frame grouping of the evaluated rows; None = every row is its own scene.
        mean_scores: (S, C) scores of the mean of each scene's K frames (K > 1 only).
        n_bins: ECE bins.
        n_examples: example captures kept for the bar figure.

    Returns:
        The report dict (see :func:`bayes_run`), plus ``"examples"`` (row, label, prior,
        likelihood, posterior per example capture) and ``"reliability"`` /
        ``"reliability_before"`` for the figures.
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
    curve = []
    for k in range(groups.k):
        q = np.exp(seq[k])
        curve.append({"k": k + 1,
                      "accuracy": 100.0 * float((q.argmax(1) == groups.labels).mean()),
                      "kl": kl_posterior_prior(q, prior),
                      "nll": nll(seq[k], groups.labels)})

    out: dict[str, Any] = dict(after)
    out["before_temperature"] = before
    out["temperature_fit"] = fit.to_dict()
    out["n"] = int(len(rows))
    out["n_scenes"] = len(groups.scene_ids)
    out["frames_per_scene"] = groups.k
    out["frames"] = curve
    if mean_scores is not None and groups.k > 1:
        ms = np.asarray(mean_scores, dtype=np.float64)
        if ms.shape != (len(groups.scene_ids), len(prior)):
            raise ValueError(f"mean_scores must be (S, C) = ({len(groups.scene_ids)}, "
                             f"{len(prior)}), got {ms.shape}")
        lp = log_posterior(log_prior, log_likelihood(ms, T))
        q = np.exp(lp)
        out["mean_frame"] = {"k": groups.k,
                             "accuracy": 100.0 * float((q.argmax(1) == groups.labels).mean()),
                             "kl": kl_posterior_prior(q, prior),
                             "nll": nll(lp, groups.labels)}
        out["mean_frame_accuracy"] = out["mean_frame"]["accuracy"]
    out["reliability"] = rel_after
    out["reliability_before"] = rel_before
    out["examples"] = _examples(s, y, groups, log_prior, prior, T, n_examples)
    return out


def _examples(s: np.ndarray, y: np.ndarray, groups: FrameGroups, log_prior: np.ndarray,
              prior: np.ndarray, T: float, n: int) -> list[dict]:
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
    return [{"row": r, "label": int(y[r]), "prior": prior.tolist(),
             "likelihood": np.exp(ll[i]).tolist(), "posterior": post[i].tolist()}
            for i, r in enumerate(chosen)]


# --------------------------------------------------------------------------------------------
# Loading a run (thin indirections so tests can substitute a test double)


def _load_trained(run: Path, epoch: int | None) -> Any:
    from opticsfree.training import load_trained

    return load_trained(run, epoch)


def _embed(trained: Any, split: Any, domains: Sequence[str]) -> Any:
    """:func:`opticsfree.evaluation.embed_split` (split name or loaded CaptureSplit)."""
    from opticsfree.evaluation import embed_split

    return embed_split(trained, split, domains=tuple(domains))


def _prototypes(original: np.ndarray, labels: np.ndarray, n_classes: int) -> np.ndarray:
    from opticsfree.evaluation import class_prototypes

    return np.asarray(class_prototypes(original, labels, n_classes))


def _load_val(trained: Any) -> tuple[Any, str | None]:
    """The run's validation split, or (None, reason) when it has none."""
    try:
        va = trained.load_split("val")
    except OpticsfreeError as e:
        return None, f"no validation split ({e})"
    if len(va.labels) == 0:
        return None, "the validation split is empty"
    return va, None


def _logits(trained: Any, images: Any, batch: int = 256) -> np.ndarray:
    """Classifier-head logits of uint8 (N, C, H, W) lensless images, as float64 (N, classes)."""
    import torch

    n_classes = len(trained.classes)
    if len(images) == 0:
        return np.zeros((0, n_classes))
    out = []
    with torch.no_grad():
        for i in range(0, len(images), batch):
            z = trained.logits(images[i:i + batch])
            if z is None:
                raise ConfigError("--likelihood ce: the run's model has no classifier head")
            out.append(z.detach().to("cpu", torch.float64).numpy())
    return np.concatenate(out)


def _loss_name(config: dict) -> str:
    loss = config.get("loss") if isinstance(config, dict) else None
    if isinstance(loss, dict):
        loss = loss.get("name") or loss.get("type")
    return str(loss or "").lower()


def choose_likelihood(trained: Any, likelihood: str = "auto") -> str:
    """``metric`` or ``ce``: ``auto`` uses the head only for a cross-entropy-trained model.

    Raises:
        ConfigError: an unknown name, or ``ce`` for a model without a classifier head.
    """
    if likelihood == "auto":
        has_head = bool(getattr(trained, "has_head", False))
        return "ce" if has_head and _loss_name(trained.config) in CE_LOSS_NAMES else "metric"
    if likelihood not in LIKELIHOODS:
        raise ConfigError(f"--likelihood: expected auto, metric or ce, got {likelihood!r}")
    if likelihood == "ce" and not getattr(trained, "has_head", False):
        raise ConfigError("--likelihood ce: the run's model has no classifier head")
    return likelihood


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


def bayes_run(run: str | os.PathLike, checkpoint: int | None = None,
              prior: str | os.PathLike = "uniform", frames: int | None = None,
              split: str = "test", likelihood: str = "auto", figures: bool = True,
              write: bool = True, captures: str | os.PathLike | None = None) -> dict[str, Any]:
    """Bayesian inference on a trained RUN: priors, posteriors, KL, calibration, frames.

    Args:
        run: the RUN directory of a metric-learning run.
        checkpoint: epoch to load; None = the last checkpoint.
        prior: ``"uniform"``, ``"train"`` (training class frequencies) or a JSON prior file.
        frames: use the first K frames of each scene; None = all frames every scene has.
        split: the evaluated split (``test``, ``val`` or ``train``).
        likelihood: ``"auto"`` (``ce`` for a cross-entropy model with a head, else
            ``metric``), ``"metric"`` or ``"ce"``.
        figures: write the figures under ``RUN/figures/``.
        write: write the report to ``RUN/bayes_<split>.json``.
        captures: evaluate ``split`` of *another* capture set with the same classes (e.g. a
            multi-frame set made with ``simulate --frames K``, or real captures of the same
            scenes); prototypes, prior and temperature still come from the run's own train and
            validation splits. Outputs are then named ``bayes_<split>-<set name>``.

    Returns:
        A JSON-ready dict with the contract keys ``kl_posterior_prior``,
        ``kl_label_meanposterior``, ``accuracy`` (%), ``nll``, ``brier``, ``ece``,
        ``temperature`` (all at the fitted temperature), and ``kl_prior_posterior``,
        ``before_temperature`` (same metrics at T = 1), ``temperature_fit``, ``frames``
        (``[{"k", "accuracy", "kl", "nll"}]`` for k = 1..K), ``mean_frame`` /
        ``mean_frame_accuracy`` (K > 1), ``reliability``, ``examples``, ``prior``,
        ``prior_probs``, ``likelihood``, ``split``, ``epoch``, ``classes``, ``outputs``.

    Raises:
        ConfigError: unknown split or likelihood.
        DataError: bad prior, bad ``frames``, or data problems reported by the loaders.
    """
    run = Path(run)
    if split not in SPLITS:
        raise ConfigError(f"--split: expected one of {', '.join(SPLITS)}, got {split!r}")
    if frames is not None and frames < 1:
        raise DataError(f"--frames must be >= 1, got {frames}")
    trained = _load_trained(run, checkpoint)
    classes = list(trained.classes)
    C = len(classes)
    kind = choose_likelihood(trained, likelihood)

    tag = split
    if captures is None:
        ev = trained.load_split(split)
    else:
        if split in ("train", "val"):
            raise ConfigError(f"--split {split} with --captures: train and val are the run's own "
                              f"splits; evaluate another set's test split (--split test)")
        from opticsfree.captures.loader import load_captures

        ev = load_captures(captures, split, trained.size)
        if list(ev.classes) != classes:
            raise DataError(f"{captures}: classes {list(ev.classes)} differ from the run's {classes}")
        tag = f"{split}-{Path(captures).resolve().name}"
    labels, ids = _np(ev.labels), list(ev.ids)
    if len(labels) == 0:
        raise DataError(f"{getattr(trained, 'captures', run)}: split {split!r} has no captures")
    groups = group_frames(ids, labels, _np(ev.frames), frames, split)
    va, no_val = _load_val(trained)
    mean_scores = None
    if kind == "metric":
        # prototypes: L2-normalised class means of the train originals, one per scene (as the
        # evaluation's prototype classifier)
        train = _embed(trained, "train", ("original",))
        gallery, gallery_labels = train.unique_originals()
        protos = _prototypes(gallery, gallery_labels, C)
        train_labels, train_ids = _np(train.labels), list(train.ids)
        scores_val = np.zeros((0, C))
        labels_val = np.zeros(0, dtype=np.int64)
        if va is not None:
            scores_val = metric_scores(_embed(trained, va, ("lensless",)).lensless, protos)
            labels_val = _np(va.labels)
        x = np.asarray(_embed(trained, ev, ("lensless",)).lensless, dtype=np.float64)
        scores = metric_scores(x, protos)
        if groups.k > 1:
            m = x[groups.index].mean(axis=1)
            m /= np.maximum(np.linalg.norm(m, axis=1, keepdims=True), 1e-12)
            mean_scores = metric_scores(m, protos)
    else:
        tr = trained.load_split("train")
        train_labels, train_ids = _np(tr.labels), list(tr.ids)
        scores_val = np.zeros((0, C))
        labels_val = np.zeros(0, dtype=np.int64)
        if va is not None:
            scores_val = ce_scores(_logits(trained, va.lensless))
            labels_val = _np(va.labels)
        scores = ce_scores(_logits(trained, ev.lensless))
        if groups.k > 1:
            import torch

            idx = torch.as_tensor(groups.index)
            imgs = ev.lensless[idx].float().mean(1).round().to(torch.uint8)
            mean_scores = ce_scores(_logits(trained, imgs))

    prior_vec = resolve_prior(prior, classes, train_labels, train_ids)
    result = analyse(scores_val, labels_val, scores, labels, prior_vec, groups, mean_scores)
    if no_val:
        result["temperature_fit"]["reason"] = no_val
    result.update({
        "prior": prior_label(prior),
        "prior_probs": prior_vec.tolist(),
        "likelihood": kind,
        "split": split,
        "captures": str(captures if captures is not None else getattr(trained, "captures", "")),
        "epoch": int(getattr(trained, "epoch", -1)),
        "run": str(run),
        "classes": classes,
        "frames_available": groups.available,
        "conventions": "natural logs (nats); KL(posterior||prior) averaged over captures; "
                       "KL(label distribution||mean posterior) with the empirical class "
                       "frequencies of the split; accuracy in %; Brier summed over classes; "
                       f"ECE with {N_BINS} equal-width bins",
    })
    outputs: list[str] = []
    if figures:
        from opticsfree.bayes.figures import write_figures

        outputs += [str(p) for p in write_figures(run / "figures", result, ev.lensless, tag)]
    if write:
        out_path = run / f"bayes_{tag}.json"
        outputs.append(str(out_path))
        result["outputs"] = outputs
        write_json(out_path, _json_safe(result))
    result["outputs"] = outputs
    return _json_safe(result)


def _np(t: Any) -> np.ndarray:
    return np.asarray(t.cpu().numpy() if hasattr(t, "cpu") else t, dtype=np.int64)


def summary_lines(result: dict[str, Any]) -> list[str]:
    """Human-readable lines for the command line."""
    b = result["before_temperature"]
    fit = result["temperature_fit"]
    t_note = "" if fit.get("fitted") else " (no validation rows: not fitted)"

    def f(v: Any, fmt: str = ".4f") -> str:
        return "n/a" if v is None else format(v, fmt)

    lines = [
        f"run {result['run']}  epoch {result['epoch']}  split {result['split']}  "
        f"likelihood {result['likelihood']}  prior {result['prior']}",
        f"{result['n']} captures, {result['n_scenes']} scenes, "
        f"{result['frames_per_scene']} frame(s) per scene",
        f"temperature {f(result['temperature'], '.4g')}{t_note}"
        + ("  (at the search bound)" if fit.get("at_bound") else ""),
        f"{'':28s}{'T = 1':>12s}{'fitted T':>12s}",
    ]
    for key, label, fmt in [("accuracy", "MAP accuracy (%)", ".2f"), ("nll", "NLL (nats)", ".4f"),
                            ("brier", "Brier", ".4f"), ("ece", "ECE (15 bins)", ".4f"),
                            ("kl_posterior_prior", "KL(posterior||prior)", ".4f"),
                            ("kl_label_meanposterior", "KL(labels||mean posterior)", ".4f")]:
        lines.append(f"{label:28s}{f(b[key], fmt):>12s}{f(result[key], fmt):>12s}")
    if result["frames_per_scene"] > 1:
        lines.append("frames  accuracy (%)  KL (nats)")
        for r in result["frames"]:
            lines.append(f"{r['k']:>6d}  {f(r['accuracy'], '.2f'):>12s}  {f(r['kl']):>9s}")
        if "mean_frame" in result:
            mf = result["mean_frame"]
            lines.append(f"mean of {mf['k']} frames: accuracy {f(mf['accuracy'], '.2f')} %, "
                         f"KL {f(mf['kl'])}")
    for p in result.get("outputs", []):
        lines.append(f"wrote {p}")
    return lines
