"""The linearised camera: how stored images and captures map to the units of the linear model.

The camera is linear in display luminance up to the light transport, but the stored images
are not: the display applies a gamma, the sensor auto-exposes every capture, and the camera
writes gamma-encoded values. The linear model (:class:`~.linear_ops.AffineOperator`) therefore
works in linearised units.

Image side (display). The drive :math:`u = (v/255)^{\\gamma_d}` of an original :math:`v` is
linear in luminance (:func:`drive`); a known display adds its black level :math:`b` and
backlight map :math:`B`: :math:`L = B \\odot (b + (1 - b)\\,u)`. :func:`values` maps a drive back
to image values.

Capture side (sensor, :class:`SensorModel`). A capture :math:`q` is linearised as
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

Known camera (:func:`camera_operator`). For a simulated set (its manifest holds the camera)
:math:`A = (1 - b)\\,M \\otimes (S\\,\\mathrm{diag}(B))` and :math:`c = b\\,M \\otimes S\\,B`,
with the colour matrix :math:`M` and the transfer matrix :math:`S` (irradiance per unit
luminance of each display element, resampled to the working grid). A real set's model is
fitted instead (:mod:`.calibration`).

Not modelled (they act as noise): shot and read noise, JPEG, the small random display shifts,
flicker under fixed exposure, full-well clipping, and the resampling of gamma-encoded values by
the capture loader when ``--size`` differs from the stored size.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch
import torch.nn.functional as F

from opticsfree.reconstruction.linear_ops import AffineOperator

if TYPE_CHECKING:
    from opticsfree.optics.config import CameraConfig


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
        """The model as plain values and float32 tensors (inverse of :meth:`from_state`)."""
        return {"output_gamma": float(self.output_gamma), "exposure": self.exposure,
                "scale": float(self.scale), "tau": self.tau, "tmax_scale": self.tmax_scale,
                "gain": None if self.gain is None else self.gain.float(),
                "offset": None if self.offset is None else self.offset.float()}

    @classmethod
    def from_state(cls, d: dict[str, Any]) -> "SensorModel":
        """The model saved by :meth:`state` (``gain``/``offset`` may be None)."""
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


def camera_operator(camera: CameraConfig, size: int, channels: int) -> tuple[AffineOperator, SensorModel, float]:
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
