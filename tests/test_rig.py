"""The rig (``opticsfree rig capture|calibrate|preview|report``, ``opticsfree live``) end to end
without hardware: the virtual rig against ``simulate``, resume after kill -9, a camera that
stops, drift warnings, pattern calibration against the true transfer matrix, the opencv backend
on image sequences and video files, the pygame display under SDL's dummy driver and under Xvfb,
and ``live`` against ``predict``. Small scenes (scikit-learn's 8 x 8 digits), a few seconds each."""

from __future__ import annotations

import csv
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import tomli_w
import torch
from typer.testing import CliRunner

from opticsfree.captures.format import open_capture_set, read_index
from opticsfree.captures.loader import load_captures
from opticsfree.captures.quality import capture_quality
from opticsfree.captures.simulate import simulate_capture_set
from opticsfree.captures.writer import encode_decode
from opticsfree.cli.main import app
from opticsfree.data import load_dataset
from opticsfree.errors import ConfigError
from opticsfree.optics import Camera, load_camera_config
from opticsfree.rig import load_rig_config
from opticsfree.rig.calibrate import rig_calibrate
from opticsfree.rig.camera import CAMERAS, CameraError, FrameTag
from opticsfree.rig.capture import DRIFT_COLUMNS, rig_capture
from opticsfree.rig.config import CAMERA_BACKENDS, DISPLAY_BACKENDS
from opticsfree.rig.display import DISPLAYS, render
from opticsfree.utils.images import decode_image

runner = CliRunner()
ROOT = Path(__file__).resolve().parents[1]
SEED_MM = 2.904700771699022
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "SDL_VIDEODRIVER": "dummy"}


def invoke(args: list) -> object:
    return runner.invoke(app, [str(a) for a in args])


def one_line_error(r, code: int = 2) -> str:
    assert r.exit_code == code, (r.exit_code, r.output, r.exception)
    lines = [ln for ln in r.stderr.strip().splitlines() if not ln.startswith("warning: ")]
    assert len(lines) == 1 and lines[0].startswith("error: ") and "Traceback" not in r.output, r.stderr
    return lines[0]


def rig_dict(px: int = 64, **changes) -> dict:
    """A virtual rig for the 32 x 32 digits: drawn on ``px`` screen pixels (64: 2x, nearest)
    over the `seed` preset's width."""
    d = {"name": "test-rig",
         "display": {"backend": "virtual", "screen_px": [px + 16, px + 8], "pitch_mm": SEED_MM / px,
                     "size_px": [px, px], "size_mm": [SEED_MM, SEED_MM]},
         "camera": {"backend": "virtual", "model": "seed", "discard": 0, "format": "jpeg", "jpeg_quality": 75},
         "monitor": {"every": 25, "max_dark": 0.25}}
    for section, values in changes.items():
        if isinstance(values, dict):  # a value None removes the field
            d[section] = {k: v for k, v in {**d.get(section, {}), **values}.items() if v is not None}
        else:
            d[section] = values
    return d


def write_rig(path: Path, px: int = 64, **changes) -> Path:
    path.write_text(tomli_w.dumps(rig_dict(px, **changes)), encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def digits():
    return load_dataset("digits")


def files_of(root: Path) -> dict[str, bytes]:
    """Every file of a set but the ones that hold times (manifest, drift)."""
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*"))
            if p.is_file() and p.name not in ("manifest.json", "drift.csv")}


# --------------------------------------------------------------------------- the rig file

def test_the_backend_registries_are_the_rig_files_choices():
    assert set(DISPLAYS) == set(DISPLAY_BACKENDS)
    assert set(CAMERAS) == set(CAMERA_BACKENDS)


