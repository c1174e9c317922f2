"""Affine (ridge) estimators between captures and originals, the strength chosen on validation.

Ridge regression on centred data,

.. math::

    \\hat A = \\arg\\min_A \\sum_i \\lVert y_i - \\bar y - A (x_i - \\bar x) \\rVert^2
        + \\lambda \\lVert A \\rVert_F^2, \\qquad \\hat c = \\bar y - \\hat A \\bar x,

with :math:`\\lambda = r\\,\\bar e` (:math:`\\bar e` the mean eigenvalue of the centred Gram
matrix) and :math:`r` chosen from :data:`LAMBDA_GRID` by the relative error on validation pairs
:math:`\\lVert Y - \\hat Y \\rVert_F / \\lVert Y - \\bar y \\rVert_F`. One eigendecomposition of
the Gram matrix serves the whole sweep. With :math:`G = V \\operatorname{diag}(e) V^\\top` the
centred Gram matrix, :math:`B = V^\\top X_c^\\top Y_c`, :math:`Z = (X_v - \\bar x) V` and
:math:`u_\\lambda = 1 / (e + \\lambda)`, the validation residual of every :math:`\\lambda` is

.. math::

    \\lVert Z \\operatorname{diag}(u_\\lambda) B - Y_{v,c} \\rVert_F^2
    = u_\\lambda^\\top \\big( Z^\\top Z \\circ B B^\\top \\big) u_\\lambda
      - 2\\, u_\\lambda^\\top \\big( (Z^\\top Y_{v,c} \\circ B)\\,\\mathbf 1 \\big)
      + \\lVert Y_{v,c} \\rVert_F^2,

so the sweep costs four matrix products instead of one per grid value (CIFAR-sized images,
3,072 values each, and 5,000 validation pairs: about 5 s instead of 23 s on 2 cores). The
expanded form cancels: when the best relative error falls below :data:`EXPANDED_FLOOR` the
sweep is recomputed directly. The training residual comes from the same decomposition,
:math:`\\sum_i (e_i u_i^2 - 2 u_i) \\lVert B_i \\rVert^2 + \\lVert Y_c \\rVert_F^2`. Used by
``calibrate`` (captures from originals: the camera's forward model) and by ``camera info``
(originals from captures: the best linear reconstruction, a camera's recoverability).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch

from opticsfree.errors import DataError

#: Relative regularisation weights tried on validation: lambda = r * mean eigenvalue.
LAMBDA_GRID = tuple(10.0 ** k for k in np.linspace(-8, 1, 19))

#: Below this relative error the expanded residual (float64, relative precision about 1e-6 on
#: the error) cannot rank strengths, and the sweep is recomputed directly.
EXPANDED_FLOOR = 1e-3


def fit_affine(x: torch.Tensor, y: torch.Tensor, x_val: torch.Tensor, y_val: torch.Tensor,
               grid: tuple[float, ...] = LAMBDA_GRID, chunk: int = 4096
               ) -> tuple[torch.Tensor, torch.Tensor, dict[str, Any]]:
    """Ridge regression :math:`y \\approx A x + c` with :math:`\\lambda` chosen on validation.

    Args:
        x: (N, Din) inputs; y: (N, Dout) targets (any float dtype; accumulated in float64).
        x_val, y_val: validation pairs (at least one).
        grid: relative :math:`\\lambda` values (times the mean eigenvalue of the centred Gram
            matrix).

    Returns:
        ``(A (Dout, Din), c (Dout,), report)`` in float64; the report holds
        ``lambda_relative``, ``lambda``, ``val_relative_error`` (Frobenius error over the
        spread of the validation targets), ``val_rmse``, ``train_relative_error``, ``table``.
    """
    n, din = x.shape
    if n < 2 or len(x_val) < 1:
        raise DataError(f"calibration needs at least 2 training and 1 validation pairs, got {n} and {len(x_val)}")
    x_mean = x.double().mean(0)
    y_mean = y.double().mean(0)
    gram = torch.zeros(din, din, dtype=torch.float64)
    xty = torch.zeros(din, y.shape[1], dtype=torch.float64)
    for i in range(0, n, chunk):
        xc = x[i:i + chunk].double() - x_mean
        gram += xc.T @ xc
        xty += xc.T @ (y[i:i + chunk].double() - y_mean)
    e, v = torch.linalg.eigh(gram)
    e = e.clamp(min=0)
    b = v.T @ xty                              # (Din, Dout)
    xv = (x_val.double() - x_mean) @ v         # (Nv, Din)
    yv = y_val.double() - y_mean
    spread = float(((y_val.double() - y_val.double().mean(0)) ** 2).sum().sqrt().clamp(min=1e-12))
    mean_e = float(e.mean()) or 1.0

    def direct(rel: float) -> float:
        pred = (xv / (e + rel * mean_e)) @ b
        return float(((pred - yv) ** 2).sum().sqrt()) / spread

    quad = (xv.T @ xv) * (b @ b.T)             # (Din, Din)
    lin = ((xv.T @ yv) * b).sum(1)             # (Din,)
    yy = float((yv ** 2).sum())
    errors = []
    for rel in grid:
        u = 1.0 / (e + rel * mean_e)
        sq = float(u @ quad @ u) - 2.0 * float(u @ lin) + yy
        errors.append(math.sqrt(max(sq, 0.0)) / spread)
    if min(errors) < EXPANDED_FLOOR:           # too close to exact for the expanded form
        errors = [direct(rel) for rel in grid]
    table = [{"lambda_relative": float(rel), "val_relative_error": err} for rel, err in zip(grid, errors)]
    k = min(range(len(grid)), key=lambda i: (errors[i], i))
    best = (direct(grid[k]), grid[k])          # the reported error, computed directly
    lam = best[1] * mean_e
    w = v @ (b / (e + lam)[:, None])           # (Din, Dout)
    a = w.T.contiguous()
    c = y_mean - a @ x_mean
    pred_val = x_val.double() @ a.T + c
    # training residual from the same decomposition: ||X_c W - Y_c||^2
    #   = sum_i (e_i / (e_i + lam)^2 - 2 / (e_i + lam)) ||B_i||^2 + ||Y_c||^2
    train_spread = 0.0
    for i in range(0, n, chunk):
        train_spread += float(((y[i:i + chunk].double() - y_mean) ** 2).sum())
    d = 1.0 / (e + lam)
    train_err = float(((e * d * d - 2.0 * d) * (b ** 2).sum(1)).sum()) + train_spread
    if train_err < EXPANDED_FLOOR ** 2 * train_spread:  # cancelled: compute it directly
        train_err = 0.0
        for i in range(0, n, chunk):
            yi = y[i:i + chunk].double()
            train_err += float(((x[i:i + chunk].double() @ a.T + c - yi) ** 2).sum())
    report = {"lambda_relative": float(best[1]), "lambda": float(lam), "val_relative_error": float(best[0]),
              "val_rmse": float(((pred_val - y_val.double()) ** 2).mean().sqrt()),
              "train_relative_error": math.sqrt(train_err / max(train_spread, 1e-24)),
              "n_train": int(n), "n_val": int(len(x_val)), "table": table}
    return a, c, report


def fit_inverse(lensless: torch.Tensor, original: torch.Tensor, val_lensless: torch.Tensor,
                val_original: torch.Tensor, seed: int, max_rows: int = 20_000,
                max_val_rows: int = 5_000) -> tuple[torch.Tensor, torch.Tensor, dict[str, Any]]:
    """A camera's empirical regularised inverse: the ridge estimator from captures to originals.

    What ``camera info`` measures as ``linear_psnr``, and what the physics-informed front ends of
    the embedding network and the U-Net start from: :func:`fit_affine` on flattened images on
    the [0, 1] scale, fitted on at most ``max_rows`` training pairs (a seeded sample) with its
    strength chosen on at most ``max_val_rows`` validation pairs.

    Args:
        lensless, original: uint8 training captures (N, C, H, W) and their originals (N, C', H', W').
        val_lensless, val_original: validation pairs (when empty, a tenth of the sample).
        seed: seed of the samples.

    Returns:
        ``(A (C' H' W', C H W), c (C' H' W',), report)``, float32, with
        :math:`\\hat x = A y + c` on the [0, 1] scale.
    """
    from opticsfree.utils.seeding import derive_seed

    def sample(n: int, k: int, tag: str) -> torch.Tensor:
        g = torch.Generator().manual_seed(derive_seed(tag, seed))
        return torch.randperm(n, generator=g)[:k] if n > k else torch.arange(n)

    def flat(x: torch.Tensor) -> torch.Tensor:
        return x.reshape(len(x), -1).float() / 255.0

    rows = sample(len(lensless), max_rows, "inverse-train")
    x, y = flat(lensless[rows]), flat(original[rows])
    if len(val_lensless):
        vrows = sample(len(val_lensless), max_val_rows, "inverse-val")
        xv, yv = flat(val_lensless[vrows]), flat(val_original[vrows])
    else:
        k = max(1, len(x) // 10)
        x, xv, y, yv = x[k:], x[:k], y[k:], y[:k]
    a, c, report = fit_affine(x, y, xv, yv)
    return a.float(), c.float(), report
