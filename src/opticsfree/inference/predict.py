r"""Classify new captures with a trained run: ``opticsfree predict``.

Each capture is decoded, checked and preprocessed exactly as the run's training captures
(:class:`~opticsfree.inference.bundle.Preprocessing`), embedded, and scored against the class
prototypes (or by the head of a ``ce`` run). Per scene (one capture, or the frames of one
scene, see :mod:`opticsfree.inference.inputs`) the posterior is

.. math:: q_c \propto \pi_c \prod_{k} p(x_k \mid c), \qquad
          \log p(x \mid c) = \log\operatorname{softmax}_c(s_c(x) / T),

with the run's fitted temperature T and the prior :math:`\pi` (uniform unless given): the
sequential Bayesian update of :mod:`opticsfree.bayes.posterior` in its batch form. The
predicted class is the most probable one. ``distance`` is the distance from the capture's
embedding to its nearest class prototype (the mean over a scene's frames); with the reject
option a scene is ``rejected`` when that distance exceeds the run's validated threshold
(``evaluate --classifier threshold``'s rule, applied to a single frame exactly).

A capture that cannot be read (missing, truncated, not an image) or has the wrong number of
channels is listed in :attr:`PredictResult.failures` with the reason, and the others are
predicted. Output files are written atomically (:func:`write_predictions`).
"""

from __future__ import annotations

import contextlib
import csv
import io
import itertools
import json
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

import numpy as np

from opticsfree.errors import ConfigError, DataError
from opticsfree.inference.bundle import Classifier, threshold_hint
from opticsfree.inference.inputs import Capture, collect_captures, group_scenes

#: Captures decoded and embedded per step (bounds the memory of a large input).
CHUNK = 8192
#: What computes the embeddings: PyTorch (the reference) or onnxruntime (the exported graph).
ENGINES = ("torch", "onnx")
#: Output formats by file suffix.
FORMATS = {".csv": "csv", ".jsonl": "jsonl"}


@dataclass(frozen=True)
class Failure:
    """A capture that was not predicted: its file and why (one line)."""

    path: str
    reason: str

    def __str__(self) -> str:
        return f"{self.path}: {self.reason}"


@dataclass
class PredictResult:
    """Predictions of one ``predict`` call, one row per scene.

    Attributes:
        classes: class names in label order.
        scenes: S scene keys.
        paths: the frames' files of each scene (one for a single capture).
        posterior: (S, C) float64 posterior probabilities.
        distance: (S,) mean nearest-prototype distance of the scene's frames (NaN for a ce run).
        rejected: (S,) bool, or None without the reject option.
        labels: the known class name of each scene (capture-set inputs), or None.
        failures: captures that could not be predicted.
        n_inputs: captures named by the inputs.
        seconds: wall time of reading, embedding and fusing.
        classifier: the classifier's description (``Classifier.to_json``).
        top: report only the ``top`` most probable classes per row (None: all).
    """

    classes: list[str]
    scenes: list[str]
    paths: list[list[str]]
    posterior: np.ndarray
    distance: np.ndarray
    rejected: np.ndarray | None
    labels: list[str | None] | None
    failures: list[Failure]
    n_inputs: int
    seconds: float
    classifier: dict[str, Any]
    top: int | None = None
    out: str | None = field(default=None)

    @property
    def n_predicted(self) -> int:
        """Captures predicted (frames of all scenes)."""
        return sum(len(p) for p in self.paths)

    @property
    def predicted(self) -> np.ndarray:
        """(S,) int class index of each scene (the most probable)."""
        return self.posterior.argmax(axis=1) if len(self.posterior) else np.zeros(0, np.int64)

    def accuracy(self) -> float | None:
        """Percent of scenes whose known class was predicted (None without labels)."""
        if not self.labels or any(lab is None for lab in self.labels):
            return None
        y = np.array([self.classes.index(lab) if lab in self.classes else -1
                      for lab in self.labels])
        return 100.0 * float((self.predicted == y).mean()) if len(y) else None

    def rows(self) -> Iterator[dict[str, Any]]:
        """One dict per scene: the JSONL object (see docs/formats.md, "Predictions")."""
        pred = self.predicted
        order = np.argsort(-self.posterior, axis=1)[:, :self.top] if self.top else None
        for i, scene in enumerate(self.scenes):
            d = self.distance[i]
            row: dict[str, Any] = {
                "path": ";".join(self.paths[i]), "scene": scene, "frames": len(self.paths[i]),
                "predicted": self.classes[pred[i]],
                "probability": float(self.posterior[i, pred[i]]),
                "distance": None if math.isnan(d) else float(d)}
            if self.rejected is not None:
                row["rejected"] = bool(self.rejected[i])
            if self.labels is not None:
                row["label"] = self.labels[i]
            if order is not None:
                row["top"] = [{"class": self.classes[c], "probability": float(self.posterior[i, c])}
                              for c in order[i]]
            else:
                row["posterior"] = {c: float(p) for c, p in zip(self.classes, self.posterior[i])}
            row["paths"] = list(self.paths[i])
            yield row

    def summary(self) -> dict[str, Any]:
        """The counts, speed and classifier settings (no rows)."""
        rate = self.n_predicted / self.seconds if self.seconds > 0 else None
        out = {"n_inputs": self.n_inputs, "n_predicted": self.n_predicted,
               "n_scenes": len(self.scenes), "n_failed": len(self.failures),
               "seconds": round(self.seconds, 4),
               "captures_per_s": None if rate is None else round(rate, 1),
               "accuracy": self.accuracy(), "out": self.out,
               "failures": [{"path": f.path, "reason": f.reason} for f in self.failures]}
        if self.rejected is not None:
            out["n_rejected"] = int(self.rejected.sum())
        out.update(self.classifier)
        return out

    def to_json(self, rows: bool = True) -> dict[str, Any]:
        """JSON-ready dict: :meth:`summary` plus ``predictions`` (:meth:`rows`) when ``rows``."""
        d = self.summary()
        if rows:
            d["predictions"] = list(self.rows())
        return d


