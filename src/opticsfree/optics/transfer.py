"""The transfer matrix H of a bare sensor (and of an ideal lens): sensor pixels x display pixels.

For a bare sensor, every display emitter ``e`` (position ``E``, area ``A_e``) reaches every
sensor sample ``p`` (position ``P``, unit normal ``n``) with

.. math::

    h(p, e) = A_e\\,\\frac{\\cos^{a}\\theta_e\\;\\cos\\theta_s}{r^2}\\;
              \\exp\\!\\Bigl(-\\frac{\\angle(\\hat r, c_p)^2}{2\\sigma_a^2}\\Bigr)\\;
              \\mathbb{1}[\\text{ray inside the package aperture}]

where ``r = E - P``, ``theta_e`` is the emission angle from the display normal, ``theta_s``
the incidence angle on the (possibly tilted) sensor, ``c_p`` the pixel's chief-ray direction
(tilted towards the sensor centre by ``CRA(rho) = CRA_max * rho / rho_corner``) and
``sigma_a`` the microlens acceptance width. ``H[k, j]`` integrates ``h`` over the supersampled
area of output pixel ``k`` (mean over its samples) and the emitters of display element ``j``
(sum). H depends only on the geometry, so it is built once per camera and image size and cached.
"""

from __future__ import annotations

import math

import torch

from opticsfree.optics.config import CameraConfig
from opticsfree.optics.display import element_centres, emitter_offsets
from opticsfree.utils.paths import cache_dir

TRANSFER_VERSION = 1


def rotation(tilt_deg: tuple[float, float]) -> torch.Tensor:
    """Rotation of the sensor: about x by ``tilt_deg[0]``, then about y by ``tilt_deg[1]``."""
    ax, ay = (math.radians(t) for t in tilt_deg)
    rx = torch.tensor([[1, 0, 0], [0, math.cos(ax), -math.sin(ax)], [0, math.sin(ax), math.cos(ax)]],
                      dtype=torch.float64)
    ry = torch.tensor([[math.cos(ay), 0, math.sin(ay)], [0, 1, 0], [-math.sin(ay), 0, math.cos(ay)]],
                      dtype=torch.float64)
    return ry @ rx


def sensor_samples(cfg: CameraConfig) -> tuple[torch.Tensor, int]:
    """Local (u, v) sample positions (mm) of the output pixels, grouped per pixel.

    Returns:
        ``(uv, n_per_pixel)``: float64 tensor (Ho*Wo*s*s, 2) ordered pixel-major, and s*s.
    """
    s = cfg.sensor
    ho, wo = s.output_size
    ph, pw = s.height_mm / ho, s.width_mm / wo
    vc = (torch.arange(ho, dtype=torch.float64) + 0.5) * ph - s.height_mm / 2
    uc = (torch.arange(wo, dtype=torch.float64) + 0.5) * pw - s.width_mm / 2
    dv, du = emitter_offsets(ph, s.supersample), emitter_offsets(pw, s.supersample)
    v = (vc[:, None, None, None] + dv[None, None, :, None]).expand(ho, wo, s.supersample, s.supersample)
    u = (uc[None, :, None, None] + du[None, None, None, :]).expand(ho, wo, s.supersample, s.supersample)
    return torch.stack([u.reshape(-1), v.reshape(-1)], dim=1), s.supersample ** 2


def emitters(cfg: CameraConfig, image_shape: tuple[int, int]) -> tuple[torch.Tensor, float, int]:
    """Emitter positions (mm) ordered element-major, the emitter area (mm^2) and samples per element."""
    d = cfg.display
    h, w = image_shape
    y, x = element_centres(image_shape, d)
    py, px = d.height_mm / h, d.width_mm / w
    oy, ox = emitter_offsets(py, d.supersample), emitter_offsets(px, d.supersample)
    ey = (y[:, None, None, None] + oy[None, None, :, None]).expand(h, w, d.supersample, d.supersample)
    ex = (x[None, :, None, None] + ox[None, None, None, :]).expand(h, w, d.supersample, d.supersample)
    area = (py / d.supersample) * (px / d.supersample)
    return torch.stack([ex.reshape(-1), ey.reshape(-1)], dim=1), area, d.supersample ** 2


