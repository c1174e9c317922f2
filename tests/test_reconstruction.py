"""Reconstruction: building blocks, the four methods end to end, Tikhonov/calibration physics,
resume, and the CLI."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from typer.testing import CliRunner

import opticsfree.cli.reconstruct  # noqa: F401  registers `reconstruct` and `calibrate`
from opticsfree.captures import load_captures, open_capture_set
from opticsfree.captures.check import check_capture_set
from opticsfree.captures.simulate import simulate_capture_set
from opticsfree.captures.testing import make_capture_set
from opticsfree.cli.common import app
from opticsfree.data import load_dataset
from opticsfree.data.base import ImageDataset, Split
from opticsfree.data.split import split_scenes
from opticsfree.errors import ConfigError, OpticsfreeError
from opticsfree.optics import Camera, load_camera_config
from opticsfree.optics.config import CameraConfig
from opticsfree.optics.sensor import read_out, sensor_electrons
from opticsfree.reconstruction import (
    ImagePool,
    PatchDiscriminator,
    ResnetGenerator,
    UNet,
    apply_reconstruction,
    calibrate,
    camera_operator,
    constant_then_linear_decay,
    fit_affine,
    list_metrics,
    load_calibration,
    load_reconstructor,
    patch_layers_for,
    receptive_field,
    train_reconstruction,
)
from opticsfree.reconstruction import tikhonov as tk
from opticsfree.reconstruction.sensor_model import drive
from opticsfree.captures.linear import LAMBDA_GRID
from opticsfree.reconstruction.cyclegan import CycleGANConfig, CycleGANMethod, unpaired_batches

runner = CliRunner()


def train(*args, **kwargs):
    """train_reconstruction on one thread (much faster on a busy 2-core machine)."""
    return train_reconstruction(*args, threads=1, **kwargs)


def apply(*args, **kwargs):
    return apply_reconstruction(*args, threads=1, workers=1, **kwargs)

# tiny networks so that one epoch takes well under a second
TINY = {
    "cyclegan": {"width": 4, "n_blocks": 1, "d_width": 4, "pool_size": 3},
    "unet": {"width": 4, "global_features": 2},
    "bijective": {"width": 4, "forward_width": 4, "global_features": 2, "w_adv": 0.1},
    "tikhonov": {},
}


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def synth(tmp_path_factory):
    """A tiny synthetic RGB capture set (3 classes x 6 scenes per split, 16 px)."""
    return make_capture_set(tmp_path_factory.mktemp("synth") / "set", size=16, channels=3)


@pytest.fixture(scope="module")
def digits_set(tmp_path_factory):
    """A tiny simulated grayscale set: digits through the seed camera with an 8x8 sensor."""
    cam = load_camera_config("seed").replace(display={"supersample": 1},
                                             sensor={"supersample": 1, "output_size": (8, 8)})
    out = tmp_path_factory.mktemp("digits") / "set"
    return simulate_capture_set(load_dataset("digits"), cam, out, limit=40, seed=0, batch=64, workers=1)


def well_conditioned(channels_exposure: str = "calibrated") -> CameraConfig:
    """An 8x8 display 0.3 mm above an 8x8 sensor: H is close to diagonal (condition < 30)."""
    return CameraConfig(
        name="tiny-tikhonov", type="bare", seed=3,
        display=dict(width_mm=2.0, height_mm=2.0, gamma=2.2, black_level=0.01, backlight_falloff=0.05,
                     supersample=1),
        geometry=dict(gap_mm=0.3),
        pixel=dict(chief_ray_angle_deg=10.0, acceptance_deg=30.0),
        sensor=dict(width_mm=2.0, height_mm=2.0, output_size=(8, 8), supersample=1,
                    auto_exposure=channels_exposure,
                    colour_matrix=[[0.8, 0.15, 0.05], [0.1, 0.8, 0.1], [0.05, 0.2, 0.75]],
                    output_gamma=2.2, jpeg_quality=None))


def noiseless_capture(cfg: CameraConfig, images: torch.Tensor) -> torch.Tensor:
    """The camera's capture of ``images`` without shot/read noise or nuisances (uint8)."""
    cam = Camera(cfg, tuple(images.shape[-2:]), images.shape[1])
    irr = cam.irradiance(images)
    t = cam.exposure(irr)
    return read_out(sensor_electrons(irr, t, cfg.sensor, cam.fpn, noise=False), t, cfg.sensor)


