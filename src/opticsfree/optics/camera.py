"""The camera: display -> light transport -> sensor, for batches of images.

``Camera(config, image_shape, channels)`` builds (or loads from the cache) the transfer matrix
once; :meth:`Camera.capture` then turns a batch of uint8 images into uint8 captures with a
matrix multiply and the sensor's noise chain. The captures are written as JPEG at
``camera.jpeg_quality`` by the capture-set writer, as the seed's camera did.
"""

from __future__ import annotations


import torch
import torch.nn.functional as F

from opticsfree.optics.config import CameraConfig
from opticsfree.optics.display import display_luminance
from opticsfree.optics.psf import fft_convolve, load_psf, resample_psf
from opticsfree.optics.sensor import FixedPattern, exposure_time, read_out, sensor_electrons
from opticsfree.optics.transfer import area_resample_matrix, transfer_matrix


#: Axes (0: rows, 1: columns of the sensor grid) reversed by each ``sensor.readout``.
READOUT_FLIPS: dict[str, tuple[int, ...]] = {"direct": (), "rotate-180": (0, 1), "mirror-x": (1,),
                                             "mirror-y": (0,)}


class Camera:
    """A simulated camera for images of one shape.

    Args:
        config: the camera parameters.
        image_shape: (H, W) of the images shown on the display.
        channels: 1 (grayscale images: the display shows grey, the sensor reports luminance) or
            3 (RGB images; sensor channels mix the display primaries by ``colour_matrix``).
        cache: cache the transfer matrix on disk.

    Attributes:
        output_shape: (C, Ho, Wo) of the captures.
        jpeg_quality: JPEG quality of stored captures (None: PNG).
    """

    def __init__(self, config: CameraConfig, image_shape: tuple[int, int], channels: int = 3,
                 cache: bool = True):
        if channels not in (1, 3):
            raise ValueError(f"channels must be 1 or 3, got {channels}")
        self.config = config
        self.image_shape = (int(image_shape[0]), int(image_shape[1]))
        self.channels = channels
        self.output_shape = (channels, *config.sensor.output_size)
        self.jpeg_quality = config.sensor.jpeg_quality
        m = torch.tensor(config.sensor.colour_matrix, dtype=torch.float32)
        self.colour = m if channels == 3 else m.sum(1).mean().view(1, 1)
        self.fpn = FixedPattern.make(config.sensor, channels, config.seed)
        self._H: torch.Tensor | None = None
        self._psf: torch.Tensor | None = None
        self._cache = cache

    # -- light transport -------------------------------------------------------------------
    def transfer_matrix(self) -> torch.Tensor:
        """H (Ho*Wo, H*W), normalised so a uniform white display gives a mean response of 1,
        its rows in read-out order (``sensor.readout``)."""
        if self._H is None:
            H = transfer_matrix(self.config, self.image_shape, cache=self._cache)
            dims = READOUT_FLIPS[self.config.sensor.readout]
            if dims:
                ho, wo = self.config.sensor.output_size
                H = H.view(ho, wo, -1).flip(dims).reshape(ho * wo, -1).contiguous()
            self._H = H
        return self._H

    def matrix(self) -> torch.Tensor:
        """The single-channel transfer matrix of any camera type: :meth:`transfer_matrix` for
        ``bare`` and ``lens`` cameras; for a ``psf`` camera its response to each display pixel
        (exact, its light transport being linear). Shape (Ho*Wo, H*W)."""
        if self.config.type in ("bare", "lens"):
            return self.transfer_matrix()
        h, w = self.image_shape
        rows = []
        for j0 in range(0, h * w, 256):
            basis = torch.zeros(min(256, h * w - j0), 1, h, w)
            basis.view(len(basis), -1)[torch.arange(len(basis)), torch.arange(j0, j0 + len(basis))] = 1.0
            rows.append(self.spatial(basis).reshape(len(basis), -1))
        return torch.cat(rows).T.contiguous()

    def _psf_kernel(self) -> torch.Tensor:
        if self._psf is None:
            c = self.config
            psf = load_psf(c.psf.path, c.source_dir)
            self._psf = resample_psf(psf, c.psf.pixel_mm, c.display.width_mm / self.image_shape[1])
        return self._psf

    def spatial(self, lum: torch.Tensor) -> torch.Tensor:
        """Light transport of display luminance (N, C, H, W) to sensor irradiance (N, C, Ho, Wo)."""
        n, c = lum.shape[:2]
        ho, wo = self.config.sensor.output_size
        if self.config.type == "psf":
            y = fft_convolve(lum, self._psf_kernel())
            ay = area_resample_matrix(ho, y.shape[-2]).float()
            ax = area_resample_matrix(wo, y.shape[-1]).float()
            y = torch.einsum("oh,nchw,pw->ncop", ay, y, ax)
            dims = READOUT_FLIPS[self.config.sensor.readout]
            return y.flip([d + 2 for d in dims]) if dims else y
        H = self.transfer_matrix()
        return (lum.reshape(n * c, -1) @ H.T).reshape(n, c, ho, wo)

    def irradiance(self, images: torch.Tensor, shifts: torch.Tensor | None = None,
                   gains: torch.Tensor | None = None) -> torch.Tensor:
        """Noiseless relative irradiance on the sensor (linear in display luminance).

        Args:
            images: uint8 (N, C, H, W) or float in [0, 1].
            shifts: optional (N, 2) display shifts in mm (x, y).
            gains: optional (N,) brightness factors (flicker).

        Returns:
            (N, C_out, Ho, Wo) float32.
        """
        x = images.float() / 255.0 if images.dtype == torch.uint8 else images.float()
        self._check(x)
        if shifts is not None and bool((shifts != 0).any()):
            x = shift_images(x, shifts, self.config.display.width_mm / self.image_shape[1],
                             self.config.display.height_mm / self.image_shape[0])
        lum = display_luminance(x, self.config.display)
        if gains is not None:
            lum = lum * gains.view(-1, 1, 1, 1)
        y = self.spatial(lum)
        return torch.einsum("cp,nphw->nchw", self.colour, y)

    def _check(self, x: torch.Tensor) -> None:
        if x.ndim != 4 or x.shape[1] != self.channels or tuple(x.shape[-2:]) != self.image_shape:
            raise ValueError(f"camera expects images (N, {self.channels}, {self.image_shape[0]}, "
                             f"{self.image_shape[1]}), got {tuple(x.shape)}")

    # -- capture ---------------------------------------------------------------------------
    def nuisances(self, n: int, generator: torch.Generator | None) -> tuple[torch.Tensor, torch.Tensor]:
        """Random display shifts (N, 2) in mm and brightness factors (N,) for ``n`` captures."""
        nc = self.config.nuisance
        shifts = nc.shift_std_mm * torch.randn(n, 2, generator=generator)
        gains = 1.0 + nc.flicker_std * torch.randn(n, generator=generator)
        return shifts, gains.clamp(min=0.1)

    def exposure(self, irr: torch.Tensor) -> torch.Tensor:
        """Exposure time per capture (s): per-image or calibrated auto-exposure."""
        s = self.config.sensor
        if s.auto_exposure == "per-image":
            mean = irr.mean(dim=(1, 2, 3))
        else:
            grey = torch.full((1, self.channels, *self.image_shape), 0.5)
            mean = self.irradiance(grey).mean().expand(len(irr))
        return exposure_time(mean, s)

    def capture(self, images: torch.Tensor, generator: torch.Generator | None = None, *,
                noise: bool = True, nuisances: bool = True, exposure_s: float | None = None,
                offset_mm: tuple[float, float] | None = None, gain: float = 1.0,
                raw: bool = False) -> torch.Tensor:
        """Capture a batch: display, light transport, nuisances and the full noise chain.

        Args:
            images: uint8 (N, C, H, W), or float in [0, 1].
            generator: torch RNG (seeded by the caller for reproducible captures).
            noise: False gives the expected capture: no random display shift or flicker, no
                shot or read noise (the fixed pattern, the ADC and the output gamma stay).
            nuisances: False leaves out the random display shift and flicker only (a rigid
                rig: sensor noise only).
            exposure_s: a locked exposure time in seconds (None: the camera's auto-exposure).
            offset_mm: a fixed lateral display offset (x, y) added to the random shifts (a rig
                whose alignment drifts).
            gain: a brightness factor of the display (a backlight that drifts).
            raw: return the linear ADC output in [0, 1] (float32, before the output gamma and
                8-bit encoding) instead of uint8 values.

        Returns:
            uint8 (N, C, Ho, Wo) captures (before JPEG encoding), or float32 with ``raw``.
        """
        n = len(images)
        if noise and nuisances:
            shifts, gains = self.nuisances(n, generator)
        else:
            shifts, gains = torch.zeros(n, 2), torch.ones(n)
        if offset_mm is not None:
            shifts = shifts + torch.tensor(offset_mm, dtype=shifts.dtype)
        irr = self.irradiance(images, shifts, gains * float(gain))
        t = self.exposure(irr) if exposure_s is None else torch.full((n,), float(exposure_s))
        e = sensor_electrons(irr, t, self.config.sensor, self.fpn, generator, noise=noise)
        return read_out(e, t, self.config.sensor, raw=raw)

    def point_response(self, row: int, col: int) -> torch.Tensor:
        """Noiseless irradiance (Ho, Wo) from a single lit display element at (row, col)."""
        x = torch.zeros(1, self.channels, *self.image_shape)
        x[0, :, row, col] = 1.0
        lum = x  # a single element at full luminance (linear, no gamma/black level)
        return self.spatial(lum)[0].mean(0)


def shift_images(x: torch.Tensor, shifts_mm: torch.Tensor, pitch_x: float, pitch_y: float) -> torch.Tensor:
    """Translate images by sub-pixel amounts (bilinear); uncovered display area is black.

    Args:
        x: (N, C, H, W) float images.
        shifts_mm: (N, 2) shifts (x, y) in mm.
        pitch_x: display element width (mm); pitch_y: height.
    """
    n, _, h, w = x.shape
    tx = shifts_mm[:, 0] / pitch_x * 2.0 / w
    ty = shifts_mm[:, 1] / pitch_y * 2.0 / h
    theta = torch.zeros(n, 2, 3)
    theta[:, 0, 0] = 1
    theta[:, 1, 1] = 1
    theta[:, 0, 2] = -tx
    theta[:, 1, 2] = -ty
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
