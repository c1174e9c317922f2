"""Calibration of a real camera: a ridge-regression fit of the affine model from (capture,
original) pairs, and its file ``camera.npz``.

With linearised pairs :math:`(u_i, y_i)` (:mod:`.sensor_model`; for per-image exposure
:math:`y_i = \\bar u_i\\,\\ell_i/\\bar\\ell_i`, which puts every capture on the brightness
scale of its original), ridge regression on centred data:

.. math::

    \\hat A = \\arg\\min_A \\sum_i \\lVert y_i - \\bar y - A (u_i - \\bar u) \\rVert^2
        + \\lambda \\lVert A \\rVert_F^2, \\qquad \\hat c = \\bar y - \\hat A \\bar u

with :math:`\\lambda` chosen by the relative error on the validation pairs
:math:`\\lVert Y - \\hat Y \\rVert_F / \\lVert Y - \\bar y \\rVert_F`, which is reported
(:func:`~opticsfree.captures.linear.fit_affine`). ``camera.npz`` holds arrays only (``A``,
``c``, and ``meta`` as JSON text) and loads without pickle (docs/formats.md).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from opticsfree.captures.linear import fit_affine
from opticsfree.errors import DataError
from opticsfree.reconstruction.linear_ops import AffineOperator
from opticsfree.reconstruction.sensor_model import SensorModel, drive

#: Version of the ``camera.npz`` layout written by :func:`save_calibration`.
CALIBRATION_VERSION = 1


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


def save_calibration(path: str | Path, cal: Calibration,
                     extra_arrays: dict[str, np.ndarray] | None = None) -> Path:
    """Write ``camera.npz`` atomically (arrays only: loads without pickle).

    Args:
        path: the file.
        cal: the calibration.
        extra_arrays: further named arrays stored beside ``A``, ``c`` and ``meta`` (e.g. the
            per-pixel noise of ``rig calibrate``); :func:`load_calibration` ignores them.
    """
    extra_arrays = dict(extra_arrays or {})
    clash = {"A", "c", "meta"} & set(extra_arrays)
    if clash:
        raise ValueError(f"extra_arrays may not be named {sorted(clash)}")
    from opticsfree.utils.io import atomic_path

    meta = {"version": CALIBRATION_VERSION, "display_gamma": cal.display_gamma,
            "sensor": {k: v for k, v in cal.sensor.state().items() if k not in ("gain", "offset")},
            "in_shape": list(cal.operator.in_shape), "out_shape": list(cal.operator.out_shape),
            "report": cal.report}
    path = Path(path)
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            np.savez(f, A=cal.operator.dense.float().numpy(), c=cal.operator.bias.float().numpy(),
                     meta=np.array(json.dumps(meta)), **extra_arrays)
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
