"""Physics of the camera model: linearity, falloff, shift invariance, noise, H vs brute force."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from opticsfree.errors import ConfigError
from opticsfree.optics import Camera, fft_convolve, list_presets, load_camera_config
from opticsfree.optics.config import CameraConfig
from opticsfree.optics.sensor import FixedPattern, sensor_electrons
from opticsfree.optics.transfer import bare_transfer_matrix, rotation


def tiny(**over) -> CameraConfig:
    """A small, symmetric bare-sensor camera (no chief-ray tilt, no aperture)."""
    d = dict(
        name="tiny", type="bare", seed=1,
        display=dict(width_mm=4.0, height_mm=4.0, gamma=1.0, black_level=0.0, supersample=2),
        geometry=dict(gap_mm=1.0),
        pixel=dict(chief_ray_angle_deg=0.0, acceptance_deg=90.0),
        sensor=dict(width_mm=2.0, height_mm=2.0, output_size=(6, 6), supersample=2,
                    colour_matrix=[[1, 0, 0], [0, 1, 0], [0, 0, 1]], prnu=0.0, dsnu_e=0.0,
                    read_noise_e=0.0, dark_current_e_per_s=0.0),
    )
    for k, v in over.items():
        d[k] = {**d[k], **v} if isinstance(v, dict) and k in d else v
    return CameraConfig(**d)


def test_presets_load_and_validate():
    assert {"seed", "bare-sensor", "lens"} <= set(list_presets())
    for p in list_presets():
        cfg = load_camera_config(p)
        assert cfg.name == p


def test_unknown_preset_and_bad_field(tmp_path):
    with pytest.raises(ConfigError, match="unknown camera preset 'nope'"):
        load_camera_config("nope")
    bad = tmp_path / "cam.toml"
    text = (load_camera_config.__globals__["preset_path"]("far-display")).read_text()
    bad.write_text(text.replace("gap_mm = 4.0", "gap_mm = -1.0"))
    with pytest.raises(ConfigError, match=r"cam.toml: field 'geometry.gap_mm'"):
        load_camera_config(bad)
    bad.write_text(text.replace("gap_mm = 4.0", "gap_mm = 4.0\ngapp = 3"))
    with pytest.raises(ConfigError, match=r"field 'geometry.gapp': unknown field"):
        load_camera_config(bad)


def test_linear_before_noise():
    cam = Camera(tiny(), (8, 8), 3, cache=False)
    g = torch.Generator().manual_seed(0)
    a, b = torch.rand(2, 3, 8, 8, generator=g), torch.rand(2, 3, 8, 8, generator=g)
    ya, yb = cam.irradiance(a), cam.irradiance(b)
    yab = cam.irradiance(0.3 * a + 0.7 * b)
    torch.testing.assert_close(yab, 0.3 * ya + 0.7 * yb, rtol=1e-5, atol=1e-6)


def test_doubling_gap_lowers_on_axis_response_as_predicted():
    # A single on-axis emitter seen by the central pixel: h ~ cos^a(t) cos(t) / r^2 with t = 0,
    # so doubling the gap divides the response by 4 (exactly, for a point and a point pixel).
    cfg = tiny(display=dict(width_mm=0.01, height_mm=0.01, supersample=1),
               sensor=dict(width_mm=0.01, height_mm=0.01, output_size=(1, 1), supersample=1))
    h1 = bare_transfer_matrix(cfg, (1, 1))[0, 0]
    h2 = bare_transfer_matrix(cfg.replace(geometry={"gap_mm": 2.0}), (1, 1))[0, 0]
    assert float(h1 / h2) == pytest.approx(4.0, rel=1e-3)
    # For an extended display the full model predicts a smaller ratio than 4 (off-axis light):
    big = tiny()
    H1 = bare_transfer_matrix(big, (8, 8)).sum(1).mean()
    H2 = bare_transfer_matrix(big.replace(geometry={"gap_mm": 2.0}), (8, 8)).sum(1).mean()
    assert 1.0 < float(H1 / H2) < 4.0


def test_symmetric_geometry_is_shift_invariant_and_symmetric():
    # Display grid and sensor grid with the same pitch: H[k, j] depends only on k - j.
    cfg = tiny(display=dict(width_mm=2.0, height_mm=2.0, supersample=1),
               sensor=dict(width_mm=2.0, height_mm=2.0, output_size=(6, 6), supersample=1))
    H = bare_transfer_matrix(cfg, (6, 6)).reshape(6, 6, 6, 6)
    assert shift_variance(H) < 1e-9
    torch.testing.assert_close(H[1, 1, 2, 3], H[2, 2, 3, 4])
    # symmetric: mirror images of the geometry give the same response
    torch.testing.assert_close(H, H.flip(0, 2))
    torch.testing.assert_close(H, H.flip(1, 3))
    torch.testing.assert_close(H, H.permute(1, 0, 3, 2))
    # chief-ray tilt or an aperture break shift invariance
    for pixel in (dict(chief_ray_angle_deg=25.0, acceptance_deg=20.0),
                  dict(aperture_mm=(1.6, 1.6), aperture_height_mm=0.4)):
        Hv = bare_transfer_matrix(cfg.replace(pixel=pixel), (6, 6)).reshape(6, 6, 6, 6)
        assert shift_variance(Hv) > 0.05


def shift_variance(H: torch.Tensor) -> float:
    """Largest relative spread of H[k, k + offset] over k, for any offset (0 = shift-invariant)."""
    n = H.shape[0]
    worst = 0.0
    for di in range(-n + 1, n):
        for dj in range(-n + 1, n):
            vals = torch.stack([H[i, j, i + di, j + dj] for i in range(n) for j in range(n)
                                if 0 <= i + di < n and 0 <= j + dj < n])
            worst = max(worst, float((vals.max() - vals.min()) / vals.abs().max().clamp(min=1e-30)))
    return worst


def test_shot_noise_variance_grows_linearly_with_mean():
    cfg = tiny()
    fpn = FixedPattern.make(cfg.sensor, 1, 0)
    g = torch.Generator().manual_seed(0)
    means, vars_ = [], []
    for level in (0.1, 0.3, 0.9):
        s = torch.full((64, 1, 6, 6), level)
        e = sensor_electrons(s, torch.full((64,), 0.01), cfg.sensor, fpn, g)
        means.append(float(e.mean()))
        vars_.append(float(e.var()))
    slope = np.polyfit(means, vars_, 1)
    assert slope[0] == pytest.approx(1.0, rel=0.1)          # Poisson: var = mean
    assert abs(slope[1]) < 0.1 * means[0]


def _brute_force(cfg: CameraConfig, shape):
    """Direct per-(pixel, emitter) evaluation of the documented kernel, in plain Python."""
    s, d = cfg.sensor, cfg.display
    ho, wo = s.output_size
    R = rotation(cfg.geometry.tilt_deg).numpy()
    cra_max = math.radians(cfg.pixel.chief_ray_angle_deg)
    sig = math.radians(cfg.pixel.acceptance_deg)
    rho_c = math.hypot(s.width_mm / 2, s.height_mm / 2)
    H = np.zeros((ho * wo, shape[0] * shape[1]))
    ss, es = s.supersample, d.supersample
    for r in range(ho):
        for c in range(wo):
            for a in range(ss):
                for b in range(ss):
                    v = -s.height_mm / 2 + (r + (a + 0.5) / ss) * s.height_mm / ho
                    u = -s.width_mm / 2 + (c + (b + 0.5) / ss) * s.width_mm / wo
                    P = R @ np.array([u, v, 0.0]) + np.array([*cfg.geometry.offset_mm, 0.0])
                    n = R[:, 2]
                    rho = math.hypot(u, v)
                    cra = cra_max * rho / rho_c
                    cdir = np.array([-math.sin(cra) * u / rho if rho else 0.0,
                                     -math.sin(cra) * v / rho if rho else 0.0, math.cos(cra)])
                    for i in range(shape[0]):
                        for j in range(shape[1]):
                            for p in range(es):
                                for q in range(es):
                                    y = -d.height_mm / 2 + (i + (p + 0.5) / es) * d.height_mm / shape[0]
                                    x = -d.width_mm / 2 + (j + (q + 0.5) / es) * d.width_mm / shape[1]
                                    rv = np.array([x, y, cfg.geometry.gap_mm]) - P
                                    dist = np.linalg.norm(rv)
                                    dl = R.T @ rv / dist
                                    k = (rv[2] / dist) ** d.emission_exponent * max(dl[2], 0) / dist ** 2
                                    ang = math.acos(np.clip(dl @ cdir, -1, 1))
                                    k *= math.exp(-0.5 * (ang / sig) ** 2)
                                    if cfg.pixel.aperture_mm is not None:
                                        t = cfg.pixel.aperture_height_mm / dl[2]
                                        qx, qy = u + dl[0] * t, v + dl[1] * t
                                        k *= (abs(qx) <= cfg.pixel.aperture_mm[0] / 2) and (abs(qy) <= cfg.pixel.aperture_mm[1] / 2)
                                    area = (d.height_mm / shape[0] / es) * (d.width_mm / shape[1] / es)
                                    H[r * wo + c, i * shape[1] + j] += k * area / ss ** 2
    return H


def test_transfer_matrix_matches_brute_force():
    cfg = tiny(display=dict(width_mm=3.0, height_mm=2.5, emission_exponent=1.5, supersample=2),
               geometry=dict(gap_mm=0.8, offset_mm=(0.1, -0.05), tilt_deg=(3.0, -2.0)),
               pixel=dict(chief_ray_angle_deg=20.0, acceptance_deg=15.0, aperture_mm=(1.8, 1.6),
                          aperture_height_mm=0.3),
               sensor=dict(width_mm=1.6, height_mm=1.4, output_size=(3, 4), supersample=2))
    H = bare_transfer_matrix(cfg, (3, 3), chunk=8).numpy()
    np.testing.assert_allclose(H, _brute_force(cfg, (3, 3)), rtol=1e-9, atol=1e-12)


def test_capture_is_deterministic_and_grayscale_works():
    cam = Camera(load_camera_config("seed"), (32, 32), 1)
    x = torch.randint(0, 256, (4, 1, 32, 32), dtype=torch.uint8)
    a = cam.capture(x, torch.Generator().manual_seed(3))
    b = cam.capture(x, torch.Generator().manual_seed(3))
    c = cam.capture(x, torch.Generator().manual_seed(4))
    assert a.dtype == torch.uint8 and a.shape == (4, 1, 32, 32)
    assert torch.equal(a, b) and not torch.equal(a, c)
    with pytest.raises(ValueError, match=r"camera expects images \(N, 1, 32, 32\)"):
        cam.capture(torch.zeros(1, 3, 32, 32, dtype=torch.uint8))


def test_lens_preserves_the_image_and_bare_sensor_blurs_it():
    x = torch.randint(0, 256, (8, 3, 32, 32), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    lens = Camera(load_camera_config("lens"), (32, 32), 3).capture(x, torch.Generator().manual_seed(0))
    bare = Camera(load_camera_config("seed"), (32, 32), 3).capture(x, torch.Generator().manual_seed(0))
    err_lens = (lens.float() - x.float()).abs().mean()
    err_bare = (bare.float() - x.float()).abs().mean()
    assert err_lens < 12 and err_bare > 3 * err_lens
    # the bare sensor's captures are smooth: neighbouring pixels differ far less than in x
    assert (bare[..., 1:].float() - bare[..., :-1].float()).abs().mean() < 0.3 * (x[..., 1:].float() - x[..., :-1].float()).abs().mean()


def test_fft_convolve_matches_direct_convolution():
    g = torch.Generator().manual_seed(0)
    x = torch.rand(2, 3, 9, 7, generator=g, dtype=torch.float64)
    k = torch.rand(5, 3, generator=g, dtype=torch.float64)
    y = fft_convolve(x, k)
    ref = torch.nn.functional.conv2d(x.reshape(6, 1, 9, 7), k.flip(0, 1)[None, None], padding=(2, 1)).reshape(2, 3, 9, 7)
    torch.testing.assert_close(y, ref)


def test_psf_camera(tmp_path):
    psf = np.zeros((5, 5))
    psf[2, 2] = 1.0
    np.save(tmp_path / "psf.npy", psf)
    cfg = tiny(type="psf", psf={"path": "psf.npy", "pixel_mm": 0.5}, source_dir=str(tmp_path),
               display=dict(width_mm=4.0, height_mm=4.0), sensor=dict(output_size=(8, 8)))
    cam = Camera(cfg, (8, 8), 3)
    x = torch.rand(2, 3, 8, 8)
    torch.testing.assert_close(cam.irradiance(x), x, rtol=1e-5, atol=1e-5)  # delta PSF: identity


@pytest.mark.parametrize("readout,dims", [("rotate-180", (-2, -1)), ("mirror-x", (-1,)), ("mirror-y", (-2,))])
def test_readout_orientation_reverses_the_sensor_grid(readout, dims):
    direct = Camera(tiny(), (8, 8), 3, cache=False)
    turned = Camera(tiny(sensor={"readout": readout}), (8, 8), 3, cache=False)
    x = torch.rand(2, 3, 8, 8, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(turned.irradiance(x), direct.irradiance(x).flip(dims))
    # a lit display element in the top-left corner lands bottom-right after a 180-degree readout
    if readout == "rotate-180":
        r = turned.point_response(0, 0)
        assert int(r.argmax()) == r.numel() - 1 - int(direct.point_response(0, 0).argmax())


def test_mirror_symmetry_of_the_presets_and_of_an_off_centre_sensor():
    from opticsfree.optics.symmetry import MIRROR_TOLERANCE, mirror_symmetry

    cfg = load_camera_config("seed")
    sym = mirror_symmetry(Camera(cfg, (16, 16), 3))
    assert sym.transfer < 1e-6 and sym.symmetric
    # a random gain map is never symmetric: a_g ~ sqrt(2) * prnu
    assert sym.gain == pytest.approx(2 ** 0.5 * cfg.sensor.prnu, rel=0.15)
    geo = cfg.geometry.model_copy(update={"offset_mm": (1.5, 0.0)})  # (x, y): off-centre left-right
    off = mirror_symmetry(Camera(cfg.model_copy(update={"geometry": geo}), (16, 16), 3))
    assert off.transfer > MIRROR_TOLERANCE and not off.symmetric
    assert "transfer asymmetry" in off.describe() and "%" in off.describe()
    # an up-down offset keeps the left-right symmetry
    geo = cfg.geometry.model_copy(update={"offset_mm": (0.0, 1.5)})
    assert mirror_symmetry(Camera(cfg.model_copy(update={"geometry": geo}), (16, 16), 3)).transfer < 1e-6
