r"""``opticsfree live``: classify the rig camera's stream in real time.

The model is a trained run (the preprocessing, likelihood, temperature, prior and threshold of
``predict``: :mod:`opticsfree.inference.predict`) or an exported ONNX model (the same, baked
into the graph and its metadata: :mod:`opticsfree.inference.export`). Each frame is captured as
``rig capture`` would store it (crop, output size), preprocessed, scored, and with ``fuse = K``
the posterior of the last K frames is the sequential Bayesian update

.. math:: q_c \propto \pi_c \prod_{k=1}^{K} p(x_k \mid c)

(for an ONNX model, whose output already holds the prior:
:math:`\log q = \log\pi + \sum_k (\log q_k - \log\pi)`, renormalised). With ``fuse = 1`` every
frame is classified exactly as ``predict`` classifies the same image file.

The display shows nothing (the camera looks at whatever is in front of it), or, given scenes,
one scene per frame, which is how the virtual rig is run and how ``live`` is compared with
``predict``. Every frame gives one row (:meth:`LiveClassifier.classify`): ``frame``,
``predicted``, ``probability``, ``top``, ``distance`` (metric runs), ``rejected`` (with the
reject option), ``label`` (when a known scene was shown), and timing: ``frames_per_s`` of the
whole loop, ``model_ms`` (preprocessing and model) and ``camera_ms`` (showing and grabbing;
for the virtual camera this is the simulator's cost).
"""

from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from opticsfree.errors import ConfigError, DataError

#: Name of saved frames (``--save-frames``): not a ``<scene>_fNN`` name, so ``predict`` treats
#: every saved frame as its own scene.
FRAME_NAME = "live_{:06d}.png"