@pytest.mark.parametrize("changes, field, words", [
    ({"display": {"size_mm": [3.5, SEED_MM]}}, "display", "size_mm [3.5"),
    ({"display": {"backend": "lcd-magic"}}, "display.backend", "'pygame' or 'virtual'"),
    ({"camera": {"backend": "webcam"}}, "camera.backend", "opencv"),
    ({"display": {"settle_s": -0.5}}, "display.settle_s", "greater than or equal to 0"),
    ({"display": {"position_px": [20, 20]}}, "display", "does not fit on the screen"),
    ({"camera": {"backend": "opencv"}}, "camera", "exactly one of device"),
    ({"camera": {"model": None}}, "camera", "needs model"),
    ({"camera": {"exposure": -1.0}}, "camera", "exposure must be 'auto' or a positive value"),
    ({"camera": {"colour": 3}}, "camera.colour", "unknown field"),
])
def test_a_bad_rig_file_is_a_one_line_error_naming_the_field(tmp_path, changes, field, words):
    d = rig_dict(**changes)
    bad = tmp_path / "bad.toml"
    bad.write_text(tomli_w.dumps(d), encoding="utf-8")
    with pytest.raises(ConfigError) as e:
        load_rig_config(bad)
    msg = str(e.value)
    assert msg.startswith(f"{bad}: field '{field}'") and words in msg and "\n" not in msg, msg
    r = invoke(["rig", "capture", "--rig", bad, "--dataset", "digits", "--out", tmp_path / "out"])
    assert field in one_line_error(r)
    assert not (tmp_path / "out").exists()


def test_the_shipped_rig_files_load():
    for name in ("virtual-seed", "seed-hardware"):
        cfg = load_rig_config(ROOT / "configs" / "rigs" / f"{name}.toml")
        assert cfg.name == name
    cfg = load_rig_config(ROOT / "configs" / "rigs" / "virtual-seed.toml")
    assert cfg.display.size_mm[0] == pytest.approx(load_camera_config("seed").display.width_mm)


# --------------------------------------------------------------------------- capture

def test_the_virtual_rig_without_noise_equals_the_camera_model_and_simulates_scenes(tmp_path, digits):
    rig = load_rig_config(write_rig(tmp_path / "rig.toml", camera={"noise": False}))
    out = rig_capture(digits, rig, tmp_path / "rig", splits=["test"], limit=40, seed=3).out
    sim = simulate_capture_set(digits, load_camera_config("seed"), tmp_path / "sim", splits=["test"],
                               limit=40, seed=3, workers=1)
    assert [(r.id, r.label) for r in read_index(out)] == [(r.id, r.label) for r in read_index(sim)]
    assert invoke(["check", out]).exit_code == 0
    rows = read_index(out)
    originals = torch.from_numpy(np.stack([decode_image(out / r.original) for r in rows])).permute(0, 3, 1, 2)
    got = np.stack([decode_image(out / r.lensless) for r in rows])
    cam = Camera(load_camera_config("seed"), (32, 32), 1)
    want = encode_decode(cam.capture(originals, None, noise=False).permute(0, 2, 3, 1).numpy(), 75)
    assert got.shape == (40, 32, 32, 1) and np.array_equal(got, want)  # bit for bit
    m = open_capture_set(out).manifest
    assert m["camera"]["name"] == "seed" and m["rig"]["complete"] is True
    assert m["rig"]["camera"]["backend"] == "virtual" and m["rig"]["timings"][0]["scenes"] == 40


def test_the_virtual_rig_with_noise_has_simulates_quality(tmp_path, digits):
    rig = load_rig_config(write_rig(tmp_path / "rig.toml"))
    out = rig_capture(digits, rig, tmp_path / "rig", splits=["test"], limit=200).out
    sim = simulate_capture_set(digits, load_camera_config("seed"), tmp_path / "sim", splits=["test"],
                               limit=200, workers=1)
    a, b = capture_quality(out, "test", size=32), capture_quality(sim, "test", size=32)
    assert abs(a["psnr"] - b["psnr"]) <= 0.1 and abs(a["ssim"] - b["ssim"]) <= 0.005, (a, b)
    assert not np.array_equal(load_captures(out, "test").lensless, load_captures(sim, "test").lensless)


