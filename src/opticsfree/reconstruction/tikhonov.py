"""Physics-based reconstruction: the Tikhonov-regularised inverse of a linear camera model, and
``calibrate``, a ridge-regression fit of that model from (capture, original) pairs.

The camera is linear in display luminance up to the light transport, but the stored images
are not: the display applies a gamma, the sensor auto-exposes every capture, and the camera
writes gamma-encoded values. We therefore work in linearised units.

Image side (display). The drive :math:`u = (v/255)^{\\gamma_d}` of an original :math:`v` is
linear in luminance; a known display adds its black level :math:`b` and backlight map
:math:`B`: :math:`L = B \\odot (b + (1 - b)\\,u)`.

Capture side (sensor). A capture :math:`q` is linearised as
:math:`\\ell = ((q/255)^{\\gamma_o} - o) / g` (output gamma :math:`\\gamma_o`, and for a known
camera its fixed-pattern offset :math:`o` and gain :math:`g`), which is proportional to the
irradiance :math:`s`: :math:`\\ell = R\\,t\\,s / F` (signal rate :math:`R`, exposure
:math:`t`, full well :math:`F`).

* Per-image auto-exposure sets :math:`t` so that :math:`\\bar\\ell = \\tau`, i.e.
  :math:`s = \\bar s\\,\\ell/\\bar\\ell`: the capture determines :math:`s` only up to the
  image's mean irradiance :math:`\\bar s` -- a dark and a bright image with the same pattern give
  the same capture. The signal is therefore :math:`y = w\\,\\ell/\\bar\\ell` with :math:`w` the
  mean of :math:`\\bar s` over the training originals (a prior: the absolute brightness is not
  observable). A known camera also tells when the exposure hit its limit :math:`t_{max}`
  (:math:`\\bar\\ell < 0.9\\,\\tau` with no saturated pixel): then
  :math:`y = \\ell\\,F / (R\\,t_{max})` exactly.
* Calibrated (fixed) exposure: :math:`y = \\ell\\,F/(R\\,t)` with the known :math:`t`.

Model. In these units :math:`y = A u + c + n`. For a simulated set (its manifest holds the
camera) :math:`A = (1 - b)\\,M \\otimes (S\\,\\mathrm{diag}(B))` and
:math:`c = b\\,M \\otimes S\\,B`, with the colour matrix :math:`M` and the transfer matrix
:math:`S` (irradiance per unit luminance of each display element, resampled to the working
grid). For a real set, ``calibrate`` fits :math:`A, c` by ridge regression (below).

Inverse. With the regularisation weight :math:`\\lambda` and a prior image :math:`u_0`
(zero, or the mean training drive):

.. math::

    \\hat u = u_0 + (A^\\top A + \\lambda I)^{-1} A^\\top (y - c - A u_0), \\qquad
    \\hat v = 255\\,\\mathrm{clip}(\\hat u, 0, 1)^{1/\\gamma_d}

(with :math:`u_0 = 0` this is the textbook :math:`(H^\\top H + \\lambda I)^{-1} H^\\top y`).
:math:`\\lambda` (relative to the mean eigenvalue of :math:`A^\\top A`) and :math:`u_0` are
chosen by the PSNR of :math:`\\hat v` on the validation hold-out. The eigendecomposition of
:math:`A^\\top A` (of :math:`M^\\top M` and :math:`S^\\top S` separately for the Kronecker form)
makes the whole :math:`\\lambda` sweep cost one decomposition.

Calibration. With linearised pairs :math:`(u_i, y_i)` (for per-image exposure
:math:`y_i = \\bar u_i\\,\\ell_i/\\bar\\ell_i`, which puts every capture on the brightness
scale of its original), ridge regression on centred data:

.. math::

    \\hat A = \\arg\\min_A \\sum_i \\lVert y_i - \\bar y - A (u_i - \\bar u) \\rVert^2
        + \\lambda \\lVert A \\rVert_F^2, \\qquad \\hat c = \\bar y - \\hat A \\bar u

with :math:`\\lambda` chosen by the relative error on the validation pairs
:math:`\\lVert Y - \\hat Y \\rVert_F / \\lVert Y - \\bar y \\rVert_F`, which is reported.

Not modelled (they act as noise): shot and read noise, JPEG, the small random display shifts,
flicker under fixed exposure, full-well clipping, and the resampling of gamma-encoded values by
the capture loader when ``--size`` differs from the stored size.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from opticsfree.captures.linear import LAMBDA_GRID, fit_affine
from opticsfree.captures.quality import per_image_psnr
from opticsfree.errors import DataError

#: Validation images used to choose lambda (a seeded subset when there are more).
MAX_VAL = 500
#: Training images used to estimate the mean irradiance prior.
MAX_PRIOR = 2000
CALIBRATION_VERSION = 1


# --------------------------------------------------------------------------- the linear model

@dataclass
class Spectrum:
    """Eigendecomposition of :math:`A^\\top A` in the operator's input coordinates.

    Kronecker form: :math:`A^\\top A = (M^\\top M) \\otimes (S^\\top S)`, eigenvalues
    :math:`e_{ij} = m_i\\,s_j`, vectors :math:`v_i \\otimes w_j`.
    """

    values: torch.Tensor                       # (D,) float64
    colour_vecs: torch.Tensor | None = None    # (Cin, Cin)
    spatial_vecs: torch.Tensor | None = None   # (Q, Q)
    dense_vecs: torch.Tensor | None = None     # (D, D)

    def project(self, u: torch.Tensor) -> torch.Tensor:
        """(N, Cin, Q) -> (N, D) eigen-coordinates."""
        n = u.shape[0]
        if self.dense_vecs is not None:
            return u.reshape(n, -1) @ self.dense_vecs
        t = torch.einsum("di,ndq->niq", self.colour_vecs, u)
        return (t @ self.spatial_vecs).reshape(n, -1)

    def back(self, z: torch.Tensor, in_shape: tuple[int, int, int]) -> torch.Tensor:
        """(N, D) eigen-coordinates -> (N, Cin, Q)."""
        n = z.shape[0]
        cin, q = in_shape[0], in_shape[1] * in_shape[2]
        if self.dense_vecs is not None:
            return (z @ self.dense_vecs.T).reshape(n, cin, q)
        t = z.reshape(n, cin, q) @ self.spatial_vecs.T
        return torch.einsum("di,niq->ndq", self.colour_vecs, t)


@dataclass
class AffineOperator:
    """The affine camera model :math:`y = A u + c` on flattened images.

    ``u`` has shape (N, Cin, Q) with :math:`Q = h w`, ``y`` (N, C, P) with :math:`P = h_o w_o`.
    Either the Kronecker form :math:`A = M \\otimes S` (``colour`` (C, Cin), ``spatial``
    (P, Q)) or a ``dense`` (C P, Cin Q) matrix.
    """

    in_shape: tuple[int, int, int]
    out_shape: tuple[int, int, int]
    bias: torch.Tensor
    colour: torch.Tensor | None = None
    spatial: torch.Tensor | None = None
    dense: torch.Tensor | None = None

    def __post_init__(self) -> None:
        cin, h, w = self.in_shape
        c, ho, wo = self.out_shape
        if self.dense is not None:
            if tuple(self.dense.shape) != (c * ho * wo, cin * h * w):
                raise ValueError(f"dense A has shape {tuple(self.dense.shape)}, expected "
                                 f"{(c * ho * wo, cin * h * w)}")
        elif self.colour is None or self.spatial is None:
            raise ValueError("give colour and spatial (Kronecker form) or dense")
        elif tuple(self.colour.shape) != (c, cin) or tuple(self.spatial.shape) != (ho * wo, h * w):
            raise ValueError("colour must be (C, Cin) and spatial (P, Q)")
        if tuple(self.bias.shape) != (c, ho * wo):
            raise ValueError(f"bias must be (C, P) = {(c, ho * wo)}, got {tuple(self.bias.shape)}")

    @property
    def kind(self) -> str:
        return "dense" if self.dense is not None else "kron"

    def _tensors(self, dtype: torch.dtype) -> None:
        for name in ("bias", "colour", "spatial", "dense"):
            t = getattr(self, name)
            if t is not None and t.dtype != dtype:
                setattr(self, name, t.to(dtype))

    def linear(self, u: torch.Tensor) -> torch.Tensor:
        """:math:`A u`: (N, Cin, Q) -> (N, C, P)."""
        n = u.shape[0]
        if self.dense is not None:
            return (u.reshape(n, -1) @ self.dense.T).reshape(n, self.out_shape[0], -1)
        return torch.einsum("cd,ndp->ncp", self.colour, u @ self.spatial.T)

    def apply(self, u: torch.Tensor) -> torch.Tensor:
        """:math:`A u + c`."""
        return self.linear(u) + self.bias

    def adjoint(self, r: torch.Tensor) -> torch.Tensor:
        """:math:`A^\\top r`: (N, C, P) -> (N, Cin, Q)."""
        n = r.shape[0]
        if self.dense is not None:
            return (r.reshape(n, -1) @ self.dense).reshape(n, self.in_shape[0], -1)
        return torch.einsum("cd,ncp->ndp", self.colour, r) @ self.spatial

    def spectrum(self) -> Spectrum:
        """Eigendecomposition of :math:`A^\\top A` (float64)."""
        if self.dense is not None:
            a = self.dense.double()
            e, v = torch.linalg.eigh(a.T @ a)
            return Spectrum(e.clamp(min=0), dense_vecs=v)
        m, s = self.colour.double(), self.spatial.double()
        em, vm = torch.linalg.eigh(m.T @ m)
        es, vs = torch.linalg.eigh(s.T @ s)
        return Spectrum(torch.outer(em.clamp(min=0), es.clamp(min=0)).reshape(-1),
                        colour_vecs=vm, spatial_vecs=vs)

    def state(self) -> dict[str, Any]:
        return {"in_shape": list(self.in_shape), "out_shape": list(self.out_shape),
                "bias": self.bias.float(), "colour": None if self.colour is None else self.colour.float(),
                "spatial": None if self.spatial is None else self.spatial.float(),
                "dense": None if self.dense is None else self.dense.float()}


@dataclass
class SensorModel:
    """How a stored capture becomes the signal :math:`y` of the model (see the module doc).

    Attributes:
        output_gamma: :math:`\\gamma_o`.
        exposure: ``per-image`` (normalise each capture and scale by ``scale``) or ``fixed``
            (multiply by ``scale``).
        scale: :math:`w` (per-image) or :math:`F/(R t)` (fixed).
        tau: expected mean of :math:`\\ell` under per-image auto-exposure (None: unknown).
        tmax_scale: :math:`F/(R\\,t_{max})` for captures whose exposure hit its limit (None: unknown).
        gain, offset: fixed-pattern maps (C, P) (None: not corrected).
    """

    output_gamma: float
    exposure: str
    scale: float = 1.0
    tau: float | None = None
    tmax_scale: float | None = None
    gain: torch.Tensor | None = None
    offset: torch.Tensor | None = None

    def linearise(self, captures: torch.Tensor) -> torch.Tensor:
        """:math:`\\ell`: uint8 (N, C, H, W) -> float64 (N, C, P)."""
        n, c = captures.shape[:2]
        lin = (captures.double() / 255.0).pow(self.output_gamma).reshape(n, c, -1)
        if self.offset is not None:
            lin = lin - self.offset.double()
        if self.gain is not None:
            lin = lin / self.gain.double().clamp(min=1e-6)
        return lin

    def signal(self, captures: torch.Tensor) -> torch.Tensor:
        """:math:`y` for uint8 captures (N, C, H, W): float64 (N, C, P)."""
        lin = self.linearise(captures)
        if self.exposure == "fixed":
            return lin * self.scale
        m = lin.mean(dim=(1, 2), keepdim=True).clamp(min=1e-9)
        y = self.scale * lin / m
        if self.tau is not None and self.tmax_scale is not None:
            raw = captures.reshape(len(captures), -1)
            clamped = (m.view(-1) < 0.9 * self.tau) & (raw.amax(dim=1) < 250)
            if bool(clamped.any()):
                y[clamped] = lin[clamped] * self.tmax_scale
        return y

    def state(self) -> dict[str, Any]:
        return {"output_gamma": float(self.output_gamma), "exposure": self.exposure,
                "scale": float(self.scale), "tau": self.tau, "tmax_scale": self.tmax_scale,
                "gain": None if self.gain is None else self.gain.float(),
                "offset": None if self.offset is None else self.offset.float()}

    @classmethod
    def from_state(cls, d: dict[str, Any]) -> "SensorModel":
        return cls(float(d["output_gamma"]), str(d["exposure"]), float(d["scale"]),
                   None if d.get("tau") is None else float(d["tau"]),
                   None if d.get("tmax_scale") is None else float(d["tmax_scale"]),
                   d.get("gain"), d.get("offset"))


def drive(images: torch.Tensor, display_gamma: float) -> torch.Tensor:
    """:math:`u = (v/255)^{\\gamma_d}`: uint8 (N, C, H, W) -> float64 (N, C, Q)."""
    n, c = images.shape[:2]
    return (images.double() / 255.0).pow(display_gamma).reshape(n, c, -1)


def values(u: torch.Tensor, display_gamma: float, shape: tuple[int, int, int]) -> torch.Tensor:
    """:math:`\\hat v = \\mathrm{clip}(u, 0, 1)^{1/\\gamma_d}` in [0, 1], shaped (N, C, h, w)."""
    return u.clamp(0, 1).pow(1.0 / display_gamma).reshape(len(u), *shape).float()


# --------------------------------------------------------------------------- known cameras

def camera_operator(camera, size: int, channels: int) -> tuple[AffineOperator, SensorModel, float]:
    """The model of a known (simulated) camera on a ``size`` x ``size`` grid.

    Args:
        camera: a :class:`~opticsfree.optics.config.CameraConfig`.
        size: working image side (originals shown at ``size`` x ``size``; captures resampled
            from the sensor grid to ``size`` x ``size`` when it differs).
        channels: image channels (1 or 3).

    Returns:
        ``(operator, sensor model, display gamma)``; for per-image exposure the sensor's
        ``scale`` (the mean-irradiance prior :math:`w`) is 1 until set from training data.
    """
    from opticsfree.optics import Camera
    from opticsfree.optics.display import backlight_map
    from opticsfree.optics.sensor import exposure_time

    cam = Camera(camera, (size, size), channels)
    q = size * size
    cols = []
    for i in range(0, q, 256):
        k = min(256, q - i)
        basis = torch.zeros(k, 1, q)
        basis[torch.arange(k), 0, torch.arange(i, i + k)] = 1.0
        resp = cam.spatial(basis.reshape(k, 1, size, size))
        cols.append(_to_grid(resp, size).reshape(k, -1))
    s = torch.cat(cols).T.double()  # (P, Q)
    d = camera.display
    b = float(d.black_level)
    back = (backlight_map((size, size), d).reshape(-1).double() if d.backlight_falloff > 0
            else torch.ones(q, dtype=torch.float64))
    colour = cam.colour.double()
    spatial = (1.0 - b) * s * back[None, :]
    bias = b * colour.sum(1)[:, None] * (s @ back)[None, :]
    op = AffineOperator((channels, size, size), (channels, size, size), bias, colour=colour, spatial=spatial)

    sc = camera.sensor
    fpn = cam.fpn
    gain = _to_grid(fpn.gain[None], size)[0].reshape(channels, -1).double()
    offset = (_to_grid(fpn.offset[None], size)[0].reshape(channels, -1) / sc.full_well_e).double()
    if sc.auto_exposure == "calibrated":
        grey = torch.full((1, channels, size, size), 0.5)
        t = exposure_time(cam.irradiance(grey).mean().reshape(1), sc)
        sensor = SensorModel(sc.output_gamma, "fixed", float(sc.full_well_e / (sc.signal_rate_e_per_s * t)),
                             gain=gain, offset=offset)
    else:
        sensor = SensorModel(sc.output_gamma, "per-image", 1.0, tau=sc.exposure_target,
                             tmax_scale=sc.full_well_e / (sc.signal_rate_e_per_s * sc.max_exposure_s),
                             gain=gain, offset=offset)
    return op, sensor, float(d.gamma)


def _to_grid(x: torch.Tensor, size: int) -> torch.Tensor:
    """Resample (N, C, h, w) maps to (N, C, size, size) (bilinear, antialiased, as the loader)."""
    if tuple(x.shape[-2:]) == (size, size):
        return x
    return F.interpolate(x.float(), size=(size, size), mode="bilinear", antialias=True, align_corners=False)


# --------------------------------------------------------------------------- the inverse

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
        """uint8 captures (N, C, ho, wo) -> uint8 reconstructions (N, Cin, h, w)."""
        if captures.ndim != 4 or tuple(captures.shape[1:]) != tuple(self.out_shape):
            raise DataError(f"the Tikhonov model expects captures of shape {tuple(self.out_shape)} "
                            f"(C, H, W), got {tuple(captures.shape[1:])}")
        out = []
        for i in range(0, len(captures), chunk):
            y = self.sensor.signal(captures[i:i + chunk]).reshape(min(chunk, len(captures) - i), -1)
            u = (y.float() @ self.matrix.T + self.offset).double()
            v = values(u.reshape(len(u), self.in_shape[0], -1), self.display_gamma, self.in_shape)
            out.append((v * 255).round_().clamp_(0, 255).to(torch.uint8))
        return torch.cat(out) if out else torch.empty(0, *self.in_shape, dtype=torch.uint8)

    def state(self) -> dict[str, Any]:
        return {"matrix": self.matrix.float(), "offset": self.offset.float(),
                "in_shape": list(self.in_shape), "out_shape": list(self.out_shape),
                "sensor": self.sensor.state(), "display_gamma": float(self.display_gamma),
                "lam": float(self.lam), "info": self.info}

    @classmethod
    def from_state(cls, d: dict[str, Any]) -> "TikhonovModel":
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


# --------------------------------------------------------------------------- calibration

@dataclass
class Calibration:
    """A fitted affine camera model (the content of ``camera.npz``).

    Attributes:
        operator: the dense :class:`AffineOperator`.
        sensor: capture linearisation (``scale``: the mean drive of the training originals for
            per-image exposure).
        display_gamma: :math:`\\gamma_d` assumed for the originals.
        report: fit statistics (``lambda_relative``, ``val_relative_error``, ``val_rmse``,
            ``train_relative_error``, ``n_train``, ``n_val``, ...).
    """

    operator: AffineOperator
    sensor: SensorModel
    display_gamma: float
    report: dict[str, Any]


def calibration_pairs(captures: torch.Tensor, originals: torch.Tensor, display_gamma: float,
                      output_gamma: float, exposure: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Linearised calibration pairs ``(u (N, Cin Q), y (N, C P))`` as float32.

    ``u = (v/255)^gamma_d``; ``y = l`` (fixed exposure) or ``y = mean(u) l / mean(l)``
    (per-image exposure), ``l = (q/255)^gamma_o``.
    """
    n = len(captures)
    u = drive(originals, display_gamma).reshape(n, -1)
    sensor = SensorModel(output_gamma, "fixed", 1.0)
    lin = sensor.linearise(captures).reshape(n, -1)
    if exposure == "per-image":
        lin = lin / lin.mean(1, keepdim=True).clamp(min=1e-9) * u.mean(1, keepdim=True)
    return u.float(), lin.float()


