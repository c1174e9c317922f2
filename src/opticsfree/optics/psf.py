"""Shift-invariant imaging with a measured PSF, applied by FFT convolution.

Mask-based lensless cameras (DiffuserCam, PhlatCam) are modelled as ``y = psf * x`` (2-D linear
convolution). For a bare sensor this is an approximation (its response is shift-variant); it is
offered for users with a measured PSF and as the baseline of the simulation benchmark.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from opticsfree.errors import ConfigError


def fft_convolve(images: torch.Tensor, psf: torch.Tensor) -> torch.Tensor:
    """Linear ("same"-size) 2-D convolution of a batch with one PSF, by FFT.

    .. math:: y = \\mathcal{F}^{-1}\\bigl(\\mathcal{F}(x_{pad})\\,\\mathcal{F}(k_{pad})\\bigr)

    Args:
        images: float tensor (N, C, H, W).
        psf: float tensor (h, w), centred (its centre pixel is the response to a centred point).

    Returns:
        (N, C, H, W) tensor: the convolution cropped to the image frame.

    Shape:
        psf may be larger or smaller than the images; both are zero-padded to H+h-1, W+w-1.
    """
    if images.ndim != 4 or psf.ndim != 2:
        raise ValueError(f"expected images (N,C,H,W) and psf (h,w), got {tuple(images.shape)} and {tuple(psf.shape)}")
    h, w = images.shape[-2:]
    kh, kw = psf.shape
    fh, fw = h + kh - 1, w + kw - 1
    X = torch.fft.rfft2(images, s=(fh, fw))
    K = torch.fft.rfft2(psf.to(images.dtype), s=(fh, fw))
    y = torch.fft.irfft2(X * K, s=(fh, fw))
    top, left = (kh - 1) // 2, (kw - 1) // 2
    return y[..., top:top + h, left:left + w]


def load_psf(path: str | Path, base_dir: str | Path | None = None) -> torch.Tensor:
    """Load a PSF from ``.npy`` (2-D float) or an image file (converted to grayscale).

    Returns:
        float32 (h, w) tensor normalised to sum 1.
    """
    p = Path(path)
    if not p.is_absolute() and base_dir is not None:
        p = Path(base_dir) / p
    if not p.is_file():
        raise ConfigError(f"psf.path: PSF file {p} not found")
    if p.suffix == ".npy":
        arr = np.load(p).astype(np.float64)
        if arr.ndim == 3:
            arr = arr.mean(-1)
    else:
        from PIL import Image

        with Image.open(p) as im:
            arr = np.asarray(im.convert("F"), dtype=np.float64)
    if arr.ndim != 2 or arr.sum() <= 0 or not np.isfinite(arr).all():
        raise ConfigError(f"psf.path: {p} must be a 2-D non-negative image with positive sum")
    arr = np.clip(arr, 0, None)
    return torch.from_numpy(arr / arr.sum()).float()


def resample_psf(psf: torch.Tensor, psf_pixel_mm: float, display_pixel_mm: float) -> torch.Tensor:
    """Resample a PSF sampled at ``psf_pixel_mm`` to the display pitch (sum preserved)."""
    scale = psf_pixel_mm / display_pixel_mm
    h = max(1, round(psf.shape[0] * scale))
    w = max(1, round(psf.shape[1] * scale))
    if (h, w) == tuple(psf.shape):
        return psf / psf.sum()
    out = F.interpolate(psf[None, None], size=(h, w), mode="bilinear", antialias=True,
                        align_corners=False)[0, 0].clamp(min=0)
    return out / out.sum()