def _capture_cmd(rig: Path, out: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "opticsfree.cli.main", "rig", "capture", "--rig", str(rig), "--dataset",
            "digits", "--split", "all", "--limit", "60", "--frames", "2", "--out", str(out), *extra]


def test_kill_9_then_resume_is_byte_identical(tmp_path):
    rig = write_rig(tmp_path / "rig.toml", display={"settle_s": 0.02}, monitor={"every": 10})
    full = tmp_path / "full"
    subprocess.run(_capture_cmd(rig, full), env=ENV, check=True, capture_output=True, timeout=300)
    cut = tmp_path / "cut"
    p = subprocess.Popen(_capture_cmd(rig, cut), env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    index = cut / "index.csv"
    deadline = time.time() + 120
    while time.time() < deadline and not (index.is_file() and index.read_text().count("\n") > 30):
        time.sleep(0.02)
    os.kill(p.pid, signal.SIGKILL)
    p.wait()
    n_cut = index.read_text().count("\n") - 1
    assert 0 < n_cut < 240, n_cut
    with open(index, "a") as f:  # a torn last line, as a kill in the middle of a write leaves
        f.write("test,digit_99")
    r = invoke(["rig", "capture", "--rig", rig, "--dataset", "digits", "--split", "all", "--limit", 60,
                "--frames", 2, "--out", cut])
    assert "--resume" in one_line_error(r)
    r = subprocess.run(_capture_cmd(rig, cut, "--resume", "--json"), env=ENV, capture_output=True, text=True,
                       timeout=300)
    assert r.returncode == 0, r.stderr
    rep = json.loads(r.stdout)
    assert rep["n_resumed"] == n_cut // 2 and rep["n_resumed"] + rep["n_captured"] == 120
    assert files_of(cut) == files_of(full)
    drift = list(csv.DictReader(open(cut / "drift.csv")))
    assert [int(r["scene_index"]) for r in drift] == list(range(0, 121, 10))
    assert list(drift[0]) == DRIFT_COLUMNS
    # other settings refuse to resume, naming what differs
    r = invoke(["rig", "capture", "--rig", rig, "--dataset", "digits", "--split", "all", "--limit", 60,
                "--frames", 2, "--seed", 1, "--out", cut, "--resume"])
    assert "different settings (seed)" in one_line_error(r)


def test_a_camera_that_stops_ends_the_run_naming_the_scene_and_resumes(tmp_path, digits):
    import cv2

    video = tmp_path / "short.avi"
    w = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"MJPG"), 30, (64, 48))
    for i in range(9):
        w.write(np.full((48, 64, 3), 20 * i, np.uint8))
    w.release()
    rig = write_rig(tmp_path / "rig.toml", camera={"backend": "opencv", "source": "short.avi", "model": None,
                                                   "discard": 1, "output_size": [8, 8], "format": "png"},
                    monitor={"every": 0})
    out = tmp_path / "set"
    r = invoke(["rig", "capture", "--rig", rig, "--dataset", "digits", "--split", "test", "--limit", 10,
                "--out", out])
    msg = one_line_error(r)
    assert "camera stopped answering at scene 4 (test/" in msg and "end of the file" in msg, msg
    assert len(read_index(out)) == 4  # 9 frames: 4 scenes of discard + grab, the 5th fails
    assert all((out / row.lensless).is_file() for row in read_index(out))
    r = invoke(["rig", "capture", "--rig", rig, "--dataset", "digits", "--split", "test", "--limit", 10,
                "--out", out, "--resume"])  # the file starts over: it fails again, later
    assert "at scene 8" in one_line_error(r)
    assert len(read_index(out)) == 8