def calibrate_pairs(train_captures: torch.Tensor, train_originals: torch.Tensor,
                    val_captures: torch.Tensor, val_originals: torch.Tensor,
                    display_gamma: float = 2.2, output_gamma: float = 2.2,
                    exposure: str = "per-image", source: str = "") -> Calibration:
    """Fit the affine camera model from linearised (capture, original) pairs.

    Args:
        train_captures, train_originals: uint8 (N, C, H, W) training pairs.
        val_captures, val_originals: uint8 validation pairs (choose lambda, report the error).
        display_gamma, output_gamma: assumed gammas (see :func:`calibration_pairs`).
        exposure: ``per-image`` or ``fixed``.
        source: provenance text stored in the report.
    """
    if exposure not in ("per-image", "fixed"):
        raise DataError(f"exposure must be per-image or fixed, got {exposure!r}")
    x, y = calibration_pairs(train_captures, train_originals, display_gamma, output_gamma, exposure)
    xv, yv = calibration_pairs(val_captures, val_originals, display_gamma, output_gamma, exposure)
    a, c, report = fit_affine(x, y, xv, yv)
    in_shape = tuple(train_originals.shape[1:])
    out_shape = tuple(train_captures.shape[1:])
    op = AffineOperator(in_shape, out_shape, c.reshape(out_shape[0], -1), dense=a)
    scale = float(x.double().mean()) if exposure == "per-image" else 1.0
    sensor = SensorModel(output_gamma, exposure, scale)
    report.update({"display_gamma": display_gamma, "output_gamma": output_gamma, "exposure": exposure,
                   "in_shape": list(in_shape), "out_shape": list(out_shape), "source": source})
    return Calibration(op, sensor, display_gamma, report)


