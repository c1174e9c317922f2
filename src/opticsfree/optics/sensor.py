"""The sensor's noise chain: exposure, photon shot noise, dark current, fixed-pattern noise,
read noise, ADC and output gamma.

For a pixel with relative irradiance ``s`` (1 = mean response to a uniform white display):

.. math::

    t &= \\min\\Bigl(\\frac{\\tau\\,F}{R\\,\\bar s},\\; t_{max}\\Bigr) \\\\
    n_e &\\sim \\mathrm{Poisson}\\bigl(g_k\\,R\\,t\\,s + D\\,t\\bigr) + o_k + \\mathcal{N}(0, \\sigma_r^2) \\\\
    \\mathrm{DN} &= \\mathrm{round}\\Bigl((2^b - 1)\\,\\mathrm{clip}\\bigl(\\tfrac{\\mathrm{clip}(n_e, 0, F) - D t}{F}, 0, 1\\bigr)\\Bigr) \\\\
    v &= (\\mathrm{DN} / (2^b - 1))^{1/\\gamma_o}

with exposure target ``tau``, full well ``F``, signal rate ``R`` (electrons/s under a uniform
white display), mean relative irradiance ``s_bar`` (of the image for ``per-image`` auto-exposure,
of a uniform mid-grey display for ``calibrated``), PRNU gain ``g_k ~ N(1, prnu^2)`` and DSNU
offset ``o_k ~ N(0, dsnu^2)`` fixed per pixel by the camera seed, dark current ``D``, read noise
``sigma_r``, ADC bits ``b`` and output gamma ``gamma_o``. The black level (mean dark signal) is
subtracted as a camera's ISP does.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from opticsfree.optics.config import SensorConfig


@dataclass
class FixedPattern:
    """Per-pixel gain (PRNU) and offset (DSNU, electrons) maps, shape (C, H, W)."""

    gain: torch.Tensor
    offset: torch.Tensor

    @classmethod
    def make(cls, cfg: SensorConfig, channels: int, seed: int) -> "FixedPattern":
        """Draw the maps from the camera seed (identical for every capture of the camera)."""
        rng = np.random.default_rng(seed)
        shape = (channels, *cfg.output_size)
        gain = 1.0 + cfg.prnu * rng.standard_normal(shape)
        offset = cfg.dsnu_e * rng.standard_normal(shape)
        return cls(torch.from_numpy(np.clip(gain, 0, None)).float(), torch.from_numpy(offset).float())


def exposure_time(mean_signal: torch.Tensor, cfg: SensorConfig) -> torch.Tensor:
    """Exposure time (s) that brings ``mean_signal`` to ``exposure_target`` of full well."""
    t = cfg.exposure_target * cfg.full_well_e / (cfg.signal_rate_e_per_s * mean_signal.clamp(min=1e-9))
    return t.clamp(max=cfg.max_exposure_s)


def sensor_electrons(signal: torch.Tensor, t: torch.Tensor, cfg: SensorConfig, fpn: FixedPattern,
                     generator: torch.Generator | None = None, noise: bool = True) -> torch.Tensor:
    """Electrons collected and read out, before clipping and the ADC.

    Args:
        signal: (N, C, H, W) relative irradiance (>= 0).
        t: (N,) exposure times in seconds.
        cfg: sensor parameters.
        fpn: fixed-pattern maps of shape (C, H, W).
        generator: torch RNG for the random noise (reproducible captures).
        noise: False gives the expected value (no shot/read noise): the linear response.

    Returns:
        (N, C, H, W) float tensor of electrons.
    """
    t4 = t.view(-1, 1, 1, 1).to(signal)
    mean_e = fpn.gain.to(signal) * cfg.signal_rate_e_per_s * t4 * signal + cfg.dark_current_e_per_s * t4
    if not noise:
        return mean_e + fpn.offset.to(signal)
    e = torch.poisson(mean_e.clamp(min=0), generator=generator)
    if cfg.read_noise_e > 0:
        e = e + cfg.read_noise_e * torch.randn(e.shape, generator=generator, dtype=e.dtype)
    return e + fpn.offset.to(signal)


def read_out(electrons: torch.Tensor, t: torch.Tensor, cfg: SensorConfig, raw: bool = False) -> torch.Tensor:
    """Full-well clipping, black-level subtraction, ADC quantisation and output gamma.

    Args:
        electrons, t, cfg: as :func:`sensor_electrons` gives them.
        raw: return the linear ADC output ``DN / (2^b - 1)`` (float32) instead.

    Returns:
        (N, C, H, W) uint8 output values, or float32 in [0, 1] with ``raw``.
    """
    levels = 2 ** cfg.adc_bits - 1
    dark = (cfg.dark_current_e_per_s * t).view(-1, 1, 1, 1).to(electrons)
    e = electrons.clamp(0, cfg.full_well_e) - dark
    dn = torch.round(levels * (e / cfg.full_well_e).clamp(0, 1))
    if raw:
        return (dn / levels).float()
    v = (dn / levels).pow(1.0 / cfg.output_gamma)
    return torch.round(v * 255).to(torch.uint8)