class LiveModel:
    """What ``live`` needs of a model: class names, the threshold, and per-frame log posterior
    terms that fuse by addition."""

    classes: list[str]
    threshold: float | None
    source: str

    def log_terms(self, frames: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        """``(terms (n, C), distance (n,))``: terms whose sum over frames plus :attr:`log_prior`
        is the fused log posterior (up to a constant)."""
        raise NotImplementedError

    @property
    def log_prior(self) -> np.ndarray:
        raise NotImplementedError


class RunLiveModel(LiveModel):
    """A trained run through ``predict``'s own preprocessing and scoring."""

    def __init__(self, classifier: Any):
        self.classifier = classifier
        self.classes = list(classifier.classes)
        self.threshold = classifier.threshold
        self.source = str(classifier.run)

    @property
    def log_prior(self) -> np.ndarray:
        return self.classifier.log_prior

    def log_terms(self, frames: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        from opticsfree.inference.inputs import Capture
        from opticsfree.inference.predict import Failure, _score_chunk

        failures: list[Failure] = []
        caps = [Capture(path=f"frame{i}", scene=f"frame{i}") for i in range(len(frames))]
        kept, scores, dist = _score_chunk(self.classifier, caps, list(frames), len(frames), failures)
        if failures:
            raise DataError(f"live: {failures[0].reason}")
        return self.classifier.log_likelihood(scores), dist


class OnnxLiveModel(LiveModel):
    """An exported model (``opticsfree export``): its ``posterior`` output and metadata."""

    def __init__(self, path: str | Path, threads: int | None = None):
        from opticsfree.inference.export import read_metadata, session

        self.path = Path(path)
        if not self.path.is_file():
            raise DataError(f"{path}: model file not found")
        meta = read_metadata(self.path)
        if "classes" not in meta or "input" not in meta:
            raise DataError(f"{path}: not an opticsfree export (no opticsfree.classes/input metadata)")
        pre = meta.get("preprocessing") or {}
        if pre.get("reconstruction"):
            raise ConfigError(f"{path}: this model's inputs were reconstructions ({pre['reconstruction'].get('method')}); "
                              "pass the RUN directory, which holds its front end")
        self.classes = list(meta["classes"])
        self.size = int(meta["input"]["shape"][2])
        self.channels = int(meta["input"]["shape"][1])
        self.dtype = meta["input"].get("dtype", "uint8")
        thr = meta.get("threshold")
        self.threshold = None if thr in ("", None) else float(thr)
        prior = np.asarray((meta.get("prior") or {}).get("probabilities") or
                           [1.0 / len(self.classes)] * len(self.classes), dtype=np.float64)
        self._log_prior = np.log(np.clip(prior, 1e-300, None))
        self.outputs = list(meta.get("outputs") or ["posterior"])
        self.session = session(self.path, threads)
        self.source = str(self.path)

    @property
    def log_prior(self) -> np.ndarray:
        return self._log_prior

    def log_terms(self, frames: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        import torch

        from opticsfree.captures.loader import resize_uint8

        for f in frames:
            if f.shape[2] != self.channels:
                raise DataError(f"live: {f.shape[2]} channel(s); the model takes {self.channels}-channel captures")
        x = resize_uint8(torch.from_numpy(np.stack(frames)).permute(0, 3, 1, 2).contiguous(), self.size).numpy()
        if self.dtype != "uint8":
            x = x.astype(np.float32) / 255.0
        want = ["posterior"] + (["distance"] if "distance" in self.outputs else [])
        res = self.session.run(want, {"images": x})
        post = np.clip(res[0].astype(np.float64), 1e-300, None)
        dist = res[1].astype(np.float64) if len(res) > 1 else np.full(len(frames), np.nan)
        return np.log(post) - self._log_prior, dist


def load_live_model(model: str | Path, checkpoint: str = "last", prior: str = "uniform",
                    threads: int | None = None) -> LiveModel:
    """A run directory or an ``.onnx`` file as a :class:`LiveModel`."""
    p = Path(model)
    if p.suffix.lower() == ".onnx":
        if prior != "uniform":
            raise ConfigError("--prior applies to a RUN; an exported model has its prior baked in")
        return OnnxLiveModel(p, threads)
    from opticsfree.inference.bundle import load_classifier

    return RunLiveModel(load_classifier(p, checkpoint, prior=prior))


@dataclass
class LiveClassifier:
    """Fuses the last ``fuse`` frames' terms into a posterior (see the module doc)."""

    model: LiveModel
    fuse: int = 1
    reject: bool = False
    top: int = 3
    _terms: deque = field(default_factory=deque, repr=False)
    _dist: deque = field(default_factory=deque, repr=False)

    def __post_init__(self) -> None:
        if self.fuse < 1:
            raise ConfigError(f"--fuse must be >= 1, got {self.fuse}")
        if not 1 <= self.top <= len(self.model.classes):
            raise ConfigError(f"--top must be between 1 and {len(self.model.classes)} (the classes), got {self.top}")
        if self.reject and self.model.threshold is None:
            raise ConfigError(f"--reject: {self.model.source} has no validated threshold "
                              "(run `opticsfree evaluate RUN --classifier threshold` before exporting)")

    def classify(self, frame: np.ndarray) -> dict[str, Any]:
        """One frame (H, W, C) uint8 -> its row (classes, probabilities, distance)."""
        terms, dist = self.model.log_terms([frame])
        self._terms.append(terms[0])
        self._dist.append(float(dist[0]))
        while len(self._terms) > self.fuse:
            self._terms.popleft()
            self._dist.popleft()
        log_q = self.model.log_prior + np.sum(self._terms, axis=0)
        log_q = log_q - log_q.max()
        q = np.exp(log_q)
        q = q / q.sum()
        order = np.argsort(-q)[:self.top]
        d = float(np.mean(self._dist))
        row: dict[str, Any] = {"predicted": self.model.classes[int(order[0])], "probability": float(q[order[0]]),
                               "top": [{"class": self.model.classes[int(c)], "probability": float(q[c])} for c in order],
                               "frames_fused": len(self._terms), "distance": None if np.isnan(d) else d}
        if self.reject:
            row["rejected"] = bool(d > self.model.threshold)  # type: ignore[operator]
        return row


@dataclass
class LiveReport:
    """Summary of a ``live`` session."""

    frames: int = 0
    seconds: float = 0.0
    model_s: float = 0.0
    camera_s: float = 0.0
    correct: int = 0
    labelled: int = 0

    def to_json(self) -> dict[str, Any]:
        n = max(self.frames, 1)
        return {"frames": self.frames, "seconds": round(self.seconds, 3),
                "frames_per_s": round(self.frames / self.seconds, 2) if self.seconds else None,
                "model_ms_per_frame": round(1e3 * self.model_s / n, 3),
                "camera_ms_per_frame": round(1e3 * self.camera_s / n, 3),
                "model_frames_per_s": round(self.frames / self.model_s, 1) if self.model_s else None,
                "accuracy": round(100.0 * self.correct / self.labelled, 2) if self.labelled else None}


def run_live(model: LiveModel, rig: Any, *, frames: int | None = None, fuse: int = 1, reject: bool = False,
             top: int = 3, scenes: Sequence[tuple[np.ndarray, str | None]] | None = None,
             save_frames: str | Path | None = None, window: bool = False, seed: int = 0,
             on_frame: Callable[[dict[str, Any]], None] | None = None) -> LiveReport:
    """Classify the rig camera's stream.

    Args:
        model: from :func:`load_live_model`.
        rig: the rig (:class:`~opticsfree.rig.RigConfig`).
        frames: frames to classify (None: until Ctrl-C or the window is closed).
        fuse: frames fused per answer (the last K).
        reject: flag answers farther than the model's validated threshold.
        top: classes reported per frame.
        scenes: ``(image, label)`` pairs shown one per frame, cycling (None: the display is not
            driven).
        save_frames: a folder to save each frame to (PNG, lossless; :data:`FRAME_NAME`).
        window: draw the preview panel with the top classes.
        seed: the virtual camera's noise seed.
        on_frame: called with each frame's row.

    Returns:
        A :class:`LiveReport`.
    """
    from opticsfree.rig.camera import FrameTag, open_camera
    from opticsfree.rig.capture import grab
    from opticsfree.rig.display import open_display
    from opticsfree.rig.preview import PanelWindow, render_panel
    from opticsfree.captures.writer import encode_image
    from opticsfree.utils.io import check_out_dir, ensure_dir, write_bytes

    clf = LiveClassifier(model, fuse, reject, top)
    if frames is not None and frames < 1:
        raise ConfigError(f"--frames must be >= 1, got {frames}")
    if scenes is not None and not len(scenes):
        raise ConfigError("live: no scenes to show")
    if save_frames is not None:
        save_frames = check_out_dir(save_frames, "a folder for the frames", "--save-frames")
        ensure_dir(save_frames)
    report = LiveReport()
    win = PanelWindow("opticsfree live") if window else None
    t_start = time.perf_counter()
    try:
        with open_display(rig.display) as display:
            camera = open_camera(rig, display)
            with camera:
                if scenes is None:
                    display.show(np.full((1, 1, 3), rig.display.background, np.uint8))
                else:
                    camera.prepare(scenes[0][0].shape[:2], scenes[0][0].shape[2])
                report.seconds = 0.0
                t_start = time.perf_counter()
                k = 0
                t_prev = time.perf_counter()
                while frames is None or k < frames:
                    tag = FrameTag(seed, "live", k)
                    c0 = time.perf_counter()
                    label = None
                    if scenes is not None:
                        image, label = scenes[k % len(scenes)]
                        display.show(image)
                        time.sleep(rig.display.settle_s)
                        grab(camera, lambda: camera.discard(rig.camera.discard, tag), rig.camera.timeout_s, f"live frame {k}")
                    frame = grab(camera, lambda: camera.capture(tag), rig.camera.timeout_s, f"live frame {k}")
                    m0 = time.perf_counter()
                    row = {"frame": k, **clf.classify(frame)}
                    m1 = time.perf_counter()
                    report.camera_s += m0 - c0
                    report.model_s += m1 - m0
                    if label is not None:
                        row["label"] = label
                        report.labelled += 1
                        report.correct += int(row["predicted"] == label)
                    if save_frames is not None:
                        path = Path(save_frames) / FRAME_NAME.format(k)
                        write_bytes(path, encode_image(frame, None))
                        row["path"] = str(path)
                    row["model_ms"] = round(1e3 * (m1 - m0), 3)
                    row["camera_ms"] = round(1e3 * (m0 - c0), 3)
                    row["frames_per_s"] = round(1.0 / max(m1 - t_prev, 1e-9), 2)
                    t_prev = m1
                    report.frames += 1
                    if on_frame:
                        on_frame(row)
                    if win is not None:
                        lines = [f"frame {k}   {row['frames_per_s']:.1f} frames/s   model {row['model_ms']:.1f} ms",
                                 *[f"{t['class']:<16} {t['probability']:.3f}" for t in row["top"]]]
                        if row.get("rejected"):
                            lines.append("rejected: farther than the validated threshold")
                        win.show(render_panel(display.drawn(), frame, lines))
                    k += 1
    finally:
        report.seconds = time.perf_counter() - t_start
        if win is not None:
            win.close()
    return report