def save_calibration(path: str | Path, cal: Calibration) -> Path:
    """Write ``camera.npz`` atomically (arrays only: loads without pickle)."""
    from opticsfree.utils.io import atomic_path

    meta = {"version": CALIBRATION_VERSION, "display_gamma": cal.display_gamma,
            "sensor": {k: v for k, v in cal.sensor.state().items() if k not in ("gain", "offset")},
            "in_shape": list(cal.operator.in_shape), "out_shape": list(cal.operator.out_shape),
            "report": cal.report}
    path = Path(path)
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            np.savez(f, A=cal.operator.dense.float().numpy(), c=cal.operator.bias.float().numpy(),
                     meta=np.array(json.dumps(meta)))
    return path


def load_calibration(path: str | Path) -> Calibration:
    """Read a ``camera.npz`` written by :func:`save_calibration` (DataError naming the file)."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: calibration file not found")
    try:
        with np.load(path, allow_pickle=False) as z:
            a, c, meta = z["A"], z["c"], json.loads(str(z["meta"]))
        in_shape, out_shape = tuple(meta["in_shape"]), tuple(meta["out_shape"])
        op = AffineOperator(in_shape, out_shape, torch.from_numpy(c).double(), dense=torch.from_numpy(a).double())
        sensor = SensorModel.from_state({**meta["sensor"], "gain": None, "offset": None})
        return Calibration(op, sensor, float(meta["display_gamma"]), dict(meta["report"]))
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise DataError(f"{path}: not an opticsfree calibration file ({type(e).__name__}: {e})".splitlines()[0]) from None


def calibration_defaults(manifest: dict[str, Any]) -> tuple[float, float, str]:
    """``(display_gamma, output_gamma, exposure)`` for a capture set.

    A simulated set's manifest camera gives its display gamma, output gamma and exposure mode
    (``calibrated`` auto-exposure -> ``fixed``); for a real set the sRGB-like defaults
    2.2 / 2.2 and per-image auto-exposure (what webcam modules do) are assumed.
    """
    cam = manifest.get("camera")
    if isinstance(cam, dict) and cam.get("type") in ("bare", "lens", "psf"):
        try:
            return (float(cam["display"]["gamma"]), float(cam["sensor"]["output_gamma"]),
                    "fixed" if cam["sensor"].get("auto_exposure") == "calibrated" else "per-image")
        except (KeyError, TypeError, ValueError):
            pass
    return 2.2, 2.2, "per-image"


def calibrate(captures: str | Path, out: str | Path, size: int | None = None, limit: int | None = None,
              seed: int = 0, val_fraction: float = 0.1, display_gamma: float | None = None,
              output_gamma: float | None = None, exposure: str | None = None) -> dict[str, Any]:
    """Fit the affine camera model of a capture set from its train pairs; write ``camera.npz``.

    The train split's scenes are split into a fitting part and a class-stratified validation
    hold-out (as in training); lambda is chosen on the hold-out and its error reported.

    Args:
        captures: the capture set.
        out: the ``.npz`` file to write.
        size: work at ``size`` x ``size`` (default: the stored capture size). The model has
            :math:`(C P)(C' Q)` entries: keep it small (32 px RGB: 9.4 M) and use many pairs.
        limit: at most this many train scenes.
        seed: seed of the hold-out.
        val_fraction: share of the scenes held out.
        display_gamma, output_gamma, exposure: linearisation (default:
            :func:`calibration_defaults`).

    Returns:
        The fit report (``val_relative_error``, ``val_rmse``, ``train_relative_error``,
        ``lambda``, ``lambda_relative``, ``n_train``, ``n_val``, shapes, gammas, exposure, ``out``).
    """
    from opticsfree.captures.format import open_capture_set
    from opticsfree.captures.loader import load_captures
    from opticsfree.errors import ConfigError
    from opticsfree.data.split import split_scenes

    captures = Path(captures).resolve()
    if not str(out).endswith(".npz"):
        raise ConfigError(f"--out {out}: the calibration file must end in .npz")
    dg, og, ex = calibration_defaults(open_capture_set(captures).manifest)
    dg = dg if display_gamma is None else display_gamma
    og = og if output_gamma is None else output_gamma
    ex = ex if exposure is None else exposure
    if ex not in ("per-image", "fixed"):
        raise ConfigError(f"--exposure must be per-image or fixed, got {ex!r}")
    if dg <= 0 or og <= 0:
        raise ConfigError("gammas must be positive")
    data = load_captures(captures, "train", size=size)
    tr, va = split_scenes(data.ids, data.labels, val_fraction, seed, limit)
    if len(va) == 0:
        raise DataError(f"{captures}: no validation scenes (val_fraction {val_fraction}); calibration "
                        "needs a hold-out to choose lambda and report its error")
    cal = calibrate_pairs(data.lensless[tr], data.original[tr], data.lensless[va], data.original[va],
                          dg, og, ex, source=str(captures))
    save_calibration(out, cal)
    report = {k: v for k, v in cal.report.items() if k != "table"}
    report["out"] = str(out)
    return report
