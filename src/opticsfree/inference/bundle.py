"""A deployable classifier loaded from a training run: :func:`load_classifier`.

A :class:`Classifier` holds everything ``predict`` and ``export`` need, all read from the run:

- the model at one checkpoint (through :func:`opticsfree.inference.adapter.open_model`);
- the class prototypes: L2-normalised class means of the embeddings of the run's *train
  originals*, one per scene (exactly as ``evaluate`` and ``bayes`` build them), cached under
  ``RUN/.cache/`` so that a later ``predict`` needs neither the capture set nor the time;
- the likelihood (``metric``: prototype distances; ``ce``: the classifier head of a ``ce`` run,
  as ``bayes --likelihood auto`` chooses), its temperature as ``opticsfree bayes`` fitted it on
  the validation split, and the distance threshold ``opticsfree evaluate --classifier
  threshold`` validated, when the run has them (:func:`find_temperature`,
  :func:`find_threshold`);
- the class names and the exact preprocessing of the run's captures (:class:`Preprocessing`).

Without a fitted temperature the posteriors use T = 1 and ``temperature_source`` is None (the
command line warns and names the command that fits it); the predicted classes do not depend on
T. Without a validated threshold there is no reject option.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from opticsfree.errors import ConfigError, DataError, OpticsfreeError
from opticsfree.evaluation.contract import TrainedEmbedder
from opticsfree.inference.adapter import checkpoint_file, open_model, resolve_checkpoint
from opticsfree.utils.io import read_json

#: Version of the prototype cache file layout (part of its name).
CACHE_VERSION = 1


@dataclass(frozen=True)
class Preprocessing:
    """How a capture becomes the model's input, as the run was trained (never re-specified).

    A capture is decoded by :func:`opticsfree.utils.images.decode_image`, must have
    ``channels`` channels, and is resized to ``size`` x ``size`` (bilinear, antialiased, rounded
    back to uint8: :func:`opticsfree.captures.loader.resize_uint8`, as the capture-set loader
    does). Inside the model follow the per-channel standardisation learned from the training
    captures, the auto-contrast (``lensless_contrast``) and the learned global front end
    (``global_features``). For a run trained on reconstructions (a derived capture set),
    ``reconstruction`` names the model that turned captures into its inputs.

    Attributes:
        size: input side in pixels.
        channels: capture channels (1 or 3).
        lensless_contrast: the model also sees each capture standardised by its own statistics.
        global_features: maps of the model's learned global linear front end (0: none).
        reconstruction: the derived set's ``reconstruction`` manifest entry (method, model,
            model_sha256, size), or None for a run trained on captures.
    """

    size: int
    channels: int
    lensless_contrast: bool = False
    global_features: int = 0
    reconstruction: dict[str, Any] | None = None

    def to_json(self) -> dict[str, Any]:
        """JSON-ready dict."""
        return {"size": self.size, "channels": self.channels,
                "resize": "bilinear, antialiased, rounded to uint8",
                "lensless_contrast": self.lensless_contrast,
                "global_features": self.global_features,
                "reconstruction": self.reconstruction}

    def describe(self) -> str:
        """One line for messages and model metadata."""
        s = (f"decode (opticsfree decode_image), {self.channels} channel(s), resize to "
             f"{self.size}x{self.size} (bilinear, antialiased, uint8)")
        if self.reconstruction:
            s = (f"{self.reconstruction.get('method')} reconstruction "
                 f"({self.reconstruction.get('model')}), then " + s)
        extras = [x for x, on in (("auto-contrast", self.lensless_contrast),
                                  (f"global front end ({self.global_features} maps)",
                                   self.global_features)) if on]
        return s + ("; in the model: " + ", ".join(extras) if extras else "")


@dataclass
class Classifier:
    """A trained run made ready to classify new captures.

    Attributes:
        run: the run directory.
        epoch: the checkpoint's epoch.
        model: the trained model (:class:`~opticsfree.evaluation.contract.TrainedEmbedder`).
        classes: class names in label order.
        likelihood: ``metric`` or ``ce`` (:mod:`opticsfree.bayes.names`).
        prototypes: (C, D) float32 class prototypes (metric), or None (ce).
        temperature: T of the likelihood softmax(s / T).
        temperature_source: the ``bayes_*.json`` file T came from; None when the run has no
            fitted temperature (then T = 1).
        threshold: the validated distance threshold t (reject when the nearest prototype is
            farther), or None.
        threshold_source: the ``eval_*_threshold.json`` file t came from, or None.
        prior: (C,) prior probabilities.
        prior_name: ``uniform``, ``train`` or ``file:<name>``.
        preprocessing: the run's :class:`Preprocessing`.
        prototypes_source: ``computed`` or ``cache`` (``RUN/.cache/...``).
    """

    run: Path
    epoch: int
    model: TrainedEmbedder
    classes: list[str]
    likelihood: str
    prototypes: np.ndarray | None
    temperature: float
    temperature_source: str | None
    threshold: float | None
    threshold_source: str | None
    prior: np.ndarray
    prior_name: str
    preprocessing: Preprocessing
    prototypes_source: str = "computed"
    _front_end: Any = field(default=None, repr=False)

    @property
    def n_classes(self) -> int:
        """Number of classes C."""
        return len(self.classes)

    def embed(self, images: Any, batch_size: int = 512) -> np.ndarray:
        """float32 (N, D) embeddings of preprocessed uint8 images (N, C, size, size)."""
        import torch

        with torch.inference_mode():
            out = self.model.embed(images, "lensless", batch_size)
        return np.asarray(out.detach().float().cpu().numpy() if hasattr(out, "detach") else out,
                          dtype=np.float32)

    def logits(self, images: Any, batch_size: int = 512) -> np.ndarray:
        """float64 (N, C) classifier-head logits of preprocessed uint8 images."""
        import torch

        with torch.inference_mode():
            out = self.model.logits(images, batch_size)
        if out is None:
            raise ConfigError(f"{self.run}: the model has no classifier head")
        return out.detach().to("cpu", torch.float64).numpy()

    def scores(self, images: Any, batch_size: int = 512) -> tuple[np.ndarray, np.ndarray | None]:
        """Likelihood scores at T = 1 and nearest-prototype distances of preprocessed images.

        Returns:
            ``(scores (N, C) float64, distance (N,) float64 or None for a ce run)``: metric
            scores are :math:`-d(x, \\mu_c)^2` (:func:`opticsfree.bayes.likelihood.metric_scores`),
            ce scores the logits; the distance is :math:`\\min_c d(x, \\mu_c)`.
        """
        from opticsfree.bayes.likelihood import ce_scores, metric_scores

        if self.likelihood == "ce":
            return ce_scores(self.logits(images, batch_size)), None
        s = metric_scores(self.embed(images, batch_size), self.prototypes)
        return s, np.sqrt(np.maximum(-s.max(axis=1), 0.0))

    def log_likelihood(self, scores: np.ndarray) -> np.ndarray:
        """Normalised log-likelihood log softmax(scores / T), (N, C) float64."""
        from opticsfree.bayes.likelihood import log_likelihood

        return log_likelihood(scores, self.temperature)

    @property
    def log_prior(self) -> np.ndarray:
        """(C,) log prior."""
        from opticsfree.bayes.posterior import log_prior_of

        return log_prior_of(self.prior)

    def front_end(self) -> Any:
        """The reconstruction model a derived run's captures go through (loaded once), or None.

        Raises:
            DataError: the model recorded in the derived set's manifest is missing or changed.
        """
        rec = self.preprocessing.reconstruction
        if not rec:
            return None
        if self._front_end is None:
            from opticsfree.reconstruction.apply import load_reconstructor
            from opticsfree.utils.io import file_sha256

            model = Path(str(rec.get("model", "")))
            if not model.is_file():
                raise DataError(f"{model}: the reconstruction model this run's inputs were made "
                                f"with is missing; pass reconstructed captures (a derived set) "
                                f"or restore the model")
            if rec.get("model_sha256") and file_sha256(model) != rec["model_sha256"]:
                raise DataError(f"{model}: changed since the run's capture set was reconstructed "
                                "with it (SHA-256 differs)")
            self._front_end = load_reconstructor(model)
        return self._front_end

    def to_json(self) -> dict[str, Any]:
        """JSON-ready description (no arrays but the prior)."""
        return {"run": str(self.run), "epoch": self.epoch, "classes": list(self.classes),
                "likelihood": self.likelihood, "temperature": self.temperature,
                "temperature_source": self.temperature_source, "threshold": self.threshold,
                "threshold_source": self.threshold_source, "prior": self.prior_name,
                "prior_probs": [float(p) for p in self.prior],
                "prototypes_source": self.prototypes_source,
                "preprocessing": self.preprocessing.to_json()}


# --------------------------------------------------------------------------------------------
# What the run's other commands stored: temperature (bayes) and threshold (evaluate)


def _json_files(run: Path, pattern: str) -> list[tuple[Path, dict]]:
    out = []
    for f in sorted(run.glob(pattern)):
        try:
            d = read_json(f)
        except OpticsfreeError:
            continue  # an unreadable report is skipped, as if absent
        if isinstance(d, dict):
            out.append((f, d))
    return out


def find_temperature(run: str | Path, epoch: int, likelihood: str) -> tuple[float, str | None]:
    """The temperature ``opticsfree bayes`` fitted for this checkpoint and likelihood.

    ``bayes`` writes ``RUN/bayes_<split>[-<set>].json`` with ``epoch``, ``likelihood``,
    ``temperature`` and ``temperature_fit.fitted``; T is fitted on the run's validation split
    with a uniform prior, so every such file of one checkpoint and likelihood holds the same T.

    Returns:
        ``(T, file name)``, or ``(1.0, None)`` when no file has a fitted T for them.
    """
    for f, d in _json_files(Path(run), "bayes_*.json"):
        fit = d.get("temperature_fit") or {}
        t = d.get("temperature")
        if (d.get("epoch") == epoch and d.get("likelihood") == likelihood and fit.get("fitted")
                and isinstance(t, (int, float)) and math.isfinite(t) and t > 0):
            return float(t), f.name
    return 1.0, None


def find_threshold(run: str | Path, epoch: int) -> tuple[float | None, str | None]:
    """The distance threshold ``opticsfree evaluate --classifier threshold`` validated.

    ``evaluate`` writes ``RUN/eval_<split>_threshold.json`` whose ``checkpoints`` hold, per
    epoch, the ``threshold`` chosen on the validation split (the same for every evaluated split).

    Returns:
        ``(t, file name)``, or ``(None, None)`` when the checkpoint has none.
    """
    for f, d in _json_files(Path(run), "eval_*_threshold.json"):
        for c in d.get("checkpoints") or []:
            t = c.get("threshold") if isinstance(c, dict) else None
            if c.get("epoch") == epoch and isinstance(t, (int, float)) and math.isfinite(t):
                return float(t), f.name
    return None, None


# --------------------------------------------------------------------------------------------
# Class prototypes (cached) and the run's preprocessing


def _stat_key(path: Path) -> str:
    from opticsfree.utils.io import file_state

    return file_state(path) or "missing"


def _model_key(run: Path, epoch: int) -> str:
    h = hashlib.sha256((run / "config.json").read_bytes())
    h.update(f"|{epoch}|{_stat_key(checkpoint_file(run, epoch))}|v{CACHE_VERSION}".encode())
    return h.hexdigest()[:16]


def _captures_key(captures: Path) -> str | None:
    """What the prototypes are made of: the bytes of the capture set's index and manifest and
    the state (:func:`~opticsfree.utils.io.file_state`) of every train original; None when the
    set is not there."""
    from opticsfree.utils.io import file_state

    index = captures / "index.csv"
    if not index.is_file():
        return None
    h = hashlib.sha256(index.read_bytes())
    manifest = captures / "manifest.json"
    h.update(manifest.read_bytes() if manifest.is_file() else b"missing")
    try:
        from opticsfree.captures.format import read_index

        originals = sorted({r.original for r in read_index(captures) if r.split == "train"})
    except OpticsfreeError:
        return None
    for rel in originals:
        h.update(f"\n{rel}\x1f{file_state(captures / rel) or 'missing'}".encode("utf-8", "surrogateescape"))
    return h.hexdigest()[:24]


def cache_path(run: str | Path, epoch: int) -> Path:
    """``RUN/.cache/prototypes-eNNN-<key>.npz``: prototypes, train prior and preprocessing of one
    checkpoint (safe to delete; keyed by config.json and the checkpoint file)."""
    run = Path(run)
    return run / ".cache" / f"prototypes-e{epoch:03d}-{_model_key(run, epoch)}.npz"


def _read_cache(path: Path, captures_key: str | None) -> dict[str, Any] | None:
    if not path.is_file():
        return None
    try:
        with np.load(path, allow_pickle=False) as z:
            d = {"prototypes": z["prototypes"].astype(np.float32), "train_prior": z["train_prior"],
                 "meta": json.loads(str(z["meta"]))}
    except Exception:  # noqa: BLE001 - a corrupt cache is recomputed
        return None
    if captures_key is not None and d["meta"].get("captures_key") != captures_key:
        return None  # the capture set changed since: recompute
    return d


def _write_cache(path: Path, epoch: int, protos: np.ndarray, train_prior: np.ndarray,
                 meta: dict) -> None:
    from opticsfree.utils.io import atomic_path

    try:
        with atomic_path(path) as tmp:
            with open(tmp, "wb") as f:
                np.savez(f, prototypes=protos, train_prior=train_prior, meta=json.dumps(meta))
        for old in path.parent.glob(f"prototypes-e{epoch:03d}-*.npz"):
            if old != path:
                old.unlink(missing_ok=True)
    except (OSError, OpticsfreeError):
        pass  # a read-only run still predicts, it just recomputes next time


def _reconstruction_of(captures: Path) -> dict[str, Any] | None:
    from opticsfree.captures.format import read_manifest

    rec = read_manifest(captures).get("reconstruction")
    return dict(rec) if isinstance(rec, dict) else None


def _prototypes(model: TrainedEmbedder, run: Path, epoch: int,
                batch_size: int) -> tuple[np.ndarray, np.ndarray, dict[str, Any], str]:
    """(prototypes, train prior, preprocessing facts, source) of one checkpoint, from the cache
    when it is current, else from the run's train originals (then cached)."""
    captures = Path(model.captures)
    ckey = _captures_key(captures)
    path = cache_path(run, epoch)
    cached = _read_cache(path, ckey)
    if cached is not None:
        return cached["prototypes"], cached["train_prior"], cached["meta"], "cache"
    if ckey is None:
        raise DataError(f"{captures}: the run's capture set is not there; the class prototypes "
                        f"are made from its train originals (and cached in {run / '.cache'} "
                        "by the first predict or export)")
    from opticsfree.bayes.priors import train_prior
    from opticsfree.evaluation.embed import class_prototypes, embed_split

    train = embed_split(model, "train", domains=("original",), batch_size=batch_size)
    gallery, labels = train.unique_originals()
    protos = class_prototypes(gallery, labels, len(model.classes))
    prior = train_prior(labels, len(model.classes), classes=model.classes)
    meta = {"captures_key": ckey, "reconstruction": _reconstruction_of(captures),
            "n_train_scenes": int(len(labels))}
    _write_cache(path, epoch, protos, prior, meta)
    return protos, prior, meta, "computed"


