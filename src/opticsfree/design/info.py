"""How much of the scene a camera keeps: the numbers of ``opticsfree camera info``.

A raw-degradation pair (PSNR / SSIM of the captures against their originals) mostly measures
brightness, colour and alignment; it says little about how much of the scene survives. The
numbers here say that, on a dataset's test split:

* ``raw_psnr``, ``raw_ssim``: captures against originals, with the conventions of ``quality``
  (:data:`opticsfree.captures.quality.CONVENTION`).
* ``linear_psnr``, ``linear_ssim``: the best affine estimator :math:`\\hat v = A q + c` from a
  capture :math:`q` to its original :math:`v` (both flattened at ``size`` x ``size``, values in
  [0, 1]), fitted by ridge regression on the train split with :math:`\\lambda` chosen on a
  validation part of train (:func:`opticsfree.captures.linear.fit_affine`), applied to test and
  clipped to [0, 1]. The camera's recoverability, independent of any network.
* ``linear_probe_accuracy``: a linear classifier (scikit-learn's ``RidgeClassifier`` on
  standardised capture pixels, its strength chosen on the validation part of train, refitted
  on train) scored on test, in %: the class information the camera keeps, cheaply.
* ``rank_1e2``, ``rank_1e3``: singular values :math:`s_i` of the transfer matrix H (sensor
  pixels x display pixels, one channel) with :math:`s_i > 10^{-2} s_1` and
  :math:`s_i > 10^{-3} s_1`.
* ``coverage`` and ``footprint_spread_px``: each sensor pixel :math:`k` has a footprint
  :math:`w_{kj} = H_{kj} / \\sum_j H_{kj}` over the display pixels :math:`j` (positions
  :math:`(x_j, y_j)` in display pixels), with centroid :math:`\\bar x_k = \\sum_j w_{kj} x_j`
  (and :math:`\\bar y_k`) and spread
  :math:`\\sigma_k = \\tfrac12 (\\sqrt{\\sum_j w_{kj} x_j^2 - \\bar x_k^2} + \\sqrt{\\sum_j w_{kj} y_j^2 - \\bar y_k^2})`.

  .. math::

      \\mathrm{coverage} = \\min\\Bigl(\\frac{\\max_k \\bar x_k - \\min_k \\bar x_k}{W},
          \\frac{\\max_k \\bar y_k - \\min_k \\bar y_k}{H}\\Bigr), \\qquad
      \\mathrm{footprint\\_spread\\_px} = \\frac{1}{K} \\sum_k \\sigma_k

  Coverage is about 1 when the sensor's pixels look at the whole displayed image and near 0
  when every pixel looks at the same spot.

For an existing capture set (simulated or real) the numbers that need H are omitted.
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Iterable

import numpy as np
import torch

from opticsfree.captures.linear import fit_affine
from opticsfree.captures.loader import load_captures, resize_uint8
from opticsfree.captures.quality import CONVENTION, image_quality
from opticsfree.captures.simulate import capture_split
from opticsfree.data.base import ImageDataset, stratified_limit
from opticsfree.data.split import split_scenes
from opticsfree.errors import ConfigError, DataError
from opticsfree.optics import Camera, CameraConfig

#: The ``camera info --json`` metric keys (a contract), in report order.
METRICS = ("raw_psnr", "raw_ssim", "linear_psnr", "linear_ssim", "linear_probe_accuracy",
           "rank_1e2", "rank_1e3", "coverage", "footprint_spread_px")
#: The unit of each metric of :data:`METRICS` (``""``: a dimensionless number), for figure labels.
METRIC_UNITS: dict[str, str] = {
    "raw_psnr": "dB", "raw_ssim": "", "linear_psnr": "dB", "linear_ssim": "", "linear_probe_accuracy": "%",
    "rank_1e2": "count", "rank_1e3": "count", "coverage": "", "footprint_spread_px": "display px",
}
#: Test scenes shown in the reconstructions figure of ``camera info --out`` (one of each class
#: first, by :func:`class_samples`: all ten classes of CIFAR-10, Fashion-MNIST and digits).
FIGURE_SAMPLES = 10
#: Metrics computed from the transfer matrix alone (omitted for capture sets).
H_METRICS = ("rank_1e2", "rank_1e3", "coverage", "footprint_spread_px")
#: Share of the train scenes held out to choose the linear estimator's lambda.
VAL_FRACTION = 0.1
#: Ridge strengths tried (on the validation part of train) for the linear probe.
PROBE_ALPHAS = tuple(10.0 ** k for k in range(0, 6))

Progress = Callable[[str], None]


@dataclass(frozen=True)
class TransferGeometry:
    """What the transfer matrix H says about a camera (see the module docstring).

    Attributes:
        singular_values: (min(K, N),) singular values of H, descending.
        rank_1e2, rank_1e3: singular values above 1e-2 and 1e-3 of the largest.
        coverage: smaller of the spans of the footprint centroids over the image width and height.
        footprint_spread_px: mean footprint spread in display pixels.
        centroids: (K, 2) footprint centroids (x, y) in display pixels (pixel centres at 0..W-1).
        spreads: (K,) footprint spreads in display pixels.
        image_shape: (H, W) of the displayed image; output_size: (Ho, Wo) sensor grid.
    """

    singular_values: np.ndarray
    rank_1e2: int
    rank_1e3: int
    coverage: float
    footprint_spread_px: float
    centroids: np.ndarray
    spreads: np.ndarray
    image_shape: tuple[int, int]
    output_size: tuple[int, int]


def transfer_geometry(H: torch.Tensor, image_shape: tuple[int, int],
                      output_size: tuple[int, int]) -> TransferGeometry:
    """Rank, coverage and footprint spread of a transfer matrix.

    Args:
        H: (Ho*Wo, H*W) non-negative transfer matrix (one channel), rows ordered row-major
            over the sensor grid, columns row-major over the display grid.
        image_shape: (H, W) of the displayed image.
        output_size: (Ho, Wo) of the sensor grid.

    Returns:
        :class:`TransferGeometry`.

    Shape:
        ``H``: :math:`(H_o W_o, H W)`.
    """
    h, w = image_shape
    if H.ndim != 2 or H.shape[1] != h * w or H.shape[0] != output_size[0] * output_size[1]:
        raise ValueError(f"H must be ({output_size[0] * output_size[1]}, {h * w}), got {tuple(H.shape)}")
    Hd = H.double()
    s = torch.linalg.svdvals(Hd)
    top = float(s[0]) if len(s) else 0.0
    weights = Hd.clamp(min=0)
    total = weights.sum(1, keepdim=True)
    if bool((total <= 0).any()):
        raise ValueError("H has sensor pixels that receive no light; coverage is undefined")
    weights = weights / total
    yy, xx = torch.meshgrid(torch.arange(h, dtype=torch.float64), torch.arange(w, dtype=torch.float64),
                            indexing="ij")
    x, y = xx.reshape(-1), yy.reshape(-1)
    cx, cy = weights @ x, weights @ y
    sx = (weights @ (x * x) - cx * cx).clamp(min=0).sqrt()
    sy = (weights @ (y * y) - cy * cy).clamp(min=0).sqrt()
    spreads = 0.5 * (sx + sy)
    coverage = min(float(cx.max() - cx.min()) / w, float(cy.max() - cy.min()) / h)
    return TransferGeometry(
        singular_values=s.numpy(), rank_1e2=int((s > 1e-2 * top).sum()), rank_1e3=int((s > 1e-3 * top).sum()),
        coverage=coverage, footprint_spread_px=float(spreads.mean()),
        centroids=torch.stack([cx, cy], 1).numpy(), spreads=spreads.numpy(),
        image_shape=(h, w), output_size=(int(output_size[0]), int(output_size[1])))


def camera_matrix(camera: Camera) -> torch.Tensor:
    """The single-channel transfer matrix of any camera type (:meth:`Camera.matrix`)."""
    return camera.matrix()


@dataclass
class LinearEstimator:
    """The affine map from captures to originals (flattened, values in [0, 1]).

    Attributes:
        A: (Dout, Din) float64; c: (Dout,) float64.
        shape: (C, H, W) of the estimated originals.
        lambda_relative: the ridge strength chosen on validation (times the mean eigenvalue).
    """

    A: torch.Tensor
    c: torch.Tensor
    shape: tuple[int, int, int]
    lambda_relative: float

    @classmethod
    def fit(cls, captures: torch.Tensor, originals: torch.Tensor, val_captures: torch.Tensor,
            val_originals: torch.Tensor) -> "LinearEstimator":
        """Ridge fit on (captures, originals), lambda chosen on the validation pairs.

        Args:
            captures, val_captures: uint8 (N, C, H, W).
            originals, val_originals: uint8 (N, C', H', W').
        """
        a, c, rep = fit_affine(_flat(captures), _flat(originals), _flat(val_captures), _flat(val_originals))
        return cls(a, c, tuple(originals.shape[1:]), float(rep["lambda_relative"]))

    def predict(self, captures: torch.Tensor, chunk: int = 2048) -> torch.Tensor:
        """Estimated originals, float32 (N, C, H, W) clipped to [0, 1]."""
        out = []
        a, c = self.A.float(), self.c.float()
        for i in range(0, len(captures), chunk):
            out.append((_flat(captures[i:i + chunk]) @ a.T + c).clamp_(0, 1))
        flat = torch.cat(out) if out else torch.zeros(0, a.shape[0])
        return flat.reshape(len(flat), *self.shape)


def _flat(x: torch.Tensor) -> torch.Tensor:
    return (x.float() / 255.0 if x.dtype == torch.uint8 else x.float()).reshape(len(x), -1)


def linear_probe_accuracy(train_x: torch.Tensor, train_y: np.ndarray, test_x: torch.Tensor,
                          test_y: np.ndarray, train_ids: list[str] | None = None,
                          val_fraction: float = VAL_FRACTION, seed: int = 0) -> tuple[float, float]:
    """Test accuracy (%) of a linear classifier on capture pixels, and its chosen strength.

    scikit-learn's ``RidgeClassifier`` (ridge regression on +/-1 class indicators, the class
    of the largest output) on standardised pixels. Its strength is chosen from
    :data:`PROBE_ALPHAS` by accuracy on the validation scenes of train (the package's one
    hold-out, :func:`opticsfree.data.split.split_scenes` with ``val_fraction`` and ``seed``); the
    classifier is then refitted on the whole train split and scored once on test.

    Args:
        train_x, test_x: (N, ...) uint8 or float captures; train_y, test_y: (N,) labels.
        train_ids: scene id of every train row (default: every row its own scene).
    """
    import warnings

    from scipy.linalg import LinAlgWarning
    from sklearn.linear_model import RidgeClassifier
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    if len(np.unique(train_y)) < 2:
        raise DataError("the linear probe needs at least two classes in the train split")
    x, xt = _flat(train_x).numpy(), _flat(test_x).numpy()
    ids = train_ids if train_ids is not None else [str(i) for i in range(len(train_y))]
    tr, va = split_scenes(ids, train_y, val_fraction, seed)

    def probe(alpha: float):
        return make_pipeline(StandardScaler(), RidgeClassifier(alpha=alpha, solver="cholesky"))

    # weakly regularised candidates on near-constant pixels are ill-conditioned by design: the
    # validation accuracy, not the solver's warning, decides whether they are any good
    warnings.filterwarnings("ignore", category=LinAlgWarning, module="sklearn")

    best = PROBE_ALPHAS[0]
    if len(va) and len(np.unique(train_y[tr])) > 1:
        scores = [(probe(a).fit(x[tr], train_y[tr]).score(x[va], train_y[va]), -a) for a in PROBE_ALPHAS]
        best = -max(scores)[1]
    clf = probe(best).fit(x, train_y)
    return float(clf.score(xt, test_y)) * 100.0, float(best)


@dataclass
class CameraInfo:
    """The result of ``camera info`` (see the module docstring for every number).

    Metrics not computed (those needing H for a capture set, or not requested) are None and are
    left out of :meth:`to_json`.
    """

    source: str
    dataset: str
    n_train: int
    n_val: int
    n_test: int
    size: int
    seed: int
    limit: int | None
    raw_psnr: float | None = None
    raw_ssim: float | None = None
    linear_psnr: float | None = None
    linear_ssim: float | None = None
    linear_probe_accuracy: float | None = None
    rank_1e2: int | None = None
    rank_1e3: int | None = None
    coverage: float | None = None
    footprint_spread_px: float | None = None
    linear_lambda_relative: float | None = None
    probe_alpha: float | None = None
    seconds: float = 0.0
    conventions: str = ""
    camera: dict | None = field(default=None, repr=False)

    def metrics(self) -> dict[str, float]:
        """The computed metrics, by their contract keys."""
        return {k: getattr(self, k) for k in METRICS if getattr(self, k) is not None}

    def to_json(self) -> dict:
        """The ``camera info --json`` object: the metrics plus provenance; None values omitted."""
        d = {k: v for k, v in asdict(self).items() if v is not None and k != "camera"}
        return d


def class_samples(labels: np.ndarray, n: int) -> np.ndarray:
    """Indices of ``min(n, len(labels))`` rows that span the classes, deterministically.

    The first row of each class in class order, then the second row of each class, and so on
    (so the first ``n_classes`` picks are one of each class, whatever order the rows are in).

    Args:
        labels: (N,) integer labels.
        n: how many rows to pick (>= 1).

    Returns:
        int64 indices into ``labels``, in pick order.

    Raises:
        ValueError: ``n`` below 1 or ``labels`` not one-dimensional.
    """
    labels = np.asarray(labels)
    if n < 1:
        raise ValueError(f"n: must be >= 1, got {n}")
    if labels.ndim != 1:
        raise ValueError(f"labels: expected a 1-D array, got shape {labels.shape}")
    by_class = np.argsort(labels, kind="stable")
    sorted_labels = labels[by_class]
    first = np.searchsorted(sorted_labels, sorted_labels, side="left")
    rank = np.arange(len(labels)) - first  # position of each row within its class
    return by_class[np.lexsort((sorted_labels, rank))][:n].astype(np.int64)


@dataclass
class InfoArtifacts:
    """What the figures of ``camera info --out`` draw (kept out of the JSON result).

    Attributes:
        geometry: the transfer matrix's geometry (cameras only).
        originals, captures: the sample test scenes (:data:`FIGURE_SAMPLES` of them, spanning
            the classes by :func:`class_samples`), uint8 (N, C, H, W).
        linear: the linear estimator's reconstructions of the samples, float in [0, 1].
        labels: (N,) class index of each sample.
        classes: class names in label order, when known.
    """

    geometry: TransferGeometry | None = None
    originals: torch.Tensor | None = None
    captures: torch.Tensor | None = None
    linear: torch.Tensor | None = None
    labels: np.ndarray | None = None
    classes: list[str] | None = None


@dataclass
class SceneData:
    """Train and test (capture, original, label) triples at a common size; ``classes``: the
    class names in label order, when known (for the figures)."""

    train_captures: torch.Tensor
    train_originals: torch.Tensor
    train_labels: np.ndarray
    test_captures: torch.Tensor
    test_originals: torch.Tensor
    test_labels: np.ndarray
    train_ids: list[str]
    classes: list[str] | None = None


def _check_metrics(metrics: Iterable[str] | None) -> tuple[str, ...]:
    if metrics is None:
        return METRICS
    metrics = tuple(metrics)
    bad = [m for m in metrics if m not in METRICS]
    if bad:
        raise ConfigError(f"unknown camera info metric {bad[0]!r}; expected one of: {', '.join(METRICS)}")
    return metrics


def scene_metrics(data: SceneData, info: CameraInfo, metrics: tuple[str, ...], seed: int,
                  artifacts: InfoArtifacts | None = None, on_progress: Progress | None = None) -> None:
    """Fill ``info`` with the capture-based metrics of ``data`` (raw, linear, probe), and
    ``artifacts`` (if given) with :data:`FIGURE_SAMPLES` test scenes spanning the classes."""
    say = on_progress or (lambda _: None)
    pick = torch.from_numpy(class_samples(data.test_labels, FIGURE_SAMPLES)) if len(data.test_labels) else None
    if {"raw_psnr", "raw_ssim"} & set(metrics):
        say("raw quality")
        q = image_quality(data.test_captures, data.test_originals)
        info.raw_psnr, info.raw_ssim = float(q["psnr"].mean()), float(q["ssim"].mean())
    if {"linear_psnr", "linear_ssim"} & set(metrics):
        say("linear estimator")
        tr, va = split_scenes(data.train_ids, data.train_labels, VAL_FRACTION, seed)
        if len(va) == 0 or len(tr) < 2:
            raise DataError(f"the linear estimator needs train scenes for fitting and validation; "
                            f"got {len(data.train_labels)} (use a larger --limit)")
        est = LinearEstimator.fit(data.train_captures[tr], data.train_originals[tr],
                                  data.train_captures[va], data.train_originals[va])
        pred = est.predict(data.test_captures)
        q = image_quality(pred, data.test_originals)
        info.linear_psnr, info.linear_ssim = float(q["psnr"].mean()), float(q["ssim"].mean())
        info.linear_lambda_relative = est.lambda_relative
        info.n_val = int(len(va))
        if artifacts is not None:
            artifacts.linear = pred[pick] if pick is not None else pred
    if "linear_probe_accuracy" in metrics:
        say("linear probe")
        info.linear_probe_accuracy, info.probe_alpha = linear_probe_accuracy(
            data.train_captures, data.train_labels, data.test_captures, data.test_labels, data.train_ids,
            VAL_FRACTION, seed)
    if artifacts is not None:
        if pick is None:
            artifacts.originals, artifacts.captures = data.test_originals, data.test_captures
            artifacts.labels = data.test_labels
        else:
            artifacts.originals, artifacts.captures = data.test_originals[pick], data.test_captures[pick]
            artifacts.labels = data.test_labels[pick.numpy()]
        artifacts.classes = None if data.classes is None else list(data.classes)


def camera_info(camera: CameraConfig, dataset: ImageDataset, limit: int | None = None, seed: int = 0,
                size: int = 32, metrics: Iterable[str] | None = None, cache: bool = True,
                artifacts: InfoArtifacts | None = None, on_progress: Progress | None = None) -> CameraInfo:
    """How much of the scene ``camera`` keeps, measured on ``dataset``.

    The train and test scenes (at most ``limit`` per split, class-stratified with ``seed``, as
    ``simulate`` picks them) are captured in memory exactly as ``simulate --seed SEED`` would
    store them (same noise, same JPEG), then compared at ``size`` x ``size``.

    Args:
        camera: the camera parameters.
        dataset: a dataset with ``train`` and ``test`` splits.
        limit: at most this many scenes per split.
        seed: subset, capture-noise and validation seed.
        size: comparison size (captures and originals are resized to it, as ``quality`` does).
        metrics: compute only these keys of :data:`METRICS` (default: all).
        cache: cache H on disk (off for the many cameras of ``fit`` and ``sweep``).
        artifacts: filled with what the figures need, if given.
        on_progress: called with the name of each step.

    Returns:
        :class:`CameraInfo`.
    """
    start = time.perf_counter()
    metrics = _check_metrics(metrics)
    say = on_progress or (lambda _: None)
    for s in ("train", "test"):
        if s not in dataset.splits:
            raise ConfigError(f"camera info needs the train and test splits of {dataset.name}")
    if limit is not None and limit < 1:
        raise ConfigError(f"--limit must be >= 1, got {limit}")
    tr, te = dataset.splits["train"], dataset.splits["test"]
    channels = tr.images.shape[-1]
    cam = Camera(camera, tr.images.shape[1:3], channels, cache=cache)
    info = CameraInfo(source=f"camera {camera.name}", dataset=dataset.name, n_train=0, n_val=0, n_test=0,
                      size=size, seed=seed, limit=limit, conventions=CONVENTION.format(size=size),
                      camera=camera.to_dict())
    if set(H_METRICS) & set(metrics) or artifacts is not None:
        say("transfer matrix")
        geo = transfer_geometry(camera_matrix(cam), cam.image_shape, camera.sensor.output_size)
        info.rank_1e2, info.rank_1e3 = geo.rank_1e2, geo.rank_1e3
        info.coverage, info.footprint_spread_px = geo.coverage, geo.footprint_spread_px
        if artifacts is not None:
            artifacts.geometry = geo
    if set(metrics) - set(H_METRICS):
        parts = {}
        for name, sp in (("train", tr), ("test", te)):
            if name == "train" and not set(metrics) & {"linear_psnr", "linear_ssim", "linear_probe_accuracy"}:
                parts[name] = (torch.zeros(0, dtype=torch.uint8),) * 2 + (np.zeros(0, np.int64), [])
                continue
            say(f"capture {name}")
            idx = stratified_limit(sp.labels, limit, seed)
            caps = capture_split(cam, sp.images[idx], seed, name)
            orig = torch.from_numpy(np.ascontiguousarray(sp.images[idx])).permute(0, 3, 1, 2)
            parts[name] = (resize_uint8(caps, size), resize_uint8(orig, size), sp.labels[idx].astype(np.int64),
                           [sp.ids[i] for i in idx])
        data = SceneData(*parts["train"][:3], *parts["test"][:3], train_ids=parts["train"][3],
                         classes=list(dataset.classes))
        info.n_train, info.n_test = len(data.train_labels), len(data.test_labels)
        scene_metrics(data, info, metrics, seed, artifacts, on_progress)
    info.seconds = time.perf_counter() - start
    return info


def captures_info(root: str | Path, limit: int | None = None, seed: int = 0, size: int = 32,
                  metrics: Iterable[str] | None = None, artifacts: InfoArtifacts | None = None,
                  on_progress: Progress | None = None) -> CameraInfo:
    """``camera info`` for an existing capture set (simulated or real): the numbers that need H
    are omitted. Frame 0 of every scene is used; ``limit`` keeps at most that many scenes per
    split (class-stratified with ``seed``).
    """
    from opticsfree.captures.format import open_capture_set

    start = time.perf_counter()
    metrics = tuple(m for m in _check_metrics(metrics) if m not in H_METRICS)
    if limit is not None and limit < 1:
        raise ConfigError(f"--limit must be >= 1, got {limit}")
    say = on_progress or (lambda _: None)
    cs = open_capture_set(root)
    for s in ("train", "test"):
        if s not in cs.splits:
            raise DataError(f"{root}: camera info needs a train and a test split; this set has "
                            f"{', '.join(cs.splits) or 'none'}")
    parts = {}
    for name in ("train", "test"):
        say(f"load {name}")
        sp = load_captures(root, name, size=size)
        first = np.flatnonzero(sp.frames.numpy() == 0)
        labels = sp.labels.numpy()[first]
        keep = first[stratified_limit(labels, limit, seed)]
        parts[name] = (resize_uint8(sp.lensless[keep], size), resize_uint8(sp.original[keep], size),
                       sp.labels.numpy()[keep].astype(np.int64), [sp.ids[i] for i in keep])
    data = SceneData(*parts["train"][:3], *parts["test"][:3], train_ids=parts["train"][3], classes=cs.classes)
    source = cs.manifest.get("source", {}) if isinstance(cs.manifest.get("source"), dict) else {}
    info = CameraInfo(source=f"captures {root}", dataset=str(source.get("dataset", "?")),
                      n_train=len(data.train_labels), n_val=0, n_test=len(data.test_labels), size=size,
                      seed=seed, limit=limit, conventions=CONVENTION.format(size=size))
    scene_metrics(data, info, metrics, seed, artifacts, on_progress)
    info.seconds = time.perf_counter() - start
    return info


def relative_errors(reached: dict[str, float], targets: dict[str, float]) -> dict[str, float]:
    """:math:`|v - t| / |t|` per target (the absolute error when :math:`t = 0`)."""
    out = {}
    for k, t in targets.items():
        v = reached.get(k)
        if v is None or not math.isfinite(v):
            out[k] = math.inf
        else:
            out[k] = abs(v - t) / abs(t) if t != 0 else abs(v)
    return out