def point_kernel(P: torch.Tensor, uv: torch.Tensor, E: torch.Tensor, cfg: CameraConfig,
                 R: torch.Tensor) -> torch.Tensor:
    """``h(p, e)`` for sensor samples ``p`` (world positions P, local uv) and emitters E.

    Args:
        P: (S, 3) world positions of sensor samples.
        uv: (S, 2) their local positions on the die (mm).
        E: (N, 2) emitter (x, y) on the display plane z = gap.
        cfg: camera parameters.
        R: (3, 3) sensor rotation (local -> world).

    Returns:
        (S, N) float64 kernel values (per unit emitter area).
    """
    gap = cfg.geometry.gap_mm
    a = cfg.display.emission_exponent
    rx = E[None, :, 0] - P[:, None, 0]
    ry = E[None, :, 1] - P[:, None, 1]
    rz = (gap - P[:, 2])[:, None].expand_as(rx)
    r2 = rx * rx + ry * ry + rz * rz
    r = r2.sqrt()
    cos_e = (rz / r).clamp(min=0)
    n = R[:, 2]
    # local direction of the incoming ray (pointing from the pixel to the emitter)
    dl_x = (R[0, 0] * rx + R[1, 0] * ry + R[2, 0] * rz) / r
    dl_y = (R[0, 1] * rx + R[1, 1] * ry + R[2, 1] * rz) / r
    dl_z = (n[0] * rx + n[1] * ry + n[2] * rz) / r
    cos_s = dl_z.clamp(min=0)
    k = cos_e.pow(a) * cos_s / r2
    px = cfg.pixel
    if px.chief_ray_angle_deg > 0 or px.acceptance_deg < 90:
        s = cfg.sensor
        rho_corner = math.hypot(s.width_mm / 2, s.height_mm / 2)
        u, v = uv[:, 0:1], uv[:, 1:2]
        rho = (u * u + v * v).sqrt()
        cra = math.radians(px.chief_ray_angle_deg) * rho / rho_corner
        safe = rho.clamp(min=1e-12)
        cx, cy, cz = -torch.sin(cra) * u / safe, -torch.sin(cra) * v / safe, torch.cos(cra)
        cosang = (dl_x * cx + dl_y * cy + dl_z * cz).clamp(-1, 1)
        ang = torch.acos(cosang)
        k = k * torch.exp(-0.5 * (ang / math.radians(px.acceptance_deg)) ** 2)
    if px.aperture_mm is not None:
        h = px.aperture_height_mm
        t = h / dl_z.clamp(min=1e-9)
        qx = uv[:, 0:1] + dl_x * t
        qy = uv[:, 1:2] + dl_y * t
        inside = (qx.abs() <= px.aperture_mm[0] / 2) & (qy.abs() <= px.aperture_mm[1] / 2) & (dl_z > 0)
        k = k * inside
    return k


