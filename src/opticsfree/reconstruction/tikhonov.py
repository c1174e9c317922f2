"""Physics-based reconstruction: the Tikhonov-regularised inverse of the linear camera model.

The model :math:`y = A u + c` (:class:`~.linear_ops.AffineOperator`) in linearised units
(:mod:`.sensor_model`) comes from a known camera (:func:`~.sensor_model.camera_operator`) or a
calibration (:mod:`.calibration`). With the regularisation weight :math:`\\lambda` and a prior
image :math:`u_0` (zero, or the mean training drive):

.. math::

    \\hat u = u_0 + (A^\\top A + \\lambda I)^{-1} A^\\top (y - c - A u_0), \\qquad
    \\hat v = 255\\,\\mathrm{clip}(\\hat u, 0, 1)^{1/\\gamma_d}

(with :math:`u_0 = 0` this is the textbook :math:`(H^\\top H + \\lambda I)^{-1} H^\\top y`).
:math:`\\lambda` (relative to the mean eigenvalue of :math:`A^\\top A`) and :math:`u_0` are
chosen by the PSNR of :math:`\\hat v` on the validation hold-out (:func:`fit_tikhonov`). The
eigendecomposition of :math:`A^\\top A` (:class:`~.linear_ops.Spectrum`) makes the whole
:math:`\\lambda` sweep cost one decomposition. The chosen inverse is stored as one affine map
:math:`\\hat u = R\\,y + r_0` (:class:`TikhonovModel`).

:class:`TikhonovModel` is the registered class of ``--method tikhonov`` (a
:class:`~opticsfree.reconstruction.method.FittedModel`: :meth:`TikhonovModel.fit` chooses the
operator, :func:`camera_operator_for`, and fits) and the physics front end of the network methods
that have one (:data:`opticsfree.reconstruction.names.FRONT_END`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from opticsfree.captures.linear import LAMBDA_GRID
from opticsfree.captures.quality import per_image_psnr
from opticsfree.errors import DataError
from opticsfree.reconstruction.linear_ops import AffineOperator, Spectrum
from opticsfree.reconstruction.sensor_model import SensorModel, drive, values

if TYPE_CHECKING:
    from opticsfree.captures.loader import CaptureSplit
    from opticsfree.reconstruction.method import FitContext

#: Validation images used to choose lambda (a seeded subset when there are more).
MAX_VAL = 500
#: Training images used to estimate the mean irradiance prior.
MAX_PRIOR = 2000


@dataclass
class TikhonovModel:
    """A chosen Tikhonov inverse as one affine map :math:`\\hat u = R\\,y + r_0`.

    Attributes:
        matrix: :math:`R` (Cin Q, C P) float32.
        offset: :math:`r_0` (Cin Q,) float32.
        in_shape: (Cin, h, w) of the reconstructions.
        out_shape: (C, ho, wo) of the captures.
        sensor: the capture linearisation.
        display_gamma: :math:`\\gamma_d`.
        lam: the absolute :math:`\\lambda`.
        info: how the model was made (source of the operator, relative lambda, prior, table).
    """

    matrix: torch.Tensor
    offset: torch.Tensor
    in_shape: tuple[int, int, int]
    out_shape: tuple[int, int, int]
    sensor: SensorModel
    display_gamma: float
    lam: float
    info: dict[str, Any] = field(default_factory=dict)

    def reconstruct(self, captures: torch.Tensor, chunk: int = 2048) -> torch.Tensor:
        """uint8 captures (N, C, ho, wo) -> uint8 reconstructions (N, Cin, h, w).

        The product is taken in float64: a float32 GEMM's rounding depends on the thread count on
        some CPUs (AVX-512 kernels split the sum), which moved a few pixels by one grey level
        between ``--threads 1`` and ``2``; in float64 the same captures give the same uint8 images.
        """
        if captures.ndim != 4 or tuple(captures.shape[1:]) != tuple(self.out_shape):
            raise DataError(f"the Tikhonov model expects captures of shape {tuple(self.out_shape)} "
                            f"(C, H, W), got {tuple(captures.shape[1:])}")
        out = []
        r, r0 = self.matrix.double(), self.offset.double()
        for i in range(0, len(captures), chunk):
            y = self.sensor.signal(captures[i:i + chunk]).reshape(min(chunk, len(captures) - i), -1)
            u = y.double() @ r.T + r0
            v = values(u.reshape(len(u), self.in_shape[0], -1), self.display_gamma, self.in_shape)
            out.append((v * 255).round_().clamp_(0, 255).to(torch.uint8))
        return torch.cat(out) if out else torch.empty(0, *self.in_shape, dtype=torch.uint8)

    @classmethod
    def fit(cls, train: CaptureSplit, val: CaptureSplit, ctx: FitContext) -> "TikhonovModel":
        """The Tikhonov inverse of the capture set's camera (:func:`camera_operator_for`: the
        ``--camera``, the manifest's, or a calibration fitted on the pairs), its lambda and prior
        chosen on ``val`` (:func:`fit_tikhonov`).

        Args:
            train: training pairs (uint8).
            val: validation pairs (uint8; at least one).
            ctx: the capture set, ``--camera`` and seed.

        Returns:
            The fitted model.

        Raises:
            DataError: no validation pairs, or a camera that does not fit the data (named).
        """
        side = int(train.lensless.shape[-1])
        cin, cout = int(train.lensless.shape[1]), int(train.original.shape[1])
        op, sensor, gamma, info = camera_operator_for(ctx.captures, ctx.camera, train, val, side, cin, cout)
        return fit_tikhonov(op, sensor, gamma, train.lensless, train.original, val.lensless, val.original,
                            info=info, seed=ctx.seed)

    def metrics(self) -> dict[str, Any]:
        """The fit's numbers in the metrics row: the absolute and relative lambda, the prior."""
        return {"lambda": self.lam, "lambda_relative": self.info["lambda_relative"], "prior": self.info["prior"]}

    def report(self) -> dict[str, Any]:
        """How the model was made (``MODEL/tikhonov.json``): :attr:`info` and the lambda."""
        return dict(self.info) | {"lambda": self.lam}

    def summary(self) -> dict[str, Any]:
        """The front end's record in a network's config.json (``front_end_fit``)."""
        return {"operator": self.info.get("operator"), "lambda": self.lam,
                "lambda_relative": self.info["lambda_relative"], "prior": self.info["prior"],
                "val_psnr": self.info["val_psnr"]}

    def state(self) -> dict[str, Any]:
        """The model as plain values and float32 tensors (kept in MODEL/model.pt)."""
        return {"matrix": self.matrix.float(), "offset": self.offset.float(),
                "in_shape": list(self.in_shape), "out_shape": list(self.out_shape),
                "sensor": self.sensor.state(), "display_gamma": float(self.display_gamma),
                "lam": float(self.lam), "info": self.info}

    @classmethod
    def from_state(cls, d: dict[str, Any]) -> "TikhonovModel":
        """The model saved by :meth:`state`."""
        return cls(d["matrix"], d["offset"], tuple(d["in_shape"]), tuple(d["out_shape"]),
                   SensorModel.from_state(d["sensor"]), float(d["display_gamma"]), float(d["lam"]),
                   dict(d.get("info") or {}))