def _preprocess(classifier: Classifier, arrays: list[np.ndarray], caps: list[Capture]) -> Any:
    """Stack same-shape decoded captures (H, W, C) into the model's uint8 (N, C, size, size)."""
    import torch

    from opticsfree.captures.loader import resize_uint8

    x = torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2).contiguous()
    rec = classifier.front_end() if not caps[0].reconstructed else None
    if rec is not None:
        x = rec.reconstruct(resize_uint8(x, rec.size))
    return resize_uint8(x, classifier.preprocessing.size)


def _channels(classifier: Classifier, cap: Capture) -> int:
    rec = classifier.preprocessing.reconstruction
    if rec and not cap.reconstructed:
        return int(classifier.front_end().in_channels)
    return classifier.preprocessing.channels


def _score_chunk(classifier: Classifier, caps: list[Capture], decoded: list[np.ndarray | str],
                 batch_size: int, failures: list[Failure],
                 scorer: Any = None) -> tuple[list[int], np.ndarray, np.ndarray]:
    """Scores (n, C) and distances (n,) of the readable captures of one chunk (their positions);
    ``scorer`` (default: the classifier) computes them from the preprocessed images."""
    scorer = scorer or classifier
    groups: dict[tuple, list[int]] = {}
    for i, (cap, arr) in enumerate(zip(caps, decoded)):
        if isinstance(arr, str):
            failures.append(Failure(cap.path, arr))
            continue
        want = _channels(classifier, cap)
        if arr.shape[2] != want:
            failures.append(Failure(cap.path, f"{arr.shape[2]} channel(s); the run takes "
                                              f"{want}-channel captures"))
            continue
        groups.setdefault((arr.shape, cap.reconstructed), []).append(i)
    kept: list[int] = []
    scores, dists = [], []
    for idx in groups.values():
        x = _preprocess(classifier, [decoded[i] for i in idx], [caps[i] for i in idx])
        if getattr(scorer, "unchecked", False):  # onnxruntime: against PyTorch, once
            scorer.check(x[:64])
            scorer.unchecked = False
        s, d = scorer.scores(x, batch_size)
        kept.extend(idx)
        scores.append(s)
        dists.append(d if d is not None else np.full(len(idx), np.nan))
    c = classifier.n_classes
    return (kept, np.concatenate(scores) if scores else np.zeros((0, c)),
            np.concatenate(dists) if dists else np.zeros(0))