def bare_transfer_matrix(cfg: CameraConfig, image_shape: tuple[int, int],
                         chunk: int = 256) -> torch.Tensor:
    """Build the bare-sensor H (unnormalised, in mm^2 / mm^2 units of the kernel).

    Args:
        cfg: camera parameters (``type = "bare"``).
        image_shape: (H, W) of the displayed image, one display element per pixel.
        chunk: sensor samples per vectorised block (memory: chunk x emitters x 8 bytes x ~10).

    Returns:
        float64 tensor (Ho*Wo, H*W).
    """
    uv, per_pix = sensor_samples(cfg)
    E, area, per_el = emitters(cfg, image_shape)
    R = rotation(cfg.geometry.tilt_deg)
    local = torch.cat([uv, torch.zeros(len(uv), 1, dtype=torch.float64)], dim=1)
    P = local @ R.T
    P[:, 0] += cfg.geometry.offset_mm[0]
    P[:, 1] += cfg.geometry.offset_mm[1]
    n_el = image_shape[0] * image_shape[1]
    out = torch.empty(len(uv) // per_pix, n_el, dtype=torch.float64)
    step = max(per_pix, (chunk // per_pix) * per_pix)
    for i in range(0, len(uv), step):
        k = point_kernel(P[i:i + step], uv[i:i + step], E, cfg, R)  # (S, n_el*per_el)
        k = k.view(len(k), n_el, per_el).sum(-1) * area
        out[i // per_pix:(i + len(k)) // per_pix] = k.view(-1, per_pix, n_el).mean(1)
    return out


def area_resample_matrix(n_out: int, n_in: int) -> torch.Tensor:
    """1-D area-overlap resampling matrix (n_out, n_in): row sums are 1."""
    edges_o = torch.linspace(0, 1, n_out + 1, dtype=torch.float64)
    edges_i = torch.linspace(0, 1, n_in + 1, dtype=torch.float64)
    lo = torch.maximum(edges_o[:-1, None], edges_i[None, :-1])
    hi = torch.minimum(edges_o[1:, None], edges_i[None, 1:])
    a = (hi - lo).clamp(min=0)
    return a / a.sum(1, keepdim=True)


def gaussian_matrix(n: int, sigma: float) -> torch.Tensor:
    """1-D Gaussian blur matrix (n, n) with reflect-free renormalised rows."""
    if sigma <= 0:
        return torch.eye(n, dtype=torch.float64)
    i = torch.arange(n, dtype=torch.float64)
    g = torch.exp(-0.5 * ((i[:, None] - i[None, :]) / sigma) ** 2)
    return g / g.sum(1, keepdim=True)


def lens_transfer_matrix(cfg: CameraConfig, image_shape: tuple[int, int]) -> torch.Tensor:
    """H of an ideal lens: the display image mapped onto the output grid (area resampling),
    optionally blurred by a Gaussian of ``lens.blur_px`` output pixels."""
    ho, wo = cfg.sensor.output_size
    ay = gaussian_matrix(ho, cfg.lens.blur_px) @ area_resample_matrix(ho, image_shape[0])
    ax = gaussian_matrix(wo, cfg.lens.blur_px) @ area_resample_matrix(wo, image_shape[1])
    return torch.kron(ay, ax)


def geometry_digest(cfg: CameraConfig, image_shape: tuple[int, int], normalise: bool) -> str:
    """Hash of exactly the parameters H depends on (noise settings do not rebuild H)."""
    import hashlib
    import json

    d = cfg.to_dict()
    s = d["sensor"]
    parts = {"type": d["type"], "geometry": d["geometry"], "pixel": d["pixel"], "lens": d["lens"],
             "display": {k: d["display"][k] for k in ("width_mm", "height_mm", "emission_exponent", "supersample")},
             "sensor": {k: s[k] for k in ("width_mm", "height_mm", "output_size", "supersample")},
             "shape": list(image_shape), "normalise": normalise, "version": TRANSFER_VERSION}
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()[:16]


def transfer_matrix(cfg: CameraConfig, image_shape: tuple[int, int], normalise: bool = True,
                    cache: bool = True) -> torch.Tensor:
    """The camera's transfer matrix, cached on disk.

    Args:
        cfg: camera parameters (``bare`` or ``lens``).
        image_shape: (H, W) of the displayed image.
        normalise: scale so that a uniform white display gives a mean response of 1.
        cache: read/write the user cache (``cache_dir("transfer")``).

    Returns:
        float32 tensor (Ho*Wo, H*W).
    """
    if cfg.type == "psf":
        raise ValueError("a 'psf' camera has no transfer matrix; it is applied by FFT convolution")
    key = geometry_digest(cfg, image_shape, normalise) if cache else None
    path = cache_dir("transfer") / f"H-{key}.pt" if cache else None
    if path is not None and path.is_file():
        try:
            return torch.load(path, map_location="cpu", weights_only=True)
        except Exception:  # noqa: BLE001 - corrupt cache: rebuild
            pass
    H = bare_transfer_matrix(cfg, image_shape) if cfg.type == "bare" else lens_transfer_matrix(cfg, image_shape)
    if normalise:
        H = H / H.sum(1).mean()
    H = H.float().contiguous()
    if path is not None:
        from opticsfree.utils.io import save_torch

        save_torch(path, H)
    return H