def _preprocessing(config: dict[str, Any], reconstruction: dict[str, Any] | None) -> Preprocessing:
    r = config["resolved"]
    return Preprocessing(size=int(r["size"]), channels=int(r["lensless_channels"]),
                         lensless_contrast=bool(config.get("lensless_contrast", False)),
                         global_features=int(config.get("global_features", 0) or 0),
                         reconstruction=reconstruction)


def _prior(spec: str | os.PathLike, classes: Sequence[str], train: np.ndarray) -> tuple[np.ndarray, str]:
    from opticsfree.bayes.priors import prior_label, resolve_prior

    if str(spec) == "train":
        return np.asarray(train, dtype=np.float64), "train"
    return resolve_prior(spec, classes), prior_label(spec)


def load_classifier(run: str | os.PathLike, checkpoint: str | int | None = "last",
                    prior: str | os.PathLike = "uniform", batch_size: int = 256,
                    device: str = "cpu", mirror: bool = False) -> Classifier:
    """Load a run as a :class:`Classifier`.

    Args:
        run: the run directory (``opticsfree train --out``).
        checkpoint: ``last``, ``best`` or an epoch (see
            :func:`~opticsfree.inference.adapter.resolve_checkpoint`).
        prior: ``uniform``, ``train`` (the training class frequencies, scenes counted once) or
            a JSON prior file (see :mod:`opticsfree.bayes.priors`).
        batch_size: images per forward pass when the prototypes are computed.
        device: ``cpu`` or ``cuda``.
        mirror: test-time mirroring (each capture and its left-right flip, averaged; see
            :func:`opticsfree.training.load_trained`), after
            :func:`~opticsfree.training.checkpoint.check_mirror` has found the camera symmetric.

    Returns:
        The classifier; ``temperature_source`` / ``threshold`` are None when the run has no
        fitted temperature / validated threshold for this checkpoint.

    Raises:
        DataError: not a run, an unknown checkpoint, or prototypes neither cached nor computable
            (the capture set is gone).
        ConfigError: a bad ``--checkpoint``; ``mirror`` for a camera that is not left-right
            symmetric.
    """
    run = Path(run)
    epoch = resolve_checkpoint(run, checkpoint)
    model = open_model(run, epoch, device, mirror=mirror)
    classes = list(model.classes)
    from opticsfree.bayes.likelihood import choose_likelihood

    kind = choose_likelihood(model.config.get("loss"), bool(model.has_head))
    if kind == "metric":
        protos, train, meta, source = _prototypes(model, run, epoch, batch_size)
    else:  # a ce run: its head classifies; the train prior still needs the train labels
        protos, source, meta = None, "none", {}
        train = np.full(len(classes), 1.0 / len(classes))
        if str(prior) == "train":
            from opticsfree.bayes.priors import train_prior

            tr = model.load_split("train")
            train = train_prior(np.asarray(tr.labels), len(classes), ids=list(tr.ids),
                                classes=classes)
        if (Path(model.captures) / "manifest.json").is_file():
            meta = {"reconstruction": _reconstruction_of(Path(model.captures))}
    prior_vec, prior_name = _prior(prior, classes, train)
    temperature, t_source = find_temperature(run, epoch, kind)
    threshold, thr_source = find_threshold(run, epoch) if kind == "metric" else (None, None)
    return Classifier(run=run, epoch=epoch, model=model, classes=classes, likelihood=kind,
                      prototypes=protos, temperature=temperature, temperature_source=t_source,
                      threshold=threshold, threshold_source=thr_source, prior=prior_vec,
                      prior_name=prior_name,
                      preprocessing=_preprocessing(model.config, meta.get("reconstruction")),
                      prototypes_source=source)


def fit_hint(classifier: Classifier) -> str:
    """The command that fits the missing temperature of ``classifier``'s checkpoint."""
    return f"opticsfree bayes {classifier.run} --checkpoint {classifier.epoch}"


def threshold_hint(classifier: Classifier) -> str:
    """The command that validates a threshold for ``classifier``'s run."""
    return f"opticsfree evaluate {classifier.run} --classifier threshold"
