"""Simulating capture sets: format, determinism, resume, quality numbers, loader, CLI errors."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from opticsfree.captures import load_captures, open_capture_set
from opticsfree.captures.check import check_capture_set
from opticsfree.captures.quality import capture_quality, image_quality
from opticsfree.captures.simulate import simulate_capture_set
from opticsfree.captures.testing import make_capture_set
from opticsfree.cli.main import app
from opticsfree.data import load_dataset
from opticsfree.errors import OpticsfreeError
from opticsfree.optics import load_camera_config

runner = CliRunner()


def small_camera():
    """The seed camera with coarse integration (fast to build in tests)."""
    return load_camera_config("seed").replace(display={"supersample": 1}, sensor={"supersample": 1})


@pytest.fixture(scope="module")
def digits():
    return load_dataset("digits")


def test_simulate_writes_a_valid_deterministic_set(tmp_path, digits):
    cam = small_camera()
    a = simulate_capture_set(digits, cam, tmp_path / "a", limit=40, frames=2, seed=1, batch=16, workers=1)
    b = simulate_capture_set(digits, cam, tmp_path / "b", limit=40, frames=2, seed=1, batch=16, workers=2)
    cs = open_capture_set(a)
    assert cs.manifest["splits"] == {"train": 40, "test": 40}
    assert cs.manifest["camera"]["name"] == "seed" and cs.manifest["frames"] == 2
    assert len(cs.rows) == 160 and {r.frame for r in cs.rows} == {0, 1}
    # 40 per split, class-stratified over 10 digits
    labels = [r.label for r in cs.rows_for("test") if r.frame == 0]
    assert np.bincount(labels).tolist() == [4] * 10
    assert check_capture_set(a).ok
    for r in cs.rows[:10]:
        assert (a / r.lensless).read_bytes() == (b / r.lensless).read_bytes()
    la = load_captures(a, "test")
    assert la.lensless.shape == (80, 1, 32, 32) and la.original.shape == (80, 1, 32, 32)
    # independent noise per frame: the two frames of a scene differ
    f0, f1 = la.lensless[la.frames == 0], la.lensless[la.frames == 1]
    assert not torch.equal(f0, f1)


def test_resume_completes_without_redoing_files(tmp_path, digits):
    cam = small_camera()
    out = tmp_path / "s"
    simulate_capture_set(digits, cam, out, limit=30, seed=2, batch=8, workers=1)
    ref = {p: p.read_bytes() for p in out.rglob("*.jpeg")}
    victims = sorted(ref)[::7]
    for p in victims:
        p.unlink()
    (out / "manifest.json").unlink()
    keep = sorted(set(ref) - set(victims))[0]
    mtime = os.stat(keep).st_mtime_ns
    simulate_capture_set(digits, cam, out, limit=30, seed=2, batch=8, workers=1)
    assert all(p.read_bytes() == ref[p] for p in victims)       # same pixels recomputed
    assert os.stat(keep).st_mtime_ns == mtime                     # finished files untouched
    assert not list(out.rglob("*.tmp")) and check_capture_set(out).ok
    with pytest.raises(OpticsfreeError, match="different settings.*seed"):
        simulate_capture_set(digits, cam, out, limit=30, seed=3, batch=8, workers=1)


def test_image_quality_matches_scikit_image():
    from skimage.metrics import peak_signal_noise_ratio, structural_similarity

    g = torch.Generator().manual_seed(0)
    x = torch.randint(0, 256, (3, 3, 32, 32), dtype=torch.uint8, generator=g)
    y = (x.float() + torch.randn(x.shape, generator=g) * 25).clamp(0, 255).to(torch.uint8)
    q = image_quality(y, x)
    for i in range(3):
        a, b = y[i].permute(1, 2, 0).numpy() / 255.0, x[i].permute(1, 2, 0).numpy() / 255.0
        assert q["psnr"][i] == pytest.approx(peak_signal_noise_ratio(b, a, data_range=1.0), rel=1e-6)
        ref = structural_similarity(b, a, data_range=1.0, channel_axis=2, gaussian_weights=True,
                                    sigma=1.5, use_sample_covariance=False)
        assert q["ssim"][i] == pytest.approx(ref, abs=2e-3)


def test_quality_cli_json_contract(tmp_path):
    root = make_capture_set(tmp_path / "set", size=16)
    r = runner.invoke(app, ["quality", str(root), "--split", "test", "--size", "16", "--json"])
    assert r.exit_code == 0, r.output
    q = json.loads(r.stdout)
    assert set(q) == {"n", "mse", "mse_255", "psnr", "psnr_std", "ssim", "ssim_std"}
    assert q["n"] == 18 and q["mse_255"] == pytest.approx(q["mse"] * 255 ** 2)
    assert q == pytest.approx(capture_quality(root, "test", 16))


def test_lens_is_far_better_than_bare_sensor(tmp_path, digits):
    lens = simulate_capture_set(digits, load_camera_config("lens"), tmp_path / "lens", splits=["test"],
                                limit=50, workers=1)
    bare = simulate_capture_set(digits, small_camera(), tmp_path / "bare", splits=["test"], limit=50, workers=1)
    ql, qb = capture_quality(lens), capture_quality(bare)
    assert ql["psnr"] > 22 and ql["ssim"] > 0.6
    assert qb["psnr"] < ql["psnr"] - 8 and qb["ssim"] < 0.5


def test_cli_simulate_show_and_errors(tmp_path):
    out = tmp_path / "cli"
    cam = tmp_path / "cam.toml"
    from opticsfree.optics.config import preset_path

    cam.write_text(preset_path("seed").read_text().replace("supersample = 3", "supersample = 1")
                   .replace("supersample = 2", "supersample = 1"))
    r = runner.invoke(app, ["simulate", "--dataset", "digits", "--camera", str(cam), "--split", "test",
                            "--limit", "20", "--out", str(out)])
    assert r.exit_code == 0, r.output
    assert runner.invoke(app, ["check", str(out)]).exit_code == 0
    r = runner.invoke(app, ["show", str(out), "--out", str(tmp_path / "grid.png")])
    assert r.exit_code == 0, r.output
    assert (tmp_path / "grid.png").read_bytes()[:4] == b"\x89PNG"
    # bad inputs: one-line error, exit 2, nothing half-written
    r = runner.invoke(app, ["simulate", "--dataset", "digits", "--camera", "nope", "--out", str(tmp_path / "x")])
    assert r.exit_code == 2 and "unknown camera preset 'nope'" in r.output and "Traceback" not in r.output
    assert not (tmp_path / "x").exists()
    bad = tmp_path / "bad.toml"
    bad.write_text(cam.read_text().replace("adc_bits = 10", "adc_bits = 99"))
    r = runner.invoke(app, ["simulate", "--dataset", "digits", "--camera", str(bad), "--out", str(tmp_path / "y")])
    assert r.exit_code == 2 and "field 'sensor.adc_bits'" in r.output
    r = runner.invoke(app, ["simulate", "--dataset", "cifar10", "--data", str(tmp_path / "nothing"),
                            "--camera", str(cam), "--out", str(tmp_path / "z")])
    assert r.exit_code == 2 and "nothing" in r.output
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o500)
    try:
        if not os.access(ro, os.W_OK):  # (root can write anywhere)
            r = runner.invoke(app, ["simulate", "--dataset", "digits", "--camera", str(cam), "--limit", "10",
                                    "--out", str(ro / "set")])
            assert r.exit_code == 2 and str(ro / "set") in r.output
    finally:
        ro.chmod(0o700)
    # corrupt capture: quality names the file
    victim = next(out.rglob("*.jpeg"))
    victim.write_bytes(victim.read_bytes()[:40])
    for p in out.glob(".cache/*"):
        p.unlink()
    r = runner.invoke(app, ["quality", str(out)])
    assert r.exit_code == 2 and victim.name in r.output


def test_compare_capture_sets_draws_the_same_scenes_across_sets(tmp_path, monkeypatch):
    from opticsfree.captures import show
    from opticsfree.captures.testing import make_capture_set

    a = make_capture_set(tmp_path / "a", n_classes=3, per_class=4, size=8, frames=2)
    b = make_capture_set(tmp_path / "b", n_classes=3, per_class=4, size=8, seed=5)
    drawn = []
    real = show.load_captures
    monkeypatch.setattr(show, "load_captures", lambda *a, **k: drawn.append(a[0]) or real(*a, **k))
    out = show.compare_capture_sets({"lensless": a, "other": b}, tmp_path / "cmp.png", n=3, size=16)
    assert out.read_bytes()[:4] == b"\x89PNG" and drawn == [a, b]
    from PIL import Image

    w, h = Image.open(out).size
    assert w == 3 * 150 and h == 3 * 155  # 3 scenes x (original, lensless, other) at 100 dpi
    r = runner.invoke(app, ["show", str(a), "--with", f"other={b}", "--out", str(tmp_path / "c.png")])
    assert r.exit_code == 0, r.output
    r = runner.invoke(app, ["show", str(a), "--with", "other", "--out", str(tmp_path / "d.png")])
    assert r.exit_code == 2 and "NAME=DIR" in r.output and not (tmp_path / "d.png").exists()
    r = runner.invoke(app, ["show", str(a), "--with", f"x={tmp_path / 'none'}", "--out", str(tmp_path / "e.png")])
    assert r.exit_code == 2 and "none" in r.output and not (tmp_path / "e.png").exists()