def test_a_camera_that_hangs_times_out(tmp_path, digits, monkeypatch):
    from opticsfree.rig.camera import VirtualCamera

    rig = load_rig_config(write_rig(tmp_path / "rig.toml", camera={"timeout_s": 0.2}))
    real = VirtualCamera.read

    def slow(self, tag):
        if tag.position == 3:
            time.sleep(2)
        return real(self, tag)

    monkeypatch.setattr(VirtualCamera, "read", slow)
    with pytest.raises(CameraError, match=r"at scene 3 .*no frame within camera.timeout_s = 0.2 s"):
        rig_capture(digits, rig, tmp_path / "set", splits=["test"], limit=10)
    assert len(read_index(tmp_path / "set")) == 3


def test_drift_is_written_warned_once_and_plotted(tmp_path, digits):
    rig = load_rig_config(write_rig(tmp_path / "rig.toml", camera={"drift_shift_mm_per_scene": [0.003, 0.0]},
                                    monitor={"every": 10, "min_psnr_db": 30.0}))
    warnings = []
    rep = rig_capture(digits, rig, tmp_path / "set", splits=["test"], limit=60, on_warning=warnings.append)
    assert len(warnings) == 1 and "drift at scene" in warnings[0] and "min_psnr_db" in warnings[0]
    rows = list(csv.DictReader(open(tmp_path / "set" / "drift.csv")))
    psnr = [float(r["reference_psnr_db"]) for r in rows]
    assert len(rows) == 7 and psnr[1] > psnr[-1] and psnr[-1] < 30, psnr
    assert rep.warnings == warnings and open_capture_set(tmp_path / "set").manifest["rig"]["warnings"] == warnings
    steady = load_rig_config(write_rig(tmp_path / "steady.toml", monitor={"every": 10, "min_psnr_db": 30.0}))
    quiet = []
    rig_capture(digits, steady, tmp_path / "steady", splits=["test"], limit=60, on_warning=quiet.append)
    assert quiet == []
    r = invoke(["rig", "report", tmp_path / "set", "--json"])
    assert r.exit_code == 0, r.output
    s = json.loads(r.stdout)
    assert s["checks"] == 7 and s["min_reference_psnr_db"] < 30 and Path(s["figure"]).is_file()


# --------------------------------------------------------------------------- backends

def test_opencv_reads_an_image_sequence_as_rgb_crops_and_resizes(tmp_path):
    import cv2

    from opticsfree.rig.display import VirtualDisplay

    (tmp_path / "seq").mkdir()
    frames = [np.random.default_rng(i).integers(0, 256, (48, 64, 3), dtype=np.uint8) for i in range(3)]
    for i, f in enumerate(frames):
        cv2.imwrite(str(tmp_path / "seq" / f"{i:04d}.png"), f[..., ::-1])  # cv2 writes BGR
    write_rig(tmp_path / "rig.toml", camera={"backend": "opencv", "source": "seq/%04d.png", "discard": 0,
                                             "crop": [8, 4, 32, 32], "output_size": [16, 16], "exposure": 0.01,
                                             "model": None})
    rig = load_rig_config(tmp_path / "rig.toml")
    with VirtualDisplay(rig.display) as disp:
        cam = CAMERAS["opencv"](rig.camera, rig, disp)
        with cam:
            assert cam.settings["requested"]["exposure_s"] == 0.01
            assert "exposure" in cam.settings["not_locked"]  # a file has no exposure to lock
            got = [cam.read(FrameTag(0, "t", 0)), cam.capture(FrameTag(0, "t", 1))]
    assert np.array_equal(got[0], frames[0])
    crop = frames[1][4:36, 8:40].reshape(16, 2, 16, 2, 3).mean(axis=(1, 3))
    assert np.abs(got[1].astype(float) - crop).max() <= 1.0


def test_picamera2_is_an_optional_extra_with_a_one_line_hint(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "picamera2", None)  # import fails as when not installed
    write_rig(tmp_path / "rig.toml", camera={"backend": "picamera2", "model": None})
    r = invoke(["rig", "capture", "--rig", tmp_path / "rig.toml", "--dataset", "digits", "--out", tmp_path / "o"])
    assert "pip install 'opticsfree[pi]'" in one_line_error(r)