def fuse(classifier: Classifier, caps: Sequence[Capture], scores: np.ndarray,
         distance: np.ndarray) -> tuple[list[str], list[list[str]], np.ndarray, np.ndarray,
                                        list[str | None]]:
    """Per-scene posteriors of scored captures (frames fused by the Bayesian update).

    Args:
        classifier: gives T and the prior.
        caps: the scored captures.
        scores: (N, C) their scores at T = 1.
        distance: (N,) their nearest-prototype distances.

    Returns:
        ``(scene keys, paths per scene, posterior (S, C), mean distance (S,), label per scene)``.
    """
    from opticsfree.bayes.posterior import batch_log_posterior

    scenes = group_scenes(caps)
    members = scenes.members() if len(caps) else []
    log_lik = classifier.log_likelihood(scores) if len(caps) else np.zeros((0, classifier.n_classes))
    post = np.zeros((len(members), classifier.n_classes))
    by_k: dict[int, list[int]] = {}
    for s, rows in enumerate(members):
        by_k.setdefault(len(rows), []).append(s)
    for k, ss in by_k.items():  # scenes with k frames at once: (k, S_k, C) -> (S_k, C)
        index = np.stack([members[s] for s in ss])
        post[ss] = np.exp(batch_log_posterior(classifier.log_prior, log_lik[index.T]))
    dist = np.array([distance[rows].mean() for rows in members]) if members else np.zeros(0)
    paths = [[caps[r].path for r in rows] for rows in members]
    labels = [caps[rows[0]].label for rows in members]
    keys = [caps[rows[0]].scene for rows in members]
    return keys, paths, post, dist, labels


def check_options(classifier: Classifier, reject: bool = False, top: int | None = None) -> None:
    """Check ``reject`` and ``top`` against the classifier (before any capture is read).

    Raises:
        ConfigError: ``reject`` without a validated threshold (naming the command that makes
            one), or ``top`` outside 1..C.
    """
    if reject and classifier.threshold is None:
        why = ("a ce run is classified by its head, which has no distance threshold"
               if classifier.likelihood == "ce" else
               f"run `{threshold_hint(classifier)}` first to validate one")
        raise ConfigError(f"--reject: {classifier.run} has no validated threshold for epoch "
                          f"{classifier.epoch}; {why}")
    if top is not None and not 1 <= top <= classifier.n_classes:
        raise ConfigError(f"--top must be between 1 and {classifier.n_classes} (the classes), "
                          f"got {top}")


def predict(classifier: Classifier, inputs: Sequence[str | Path], *,
            frames_per_scene: int | None = None, split: str | None = None, reject: bool = False,
            top: int | None = None, batch_size: int = 256, workers: int = 0,
            engine: str = "torch", threads: int | None = None,
            on_progress: Callable[[int, int], None] | None = None) -> PredictResult:
    """Classify the captures named by ``inputs``.

    Args:
        classifier: from :func:`~opticsfree.inference.bundle.load_classifier`.
        inputs: image files, folders (recursively) and capture sets.
        frames_per_scene: fuse consecutive captures K at a time (None: the naming rule
            ``<scene>_fNN``; 1: no fusion).
        split: only this split of capture-set inputs.
        reject: flag scenes farther from their nearest prototype than the run's validated
            threshold.
        top: report only the ``top`` most probable classes per scene.
        batch_size: images per forward pass.
        workers: decoding processes (:func:`~opticsfree.utils.parallel.map_chunks`): 0 one per
            CPU, 1 in this process, N at most N; few captures are decoded in this process.
        engine: ``torch`` (the reference) or ``onnx``: the classifier's graph exported in memory
            and run by onnxruntime (faster on the CPU; checked against PyTorch on the first
            batch, see :class:`~opticsfree.inference.export.OnnxScorer`).
        threads: onnxruntime threads (``onnx`` engine; None: its default).
        on_progress: ``f(done, total)`` after each chunk of captures.

    Returns:
        A :class:`PredictResult` (failed captures in ``failures``).

    Raises:
        ConfigError: ``reject`` without a validated threshold, or a bad ``top``.
        DataError: an input that does not exist.
    """
    check_options(classifier, reject, top)
    if engine not in ENGINES:
        raise ConfigError(f"--engine: expected one of {', '.join(ENGINES)}, got {engine!r}")
    scorer = None
    if engine == "onnx" and classifier.model.mirror:
        raise ConfigError("--mirror: the onnx engine runs the exported graph, which does not mirror "
                          "captures; use --engine torch")
    if engine == "onnx":
        from opticsfree.inference.export import OnnxScorer

        scorer = OnnxScorer(classifier, threads)
        scorer.unchecked = True
    rec = classifier.preprocessing.reconstruction
    caps = collect_captures(inputs, frames_per_scene, split,
                            rec.get("model_sha256") if rec else None)
    t0 = time.perf_counter()
    failures: list[Failure] = []
    kept_caps: list[Capture] = []
    scores, dists = [], []
    from opticsfree.data.imagefolder import decode_files

    # one stream of decoded files (in worker processes for many) for the whole input, read
    # CHUNK at a time: the workers decode ahead while a chunk is embedded
    with contextlib.closing(decode_files([c.path for c in caps], workers=workers)) as files:
        for start in range(0, len(caps), CHUNK):
            chunk = caps[start:start + CHUNK]
            decoded = [r if isinstance(r, str) else r[0] for r in itertools.islice(files, len(chunk))]
            kept, s, d = _score_chunk(classifier, chunk, decoded, batch_size, failures, scorer)
            kept_caps.extend(chunk[i] for i in kept)
            scores.append(s)
            dists.append(d)
            if on_progress:
                on_progress(min(start + CHUNK, len(caps)), len(caps))
    s = np.concatenate(scores) if scores else np.zeros((0, classifier.n_classes))
    d = np.concatenate(dists) if dists else np.zeros(0)
    keys, paths, post, dist, labels = fuse(classifier, kept_caps, s, d)
    rejected = dist > classifier.threshold if reject else None
    known = any(lab is not None for lab in labels)
    return PredictResult(classes=list(classifier.classes), scenes=keys, paths=paths,
                         posterior=post, distance=dist, rejected=rejected,
                         labels=labels if known else None, failures=failures,
                         n_inputs=len(caps), seconds=time.perf_counter() - t0,
                         classifier={**classifier.to_json(), "engine": engine,
                                     "mirror": bool(classifier.model.mirror)}, top=top)