def solve(op: AffineOperator, spec: Spectrum, y: torch.Tensor, lam: float,
          prior: torch.Tensor | None = None) -> torch.Tensor:
    """:math:`u_0 + (A^\\top A + \\lambda I)^{-1} A^\\top (y - c - A u_0)`: (N, C, P) -> (N, Cin, Q)."""
    r = y - op.bias
    if prior is not None:
        r = r - op.linear(prior[None])
    z = spec.project(op.adjoint(r)) / (spec.values + lam)
    u = spec.back(z, op.in_shape)
    return u + prior[None] if prior is not None else u


def inverse_matrix(op: AffineOperator, spec: Spectrum, lam: float, prior: torch.Tensor | None = None,
                   chunk: int = 512) -> tuple[torch.Tensor, torch.Tensor]:
    """:math:`R = (A^\\top A + \\lambda I)^{-1} A^\\top` and :math:`r_0 = u_0 - R (c + A u_0)`."""
    c, ho, wo = op.out_shape
    dout = c * ho * wo
    rows = []
    for i in range(0, dout, chunk):
        k = min(chunk, dout - i)
        e = torch.zeros(k, dout, dtype=torch.float64)
        e[torch.arange(k), torch.arange(i, i + k)] = 1.0
        z = spec.project(op.adjoint(e.reshape(k, c, -1))) / (spec.values + lam)
        rows.append(spec.back(z, op.in_shape).reshape(k, -1))
    r_t = torch.cat(rows)  # (Dout, Din) = R^T
    base = op.bias.reshape(1, -1).clone()
    if prior is not None:
        base = base + op.linear(prior[None]).reshape(1, -1)
    r0 = -(base @ r_t).reshape(-1)
    if prior is not None:
        r0 = r0 + prior.reshape(-1)
    return r_t.T.contiguous().float(), r0.float()