def test_picamera2_backend_sets_its_controls(tmp_path, monkeypatch):
    """The backend's calls against a stand-in Picamera2 (the library itself needs a Pi)."""
    import types

    calls = {}

    class FakePicamera2:
        camera_controls = {"AeEnable": 0, "ExposureTime": 0, "AnalogueGain": 0, "AwbEnable": 0}

        def create_video_configuration(self, main):
            calls["main"] = main
            return {"main": main}

        def configure(self, cfg):
            calls["configured"] = cfg

        def set_controls(self, controls):
            calls.setdefault("controls", {}).update(controls)

        def start(self):
            calls["started"] = True

        def capture_metadata(self):
            return {"ExposureTime": 1234, "AnalogueGain": 2.0}

        def capture_array(self, name):
            a = np.zeros((24, 32, 3), np.uint8)
            a[..., 0] = 200  # B in RGB888's memory order
            return a

        def stop(self):
            calls["stopped"] = True

        def close(self):
            pass

    monkeypatch.setitem(sys.modules, "picamera2", types.SimpleNamespace(Picamera2=FakePicamera2))
    from opticsfree.rig.display import VirtualDisplay

    write_rig(tmp_path / "rig.toml", camera={"backend": "picamera2", "resolution": [32, 24], "exposure": 0.002,
                                             "gain": 2.5, "white_balance": 5000.0, "model": None})
    rig = load_rig_config(tmp_path / "rig.toml")
    with VirtualDisplay(rig.display) as disp, CAMERAS["picamera2"](rig.camera, rig, disp) as cam:
        frame = cam.read(FrameTag(0, "t", 0))
        assert cam.settings["not_locked"] == {"ColourTemperature": "not a control of this camera"}
    assert calls["main"] == {"format": "RGB888", "size": (32, 24)}
    assert calls["controls"] == {"AeEnable": False, "ExposureTime": 2000, "AnalogueGain": 2.5, "AwbEnable": False}
    assert frame[0, 0].tolist() == [0, 0, 200] and calls["stopped"]


def test_pygame_under_the_dummy_driver_captures_what_the_virtual_display_does(tmp_path, digits, monkeypatch):
    monkeypatch.setenv("SDL_VIDEODRIVER", "dummy")
    a = rig_capture(digits, load_rig_config(write_rig(tmp_path / "a.toml", display={"interpolation": "bilinear"})),
                    tmp_path / "virtual", splits=["test"], limit=20).out
    b = rig_capture(digits, load_rig_config(write_rig(tmp_path / "b.toml", display={"backend": "pygame",
                                                                                     "interpolation": "bilinear"})),
                    tmp_path / "pygame", splits=["test"], limit=20).out
    fa, fb = files_of(a), files_of(b)
    assert fa.pop("rig.json") != fb.pop("rig.json")  # the plan names the display backend
    assert fa == fb  # every image and the index: the window showed the same pixels
    assert open_capture_set(b).manifest["rig"]["display"]["sdl_video_driver"] == "dummy"


XVFB_SCRIPT = r"""
import sys, time, numpy as np
from PIL import ImageGrab
from opticsfree.rig.config import DisplaySection
from opticsfree.rig.display import PygameDisplay, render
cfg = DisplaySection(backend="pygame", screen_px=(96, 80), pitch_mm=0.05, size_px=(48, 48),
                     size_mm=(2.4, 2.4), interpolation=sys.argv[2], background=40)
img = (np.random.default_rng(0).random((16, 16, 3)) * 255).astype(np.uint8)
with PygameDisplay(cfg) as d:
    d.show(img)
    time.sleep(0.3)
    d.show(img)
    time.sleep(0.1)
    assert d.describe()["sdl_video_driver"] == "x11"
    shot = np.asarray(ImageGrab.grab(xdisplay=sys.argv[1]))[:80, :96, :3]
np.save(sys.argv[3], np.stack([shot, render(img, cfg)]))
"""


