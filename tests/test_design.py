"""Camera design tools: camera info (rank, coverage, linear estimator, probe), fit and sweep."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from opticsfree.captures.quality import capture_quality
from opticsfree.captures.simulate import simulate_capture_set
from opticsfree.cli.main import app
from opticsfree.data import load_dataset
from opticsfree.design import METRICS, LinearEstimator, camera_info, captures_info, transfer_geometry
from opticsfree.design.fit import camera_toml, fit_camera, parse_targets
from opticsfree.design.params import Bound, get_value, parse_axis, parse_bound, set_values
from opticsfree.design.sweep import sweep_camera
from opticsfree.errors import ConfigError
from opticsfree.optics import Camera, load_camera_config
from opticsfree.optics.config import CameraConfig

runner = CliRunner()


def small(gap: float = 1.0, **over) -> CameraConfig:
    """A small bare-sensor camera (6 x 6 output, coarse integration): fast to build."""
    d = dict(
        name="small", type="bare", seed=1,
        display=dict(width_mm=3.0, height_mm=3.0, gamma=2.2, black_level=0.01, supersample=1),
        geometry=dict(gap_mm=gap),
        pixel=dict(chief_ray_angle_deg=0.0, acceptance_deg=30.0),
        sensor=dict(width_mm=2.5, height_mm=2.5, output_size=(8, 8), supersample=1, jpeg_quality=None),
    )
    for k, v in over.items():
        d[k] = {**d[k], **v} if isinstance(v, dict) and k in d else v
    return CameraConfig(**d)


@pytest.fixture(scope="module")
def digits():
    return load_dataset("digits")


def test_lens_has_full_rank_and_coverage_about_one():
    cam = Camera(load_camera_config("lens"), (32, 32), 3)
    geo = transfer_geometry(cam.transfer_matrix(), (32, 32), (32, 32))
    assert geo.rank_1e2 == geo.rank_1e3 == 1024
    assert geo.coverage == pytest.approx(31 / 32)
    assert geo.footprint_spread_px < 0.1


def test_far_display_sees_only_the_image_centre():
    cfg = load_camera_config("far-display").replace(display={"supersample": 1}, sensor={"supersample": 1})
    cam = Camera(cfg, (32, 32), 3, cache=False)
    geo = transfer_geometry(cam.transfer_matrix(), (32, 32), (32, 32))
    assert geo.coverage < 0.1 and geo.rank_1e2 < 30
    assert 2.5 < geo.footprint_spread_px < 6
    # every centroid within ~2 display pixels of the image centre
    assert np.abs(geo.centroids - 15.5).max() < 2.5


def test_transfer_geometry_centroids_and_spread_of_a_known_matrix():
    # 2 sensor pixels on a 1 x 4 display: one sees pixels 0 and 1 equally, one sees pixel 3
    H = torch.tensor([[1.0, 1.0, 0.0, 0.0], [0.0, 0.0, 0.0, 2.0]])
    geo = transfer_geometry(H, (1, 4), (1, 2))
    np.testing.assert_allclose(geo.centroids, [[0.5, 0.0], [3.0, 0.0]])
    np.testing.assert_allclose(geo.spreads, [0.25, 0.0])  # (0.5 + 0) / 2 and 0
    assert geo.coverage == pytest.approx(0.0)  # the height is spanned by nothing
    assert geo.rank_1e2 == 2
    with pytest.raises(ValueError, match="H must be"):
        transfer_geometry(H, (2, 4), (1, 2))


def test_linear_estimator_recovers_a_noiseless_linear_camera():
    g = torch.Generator().manual_seed(0)
    x = torch.rand(800, 3, 5, 5, generator=g)
    M = torch.eye(75) + 0.3 * torch.randn(75, 75, generator=g) / 75 ** 0.5
    b = 0.1 * torch.rand(75, generator=g)

    def camera(v):
        return (v.reshape(len(v), -1) @ M.T + b).reshape(len(v), 3, 5, 5)

    est = LinearEstimator.fit(camera(x[:600]), x[:600], camera(x[600:700]), x[600:700])
    pred = est.predict(camera(x[700:]))
    assert est.lambda_relative <= 1e-4
    torch.testing.assert_close(pred, x[700:], atol=1e-4, rtol=0)


def test_camera_info_raw_numbers_equal_simulate_then_quality(tmp_path, digits):
    cam = small()
    info = camera_info(cam, digits, limit=60, seed=3, metrics=["raw_psnr", "raw_ssim"], cache=False)
    root = simulate_capture_set(digits, cam, tmp_path / "set", limit=60, seed=3, workers=1)
    q = capture_quality(root, "test", 32)
    assert info.n_test == q["n"] == 60
    assert info.raw_psnr == pytest.approx(q["psnr"], abs=1e-6)
    assert info.raw_ssim == pytest.approx(q["ssim"], abs=1e-6)
    # the same numbers from the stored set, without H
    ci = captures_info(root, seed=3, metrics=["raw_psnr", "raw_ssim"])
    assert ci.raw_psnr == pytest.approx(q["psnr"], abs=1e-6)
    d = ci.to_json()
    assert not {"rank_1e2", "rank_1e3", "coverage", "footprint_spread_px"} & set(d)


def test_camera_info_json_contract_and_lens_beats_bare(digits):
    lens = load_camera_config("lens").replace(sensor={"jpeg_quality": None})
    a = camera_info(lens, digits, limit=200, seed=0)
    b = camera_info(small(gap=2.5), digits, limit=200, seed=0)
    assert set(METRICS) <= set(a.to_json())
    assert a.linear_psnr > 30 and a.linear_psnr > a.raw_psnr
    assert a.linear_probe_accuracy > 80
    assert b.linear_psnr < a.linear_psnr - 10
    assert b.coverage < a.coverage and b.rank_1e2 < a.rank_1e2
    # the linear estimate is never worse than the best constant (the train mean) by much
    assert b.linear_psnr > b.raw_psnr
    # deterministic
    assert camera_info(small(gap=2.5), digits, limit=200, seed=0).to_json() | {"seconds": 0} == \
        b.to_json() | {"seconds": 0}


def test_params_paths_linking_and_errors():
    seed = load_camera_config("far-display")
    wider = set_values(seed, {"display.width_mm": 6.0})
    assert wider.display.width_mm == 6.0 and wider.display.height_mm == 6.0
    both = set_values(seed, {"display.width_mm": 6.0, "display.height_mm": 3.0})
    assert (both.display.width_mm, both.display.height_mm) == (6.0, 3.0)
    assert set_values(seed, {"geometry.offset_mm.1": 0.2}).geometry.offset_mm == (0.0, 0.2)
    assert set_values(seed, {"display.supersample": 2.4}).display.supersample == 2
    assert get_value(seed, "geometry.gap_mm") == 4.0
    with pytest.raises(ConfigError, match="unknown camera parameter 'geometry.gapp'"):
        parse_bound("geometry.gapp=1:2", seed)
    with pytest.raises(ConfigError, match="lower bound must be below"):
        parse_bound("geometry.gap_mm=3:1", seed)
    with pytest.raises(ConfigError, match="expected PATH=LO:HI"):
        parse_bound("geometry.gap_mm", seed)
    with pytest.raises(ConfigError, match="not a number"):
        parse_bound("geometry.gap_mm=a:2", seed)
    with pytest.raises(ConfigError, match="N must be >= 1"):
        parse_axis("geometry.gap_mm=1:2:0", seed)
    with pytest.raises(ConfigError, match="geometry.gap_mm=-1.*gap_mm"):
        set_values(seed, {"geometry.gap_mm": -1.0})
    with pytest.raises(ConfigError, match="unknown key 'psnr'"):
        parse_targets(["psnr=3"])
    with pytest.raises(ConfigError, match="expected KEY=VALUE"):
        parse_targets(["raw_psnr"])
    assert parse_targets(["raw_psnr=10.74", "linear_psnr=18.7"]) == {"raw_psnr": 10.74, "linear_psnr": 18.7}


def test_camera_toml_round_trips(tmp_path):
    cam = load_camera_config("seed")
    path = tmp_path / "copy.toml"
    path.write_text(camera_toml(cam, ["a header", "second line"]))
    text = path.read_text()
    assert text.startswith("# a header\n# second line\n")
    back = load_camera_config(path)
    assert back.to_dict() == cam.to_dict()


def test_fit_recovers_a_known_gap(digits):
    truth = camera_info(small(gap=1.0), digits, limit=300, seed=0,
                        metrics=["raw_psnr", "raw_ssim", "linear_psnr"], cache=False)
    targets = {k: truth.metrics()[k] for k in ("raw_psnr", "raw_ssim", "linear_psnr")}
    res = fit_camera(small(gap=2.0), digits, targets, [Bound("geometry.gap_mm", 0.4, 3.0)],
                     limit=300, seed=0, max_evals=25)
    assert res.values["geometry.gap_mm"] == pytest.approx(1.0, rel=0.1)
    assert res.ok and res.camera.geometry.gap_mm == res.values["geometry.gap_mm"]
    assert res.evaluations <= 25 and len(res.history) == res.evaluations


def test_fit_reports_unreachable_targets(digits):
    res = fit_camera(small(), digits, {"raw_psnr": 99.0}, [Bound("geometry.gap_mm", 0.5, 2.0)],
                     limit=100, max_evals=6)
    assert not res.ok and res.unreached() == ["raw_psnr"]
    assert res.reached["raw_psnr"] < 40


def test_fit_cli_writes_a_loadable_camera_and_refuses_bad_arguments(tmp_path):
    base = tmp_path / "base.toml"
    base.write_text(camera_toml(small(gap=1.5)))
    out = tmp_path / "fitted.toml"
    r = runner.invoke(app, ["camera", "fit", str(base), "--dataset", "digits", "--limit", "100",
                            "--target", "raw_psnr=99", "--free", "geometry.gap_mm=0.5:2", "--max-evals", "4",
                            "--out", str(out)])
    assert r.exit_code == 1, r.output  # a target not reached: non-zero, the best camera still written
    assert "NOT REACHED" in r.output and "targets not reached" in r.output
    cam = load_camera_config(out)
    assert cam.name == "fitted" and 0.5 <= cam.geometry.gap_mm <= 2.0
    text = out.read_text()
    assert "# command: opticsfree camera fit" in text and "raw_psnr = 99 ->" in text
    bad = [
        (["--target", "nope=1", "--free", "geometry.gap_mm=0.5:2"], "unknown key 'nope'"),
        (["--target", "raw_psnr=1", "--free", "geometry.gapp=0.5:2"], "unknown camera parameter"),
        (["--target", "raw_psnr=1", "--free", "geometry.gap_mm=2:0.5"], "lower bound must be below"),
        (["--target", "raw_psnr=x", "--free", "geometry.gap_mm=0.5:2"], "not a number"),
        (["--target", "raw_psnr=1", "--free", "geometry.gap_mm=0.5:2", "--free", "geometry.gap_mm=1:2"],
         "given twice"),
    ]
    for args, message in bad:
        r = runner.invoke(app, ["camera", "fit", str(base), "--dataset", "digits", *args,
                                "--out", str(tmp_path / "x.toml")])
        assert r.exit_code == 2, (args, r.output)
        assert message in r.output and r.output.count("\n") == 1 and "Traceback" not in r.output
    r = runner.invoke(app, ["camera", "fit", str(base), "--target", "raw_psnr=1", "--free",
                            "geometry.gap_mm=0.5:2", "--out", str(tmp_path / "x.txt")])
    assert r.exit_code == 2 and "must end in .toml" in r.output
    assert not (tmp_path / "x.toml").exists()


def test_sweep_writes_the_grid_it_was_asked_for(tmp_path, digits):
    out = tmp_path / "sweep"
    axes = [parse_axis("geometry.gap_mm=0.5:2:3", small()), parse_axis("display.width_mm=2:4:2", small())]
    rows = sweep_camera(small(), axes, digits, out, limit=60)
    assert [(r["geometry.gap_mm"], r["display.width_mm"]) for r in rows] == \
        [(g, w) for g in (0.5, 1.25, 2.0) for w in (2.0, 4.0)]
    with open(out / "sweep.csv") as f:
        table = list(csv.DictReader(f))
    assert len(table) == 6 and list(table[0])[:2] == ["geometry.gap_mm", "display.width_mm"]
    assert set(METRICS) <= set(table[0])
    assert float(table[0]["linear_psnr"]) == pytest.approx(rows[0]["linear_psnr"], rel=1e-5)
    for m in ("linear_psnr", "raw_psnr", "linear_probe_accuracy"):
        assert (out / f"{m}.png").stat().st_size > 1000
    # resume: the same sweep reads its rows back; a different one is refused
    again = sweep_camera(small(), axes, digits, out, limit=60)
    assert again[3]["linear_psnr"] == pytest.approx(rows[3]["linear_psnr"], rel=1e-5)
    with pytest.raises(Exception, match="holds a different sweep"):
        sweep_camera(small(), axes[:1], digits, out, limit=60)


def test_camera_info_cli(tmp_path):
    r = runner.invoke(app, ["camera", "info", "lens", "--dataset", "digits", "--limit", "100", "--json",
                            "--out", str(tmp_path / "figs")])
    assert r.exit_code == 0, r.output
    d = json.loads(r.stdout)
    assert set(METRICS) <= set(d) and d["rank_1e2"] == 1024
    for name in ("footprints.png", "spectrum.png", "reconstructions.png"):
        assert (tmp_path / "figs" / name).stat().st_size > 1000
    for args, message in [([], "give either a CAMERA"),
                          (["lens", "--captures", str(tmp_path)], "give either a CAMERA"),
                          (["nope"], "unknown camera preset")]:
        r = runner.invoke(app, ["camera", "info", *args])
        assert r.exit_code == 2 and message in r.output and r.output.count("\n") == 1, (args, r.output)
    # an option's bounds are checked while parsing: one line naming it
    r = runner.invoke(app, ["camera", "info", "lens", "--dataset", "digits", "--limit", "0"])
    assert r.exit_code == 2 and r.output.startswith("error: Invalid value for '--limit'"), r.output
    assert r.output.count("\n") == 1
    r = runner.invoke(app, ["camera", "sweep", "lens", "--param", "geometry.gap_mm=1:2:0", "--out",
                            str(tmp_path / "s")])
    assert r.exit_code == 2 and "N must be >= 1" in r.output


def test_sweep_says_its_size_and_refuses_an_absurd_grid_without_yes(tmp_path):
    r = runner.invoke(app, ["camera", "sweep", "lens", "--param", "geometry.gap_mm=0.5:1.5:100000",
                            "--out", str(tmp_path / "s")])
    assert r.exit_code == 2 and r.output.count("\n") == 1, r.output
    assert "100,000 grid points" in r.output and "--yes" in r.output and " h on 2 CPU cores" in r.output
    assert not (tmp_path / "s").exists()
