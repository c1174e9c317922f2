"""Image quality of captures (or reconstructions) against their originals.

Conventions: both images resized to ``size`` x ``size`` (bilinear, antialiased), values in
[0, 1]; per-image MSE, PSNR = 10 log10(1 / MSE) (torchmetrics, data_range 1, MSE floored at
1e-12, i.e. at most 120 dB) and SSIM (torchmetrics, Gaussian window 11, sigma 1.5, data_range 1),
then mean and standard deviation over the split. MSE is also given on the 0-255 scale
(``mse_255 = 255^2 * mse``).
"""

from __future__ import annotations

from pathlib import Path

import math

import torch
from torchmetrics.functional.image import peak_signal_noise_ratio, structural_similarity_index_measure

from opticsfree.captures.loader import load_captures
from opticsfree.errors import DataError

CONVENTION = ("images resized to {size}x{size}, values in [0,1], per-image mean over the split; "
              "SSIM: torchmetrics, data_range 1, Gaussian window 11, sigma 1.5")

#: MSE floor of the PSNR: identical images score 10 log10(1 / 1e-12) = 120 dB, not infinity.
MIN_MSE = 1e-12
MAX_PSNR = 10 * math.log10(1.0 / MIN_MSE)


def per_image_psnr(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """PSNR (dB) of every image of ``pred`` against ``target``, values in [0, 1].

    torchmetrics' ``peak_signal_noise_ratio`` with ``data_range=1`` reduced over all but the
    first dimension (``reduction="none"``), computed in float64, capped at :data:`MAX_PSNR`.
    A split's PSNR is the mean of these per-image values (not the PSNR of the mean MSE).

    Shape:
        (N, ...) -> (N,) float64.
    """
    dims = tuple(range(1, pred.ndim))
    p = peak_signal_noise_ratio(pred.double(), target.double(), data_range=1.0, reduction="none", dim=dims)
    return p.clamp(max=MAX_PSNR)


def image_quality(pred: torch.Tensor, target: torch.Tensor, chunk: int = 2048) -> dict[str, torch.Tensor]:
    """Per-image MSE, PSNR and SSIM of ``pred`` against ``target``.

    Args:
        pred: (N, C, H, W) uint8 or float in [0, 1].
        target: same shape as ``pred``.

    Returns:
        ``{"mse": (N,), "psnr": (N,), "ssim": (N,)}`` float64 tensors (MSE on [0, 1]).

    Shape:
        Channels must match; grayscale vs RGB is compared after expanding the grayscale image.
    """
    if pred.shape[0] != target.shape[0] or pred.shape[-2:] != target.shape[-2:]:
        raise ValueError(f"shapes differ: {tuple(pred.shape)} vs {tuple(target.shape)}")
    mses, psnrs, ssims = [], [], []
    for i in range(0, len(pred), chunk):
        p, t = _unit(pred[i:i + chunk]), _unit(target[i:i + chunk])
        if p.shape[1] != t.shape[1]:
            c = max(p.shape[1], t.shape[1])
            p, t = p.expand(-1, c, -1, -1), t.expand(-1, c, -1, -1)
        mse = ((p - t) ** 2).mean(dim=(1, 2, 3)).double()
        mses.append(mse)
        psnrs.append(per_image_psnr(p, t))
        ssims.append(structural_similarity_index_measure(p, t, data_range=1.0, reduction="none").double())
    return {"mse": torch.cat(mses), "psnr": torch.cat(psnrs), "ssim": torch.cat(ssims)}


def _unit(x: torch.Tensor) -> torch.Tensor:
    return x.float() / 255.0 if x.dtype == torch.uint8 else x.float()


def summarise(q: dict[str, torch.Tensor]) -> dict[str, float]:
    """Mean/std summary in the ``quality --json`` contract."""
    n = len(q["mse"])
    if n == 0:
        raise DataError("no images to compare")
    return {"n": n, "mse": float(q["mse"].mean()), "mse_255": float(q["mse"].mean() * 255 ** 2),
            "psnr": float(q["psnr"].mean()), "psnr_std": float(q["psnr"].std(unbiased=False)),
            "ssim": float(q["ssim"].mean()), "ssim_std": float(q["ssim"].std(unbiased=False))}


def capture_quality(root: str | Path, split: str = "test", size: int = 32) -> dict[str, float]:
    """Quality of every capture of ``split`` against its original (all frames).

    Returns:
        ``{"n", "mse", "mse_255", "psnr", "psnr_std", "ssim", "ssim_std"}``.
    """
    cs = load_captures(root, split, size=size)
    return summarise(image_quality(cs.lensless, cs.original))