def smooth_images(n: int, channels: int, size: int, seed: int = 0) -> torch.Tensor:
    """Smooth random uint8 images with values in 40..220 (no sensor saturation)."""
    g = torch.Generator().manual_seed(seed)
    x = F.interpolate(torch.rand(n, channels, size // 2, size // 2, generator=g), size=(size, size),
                      mode="bilinear", align_corners=False)
    return (40 + 180 * x).round().to(torch.uint8)


def flat(output: str) -> str:
    """CLI output without rich's box drawing and line wrapping (for substring checks)."""
    return " ".join(output.translate({ord(c): " " for c in "│╭╮╰╯─"}).split())


def psnr(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return tk.psnr(a.float() / 255, b.float() / 255)


# --------------------------------------------------------------------------- building blocks

def old_psnr(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """The hand-written per-image PSNR that torchmetrics replaced (reference values)."""
    mse = ((pred.double() - target.double()) ** 2).flatten(1).mean(1).clamp(min=1e-12)
    return 10 * torch.log10(1.0 / mse)


def test_psnr_is_per_image_and_equals_the_old_formula():
    from opticsfree.captures.quality import image_quality, summarise

    g = torch.Generator().manual_seed(0)
    x = torch.randint(0, 256, (5, 3, 8, 8), dtype=torch.uint8, generator=g)
    noise = torch.randn(x.shape, generator=g) * torch.tensor([2.0, 10, 30, 80, 0]).view(-1, 1, 1, 1)
    y = (x.float() + noise).round().clamp(0, 255).to(torch.uint8)   # last image: identical
    ref = old_psnr(y.float() / 255, x.float() / 255)
    got = tk.psnr(y.float() / 255, x.float() / 255)
    assert got.dtype == torch.float64 and got.shape == (5,)
    torch.testing.assert_close(got, ref, rtol=1e-7, atol=1e-6)
    assert got[-1].item() == pytest.approx(120.0)                       # MSE floor 1e-12, not inf
    q = image_quality(y, x)
    torch.testing.assert_close(q["psnr"], ref, rtol=1e-6, atol=1e-5)
    # a split's PSNR is the mean of the per-image values, not the PSNR of the mean MSE
    s = summarise(q)
    assert s["psnr"] == pytest.approx(float(ref.mean()), rel=1e-6)
    pooled = 10 * np.log10(1.0 / float(((y.double() - x.double()) / 255).pow(2).mean()))
    assert abs(s["psnr"] - pooled) > 1
    # grayscale against RGB (expanded) and 1-channel inputs keep the per-image shape
    assert tk.psnr(torch.rand(4, 1, 5, 5), torch.rand(4, 1, 5, 5)).shape == (4,)


def test_image_pool_returns_inputs_until_full_then_mixes_history():
    g = torch.Generator().manual_seed(0)
    pool = ImagePool(size=4, generator=g)
    first = torch.arange(4.0).view(4, 1, 1, 1)
    assert torch.equal(pool.query(first), first) and len(pool) == 4   # filling: inputs back
    swapped = 0
    for step in range(200):
        new = torch.full((1, 1, 1, 1), 100.0 + step)
        got = pool.query(new)
        assert len(pool) == 4                                           # bounded
        if got.item() != new.item():
            swapped += 1
            assert got.item() < 100 + step                              # an older image
        assert any(i.item() == 100 + step for i in pool.images) == (got.item() != new.item())
    assert 70 < swapped < 130                                           # probability 1/2
    state = pool.state_dict()
    other = ImagePool(4)
    other.load_state_dict(state)
    assert [i.item() for i in other.images] == [i.item() for i in pool.images]
    assert torch.equal(ImagePool(0).query(first), first)                # size 0: disabled


def old_factor(epoch: int, epochs: int, start: int | None = None) -> float:
    """The hand-written CycleGAN schedule that torch's schedulers replaced (reference values)."""
    s = epochs // 2 if start is None else start
    return 1.0 if epoch < s else max(0.0, 1.0 - (epoch - s + 1) / (epochs - s + 1))


def _epoch_lrs(epochs, start=None, resume_at=None, base=(0.1, 0.01)):
    """Per epoch, the rates of two optimizers (own base rates) under the schedule; with
    ``resume_at`` both are rebuilt there from their state dicts, as ``--resume`` does."""
    net = torch.nn.Linear(2, 2)
    opts = [torch.optim.Adam(net.parameters(), lr=b) for b in base]
    scheds = [constant_then_linear_decay(o, epochs, start) for o in opts]
    out = []
    for e in range(epochs):
        if e == resume_at:
            states = [o.state_dict() for o in opts]
            opts = [torch.optim.Adam(net.parameters(), lr=b) for b in base]
            for o, st in zip(opts, states):
                o.load_state_dict(st)
            scheds = [constant_then_linear_decay(o, epochs, start, epoch=e) for o in opts]
        out.append([o.param_groups[0]["lr"] for o in opts])
        for o, s in zip(opts, scheds):
            o.step()
            s.step()
    return out


@pytest.mark.parametrize("epochs,start", [(4, 2), (200, None), (20, None), (1, None), (5, 0), (5, 4),
                                          (5, 5), (3, 1)])
def test_constant_then_linear_decay_gives_the_old_rates(epochs, start):
    got = _epoch_lrs(epochs, start)
    want = [[b * old_factor(e, epochs, start) for b in (0.1, 0.01)] for e in range(epochs)]
    np.testing.assert_allclose(got, want, rtol=1e-12, atol=0)          # own base rate, same factor
    if epochs > 1:
        assert _epoch_lrs(epochs, start, resume_at=epochs // 2 + 1) == got   # resume: identical


def test_constant_then_linear_decay_hand_values_and_errors():
    got = [r[0] for r in _epoch_lrs(4, 2)]
    assert got == pytest.approx([0.1, 0.1, 0.1 * 2 / 3, 0.1 / 3], rel=1e-12)
    d = [r[0] for r in _epoch_lrs(200, None, base=(2e-4, 2e-4))]         # CycleGAN: 100 + 100
    assert d[99] == 2e-4 and d[100] == pytest.approx(2e-4 * (1 - 1 / 101)) and d[199] == pytest.approx(2e-4 / 101)
    opt = torch.optim.Adam(torch.nn.Linear(2, 2).parameters(), lr=0.1)
    with pytest.raises(ValueError, match="epochs"):
        constant_then_linear_decay(opt, 0)
    with pytest.raises(ValueError, match="decay_start"):
        constant_then_linear_decay(opt, 5, 6)


@pytest.mark.parametrize("size", [32, 64])
@pytest.mark.parametrize("cin,cout", [(1, 1), (3, 3), (1, 3), (3, 1)])
def test_generator_shapes_and_channels(size, cin, cout):
    g = ResnetGenerator(cin, cout, width=4, n_blocks=2)
    y = g(torch.rand(2, cin, size, size) * 2 - 1)
    assert y.shape == (2, cout, size, size) and y.abs().max() <= 1
    u = UNet(cin, cout, size, width=4, depth=3, global_features=2)
    assert u(torch.zeros(1, cin, size, size)).shape == (1, cout, size, size)
    with pytest.raises(ValueError):
        g(torch.rand(1, cin, 30, 30))                                   # not a multiple of 4


def test_patchgan_is_scaled_to_the_image_size():
    assert receptive_field(3) == 70 and receptive_field(2) == 34 and receptive_field(1) == 16
    assert [patch_layers_for(s) for s in (8, 16, 32, 64, 128, 256)] == [1, 1, 2, 3, 4, 4]
    for size in (8, 16, 32, 64):
        d = PatchDiscriminator(3, 8, patch_layers_for(size))
        out = d(torch.rand(2, 3, size, size))
        assert out.shape[:2] == (2, 1) and out.shape[-1] >= 2           # a map of patch scores
        assert d.patch_size <= max(2 * size, 16)


def test_threads_option_is_scoped():
    from opticsfree.utils.runtime import torch_threads

    with torch_threads(2):
        assert torch.get_num_threads() == 2
    assert torch.get_num_threads() == 1                                  # restored (fixture: 1)
    with pytest.raises(ConfigError):
        with torch_threads(0):
            pass


def test_unpaired_batches_are_independent_permutations():
    g = torch.Generator().manual_seed(0)
    a_all, b_all, aligned = [], [], 0
    for _ in range(20):
        batches = list(unpaired_batches(50, 50, 8, g))
        a = torch.cat([x for x, _ in batches])
        b = torch.cat([y for _, y in batches])
        assert sorted(a.tolist()) == list(range(50)) and sorted(b.tolist()) == list(range(50))
        aligned += int((a == b).sum())
        a_all.append(a)
        b_all.append(b)
    assert aligned < 60                                                  # chance level: 20 of 1000
    # a smaller domain is cycled through more permutations
    batches = list(unpaired_batches(10, 4, 3, g))
    assert sum(len(x) for x, _ in batches) == 10 and all(len(x) == len(y) for x, y in batches)


def test_holdout_is_stratified_by_scene():
    ids = [f"s{i // 2}" for i in range(60)]                             # 30 scenes x 2 frames
    labels = np.array([(i // 2) % 3 for i in range(60)])
    tr, va = split_scenes(ids, labels, 0.2, seed=1)
    assert not {ids[i] for i in tr} & {ids[i] for i in va}
    assert len(va) == 12 and np.bincount(labels[va]).tolist() == [4, 4, 4]
    tr2, va2 = split_scenes(ids, labels, 0.2, seed=1)
    assert np.array_equal(tr, tr2) and np.array_equal(va, va2)
    tr3, va3 = split_scenes(ids, labels, 0.2, seed=1, limit=9)
    assert len({ids[i] for i in np.concatenate([tr3, va3])}) == 9 and len(va3) == 6


def test_cyclegan_identity_only_when_shapes_match():
    dev = torch.device("cpu")
    g = torch.Generator().manual_seed(0)
    cfg = CycleGANConfig(width=4, n_blocks=1, d_width=4)
    assert CycleGANMethod(cfg, 3, 3, 16, dev, g).use_identity
    m = CycleGANMethod(cfg, 1, 3, 16, dev, g)
    assert not m.use_identity
    from opticsfree.utils.runtime import Runtime

    terms = m.train_step(torch.rand(2, 1, 16, 16) * 2 - 1, torch.rand(2, 3, 16, 16) * 2 - 1,
                         Runtime(dev, amp=False, channels_last=False).autocast)
    assert float(terms["identity"]) == 0.0 and float(terms["cycle"]) > 0


def test_residual_cyclegan_starts_as_the_identity_and_learns_a_correction(tmp_path, synth):
    dev = torch.device("cpu")
    x = torch.rand(2, 3, 16, 16) * 2 - 1
    m = CycleGANMethod(CycleGANConfig(width=4, n_blocks=1, d_width=4, residual=True), 3, 3, 16, dev,
                       torch.Generator().manual_seed(0))
    assert torch.equal(m.g_ab(x), x) and torch.equal(m.g_ba(x), x)       # identity before training
    plain = ResnetGenerator(3, 3, width=4, n_blocks=1)
    assert not torch.allclose(plain(x), x, atol=0.1)                      # not so without residual
    with pytest.raises(ValueError, match="residual generators"):
        plain.zero_correction()
    with pytest.raises(ValueError, match="same channels|as many input"):
        ResnetGenerator(1, 3, width=4, n_blocks=1, residual=True)
    with pytest.raises(ConfigError, match="residual=true"):
        CycleGANMethod(CycleGANConfig(width=4, n_blocks=1, d_width=4, residual=True), 1, 3, 16, dev,
                       torch.Generator().manual_seed(0))
    # trained and applied end to end, the saved generator is residual and has moved off the identity
    model = tmp_path / "model"
    train(synth, "cyclegan", model, epochs=1, options={**TINY["cyclegan"], "residual": True}, amp=False)
    rec = load_reconstructor(model)
    assert rec.net.residual
    captures = load_captures(synth, "test").lensless
    out = rec.reconstruct(captures)
    assert out.shape == captures.shape and not torch.equal(out, captures)


def test_cyclegan_front_end_starts_at_the_tikhonov_inverse(tmp_path, digits_set):
    """``front_end``: the model is the camera's Tikhonov inverse, then a residual generator; with a
    vanishing learning rate it reproduces the ``tikhonov`` method's reconstructions, trained it
    moves off them, and ``--camera`` is refused without it."""
    tik = tmp_path / "tik"
    train(digits_set, "tikhonov", tik)
    caps = load_captures(digits_set, "test").lensless
    ref = load_reconstructor(tik).reconstruct(caps)
    still = tmp_path / "still"
    train(digits_set, "cyclegan", still, epochs=1, amp=False,
          options={**TINY["cyclegan"], "front_end": True, "lr": 1e-12})
    rec = load_reconstructor(still)
    assert rec.fitted is not None and rec.net.residual
    assert (rec.reconstruct(caps).int() - ref.int()).abs().max() <= 1
    fit = json.loads((still / "config.json").read_text())["front_end_fit"]
    assert fit["operator"] == "camera" and fit["lambda"] == pytest.approx(load_reconstructor(tik).fitted.lam)
    moved = tmp_path / "moved"
    train(digits_set, "cyclegan", moved, epochs=1, amp=False, options={**TINY["cyclegan"], "front_end": True, "lr": 1e-2})
    assert (load_reconstructor(moved).reconstruct(caps).int() - ref.int()).abs().max() > 1
    with pytest.raises(ConfigError, match="--camera applies"):
        train(digits_set, "cyclegan", tmp_path / "no", epochs=1, camera="seed", options=TINY["cyclegan"])


# --------------------------------------------------------------------------- end to end

def _check_derived(derived, source, method):
    report = check_capture_set(derived)
    assert report.ok, report.problems
    m = open_capture_set(derived).manifest
    assert m["derived_from"]["path"] == str(source.resolve())
    assert m["derived_from"]["camera"] == open_capture_set(source).manifest["camera"]
    assert m["reconstruction"]["method"] == method and "model" in m["reconstruction"]
    assert "epoch" in m["reconstruction"]
    src_rows = open_capture_set(source).rows
    rows = open_capture_set(derived).rows
    assert [(r.split, r.id, r.label) for r in rows] == [(r.split, r.id, r.label) for r in src_rows]
    assert all(r.lensless.endswith(".png") for r in rows)
    r0 = rows[0]
    assert (derived / r0.original).read_bytes() == (source / r0.original).read_bytes()
    for split in ("train", "test"):
        d = load_captures(derived, split)
        s = load_captures(source, split)
        assert d.lensless.shape[1] == s.original.shape[1] and torch.equal(d.labels, s.labels)


@pytest.mark.parametrize("method", ["cyclegan", "unet", "bijective", "tikhonov"])
def test_every_method_trains_and_applies_rgb(tmp_path, synth, method):
    model = tmp_path / "model"
    train(synth, method, model, epochs=1, options=TINY[method], amp=False)
    rows = list_metrics(model)
    assert [r["epoch"] for r in rows] == [1] and np.isfinite(rows[0]["val_psnr"])
    assert (model / "samples" / "epoch_001.png").is_file() and (model / "model.pt").is_file()
    cfg = json.loads((model / "config.json").read_text())
    assert cfg["method"] == method and cfg["n_val"] > 0
    derived = apply(model, synth, tmp_path / "derived")
    _check_derived(derived, synth, method)
    rec = load_reconstructor(model)
    x = load_captures(synth, "test").lensless
    assert torch.equal(rec.reconstruct(x), load_captures(derived, "test").lensless)


@pytest.mark.parametrize("method", ["cyclegan", "unet", "bijective", "tikhonov"])
def test_every_method_on_simulated_grayscale(tmp_path, digits_set, method):
    model = tmp_path / "model"
    train(digits_set, method, model, epochs=1, options=TINY[method],
                         amp=True if method == "cyclegan" else False)
    rec = load_reconstructor(model)
    assert rec.in_channels == 1 and rec.out_channels == 1 and rec.size == 8
    derived = apply(model, digits_set, tmp_path / "derived")
    _check_derived(derived, digits_set, method)
    if method == "tikhonov":
        info = json.loads((model / "tikhonov.json").read_text())
        assert info["operator"] == "camera"                             # the manifest's camera
        q_rec = psnr(load_captures(derived, "test").lensless, load_captures(derived, "test").original)
        q_raw = psnr(load_captures(digits_set, "test").lensless, load_captures(digits_set, "test").original)
        assert q_rec.mean() > q_raw.mean() + 3                           # better than the raw capture


def test_apply_refuses_other_output_and_resumes(tmp_path, synth):
    model = tmp_path / "model"
    train(synth, "tikhonov", model)
    out = tmp_path / "derived"
    apply(model, synth, out)
    victim = sorted(out.rglob("*.png"))[-1]
    rel = victim.relative_to(out)
    data = victim.read_bytes()
    victim.unlink()
    (out / "manifest.json").unlink()
    apply(model, synth, out)                   # completes the set
    assert (out / rel).read_bytes() == data and check_capture_set(out).ok
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "x.txt").write_text("x")
    with pytest.raises(OpticsfreeError, match="not empty"):
        apply(model, synth, tmp_path / "busy")
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "model.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(OpticsfreeError, match="model.pt"):
        load_reconstructor(bad)


def test_multi_frame_grayscale_set_round_trips(tmp_path):
    src = make_capture_set(tmp_path / "set", size=8, channels=1, frames=2, per_class=4)
    model = tmp_path / "model"
    train(src, "unet", model, epochs=1, options={"width": 4, "global_features": 1}, amp=False)
    out = apply(model, src, tmp_path / "derived")
    assert check_capture_set(out).ok
    rows = open_capture_set(out).rows
    assert {r.frame for r in rows} == {0, 1} and rows[1].lensless.endswith("_f01.png")
    d = load_captures(out, "test")
    assert d.lensless.shape == (24, 1, 8, 8) and torch.equal(d.frames, load_captures(src, "test").frames)


def test_resume_continues_from_the_checkpoint_epoch(tmp_path, synth):
    opts = TINY["cyclegan"]
    straight = tmp_path / "straight"
    train(synth, "cyclegan", straight, epochs=2, options=opts, amp=False, seed=3)

    cut = tmp_path / "cut"

    def stop(row):
        if row["epoch"] == 1:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train(synth, "cyclegan", cut, epochs=2, options=opts, amp=False, seed=3, on_epoch=stop)
    assert [r["epoch"] for r in list_metrics(cut)] == [1]
    with pytest.raises(ConfigError, match="--resume"):
        train(synth, "cyclegan", cut, epochs=2, options=opts, amp=False, seed=3)
    with pytest.raises(ConfigError, match="seed"):
        train(synth, "cyclegan", cut, epochs=2, options=opts, amp=False, seed=4, resume=True)
    with pytest.raises(ConfigError, match=r"differs in option width\); recorded: option width=4"):
        train(synth, "cyclegan", cut, epochs=2, options={**opts, "width": 8}, amp=False, seed=3, resume=True)
    # a MODEL written by the older command line recorded its options as strings: still resumable
    cfg = json.loads((cut / "config.json").read_text())
    (cut / "config.json").write_text(json.dumps({**cfg, "options": {k: str(v) for k, v in opts.items()}}))
    ran = []
    train(synth, "cyclegan", cut, epochs=2, options=opts, amp=False, seed=3, resume=True,
                         on_epoch=lambda r: ran.append(r["epoch"]))
    assert ran == [2] and [r["epoch"] for r in list_metrics(cut)] == [1, 2]
    a = torch.load(straight / "model.pt", weights_only=True)
    b = torch.load(cut / "model.pt", weights_only=True)
    assert a["epoch"] == b["epoch"] == 2
    for k in a["state_dict"]:
        assert torch.equal(a["state_dict"][k], b["state_dict"][k]), k  # same as an uninterrupted run
    assert list_metrics(cut)[1]["g_gan"] == pytest.approx(list_metrics(straight)[1]["g_gan"])


def test_resume_of_a_model_without_the_shared_holdout_is_refused(tmp_path, synth):
    """A MODEL from before the hold-out was shared with the embedding training held out other
    scenes: continuing it would silently switch its validation scenes."""
    model = tmp_path / "m"

    def stop(row):
        raise KeyboardInterrupt

    kw = dict(epochs=2, options=TINY["unet"], amp=False, seed=1)
    with pytest.raises(KeyboardInterrupt):
        train(synth, "unet", model, on_epoch=stop, **kw)
    cfg = json.loads((model / "config.json").read_text())
    assert cfg["holdout"] == 2
    old = {k: v for k, v in cfg.items() if k != "holdout"}                # as an older version wrote it
    old["method_config"].pop("front_end")                                   # an option added since
    (model / "config.json").write_text(json.dumps(old))
    with pytest.raises(ConfigError, match=r"differs in holdout\); recorded: holdout=None; the validation "
                                          r"hold-out is not this version's .*add \"holdout\": 2 to config.json"):
        train(synth, "unet", model, resume=True, **kw)
    assert [r["epoch"] for r in list_metrics(model)] == [1]               # nothing touched
    (model / "config.json").write_text(json.dumps({**old, "holdout": 2}))  # the way out it names
    ran = []
    train(synth, "unet", model, resume=True, on_epoch=lambda r: ran.append(r["epoch"]), **kw)
    assert ran == [2]


def test_bad_options_are_refused(tmp_path, synth):
    with pytest.raises(ConfigError, match="unknown option.*nope for method unet.*known: width"):
        train(synth, "unet", tmp_path / "m", epochs=1, options={"nope": 1})
    with pytest.raises(ConfigError, match=r"option width for method unet: input should be a valid integer "
                                          r"\(got 'wide'\)"):
        train(synth, "unet", tmp_path / "m", epochs=1, options={"width": "wide"})
    with pytest.raises(ConfigError, match="unknown method"):
        train(synth, "diffusion", tmp_path / "m")
    with pytest.raises(ConfigError, match="option decay_start for method unet: .*0..3"):
        train(synth, "unet", tmp_path / "m", epochs=3, options={"decay_start": 4})
    with pytest.raises(ConfigError, match="amp must be True, False or None"):
        train(synth, "unet", tmp_path / "m", epochs=1, options=TINY["unet"], amp="off")
    assert not (tmp_path / "m").exists()                                # refused before any work


@pytest.mark.parametrize("method,options,match", [
    ("unet", {"width": "4"}, "option width for method unet: input should be a valid integer"),    # no str->int
    ("unet", {"width": 4.0}, "option width .*valid integer"),                                     # no float->int
    ("unet", {"width": True}, "option width .*valid integer"),                                    # no bool->int
    ("unet", {"width": 0}, "option width .*greater than or equal to 1"),
    ("cyclegan", {"lr": "1e-3"}, "option lr for method cyclegan: input should be a valid number"),
    ("cyclegan", {"beta1": 1.0}, "option beta1 .*less than 1"),
    ("bijective", {"decay_start": None, "w_adv": -1}, "option w_adv .*greater than or equal to 0"),
    ("unet", {"scene_augment": "rotate"}, "option scene_augment for method unet: .*'none', 'flip' or 'crop-flip'"),
    ("cyclegan", {"scene_copies": 0}, "option scene_copies .*greater than or equal to 1"),
    ("unet", {"scene_refresh": True}, "option scene_refresh for method unet: needs scene_augment flip or crop-flip"),
])
def test_method_options_are_strict_one_line_errors(method, options, match):
    from opticsfree.reconstruction.base import parse_options
    from opticsfree.reconstruction.train import DEEP_METHODS

    with pytest.raises(ConfigError, match=match) as e:
        parse_options(DEEP_METHODS[method].config_cls, options, method)
    assert "\n" not in str(e.value)


def test_method_options_defaults_and_ints_for_floats():
    from opticsfree.reconstruction.base import parse_options
    from opticsfree.reconstruction.bijective import BijectiveConfig
    from opticsfree.reconstruction.unet import UNetConfig

    cfg = parse_options(CycleGANConfig, {"lambda_cycle": 5, "width": 8, "decay_start": None}, "cyclegan")
    assert cfg.lambda_cycle == 5.0 and isinstance(cfg.lambda_cycle, float) and cfg.width == 8
    assert cfg.model_dump() == {**CycleGANConfig().model_dump(), "lambda_cycle": 5.0, "width": 8}
    # the documented defaults (docs/reconstruction.md)
    assert (CycleGANConfig().lr, CycleGANConfig().batch_size, CycleGANConfig().epochs) == (2e-4, 32, 20)
    assert (UNetConfig().lr, UNetConfig().batch_size, UNetConfig().epochs) == (1e-3, 32, 30)
    assert (BijectiveConfig().w_cyc, BijectiveConfig().d_lr) == (0.5, 2e-4)


def test_unet_trains_on_scenes_augmented_through_the_camera(tmp_path, digits_set, synth, monkeypatch):
    """scene_augment adds re-captured flipped scenes to the training pairs only: the hold-out the
    model is validated on is the plain run's, and a set without a simulated camera is refused."""
    from opticsfree.reconstruction.unet import UNetMethod

    seen = {}
    real = UNetMethod.init_from_data

    def spy(self, lensless, original, val_lensless, val_original, seed):
        seen[len(seen)] = (lensless.clone(), original.clone(), val_original.clone())
        return real(self, lensless, original, val_lensless, val_original, seed)

    monkeypatch.setattr(UNetMethod, "init_from_data", spy)
    opts = {**TINY["unet"], "front_end": True}
    train(digits_set, "unet", tmp_path / "plain", epochs=1, options=opts)
    train(digits_set, "unet", tmp_path / "flip", epochs=1, options={**opts, "scene_augment": "flip"})
    (cap0, orig0, val0), (cap1, orig1, val1) = seen[0], seen[1]
    n = len(orig0)
    assert len(orig1) == 2 * n and torch.equal(orig1[:n], orig0) and torch.equal(cap1[:n], cap0)
    assert torch.equal(orig1[n:], orig0.flip(-1))                         # the mirrored scenes ...
    assert not torch.equal(cap1[n:], cap0.flip(-1))                        # ... captured, not mirrored captures
    assert torch.equal(val1, val0)                                         # validation untouched
    cfg = json.loads((tmp_path / "flip" / "config.json").read_text())
    assert (cfg["n_train"], cfg["n_train_augmented"]) == (2 * n, n)
    assert cfg["method_config"]["scene_augment"] == "flip" and cfg["method_config"]["scene_copies"] == 1
    with pytest.raises(ConfigError, match="scene augmentation needs a simulated capture set"):
        train(synth, "unet", tmp_path / "synthetic", epochs=1, options={**TINY["unet"], "scene_augment": "flip"})


def test_scene_refresh_draws_new_copies_each_epoch_and_resumes_to_the_same(tmp_path, digits_set, monkeypatch):
    """scene_refresh: before every epoch after the first, the captured pairs are followed by new
    augmented copies (other flips and shifts, other sensor noise); a run stopped after one epoch
    and resumed draws the same copies as the uninterrupted run and ends with the same weights."""
    import opticsfree.reconstruction.train as rt

    made = []
    real = rt.augment_scenes

    def spy(split, camera, mode, copies, seed):
        out = real(split, camera, mode, copies, seed)
        made.append(out)
        return out

    monkeypatch.setattr(rt, "augment_scenes", spy)
    opts = {**TINY["unet"], "front_end": True, "scene_augment": "crop-flip", "scene_refresh": True}
    kw = dict(epochs=2, options=opts, amp=False, seed=2)
    straight = train(digits_set, "unet", tmp_path / "straight", **kw)
    assert len(made) == 2                                                  # epoch 1's copies, then new ones
    first, second = made
    n = len(first) // 2
    assert torch.equal(first.original[:n], second.original[:n])            # the captured pairs stay
    assert torch.equal(first.lensless[:n], second.lensless[:n])
    assert torch.equal(first.labels, second.labels) and first.ids == second.ids  # labels kept
    assert not torch.equal(first.original[n:], second.original[n:])        # new shifted/flipped scenes
    assert not torch.equal(first.lensless[n:], second.lensless[n:])

    made.clear()
    cut = tmp_path / "cut"

    def stop(row):
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train(digits_set, "unet", cut, on_epoch=stop, **kw)
    train(digits_set, "unet", cut, resume=True, **kw)
    assert torch.equal(made[-1].original, second.original) and torch.equal(made[-1].lensless, second.lensless)
    a, b = torch.load(straight / "model.pt", weights_only=False), torch.load(cut / "model.pt", weights_only=False)
    for k in a["state_dict"]:
        assert torch.equal(a["state_dict"][k], b["state_dict"][k]), k


# --------------------------------------------------------------------------- physics

@pytest.mark.parametrize("channels", [1, 3])
def test_tikhonov_recovers_an_image_from_a_noiseless_capture(channels):
    cfg = well_conditioned("calibrated")
    op, sensor, gamma = camera_operator(cfg, 8, channels)
    spec = op.spectrum()
    assert float(spec.values.max() / spec.values.min()) < 100           # well conditioned
    x = smooth_images(6, channels, 8)
    cap = noiseless_capture(cfg, x)
    model = tk.build_model(op, sensor, gamma, 1e-8)
    rec = model.reconstruct(cap)
    assert rec.shape == x.shape
    assert psnr(rec, x).min() > 30
    # the raw capture is far from the image; a strong regulariser blurs it
    assert psnr(tk.build_model(op, sensor, gamma, 10.0).reconstruct(cap), x).mean() < psnr(rec, x).mean() - 5


def test_tikhonov_per_image_exposure_is_exact_up_to_brightness():
    cfg = well_conditioned("per-image")
    op, sensor, gamma = camera_operator(cfg, 8, 1)
    x = smooth_images(4, 1, 8, seed=1)
    cap = noiseless_capture(cfg, x)
    # with the true mean irradiance of each image the inverse is exact
    for i in range(len(x)):
        sensor.scale = float(op.apply(drive(x[i:i + 1], gamma)).mean())
        rec = tk.build_model(op, sensor, gamma, 1e-8).reconstruct(cap[i:i + 1])
        assert psnr(rec, x[i:i + 1]).item() > 30


def test_fit_affine_recovers_a_known_matrix():
    g = torch.Generator().manual_seed(0)
    a_true = torch.randn(12, 20, generator=g, dtype=torch.float64)
    c_true = torch.randn(12, generator=g, dtype=torch.float64)
    x = torch.rand(300, 20, generator=g, dtype=torch.float64)
    xv = torch.rand(40, 20, generator=g, dtype=torch.float64)
    a, c, rep = fit_affine(x, x @ a_true.T + c_true, xv, xv @ a_true.T + c_true)
    assert torch.allclose(a, a_true, atol=1e-5) and torch.allclose(c, c_true, atol=1e-5)
    assert rep["val_relative_error"] < 1e-5
    noisy = x @ a_true.T + c_true + 0.01 * torch.randn(300, 12, generator=g, dtype=torch.float64)
    a2, _, rep2 = fit_affine(x, noisy, xv, xv @ a_true.T + c_true)
    assert (a2 - a_true).norm() / a_true.norm() < 0.02 and rep2["val_relative_error"] < 0.02


def test_fit_affine_expanded_sweep_equals_the_direct_sweep():
    g = torch.Generator().manual_seed(4)
    a_true = torch.randn(15, 25, generator=g, dtype=torch.float64)
    x = torch.rand(200, 25, generator=g, dtype=torch.float64)
    xv = torch.rand(60, 25, generator=g, dtype=torch.float64)
    noise = lambda n: 0.5 * torch.randn(n, 15, generator=g, dtype=torch.float64)  # noqa: E731
    y, yv = x @ a_true.T + noise(200), xv @ a_true.T + noise(60)
    a, c, rep = fit_affine(x, y, xv, yv)
    assert rep["val_relative_error"] > 1e-2                   # the expanded path, not the fallback
    # reference: every strength fitted and scored directly
    xm, ym = x.mean(0), y.mean(0)
    gram = (x - xm).T @ (x - xm)
    mean_e = float(torch.linalg.eigvalsh(gram).clamp(min=0).mean())
    spread = float((yv - yv.mean(0)).norm())
    ref = []
    for rel in LAMBDA_GRID:
        w = torch.linalg.solve(gram + rel * mean_e * torch.eye(25, dtype=torch.float64), (x - xm).T @ (y - ym))
        ref.append(float(((xv - xm) @ w + ym - yv).norm()) / spread)
    got = [r["val_relative_error"] for r in rep["table"]]
    assert np.allclose(got, ref, rtol=1e-8, atol=1e-10)
    assert rep["lambda_relative"] == LAMBDA_GRID[int(np.argmin(ref))]
    assert rep["val_relative_error"] == pytest.approx(min(ref), rel=1e-10)
    train_ref = float((x @ a.T + c - y).norm() / (y - ym).norm())
    assert rep["train_relative_error"] == pytest.approx(train_ref, rel=1e-8)


def test_calibrate_recovers_the_camera_transfer_matrix(tmp_path):
    cfg = well_conditioned("calibrated").replace(
        sensor={"full_well_e": 2.0e5, "read_noise_e": 0.0, "prnu": 0.0, "dsnu_e": 0.0,
                "dark_current_e_per_s": 0.0, "adc_bits": 14},
        nuisance={"shift_std_mm": 0.0, "flicker_std": 0.0})
    rng = np.random.default_rng(0)
    n = 400
    images = rng.integers(30, 226, size=(n, 8, 8, 1), dtype=np.uint8)
    labels = np.arange(n) % 2
    ds = ImageDataset("random", "test", ["a", "b"],
                      {"train": Split(images, labels, [f"r{i:04d}" for i in range(n)])})
    root = simulate_capture_set(ds, cfg, tmp_path / "set", seed=0, workers=1)
    rep = calibrate(root, tmp_path / "camera.npz")
    assert rep["exposure"] == "fixed" and rep["display_gamma"] == 2.2 and rep["n_val"] == 40
    assert rep["val_relative_error"] < 0.1                             # shot noise and 8-bit PNG
    cal = load_calibration(tmp_path / "camera.npz")
    # the fitted map is the physical one, up to the fixed exposure scale
    op, sensor, _ = camera_operator(cfg, 8, 1)
    a_phys = op.spatial * op.colour.item() / sensor.scale
    a_fit = cal.operator.dense
    assert ((a_fit - a_phys).norm() / a_phys.norm()).item() < 0.1
    # and Tikhonov can use it
    model = tmp_path / "model"
    train(root, "tikhonov", model, camera=tmp_path / "camera.npz")
    assert json.loads((model / "tikhonov.json").read_text())["operator"] == "calibration"
    assert list_metrics(model)[0]["val_psnr"] > 25


# --------------------------------------------------------------------------- CLI

def test_cli_train_apply_calibrate(tmp_path, synth):
    model, derived, npz = tmp_path / "model", tmp_path / "derived", tmp_path / "camera.npz"
    r = runner.invoke(app, ["reconstruct", "train", str(synth), "--method", "unet", "--epochs", "1",
                            "--out", str(model), "--no-amp", "--threads", "1",
                            "--set", "width=4", "--set", "global-features=2", "--set", "ssim_weight=0.5"])
    assert r.exit_code == 0, r.output
    cfg = json.loads((model / "config.json").read_text())
    assert cfg["method_config"]["width"] == 4 and cfg["method_config"]["global_features"] == 2
    assert cfg["method_config"]["ssim_weight"] == 0.5 and cfg["amp"] == "off"
    # the default recipe (best) gives the U-Net's measured settings; --set and --epochs win, and
    # scene augmentation is left out on a set without a simulated camera (said on stderr)
    assert cfg["options"] == {"front_end": True, "width": 4, "global_features": 2, "ssim_weight": 0.5}
    assert "the recipe's scene_augment left out" in r.stderr
    r = runner.invoke(app, ["reconstruct", "train", str(synth), "--method", "unet", "--epochs", "1",
                            "--out", str(tmp_path / "plain"), "--no-amp", "--threads", "1", "--recipe", "plain",
                            "--set", "width=4"])
    assert r.exit_code == 0, r.output
    assert json.loads((tmp_path / "plain" / "config.json").read_text())["options"] == {"width": 4}
    for bad, needle in [("nope", "unknown reconstruction recipe 'nope' (bundled: best, plain"),
                        (str(tmp_path / "r.toml"), "[method.gan]: unknown method")]:
        (tmp_path / "r.toml").write_text('name = "r"\n[method.gan]\nwidth = 3\n')
        r = runner.invoke(app, ["reconstruct", "train", str(synth), "--method", "unet", "--recipe", bad,
                                "--out", str(tmp_path / "never")])
        assert r.exit_code == 2 and needle in r.stderr and r.stderr.count("\n") == 1, r.output
    r = runner.invoke(app, ["reconstruct", "apply", str(model), str(synth), "--out", str(derived),
                            "--workers", "1", "--threads", "1"])
    assert r.exit_code == 0, r.output
    assert check_capture_set(derived).ok
    r = runner.invoke(app, ["calibrate", str(synth), "--out", str(npz), "--json"])
    assert r.exit_code == 0, r.output
    rep = json.loads(r.stdout)
    assert rep["in_shape"] == [3, 16, 16] and rep["val_relative_error"] < 1 and npz.is_file()
    r = runner.invoke(app, ["reconstruct", "train", str(synth), "--method", "gan", "--out", str(tmp_path / "x")])
    assert r.exit_code == 2 and "'gan' is not one of 'cyclegan', 'unet', 'bijective', 'tikhonov'" in flat(r.output)
    r = runner.invoke(app, ["reconstruct", "train", str(synth), "--method", "unet", "--out", str(model)])
    assert r.exit_code == 2 and "--resume" in r.output
    r = runner.invoke(app, ["reconstruct", "apply", str(tmp_path / "nomodel"), str(synth), "--out",
                            str(tmp_path / "y")])
    assert r.exit_code == 2 and "model.pt" in r.output
    assert not os.path.exists(tmp_path / "y")


def test_cli_reconstruct_train_options_and_choices_are_checked_before_work(tmp_path, synth):
    out = tmp_path / "never"
    base = ["reconstruct", "train", str(synth), "--method", "unet", "--out", str(out), "--threads", "1"]
    for extra, needle in [
        (["--set", "width=wide"], "option width for method unet: input should be a valid integer (got 'wide')"),
        (["--set", "nope=1"], "unknown option(s) nope for method unet"),
        (["--set", "width"], "--set 'width': expected KEY=VALUE"),
        (["--set", "epochs=2", "--epochs", "3"], "--set epochs: given twice"),
        (["--amp", "off"], "Got unexpected extra argument"),                    # --amp is a switch now
        (["--device", "tpu"], "'tpu' is not one of 'cpu', 'cuda'"),
    ]:
        r = runner.invoke(app, base + extra)
        assert r.exit_code == 2, (extra, r.output)
        assert needle in flat(r.output), (extra, r.output)
    assert not out.exists()
    r = runner.invoke(app, ["calibrate", str(synth), "--out", str(tmp_path / "c.npz"), "--exposure", "auto"])
    assert r.exit_code == 2 and "'auto' is not one of 'per-image', 'fixed'" in flat(r.output)


def test_cli_choices_written_out_agree_with_the_library():
    from opticsfree.bayes.names import LIKELIHOODS
    from opticsfree.bayes.model import SPLITS
    from opticsfree.cli import bayes as cli_bayes
    from opticsfree.cli import reconstruct as cli_rec
    from opticsfree.reconstruction.base import METHODS

    assert cli_rec.Method.__args__ == METHODS
    assert cli_bayes.Split.__args__ == SPLITS
    assert cli_bayes.Likelihood.__args__ == ("auto", *LIKELIHOODS)


def test_resolve_amp_switch_and_auto(monkeypatch):
    from opticsfree.utils import runtime

    cpu = torch.device("cpu")
    assert runtime.resolve_amp(True, cpu) is True and runtime.resolve_amp(False, cpu) is False
    for native in (True, False):
        monkeypatch.setattr(runtime, "cpu_has_bf16", lambda: native)
        assert runtime.resolve_amp(None, cpu) is native                   # auto: native bf16 only
    with pytest.raises(ConfigError):
        runtime.resolve_amp("on", cpu)


def test_calibration_file_layout_is_stable(tmp_path):
    """camera.npz as docs/reconstruction.md describes it (arrays A and c, meta as JSON text, no
    pickle) loads, and save_calibration writes that layout back."""
    from opticsfree.reconstruction.calibration import CALIBRATION_VERSION, save_calibration

    a = np.arange(6, dtype=np.float32).reshape(3, 2)           # (C P, Cin Q)
    c = np.array([[0.5, 0.25, 0.125]], dtype=np.float32)       # (C, P)
    meta = {"version": 1, "display_gamma": 2.0, "in_shape": [1, 1, 2], "out_shape": [1, 1, 3],
            "sensor": {"output_gamma": 2.4, "exposure": "per-image", "scale": 0.3, "tau": None,
                       "tmax_scale": None},
            "report": {"n_train": 4, "lambda_relative": 0.01}}
    path = tmp_path / "camera.npz"
    np.savez(path, A=a, c=c, meta=np.array(json.dumps(meta)))
    cal = load_calibration(path)
    assert torch.equal(cal.operator.dense, torch.from_numpy(a).double())
    assert torch.equal(cal.operator.bias, torch.from_numpy(c).double())
    assert cal.operator.in_shape == (1, 1, 2) and cal.operator.out_shape == (1, 1, 3)
    assert (cal.sensor.output_gamma, cal.sensor.exposure, cal.sensor.scale) == (2.4, "per-image", 0.3)
    assert cal.display_gamma == 2.0 and cal.report == meta["report"]

    again = save_calibration(tmp_path / "again.npz", cal)
    with np.load(again, allow_pickle=False) as z:
        assert sorted(z.files) == ["A", "c", "meta"]
        np.testing.assert_array_equal(z["A"], a)
        written = json.loads(str(z["meta"]))
    assert written["version"] == CALIBRATION_VERSION == 1
    assert written["sensor"] == meta["sensor"] and written["in_shape"] == meta["in_shape"]


# --------------------------------------------------------------------------- ensembles

def test_member_option_changes_weights_and_batches_but_keeps_the_holdout(tmp_path, synth):
    """--set member=K: other initial weights, batch order and copies; the same hold-out and the
    same front-end fit; member 0 is the plain run (bit-identical weights)."""
    from opticsfree.reconstruction.base import member_seed

    opts = {**TINY["unet"], "front_end": True}
    plain = train(synth, "unet", tmp_path / "plain", epochs=1, options=opts, amp=False)
    zero = train(synth, "unet", tmp_path / "zero", epochs=1, options={**opts, "member": 0}, amp=False)
    one = train(synth, "unet", tmp_path / "one", epochs=1, options={**opts, "member": 1}, amp=False)
    sd = {k: torch.load(p / "model.pt", weights_only=False)["state_dict"] for k, p in
          (("plain", plain), ("zero", zero), ("one", one))}
    assert all(torch.equal(sd["plain"][k], sd["zero"][k]) for k in sd["plain"])
    learned = [k for k in sd["plain"] if not k.startswith("front.")]
    assert any(not torch.equal(sd["plain"][k], sd["one"][k]) for k in learned)
    assert all(torch.equal(sd["plain"][k], sd["one"][k]) for k in sd["plain"] if k.startswith("front."))
    cfg = {k: json.loads((p / "config.json").read_text()) for k, p in (("plain", plain), ("one", one))}
    assert cfg["one"]["method_config"]["member"] == 1 and cfg["plain"]["n_val"] == cfg["one"]["n_val"]
    assert cfg["plain"]["front_end_fit"] == cfg["one"]["front_end_fit"]
    assert member_seed(7, 0) == 7 and member_seed(7, 1) != member_seed(7, 2) != 7
    with pytest.raises(ConfigError, match="member"):
        train(synth, "unet", tmp_path / "neg", epochs=1, options={**opts, "member": -1}, amp=False)


@pytest.fixture(scope="module")
def members(tmp_path_factory, synth):
    """Two tiny U-Net members of one ensemble (member 0 and 1, the same hold-out)."""
    root = tmp_path_factory.mktemp("members")
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    made = [train(synth, "unet", root / f"m{k}", epochs=1, options={**TINY["unet"], "member": k}, amp=False)
            for k in (0, 1)]
    torch.set_num_threads(old)
    return made


def test_ensemble_averages_the_members_before_rounding_and_reports_validation(tmp_path, synth, members):
    from opticsfree.reconstruction.base import to_model, to_uint8
    from opticsfree.reconstruction.combine import ensemble_reconstruction
    from opticsfree.reconstruction.ensemble import EnsembleNet, ensemble_mean
    from opticsfree.reconstruction.train import _val_quality

    out = tmp_path / "ens"
    rep = ensemble_reconstruction(members, out, threads=1)
    ens = load_reconstructor(out)
    assert isinstance(ens.net, EnsembleNet) and len(ens.net.members) == 2 and ens.method == "unet"
    parts = [load_reconstructor(m) for m in members]
    x = load_captures(synth, "test").lensless
    with torch.no_grad():
        want = to_uint8((parts[0].net(to_model(x)) + parts[1].net(to_model(x))) / 2)
    assert torch.equal(ens.reconstruct(x), want)                            # (G1 + G2) / 2, then rounded
    singles = [p.reconstruct(x) for p in parts]
    assert not torch.equal(singles[0], singles[1]) and not torch.equal(want, singles[0])
    # the validation report: every member and the mean, measured on the shared hold-out
    cfg = json.loads((out / "config.json").read_text())
    tr, va = split_scenes(load_captures(synth, "train").ids, load_captures(synth, "train").labels, 0.1, 0)
    val = load_captures(synth, "train").subset(torch.as_tensor(va))
    assert rep.n_val == cfg["n_val"] == len(val) > 0
    q = _val_quality(ens.reconstruct(val.lensless), val.original)
    assert rep.ensemble.val_psnr == pytest.approx(q["val_psnr"]) and rep.ensemble.val_ssim == pytest.approx(q["val_ssim"])
    q0 = _val_quality(parts[0].reconstruct(val.lensless), val.original)
    assert rep.members[0].val_psnr == pytest.approx(q0["val_psnr"])
    assert [m["model_sha256"] for m in cfg["members"]] != [None, None] and cfg["validation"][-1]["val_psnr"] == pytest.approx(q["val_psnr"])
    # a derived set through `reconstruct apply` holds the ensemble's reconstructions
    derived = apply(out, synth, tmp_path / "derived")
    assert torch.equal(load_captures(derived, "test").lensless, want)
    # the module form equals the functional form
    with torch.no_grad():
        a = EnsembleNet([p.net for p in parts])(to_model(x))
        b = ensemble_mean([p.net(to_model(x)) for p in parts])
    assert torch.equal(a, b)


def test_ensemble_refuses_bad_members_with_one_line_errors(tmp_path, synth, members):
    from opticsfree.reconstruction.combine import ensemble_reconstruction
    from opticsfree.reconstruction.ensemble import EnsembleNet, ensemble_mean

    with pytest.raises(ConfigError, match="at least 2"):
        ensemble_reconstruction(members[:1], tmp_path / "a", threads=1)
    with pytest.raises(ConfigError, match="the same model"):
        ensemble_reconstruction([members[0], members[0] / "model.pt"], tmp_path / "b", threads=1)
    other = train(synth, "unet", tmp_path / "seed1", epochs=1, options=TINY["unet"], amp=False, seed=1)
    with pytest.raises(ConfigError, match=r"seed 1 differs .* validation hold-out"):
        ensemble_reconstruction([members[0], other], tmp_path / "c", threads=1)
    tik = train(synth, "tikhonov", tmp_path / "tik")
    with pytest.raises(ConfigError, match="tikhonov model has no network"):
        ensemble_reconstruction([members[0], tik], tmp_path / "d", threads=1)
    ens = tmp_path / "ens"
    ensemble_reconstruction(members, ens, threads=1)
    with pytest.raises(ConfigError, match="not a trained network"):
        ensemble_reconstruction([members[0], ens], tmp_path / "e", threads=1)
    with pytest.raises(ConfigError, match="already holds"):
        ensemble_reconstruction(members, ens, threads=1)
    for name in "abcde":
        assert not (tmp_path / name).exists()                               # nothing half-written
    assert not list(tmp_path.glob(".*.tmp"))
    with pytest.raises(ValueError, match="at least 2"):
        EnsembleNet([UNet(3, 3, 16, width=4)])
    with pytest.raises(ValueError, match="differ in shape"):
        ensemble_mean([torch.zeros(1, 3, 4, 4), torch.zeros(1, 1, 4, 4)])


def test_ensemble_with_mirror_averages_the_mirrored_reconstructions_and_reports_the_gain(tmp_path, synth,
                                                                                        members):
    """--mirror: (1/2K) sum_k (G_k(y) + F G_k(F y)), F the left-right flip; the report's unmirrored
    row is the plain mean; one model is enough; apply writes the mirrored mean."""
    from opticsfree.reconstruction.base import to_model, to_uint8
    from opticsfree.reconstruction.combine import ensemble_reconstruction

    rep = ensemble_reconstruction(members, tmp_path / "mir", threads=1, mirror=True)
    plain = ensemble_reconstruction(members, tmp_path / "plain", threads=1)
    ens = load_reconstructor(tmp_path / "mir")
    parts = [load_reconstructor(m) for m in members]
    x = load_captures(synth, "test").lensless
    y = to_model(x)
    with torch.no_grad():
        direct = [p.net(y) for p in parts]
        mirrored = [p.net(y.flip(-1)).flip(-1) for p in parts]
        got = ens.net(y)
    assert torch.allclose(got, (direct[0] + direct[1] + mirrored[0] + mirrored[1]) / 4, atol=1e-6)
    assert not torch.allclose(mirrored[0], direct[0], atol=1e-3)             # the flips are not a no-op
    assert torch.equal(ens.reconstruct(x), to_uint8(got))
    assert torch.equal(load_captures(apply(tmp_path / "mir", synth, tmp_path / "derived"), "test").lensless,
                       to_uint8(got))
    assert rep.unmirrored is not None and plain.unmirrored is None
    assert rep.unmirrored.val_psnr == pytest.approx(plain.ensemble.val_psnr)
    assert rep.unmirrored.val_ssim == pytest.approx(plain.ensemble.val_ssim)
    assert rep.ensemble.val_psnr != pytest.approx(plain.ensemble.val_psnr)
    cfg = json.loads((tmp_path / "mir" / "config.json").read_text())
    assert cfg["mirror"] is True and cfg["validation"][-2]["val_psnr"] == pytest.approx(rep.unmirrored.val_psnr)
    assert rep.to_json()["mirror"] is True and "unmirrored" in rep.to_json()
    assert "unmirrored" not in plain.to_json() and plain.to_json()["mirror"] is False
    # one model and its mirrored use
    one = ensemble_reconstruction(members[:1], tmp_path / "one", threads=1, mirror=True)
    assert one.unmirrored.val_psnr == pytest.approx(one.members[0].val_psnr)
    with torch.no_grad():
        got1 = load_reconstructor(tmp_path / "one").net(y)
    assert torch.allclose(got1, (direct[0] + mirrored[0]) / 2, atol=1e-6)


def test_cli_reconstruct_ensemble(tmp_path, synth, members):
    out = tmp_path / "ens"
    r = runner.invoke(app, ["reconstruct", "ensemble", str(members[0]), str(members[1]), "--out", str(out),
                            "--threads", "1", "--json"])
    assert r.exit_code == 0, r.output
    rep = json.loads(r.stdout)
    assert [m["model"] for m in rep["members"]] == [str(members[0] / "model.pt"), str(members[1] / "model.pt")]
    assert rep["n_val"] > 0 and np.isfinite(rep["ensemble"]["val_psnr"]) and (out / "model.pt").is_file()
    r = runner.invoke(app, ["reconstruct", "ensemble", str(members[0]), "--out", str(tmp_path / "one")])
    assert r.exit_code == 2 and "at least 2" in r.output and not (tmp_path / "one").exists()
    r = runner.invoke(app, ["reconstruct", "ensemble", str(members[0]), "--mirror", "--out", str(tmp_path / "m"),
                            "--threads", "1", "--json"])
    assert r.exit_code == 0, r.output
    rep = json.loads(r.stdout)
    assert rep["mirror"] is True and rep["unmirrored"]["val_psnr"] == pytest.approx(rep["members"][0]["val_psnr"])
    r = runner.invoke(app, ["reconstruct", "ensemble", str(members[0]), str(members[1]), "--mirror",
                            "--out", str(tmp_path / "m2"), "--threads", "1"])
    assert r.exit_code == 0 and "without mirroring" in r.output, r.output


def test_members_front_ends_are_compared_value_by_value():
    from opticsfree.reconstruction.combine import same_value

    a = {"matrix": torch.eye(3), "sensor": {"gain": torch.ones(2), "gamma": 2.2}, "shape": [1, 3]}
    assert same_value(a, {"matrix": torch.eye(3), "sensor": {"gain": torch.ones(2), "gamma": 2.2}, "shape": (1, 3)})
    assert not same_value(a, {**a, "sensor": {"gain": torch.tensor([1.0, 1.5]), "gamma": 2.2}})
    assert not same_value(a, {**a, "matrix": torch.eye(3).double()}) and not same_value(a, {**a, "shape": [1]})
    assert same_value(None, None) and not same_value(a, None) and not same_value(torch.ones(1), 1.0)


def test_ensemble_of_cyclegans_with_a_front_end_applies_the_shared_inverse_first(tmp_path, digits_set):
    """Members with a Tikhonov front end (``cyclegan``, ``front_end``): the ensemble keeps the one
    inverse they share and averages the generators applied to its output."""
    from opticsfree.reconstruction.base import to_model, to_uint8
    from opticsfree.reconstruction.combine import ensemble_reconstruction

    opts = {**TINY["cyclegan"], "front_end": True, "lr": 1e-2}
    made = [train(digits_set, "cyclegan", tmp_path / f"m{k}", epochs=1, amp=False, options={**opts, "member": k})
            for k in (0, 1)]
    rep = ensemble_reconstruction(made, tmp_path / "ens", threads=1)
    ens = load_reconstructor(tmp_path / "ens")
    parts = [load_reconstructor(m) for m in made]
    assert ens.fitted is not None and torch.equal(ens.fitted.matrix, parts[1].fitted.matrix)
    caps = load_captures(digits_set, "test").lensless
    t = to_model(parts[0].fitted.reconstruct(caps))
    with torch.no_grad():
        want = to_uint8((parts[0].net(t) + parts[1].net(t)) / 2)
    assert torch.equal(ens.reconstruct(caps), want) and not torch.equal(want, parts[0].reconstruct(caps))
    assert rep.n_val > 0 and np.isfinite(rep.ensemble.val_psnr)
    # mirrored: the network's input (the Tikhonov reconstruction) is flipped, not the capture
    ensemble_reconstruction(made, tmp_path / "ensm", threads=1, mirror=True)
    ensm = load_reconstructor(tmp_path / "ensm")
    with torch.no_grad():
        got = ensm.net(t)
        formula = sum(p.net(t) + p.net(t.flip(-1)).flip(-1) for p in parts) / 4
    assert torch.allclose(got, formula, atol=1e-6) and torch.equal(ensm.reconstruct(caps), to_uint8(got))


# --------------------------------------------------------------------------- best validation epoch

def scripted_psnr(monkeypatch, scores):
    """Make the training loop's validation PSNR of epoch k be ``scores[k - 1]`` (SSIM unchanged)."""
    import opticsfree.reconstruction.train as rt

    real = rt._val_quality
    seen = []

    def fake(rec, original):
        q = real(rec, original)
        seen.append(1)
        return {**q, "val_psnr": float(scores[len(seen) - 1])}

    monkeypatch.setattr(rt, "_val_quality", fake)


def test_best_pt_keeps_the_epoch_of_highest_validation_psnr_and_apply_loads_it(tmp_path, synth, monkeypatch):
    model = tmp_path / "model"
    states = {}

    def snap(row):
        states[row["epoch"]] = torch.load(model / "model.pt", weights_only=True)["state_dict"]

    # epoch 2 is best; epoch 4 ties it, and ties keep the earlier epoch
    scripted_psnr(monkeypatch, [10.0, 12.0, 11.0, 12.0])
    train(synth, "unet", model, epochs=4, options=TINY["unet"], amp=False, seed=1, on_epoch=snap)
    monkeypatch.undo()
    best = torch.load(model / "best.pt", weights_only=True)
    assert best["epoch"] == 2 and torch.load(model / "model.pt", weights_only=True)["epoch"] == 4
    for k, v in best["state_dict"].items():
        assert torch.equal(v, states[2][k]), k
    assert any(not torch.equal(states[2][k], states[4][k]) for k in states[2])
    from opticsfree.reconstruction.train import best_row
    assert best_row(list_metrics(model))["epoch"] == 2

    assert load_reconstructor(model, checkpoint="best").epoch == 2
    assert load_reconstructor(model, checkpoint="last").epoch == 4
    assert load_reconstructor(model, checkpoint="4").path.name == "model.pt"
    assert load_reconstructor(model, checkpoint=2).path.name == "best.pt"
    with pytest.raises(OpticsfreeError, match=r"no model of epoch 3 \(model.pt and best.pt hold epochs 2, 4\)"):
        load_reconstructor(model, checkpoint="3")
    with pytest.raises(ConfigError, match="--checkpoint newest: expected best, last or an epoch number"):
        load_reconstructor(model, checkpoint="newest")
    with pytest.raises(ConfigError, match="is a model file"):
        load_reconstructor(model / "model.pt", checkpoint="best")
    out = tmp_path / "derived"
    apply(model, synth, out, checkpoint="best")
    rec = json.loads((out / "manifest.json").read_text())["reconstruction"]
    assert rec["epoch"] == 2 and rec["model"].endswith("best.pt")

    # a model without best.pt (written before it was kept): a one-line error naming the way out
    (model / "best.pt").unlink()
    with pytest.raises(OpticsfreeError, match="no best.pt .*use --checkpoint last"):
        load_reconstructor(model, checkpoint="best")


def test_best_pt_survives_a_resume(tmp_path, synth, monkeypatch):
    model = tmp_path / "model"

    def stop(row):
        if row["epoch"] == 2:
            raise KeyboardInterrupt

    scripted_psnr(monkeypatch, [10.0, 12.0])
    with pytest.raises(KeyboardInterrupt):
        train(synth, "unet", model, epochs=4, options=TINY["unet"], amp=False, seed=1, on_epoch=stop)
    monkeypatch.undo()
    # the resumed epochs score below epoch 2: best.pt stays at epoch 2
    scripted_psnr(monkeypatch, [11.0, 11.5])
    train(synth, "unet", model, epochs=4, options=TINY["unet"], amp=False, seed=1, resume=True)
    monkeypatch.undo()
    assert torch.load(model / "best.pt", weights_only=True)["epoch"] == 2
    assert [r["epoch"] for r in list_metrics(model)] == [1, 2, 3, 4]


def test_a_fit_writes_best_pt_and_no_holdout_writes_none(tmp_path, synth):
    model = tmp_path / "tik"
    train(synth, "tikhonov", model)
    assert (model / "best.pt").read_bytes() == (model / "model.pt").read_bytes()
    none = tmp_path / "none"
    train(synth, "unet", none, epochs=1, options=TINY["unet"], amp=False, val_fraction=0.0)
    assert (none / "model.pt").is_file() and not (none / "best.pt").exists()


def test_cli_apply_and_ensemble_take_checkpoint(tmp_path, synth, members):
    out = tmp_path / "derived"
    r = runner.invoke(app, ["reconstruct", "apply", str(members[0]), str(synth), "--out", str(out),
                            "--checkpoint", "best", "--workers", "1", "--threads", "1"])
    assert r.exit_code == 0, r.output
    best = torch.load(members[0] / "best.pt", weights_only=True)["epoch"]
    assert json.loads((out / "manifest.json").read_text())["reconstruction"]["epoch"] == best
    r = runner.invoke(app, ["reconstruct", "apply", str(members[0]), str(synth), "--out", str(tmp_path / "x"),
                            "--checkpoint", "later"])
    assert r.exit_code == 2 and "--checkpoint later: expected best, last or an epoch number" in flat(r.output)
    assert not (tmp_path / "x").exists()
    ens = tmp_path / "ens"
    r = runner.invoke(app, ["reconstruct", "ensemble", str(members[0]), str(members[1]), "--out", str(ens),
                            "--checkpoint", "best", "--threads", "1", "--json"])
    assert r.exit_code == 0, r.output
    assert [m["model"] for m in json.loads(r.stdout)["members"]] == [str(m / "best.pt") for m in members[:2]]
