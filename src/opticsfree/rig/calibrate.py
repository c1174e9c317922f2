r"""``rig calibrate``: measure the camera's transfer matrix by showing patterns.

The camera is affine in the display drive :math:`u = (v/255)^{\gamma_d}` (docs/camera.md): a
capture in linear units is :math:`\ell = A u + c` (:mod:`opticsfree.reconstruction.sensor_model`).
With the exposure locked (the rig file's value, or, with ``exposure = "auto"``, set on a white
screen so that its brightest pixel sits at :data:`LOCK_PEAK` of full scale and locked before
the first pattern), the sequence, repeated ``repeats`` times, is:

1. a black frame, a white frame and (RGB) one full-screen frame per display primary;
2. binary patterns :math:`p_k \in \{0, 1\}^Q` at ``size`` x ``size`` display elements, each
   followed by its complement :math:`1 - p_k`: the rows of the Sylvester Hadamard matrix
   (:math:`Q` patterns, ``size`` a power of 2) or seeded random patterns (:math:`2Q`);
3. ``held_out`` seeded random patterns that the fit never sees.

Per sensor channel :math:`c'`, the white patterns give the spatial response summed over the
primaries, fitted by ridge regression (:func:`opticsfree.captures.linear.fit_affine`, the
strength chosen on the held-out patterns), then cut to the rank that predicts the held-out
patterns best (:func:`reduce_rank`: the noise outside the smooth matrix's leading singular
vectors goes). The held-out relative residual
:math:`\lVert L - \hat L \rVert_F / \lVert L - \bar\ell \rVert_F` is reported. For Hadamard
patterns the differences :math:`\ell(p_k) - \ell(1 - p_k) = A h_k` (:math:`h_k = 2p_k - 1`, a
row of the Hadamard matrix) make this the exact inverse :math:`A = D\,\mathcal H / Q` up to the
tiny ridge. The primaries split it: :math:`A_{c',c} = A_{c'} \operatorname{diag}(w_{c',c})`
with :math:`w_{c',c}[p] = (f_c - f_0)[c', p] / \sum_{c} (f_c - f_0)[c', p]` from the primary
flats :math:`f_c` and the black frame :math:`f_0` (one footprint per sensor pixel, shared by
the primaries, as in the camera model).

Noise per pixel, from the repeats: the standard deviation of the black frame (read noise) and
of the white frame; with :math:`\operatorname{var}\ell = \sigma_r^2 + \ell / F` the slope gives
the effective full well :math:`F` (electrons per unit of :math:`\ell`), hence the read noise in
electrons :math:`\sigma_r F`.

The result is the ``camera.npz`` of ``calibrate`` (:mod:`opticsfree.reconstruction.calibration`),
normalised so that a white display gives a mean response of 1 (the camera model's convention),
plus the arrays ``noise_dark`` and ``noise_white`` (C', P); ``reconstruct train --method
tikhonov --camera camera.npz``, the physics front end and ``camera info`` use it as they use a
fitted one. On the virtual rig the report also gives the relative Frobenius error against the
simulator's true matrix.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from opticsfree.errors import ConfigError
from opticsfree.rig.camera import CameraBackend, FrameTag, open_camera
from opticsfree.rig.capture import grab
from opticsfree.rig.config import RigConfig
from opticsfree.rig.display import open_display

#: Where the exposure is locked: the brightest pixel of a white frame at this fraction of full
#: scale (the most signal without clipping).
LOCK_PEAK = 0.9
#: Pattern families (``--patterns``).
PATTERNS = ("hadamard", "random")


@dataclass(frozen=True)
class PatternSet:
    """The frames of one repeat: binary patterns (K, Q) shown white, and the held-out ones."""

    fit: np.ndarray
    held_out: np.ndarray

    @property
    def n_frames(self) -> int:
        """Frames per repeat, the flats included (black, white, three primaries)."""
        return 5 + len(self.fit) + len(self.held_out)


def make_patterns(kind: str, size: int, held_out: int, seed: int = 0) -> PatternSet:
    """Binary patterns (0/1 per display element) of ``kind`` on ``size`` x ``size`` elements,
    each followed by its complement, and ``held_out`` seeded random patterns.

    Raises:
        ConfigError: an unknown kind, or Hadamard patterns for a size that is not a power of 2.
    """
    from scipy.linalg import hadamard

    q = size * size
    rng = np.random.default_rng(seed)
    if kind == "hadamard":
        if size < 1 or size & (size - 1):
            raise ConfigError(f"--patterns hadamard needs --size a power of 2 (Q = size^2 patterns), got "
                              f"{size}; use --patterns random")
        base = (hadamard(q) > 0).astype(np.uint8)
    elif kind == "random":
        base = (rng.random((2 * q, q)) < 0.5).astype(np.uint8)
    else:
        raise ConfigError(f"--patterns: expected one of {', '.join(PATTERNS)}, got {kind!r}")
    fit = np.empty((2 * len(base), q), np.uint8)
    fit[0::2], fit[1::2] = base, 1 - base
    held = (rng.random((held_out, q)) < 0.5).astype(np.uint8)
    return PatternSet(fit, held)


@dataclass
class RigCalibration:
    """What ``rig calibrate`` measured (also written to ``camera.npz``'s report).

    Attributes:
        operator: A (C' P, C Q) and c (C' P,) normalised (white display -> mean response 1).
        report: the numbers (see :meth:`to_json`).
        noise_dark, noise_white: per-pixel standard deviations (C', P) in the normalised units.
    """

    a: torch.Tensor
    c: torch.Tensor
    in_shape: tuple[int, int, int]
    out_shape: tuple[int, int, int]
    report: dict[str, Any]
    noise_dark: np.ndarray | None
    noise_white: np.ndarray | None

    def to_json(self) -> dict[str, Any]:
        return {k: v for k, v in self.report.items() if k != "table"}


def _show_and_read(display: Any, camera: CameraBackend, image: np.ndarray, tag: FrameTag,
                   settle_s: float, output_gamma: float, timeout_s: float) -> np.ndarray:
    display.show(image)
    if settle_s:
        time.sleep(settle_s)
    what = f"calibration frame {tag.stream} {tag.position}"
    grab(camera, lambda: camera.discard(camera.cfg.discard, tag), timeout_s, what)
    return grab(camera, lambda: camera.linear(tag, output_gamma), timeout_s, what)


#: Ranks tried for the reduced-rank estimate (and the full rank).
RANKS = (8, 16, 24, 32, 48, 64, 96, 128, 192, 256, 384, 512, 768, 1024, 1536, 2048)


def reduce_rank(a: torch.Tensor, x_fit: torch.Tensor, y_fit: torch.Tensor, x_held: torch.Tensor,
                y_held: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, dict[str, Any]]:
    r"""The reduced-rank estimate of A chosen on the held-out patterns.

    A bare sensor's transfer matrix is smooth in both indices: its singular values fall fast
    (``camera info`` reports its rank), while the measurement noise spreads evenly over all of
    them. Keeping the largest :math:`r` singular triplets of the fitted matrix,
    :math:`A_r = U_r \Sigma_r V_r^	op` with the offset refitted, :math:`c_r = ar y - A_r ar x`,
    removes the noise outside the signal's subspace. :math:`r` (from :data:`RANKS` and the full
    rank) minimises the relative residual on the held-out patterns.

    Returns:
        ``(A_r, c_r, {"chosen": {rank, held_out_relative_error}, "table": [...]})``.
    """
    u, sv, vh = torch.linalg.svd(a, full_matrices=False)
    full = len(sv)
    x_mean, y_mean = x_fit.mean(0), y_fit.mean(0)
    spread = torch.linalg.norm(y_held - y_held.mean(0))
    table = []
    best = None
    for r in sorted({k for k in RANKS if k < full} | {full}):
        a_r = (u[:, :r] * sv[:r]) @ vh[:r]
        c_r = y_mean - a_r @ x_mean
        err = float(torch.linalg.norm(y_held - (x_held @ a_r.T + c_r)) / spread)
        table.append({"rank": r, "held_out_relative_error": err})
        if best is None or err < best[0]:
            best = (err, r, a_r, c_r)
    assert best is not None
    return best[2], best[3], {"chosen": {"rank": best[1], "held_out_relative_error": best[0]}, "table": table}


def true_operator(camera: CameraBackend, size: int, channels: int) -> torch.Tensor | None:
    """The virtual camera's true A in the same units (its fixed-pattern gain included,
    normalised like the measurement), or None for hardware / another grid."""
    if camera.name != "virtual":
        return None
    from opticsfree.reconstruction.sensor_model import camera_operator

    model = camera.model  # type: ignore[attr-defined]
    if tuple(model.sensor.output_size) != (size, size) or camera.cfg.crop or camera.cfg.output_size:
        return None
    op, sensor, _ = camera_operator(model, size, channels)
    a = op.dense if op.dense is not None else torch.kron(op.colour.contiguous(), op.spatial.contiguous())
    gain = sensor.gain.reshape(-1, 1) if sensor.gain is not None else 1.0
    a = a * gain
    return a / a.sum(1).mean()


def rig_calibrate(rig: RigConfig, out: str | Path, size: int = 32, patterns: str = "hadamard",
                  repeats: int = 4, channels: int = 3, held_out: int | None = None, seed: int = 0,
                  output_gamma: float = 2.2, display_gamma: float = 2.2,
                  on_progress: Callable[[int, int], None] | None = None) -> RigCalibration:
    """Measure the rig's camera and write ``camera.npz`` (see the module doc).

    Args:
        rig: the rig.
        out: the ``.npz`` file.
        size: display elements per side of the patterns (the working grid of reconstructions).
        patterns: ``hadamard`` or ``random``.
        repeats: times the whole sequence is shown (noise averages as 1/sqrt(repeats); >= 2
            gives the noise estimates).
        channels: 3 (RGB: primaries measured) or 1 (a grey display).
        held_out: random patterns kept out of the fit (default: max(16, Q/16)).
        seed: seed of the random and held-out patterns.
        output_gamma: decoding of 8-bit captures to linear units (cameras without raw output;
            the virtual camera's raw output needs none).
        display_gamma: :math:`\\gamma_d` recorded for the reconstructions (the drive of the
            binary patterns is 0 or 1 whatever it is).
        on_progress: ``f(done, total)`` in frames.

    Returns:
        The :class:`RigCalibration` (also written to ``out``).
    """
    from opticsfree.captures.linear import fit_affine
    from opticsfree.reconstruction.calibration import Calibration, save_calibration
    from opticsfree.reconstruction.linear_ops import AffineOperator
    from opticsfree.reconstruction.sensor_model import SensorModel
    from opticsfree.utils.io import check_out_file

    if not str(out).endswith(".npz"):
        raise ConfigError(f"--out {out}: the calibration file must end in .npz")
    check_out_file(out, "a .npz file")
    if size < 2:
        raise ConfigError(f"--size must be >= 2, got {size}")
    if repeats < 1:
        raise ConfigError(f"--repeats must be >= 1, got {repeats}")
    if channels not in (1, 3):
        raise ConfigError(f"--channels must be 1 or 3, got {channels}")
    q = size * size
    held_out = max(16, q // 16) if held_out is None else held_out
    if held_out < 1:
        raise ConfigError(f"--held-out must be >= 1, got {held_out}")
    pats = make_patterns(patterns, size, held_out, seed)
    total = repeats * pats.n_frames
    done = 0
    t0 = time.perf_counter()
    black = np.zeros((size, size, channels), np.uint8)
    white = np.full((size, size, channels), 255, np.uint8)
    primaries = []
    if channels == 3:
        for c in range(3):
            p = black.copy()
            p[..., c] = 255
            primaries.append(p)
    sums: dict[str, Any] = {}
    sq: dict[str, Any] = {}

    def add(key: str, frame: np.ndarray) -> None:
        f = frame.astype(np.float64)
        sums[key] = sums.get(key, 0.0) + f
        sq[key] = sq.get(key, 0.0) + f * f

    display = open_display(rig.display)
    with display:
        camera = open_camera(rig, display)
        with camera:
            camera.prepare((size, size), channels)
            timeout, settle = rig.camera.timeout_s, rig.display.settle_s
            read = lambda img, stream, k, r: _show_and_read(  # noqa: E731
                display, camera, img, FrameTag(seed + r, stream, k), settle, output_gamma, timeout)
            if rig.camera.exposure == "auto":
                display.show(white)
                time.sleep(settle)
                grab(camera, lambda: camera.discard(max(camera.cfg.discard, 1), FrameTag(seed, "lock", 0)),
                     timeout, "locking the exposure")
                locked = camera.lock_exposure(peak=LOCK_PEAK)
            else:
                locked = {"exposure_s": rig.camera.exposure, "from": "the rig file"}
            fit_frames: np.ndarray | None = None
            held_frames: np.ndarray | None = None
            for r in range(repeats):
                add("black", read(black, "black", 0, r))
                add("white", read(white, "white", 0, r))
                for c, img in enumerate(primaries):
                    add(f"primary{c}", read(img, "primary", c, r))
                done += 2 + len(primaries)
                for kind, rows in (("fit", pats.fit), ("held", pats.held_out)):
                    acc = []
                    for k, p in enumerate(rows):
                        img = np.repeat((p.reshape(size, size, 1) * 255).astype(np.uint8), channels, axis=2)
                        acc.append(read(img, kind, k, r))
                        done += 1
                        if on_progress and done % 64 == 0:
                            on_progress(done, total)
                    arr = np.stack(acc)
                    if kind == "fit":
                        fit_frames = arr if fit_frames is None else fit_frames + arr
                    else:
                        held_frames = arr if held_frames is None else held_frames + arr
            if on_progress:
                on_progress(total, total)
            true_a = true_operator(camera, size, channels)
            settings = camera.settings
    seconds = time.perf_counter() - t0
    assert fit_frames is not None and held_frames is not None
    frame_shape = fit_frames.shape[1:]  # (Ho, Wo, C')
    cout = frame_shape[2]
    to_rows = lambda a: torch.from_numpy(np.ascontiguousarray(  # noqa: E731
        (a / repeats).reshape(len(a), -1, cout).transpose(0, 2, 1).reshape(len(a), -1)))
    y_fit, y_held = to_rows(fit_frames), to_rows(held_frames)
    x_fit, x_held = torch.from_numpy(pats.fit).double(), torch.from_numpy(pats.held_out).double()
    a_white, c, fit_rep = fit_affine(x_fit, y_fit, x_held, y_held)
    a_white, c, rank_table = reduce_rank(a_white, x_fit, y_fit, x_held, y_held)
    mean = {k: (v / repeats).reshape(-1, cout).T for k, v in sums.items()}  # (C', P)
    p_out = a_white.shape[0] // cout
    if channels == 3:
        flats = np.stack([np.clip(mean[f"primary{c}"] - mean["black"], 0, None) for c in range(3)])  # (3, C', P)
        w = flats / np.clip(flats.sum(0, keepdims=True), 1e-12, None)
        a_rows = a_white.reshape(cout, p_out, q)
        a = torch.cat([a_rows * torch.from_numpy(w[c])[:, :, None] for c in range(3)], dim=2)  # (C', P, 3Q)
        a = a.reshape(cout * p_out, 3 * q)
    else:
        a = a_white
    k = float(a_white.sum(1).mean())
    if not k > 0:
        raise ConfigError("the camera's response to the patterns is zero or negative: is the display in front of "
                          "the sensor and the exposure long enough? (`opticsfree rig preview` shows it)")
    a, c = a / k, c / k
    noise_dark = noise_white = None
    noise: dict[str, Any] = {"repeats": repeats}
    if repeats >= 2:
        var = {key: np.clip((sq[key] / repeats - (sums[key] / repeats) ** 2) * repeats / (repeats - 1), 0, None)
               .reshape(-1, cout).T for key in ("black", "white")}
        noise_dark, noise_white = np.sqrt(var["black"]) / k, np.sqrt(var["white"]) / k
        d_sig = float((mean["white"] - mean["black"]).mean())
        d_var = float(var["white"].mean() - var["black"].mean())
        full_well = d_sig / d_var if d_var > 0 and d_sig > 0 else None
        noise.update({"read_noise_linear": float(np.sqrt(var["black"].mean())),
                      "white_noise_linear": float(np.sqrt(var["white"].mean())),
                      "effective_full_well_e": full_well,
                      "read_noise_e": None if full_well is None else float(np.sqrt(var["black"].mean()) * full_well),
                      "white_signal_linear": float(mean["white"].mean()),
                      "units": "linear capture units (raw ADC fraction or decoded 8-bit) at the locked exposure"})
    in_shape = (channels, size, size)
    out_shape = (cout, int(frame_shape[0]), int(frame_shape[1]))
    report: dict[str, Any] = {
        "method": "rig-patterns", "patterns": patterns, "size": size, "repeats": repeats,
        "n_patterns": int(len(pats.fit)), "n_held_out": int(len(pats.held_out)),
        "frames": int(total), "seconds": round(seconds, 2), "frames_per_s": round(total / seconds, 1) if seconds else None,
        "held_out_relative_error": rank_table["chosen"]["held_out_relative_error"],
        "held_out_relative_error_full_rank": fit_rep["val_relative_error"], "rank": rank_table["chosen"]["rank"],
        "rank_table": rank_table["table"],
        "train_relative_error": fit_rep.get("train_relative_error"), "lambda_relative": fit_rep["lambda_relative"],
        "normalisation": k, "exposure_locked": locked, "camera_settings": settings, "noise": noise,
        "output_gamma": output_gamma, "display_gamma": display_gamma, "rig": rig.name,
        "in_shape": list(in_shape), "out_shape": list(out_shape), "source": f"rig {rig.name} ({patterns} patterns)",
    }
    if true_a is not None and true_a.shape == a.shape:
        report["true_h_relative_error"] = float(torch.linalg.norm(a - true_a) / torch.linalg.norm(true_a))
    exposure = "per-image" if rig.camera.exposure == "auto" else "fixed"
    mid = (0.5 ** display_gamma)
    scale = float((a.sum(1) * mid + c).mean()) if exposure == "per-image" else 1.0 / k
    sensor = SensorModel(output_gamma if camera.name != "virtual" else float(camera.model.sensor.output_gamma),  # type: ignore[attr-defined]
                         exposure, scale)
    report["sensor"] = {"exposure": exposure, "scale": scale,
                        "scale_means": "the mean irradiance of a mid-grey scene (per-image exposure)"
                        if exposure == "per-image" else "1 / normalisation (fixed exposure)"}
    op = AffineOperator(in_shape, out_shape, c.reshape(cout, -1), dense=a)
    extra = {}
    if noise_dark is not None:
        extra = {"noise_dark": noise_dark.astype(np.float32), "noise_white": noise_white.astype(np.float32)}
    save_calibration(out, Calibration(op, sensor, display_gamma, report), extra_arrays=extra)
    return RigCalibration(a, c, in_shape, out_shape, report, noise_dark, noise_white)


def patterns_time(size: int, repeats: int, fps: float = 30.0, discard: int = 1, held_out: int | None = None,
                  patterns: str = "hadamard") -> dict[str, float]:
    """Frames and time of a calibration at ``fps`` with ``discard`` frames dropped per pattern."""
    q = size * size
    held = max(16, q // 16) if held_out is None else held_out
    per = 5 + (2 * q if patterns == "hadamard" else 4 * q) + held
    frames = repeats * per * (1 + discard)
    return {"patterns_per_repeat": per, "frames": frames, "seconds": frames / fps,
            "minutes": math.ceil(frames / fps / 6) / 10}