def build_model(op: AffineOperator, sensor: SensorModel, display_gamma: float, lam_rel: float,
                prior: torch.Tensor | None = None, spec: Spectrum | None = None,
                info: dict[str, Any] | None = None) -> TikhonovModel:
    """A :class:`TikhonovModel` for a relative :math:`\\lambda` (times the mean eigenvalue)."""
    spec = spec or op.spectrum()
    lam = float(lam_rel * spec.values.mean())
    r, r0 = inverse_matrix(op, spec, lam, prior)
    info = dict(info or {})
    info.update({"lambda_relative": lam_rel, "prior": "none" if prior is None else "mean"})
    return TikhonovModel(r, r0, tuple(op.in_shape), tuple(op.out_shape), sensor, display_gamma, lam, info)


def psnr(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Per-image PSNR (dB) of images in [0, 1] (:func:`~opticsfree.captures.quality.per_image_psnr`)."""
    return per_image_psnr(pred, target)


def choose_lambda(op: AffineOperator, sensor: SensorModel, display_gamma: float,
                  val_captures: torch.Tensor, val_originals: torch.Tensor,
                  priors: dict[str, torch.Tensor | None], spec: Spectrum,
                  grid: tuple[float, ...] = LAMBDA_GRID) -> tuple[float, str, list[dict[str, float]]]:
    """Pick the relative :math:`\\lambda` and prior with the best mean validation PSNR.

    Returns:
        ``(lambda_relative, prior_name, table)`` with one ``{"lambda_relative", "prior",
        "psnr"}`` row per candidate.
    """
    y = sensor.signal(val_captures)
    target = val_originals.double() / 255.0
    mean_e = float(spec.values.mean())
    table = []
    best = (-math.inf, grid[0], next(iter(priors)))
    for name, prior in priors.items():
        r = y - op.bias
        if prior is not None:
            r = r - op.linear(prior[None])
        z = spec.project(op.adjoint(r))
        for rel in grid:
            u = spec.back(z / (spec.values + rel * mean_e), op.in_shape)
            if prior is not None:
                u = u + prior[None]
            p = float(psnr(values(u, display_gamma, op.in_shape), target).mean())
            table.append({"lambda_relative": float(rel), "prior": name, "psnr": p})
            if p > best[0]:
                best = (p, rel, name)
    return float(best[1]), best[2], table


def fit_tikhonov(op: AffineOperator, sensor: SensorModel, display_gamma: float,
                 train_captures: torch.Tensor, train_originals: torch.Tensor,
                 val_captures: torch.Tensor, val_originals: torch.Tensor,
                 info: dict[str, Any] | None = None, seed: int = 0) -> TikhonovModel:
    """Complete a model with training data and choose :math:`\\lambda` on validation.

    For per-image exposure the mean-irradiance prior :math:`w` (``sensor.scale``) is set to
    the mean of :math:`\\overline{A u_i + c}` over (up to :data:`MAX_PRIOR`) training originals
    unless it came from a calibration. The prior image :math:`u_0` candidates are zero and
    the mean training drive.
    """
    if len(val_captures) == 0:
        raise DataError("Tikhonov needs validation pairs to choose lambda (val_fraction > 0 and "
                        "at least two scenes per class)")
    g = torch.Generator().manual_seed(seed)
    tr = torch.randperm(len(train_originals), generator=g)[:MAX_PRIOR]
    u_train = drive(train_originals[tr], display_gamma)
    info = dict(info or {})
    if sensor.exposure == "per-image" and not info.get("scale_from_calibration"):
        sensor.scale = float(op.apply(u_train).mean())
    mean_u = u_train.mean(0)
    va = torch.randperm(len(val_captures), generator=g)[:MAX_VAL]
    spec = op.spectrum()
    rel, prior_name, table = choose_lambda(op, sensor, display_gamma, val_captures[va],
                                           val_originals[va], {"none": None, "mean": mean_u}, spec)
    info.update({"val_images": int(len(va)), "val_psnr": max(r["psnr"] for r in table), "table": table,
                 "mean_irradiance_prior": sensor.scale if sensor.exposure == "per-image" else None})
    return build_model(op, sensor, display_gamma, rel, mean_u if prior_name == "mean" else None, spec, info)


def camera_operator_for(captures: Path, camera: str | Path | None, train: CaptureSplit, val: CaptureSplit,
                        side: int, cin: int, cout: int) -> tuple[AffineOperator, SensorModel, float, dict[str, Any]]:
    """The camera model to invert for a capture set (see :mod:`.sensor_model`, :mod:`.calibration`).

    Args:
        captures: the capture set (its manifest's camera is the default).
        camera: a ``camera.npz`` from ``calibrate``, a camera preset/TOML, or None (the
            manifest's camera when it is a simulated one, else a calibration fitted on the pairs).
        train, val: the pairs a calibration is fitted on.
        side, cin, cout: image side, capture and original channels.

    Returns:
        ``(operator, sensor, display gamma, info)``; ``info["operator"]`` says where the operator
        came from (``"calibration"``, ``"fitted"`` or ``"camera"``).

    Raises:
        DataError: a calibration or camera that does not match the data's shape or channels.
    """
    from opticsfree.captures.format import open_capture_set
    from opticsfree.optics import camera_from_dict, load_camera_config
    from opticsfree.reconstruction.calibration import calibrate_pairs, load_calibration
    from opticsfree.reconstruction.sensor_model import camera_operator

    manifest = open_capture_set(captures).manifest
    if camera is not None and str(camera).endswith(".npz"):
        cal = load_calibration(camera)
        if tuple(cal.operator.in_shape) != (cout, side, side) or tuple(cal.operator.out_shape) != (cin, side, side):
            raise DataError(f"{camera}: calibration maps images {tuple(cal.operator.in_shape)} to captures "
                            f"{tuple(cal.operator.out_shape)}, but the data are {(cout, side, side)} -> "
                            f"{(cin, side, side)} (C, H, W); pass the --size the calibration used")
        return cal.operator, cal.sensor, cal.display_gamma, {
            "operator": "calibration", "calibration": str(Path(camera).resolve()),
            "scale_from_calibration": True, "calibration_report": {
                k: v for k, v in cal.report.items() if k != "table"}}
    if camera is not None:
        cfg = load_camera_config(camera)
        name = f"camera {cfg.name} ({camera})"
    elif isinstance(manifest.get("camera"), dict) and manifest["camera"].get("type") in ("bare", "lens", "psf"):
        cfg = camera_from_dict(manifest["camera"], f"{captures}/manifest.json: camera")
        name = f"camera {cfg.name} (from the capture set's manifest)"
    else:
        cal = calibrate_pairs(train.lensless, train.original, val.lensless, val.original,
                              source=f"{captures} (fitted during training)")
        return cal.operator, cal.sensor, cal.display_gamma, {
            "operator": "fitted", "scale_from_calibration": True,
            "calibration_report": {k: v for k, v in cal.report.items() if k != "table"}}
    if cin != cout:
        raise DataError(f"{captures}: captures have {cin} channels and originals {cout}; a known camera "
                        "maps images to captures with the same channels")
    op, sensor, gamma = camera_operator(cfg, side, cout)
    return op, sensor, gamma, {"operator": "camera", "camera": name}
