"""The display: from pixel values to emitted luminance, and where its emitters are.

Equations (values ``v`` in [0, 1], display element centre ``(x, y)`` in mm):

.. math::

    L(v, x, y) = B(x, y)\\,\\bigl(b + (1 - b)\\,v^{\\gamma}\\bigr), \\qquad
    B(x, y) = 1 - \\beta\\,\\frac{x^2 + y^2}{x_c^2 + y_c^2}

with black level ``b``, gamma ``gamma`` and backlight fall-off ``beta`` reached at the image
corner ``(x_c, y_c)``.
"""

from __future__ import annotations

import torch

from opticsfree.optics.config import DisplayConfig


def display_luminance(values: torch.Tensor, cfg: DisplayConfig) -> torch.Tensor:
    """Luminance (relative to white) emitted for pixel values in [0, 1].

    Args:
        values: float tensor (..., H, W) in [0, 1].
        cfg: the display parameters.

    Returns:
        Tensor of the same shape: ``B(x, y) * (b + (1 - b) * v ** gamma)``.
    """
    if values.dtype not in (torch.float32, torch.float64):
        raise TypeError(f"display_luminance expects float values in [0, 1], got {values.dtype}")
    lum = cfg.black_level + (1.0 - cfg.black_level) * values.clamp(0, 1).pow(cfg.gamma)
    if cfg.backlight_falloff > 0:
        lum = lum * backlight_map(values.shape[-2:], cfg).to(lum)
    return lum


def backlight_map(shape: tuple[int, int], cfg: DisplayConfig) -> torch.Tensor:
    """Relative backlight ``B(x, y)`` at the element centres, shape (H, W)."""
    y, x = element_centres(shape, cfg)
    r2 = (x[None, :] ** 2 + y[:, None] ** 2) / ((cfg.width_mm / 2) ** 2 + (cfg.height_mm / 2) ** 2)
    return 1.0 - cfg.backlight_falloff * r2


def element_centres(shape: tuple[int, int], cfg: DisplayConfig) -> tuple[torch.Tensor, torch.Tensor]:
    """Centres (mm) of the display elements showing an image of ``shape`` = (H, W).

    Returns:
        ``(y, x)``: 1-D float64 tensors of length H and W, centred on 0; row 0 is at the top
        (most negative y is row 0, so image rows map to increasing y).
    """
    h, w = shape
    py, px = cfg.height_mm / h, cfg.width_mm / w
    y = (torch.arange(h, dtype=torch.float64) + 0.5) * py - cfg.height_mm / 2
    x = (torch.arange(w, dtype=torch.float64) + 0.5) * px - cfg.width_mm / 2
    return y, x


def emitter_offsets(pitch_mm: float, n: int) -> torch.Tensor:
    """Sub-element sample offsets (mm) for ``n`` samples per axis across one element of ``pitch``."""
    return ((torch.arange(n, dtype=torch.float64) + 0.5) / n - 0.5) * pitch_mm