@pytest.mark.parametrize("interpolation", ["nearest", "bilinear"])
def test_a_real_window_under_xvfb_shows_the_image_meant(tmp_path, interpolation):
    xvfb = shutil.which("Xvfb")
    if xvfb is None:
        pytest.skip("Xvfb is not installed (.ci/run installs it with apt where it can)")
    disp = f":{90 + os.getpid() % 400}"
    server = subprocess.Popen([xvfb, disp, "-screen", "0", "200x160x24", "-nolisten", "tcp"],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        time.sleep(1.0)
        env = {**ENV, "SDL_VIDEODRIVER": "x11", "DISPLAY": disp, "SDL_VIDEO_WINDOW_POS": "0,0"}
        script = tmp_path / "shot.py"
        script.write_text(XVFB_SCRIPT)
        r = subprocess.run([sys.executable, str(script), disp, interpolation, str(tmp_path / "shot.npy")],
                           env=env, capture_output=True, text=True, timeout=120)
        assert r.returncode == 0, r.stderr
        shot, want = np.load(tmp_path / "shot.npy")
        assert np.abs(shot.astype(int) - want.astype(int)).max() <= 1  # the screenshot is the render
        assert len(np.unique(shot.reshape(-1, 3), axis=0)) > 50
    finally:
        server.terminate()
        server.wait(10)


def test_render_places_and_scales_the_scene():
    cfg = load_rig_config(ROOT / "configs" / "rigs" / "virtual-seed.toml").display
    img = np.arange(32 * 32 * 3, dtype=np.uint8).reshape(32, 32, 3)
    screen = render(img, cfg)
    x, y = cfg.origin
    assert screen.shape == (128, 128, 3) and (x, y) == (32, 32)
    assert np.array_equal(screen[y:y + 64:2, x:x + 64:2], img) and (screen[:y] == 0).all()


# --------------------------------------------------------------------------- calibration

def _small_camera(tmp_path: Path) -> Path:
    """The `seed` preset read out on 16 x 16 pixels (a 16 x 16 calibration: 256 patterns)."""
    text = (ROOT / "src/opticsfree/optics/presets/seed.toml").read_text()
    path = tmp_path / "seed16.toml"
    path.write_text(text.replace("output_size = [32, 32]", "output_size = [16, 16]"))
    return path


@pytest.mark.parametrize("noise, repeats, bound", [(False, 1, 0.005), (True, 8, 0.05)])
def test_pattern_calibration_recovers_the_true_transfer_matrix(tmp_path, noise, repeats, bound):
    from opticsfree.reconstruction.calibration import load_calibration

    rig = load_rig_config(write_rig(tmp_path / "rig.toml", 16,
                                    camera={"model": str(_small_camera(tmp_path)), "noise": noise,
                                            "nuisances": False}))
    cal = rig_calibrate(rig, tmp_path / "camera.npz", size=16, repeats=repeats)
    rep = cal.to_json()
    assert rep["true_h_relative_error"] <= bound, rep["true_h_relative_error"]
    assert rep["held_out_relative_error"] < 3 * bound
    loaded = load_calibration(tmp_path / "camera.npz")
    assert tuple(loaded.operator.in_shape) == (3, 16, 16) and tuple(loaded.operator.out_shape) == (3, 16, 16)
    with np.load(tmp_path / "camera.npz") as z:
        assert ("noise_dark" in z) == (repeats >= 2)
    if noise:
        n = rep["noise"]
        assert n["read_noise_linear"] > 0 and n["white_noise_linear"] > n["read_noise_linear"]
        # the effective full well of the preset's sensor (4,500 e- over the 10-bit output) within 30%
        assert 0.7 * 4500 < n["effective_full_well_e"] < 1.3 * 4500, n


def test_a_tikhonov_inverse_from_the_measured_matrix_matches_the_true_one(tmp_path, digits):
    from opticsfree.reconstruction.calibration import load_calibration
    from opticsfree.reconstruction.sensor_model import camera_operator
    from opticsfree.reconstruction.tikhonov import fit_tikhonov, psnr

    cam_path = _small_camera(tmp_path)
    rig = load_rig_config(write_rig(tmp_path / "rig.toml", 16,
                                    camera={"model": str(cam_path), "noise": False}))
    rig_calibrate(rig, tmp_path / "camera.npz", size=16, repeats=1)
    scenes = torch.from_numpy(np.ascontiguousarray(
        np.repeat(digits.splits["train"].images[:600, ::2, ::2], 3, 3))).permute(0, 3, 1, 2)
    model = load_camera_config(cam_path)
    caps = Camera(model, (16, 16), 3).capture(scenes, torch.Generator().manual_seed(0))
    tr, va, te = slice(0, 400), slice(400, 500), slice(500, 600)
    cal = load_calibration(tmp_path / "camera.npz")
    op, sensor, gamma = camera_operator(model, 16, 3)
    scores = []
    for a, s in ((cal.operator, cal.sensor), (op, sensor)):
        s.exposure, s.scale = "per-image", 1.0
        t = fit_tikhonov(a, s, gamma, caps[tr], scenes[tr], caps[va], scenes[va])
        scores.append(float(psnr(t.reconstruct(caps[te]).float() / 255, scenes[te].float() / 255).mean()))
    assert abs(scores[0] - scores[1]) <= 0.3, scores


def test_calibrate_cli_reports_and_refuses_a_bad_size(tmp_path):
    rig = write_rig(tmp_path / "rig.toml", 16,
                    camera={"model": str(_small_camera(tmp_path))})
    r = invoke(["rig", "calibrate", "--rig", rig, "--size", 12, "--out", tmp_path / "c.npz"])
    assert "power of 2" in one_line_error(r) and not (tmp_path / "c.npz").exists()
    r = invoke(["rig", "calibrate", "--rig", rig, "--size", 8, "--repeats", 2, "--out", tmp_path / "c.npz", "--json"])
    assert r.exit_code == 0, r.output
    rep = json.loads(r.stdout)
    assert rep["n_patterns"] == 128 and rep["frames"] == 2 * (5 + 128 + 16) and (tmp_path / "c.npz").is_file()


# --------------------------------------------------------------------------- preview and live

def test_preview_headless_measures_and_sees_a_flip(tmp_path):
    rig = write_rig(tmp_path / "rig.toml", 16, camera={"noise": False})
    r = invoke(["rig", "preview", "--rig", rig, "--frames", 3, "--json"])
    assert r.exit_code == 0, r.output
    res = json.loads(r.stdout)
    assert len(res["frames"]) == 3 and res["summary"]["correlation"] > 0.999
    flipped = tmp_path / "direct.toml"
    flipped.write_text((ROOT / "src/opticsfree/optics/presets/seed.toml").read_text().replace(
        'readout = "rotate-180"', 'readout = "direct"'))
    r = invoke(["rig", "preview", "--rig", rig, "--frames", 1, "--json", "--camera", flipped])
    assert json.loads(r.stdout)["summary"]["correlation"] < 0.95
    f = res["frames"][0]
    assert abs(sum(f["histogram"]) - 1) < 1e-6 and 0 <= f["clipped_fraction"] <= 1


def test_the_panel_window_opens_under_the_dummy_driver(monkeypatch):
    monkeypatch.setenv("SDL_VIDEODRIVER", "dummy")
    from opticsfree.rig.preview import PanelWindow, alignment_target, render_panel

    img = alignment_target()
    panel = render_panel(img, img[::-1], ["frame 0", "correlation 1.000"])
    assert panel.shape[2] == 3 and panel.shape[0] > 192 and panel.shape[1] > 3 * 192
    win = PanelWindow()
    win.show(panel)
    win.close()


@pytest.fixture(scope="module")
def digit_run(tmp_path_factory):
    """A tiny run trained on the virtual rig's captures of digits."""
    from opticsfree.training import train

    root = tmp_path_factory.mktemp("live")
    rig = load_rig_config(write_rig(root / "rig.toml", monitor={"every": 0}))
    cs = rig_capture(load_dataset("digits"), rig, root / "set", splits=["train", "test"], limit=300).out
    run = root / "run"
    train({"captures": str(cs), "loss": "triplet", "epochs": 2, "backbone": "cnn4", "width": 4,
           "embedding_dim": 16, "batch_size": 50, "warmup_epochs": 0.5, "val_prototypes": 100, "threads": 1},
          run, show_progress=False)
    return run, root / "rig.toml"


def test_live_classifies_as_predict_does_and_fuses(tmp_path, digit_run):
    run, rig = digit_run
    frames = tmp_path / "frames"
    r = invoke(["live", run, "--rig", rig, "--dataset", "digits", "--split", "test", "--limit", 30, "--frames", 30,
                "--json", "--save-frames", frames, "--top", 2])
    assert r.exit_code == 0, r.output
    rows = [json.loads(line) for line in r.stdout.splitlines()]
    assert len(rows) == 30 and all(len(x["top"]) == 2 and x["frames_fused"] == 1 for x in rows)
    assert {"frames_per_s", "model_ms", "camera_ms", "label", "distance"} <= set(rows[0])
    p = invoke(["predict", run, frames, "--json", "--frames", 1])
    assert p.exit_code == 0, p.output
    by_path = {x["path"]: x for x in json.loads(p.stdout)["predictions"]}
    for x in rows:
        q = by_path[x["path"]]
        assert q["predicted"] == x["predicted"] and q["probability"] == pytest.approx(x["probability"], abs=1e-6)
    r = invoke(["live", run, "--rig", rig, "--dataset", "digits", "--split", "test", "--limit", 30, "--frames", 6,
                "--json", "--fuse", 3])
    fused = [json.loads(line) for line in r.stdout.splitlines()]
    assert [x["frames_fused"] for x in fused] == [1, 2, 3, 3, 3, 3]


def test_live_runs_an_exported_model(tmp_path, digit_run):
    pytest.importorskip("onnxruntime", reason="the export extra is not installed")
    run, rig = digit_run
    model = tmp_path / "model.onnx"
    assert invoke(["export", run, "--out", model]).exit_code == 0
    args = ["--rig", rig, "--dataset", "digits", "--split", "test", "--limit", 20, "--frames", 20, "--json"]
    a = [json.loads(x)["predicted"] for x in invoke(["live", run, *args]).stdout.splitlines()]
    b = [json.loads(x)["predicted"] for x in invoke(["live", model, *args]).stdout.splitlines()]
    assert len(a) == 20 and np.mean(np.array(a) == np.array(b)) >= 0.95
    r = invoke(["live", model, *args, "--prior", "train"])
    assert "prior baked in" in one_line_error(r)


def test_set_changes_a_rig_field_for_one_command(tmp_path):
    rig = write_rig(tmp_path / "rig.toml")
    r = invoke(["rig", "preview", "--rig", rig, "--frames", 1, "--json", "--set", "camera.noise=false"])
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout)["summary"]["correlation"] > 0.999  # noise off: the model's prediction
    r = invoke(["rig", "preview", "--rig", rig, "--frames", 1, "--json", "--set", "display.settle_s=-1"])
    assert "field 'display.settle_s'" in one_line_error(r)
    r = invoke(["rig", "preview", "--rig", rig, "--frames", 1, "--json", "--set", "settle_s=1"])
    assert "SECTION.FIELD" in one_line_error(r)