def output_format(path: str | Path) -> str:
    """``csv`` or ``jsonl`` from ``--out``'s suffix.

    Raises:
        ConfigError: any other suffix.
    """
    fmt = FORMATS.get(Path(path).suffix.lower())
    if fmt is None:
        raise ConfigError(f"--out {path}: expected a .csv or .jsonl file")
    return fmt


def csv_columns(result: PredictResult) -> list[str]:
    """The CSV header (docs/formats.md, "Predictions")."""
    cols = ["path", "scene", "frames", "predicted", "probability", "distance"]
    if result.rejected is not None:
        cols.append("rejected")
    if result.labels is not None:
        cols.append("label")
    if result.top:
        for k in range(1, result.top + 1):
            cols += [f"top{k}", f"top{k}_probability"]
    else:
        cols += [f"p_{c}" for c in result.classes]
    return cols


def format_predictions(result: PredictResult, fmt: str) -> str:
    """The predictions as CSV or JSONL text."""
    if fmt == "jsonl":
        return "".join(json.dumps(r) + "\n" for r in result.rows())
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(csv_columns(result))
    for r in result.rows():
        line = [r["path"], r["scene"], r["frames"], r["predicted"], f"{r['probability']:.6g}",
                "" if r["distance"] is None else f"{r['distance']:.6g}"]
        if "rejected" in r:
            line.append(str(r["rejected"]).lower())
        if result.labels is not None:
            line.append(r["label"] or "")
        if "top" in r:
            for t in r["top"]:
                line += [t["class"], f"{t['probability']:.6g}"]
        else:
            line += [f"{p:.6g}" for p in r["posterior"].values()]
        w.writerow(line)
    return buf.getvalue()


def write_predictions(result: PredictResult, out: str | Path) -> Path:
    """Write the predictions to ``out`` (``.csv`` or ``.jsonl``) atomically.

    Raises:
        ConfigError: ``out`` has another suffix, is a folder, or lies under a file.
    """
    from opticsfree.utils.io import check_out_file, write_text

    fmt = output_format(out)
    out = check_out_file(out, "a .csv or .jsonl file")
    write_text(out, format_predictions(result, fmt))
    result.out = str(out)
    return Path(out)


def check_predict_out(out: str | Path | None) -> None:
    """Check ``--out`` before any work (suffix and kind of path).

    Raises:
        ConfigError: as :func:`write_predictions`.
    """
    if out is None:
        return
    from opticsfree.utils.io import check_out_file

    output_format(out)
    check_out_file(out, "a .csv or .jsonl file")


def raise_if_nothing_predicted(result: PredictResult) -> None:
    """DataError when no capture could be predicted (naming the first failure)."""
    if result.n_predicted == 0:
        first = f"; first: {result.failures[0]}" if result.failures else ""
        raise DataError(f"none of the {result.n_inputs} capture(s) could be predicted{first}")
