"""Full-strength options: the whitened VGG backbone, the physics-informed front end, scenes
augmented through the camera."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from opticsfree.captures.loader import CaptureSplit, load_captures
from opticsfree.captures.simulate import capture_split, simulate_capture_set
from opticsfree.captures.testing import make_capture_set
from opticsfree.data import load_dataset
from opticsfree.errors import ConfigError
from opticsfree.models.embedding import EmbeddingModel
from opticsfree.models.front_end import InverseFrontEnd, regularised_inverse
from opticsfree.models.whitened_vgg import WhitenedVGG, patch_whitening
from opticsfree.optics import load_camera_config
from opticsfree.training import load_trained, train
from opticsfree.training.augment import augment_scenes, scene_camera
from opticsfree.training.initialise import display_estimates, estimate_stats, fit_front_end, initialise_model

TINY = {"width": 4, "embedding_dim": 16, "batch_size": 24, "warmup_epochs": 0.5, "val_prototypes": 100,
        "threads": 1}


def test_patch_whitening_gives_unit_covariance():
    g = torch.Generator().manual_seed(0)
    mix = torch.randn(3, 3, generator=g)
    x = torch.einsum("dc,nchw->ndhw", mix, torch.randn(200, 3, 12, 12, generator=g)) + 0.3
    w = patch_whitening(x, eps=0.0)
    assert w.shape == (24, 3, 2, 2)
    z = torch.nn.functional.conv2d(x, w[:12]).permute(0, 2, 3, 1).reshape(-1, 12).double()
    cov = torch.cov(z.T)
    assert torch.allclose(cov, torch.eye(12, dtype=torch.float64), atol=0.05)
    assert torch.equal(w[12:], -w[:12])


def test_whitened_vgg_shapes_and_data_init():
    net = WhitenedVGG(3, width=4)
    assert net(torch.randn(2, 3, 32, 32)).shape == (2, 16, 3, 3)
    before = net.whiten.weight.clone()
    net.init_from_data(torch.rand(20, 3, 32, 32))
    assert not torch.equal(before, net.whiten.weight)
    assert not net.whiten.weight.requires_grad                 # fixed, as in the fast recipes
    m = EmbeddingModel("wvgg", size=32, width=4, pool="max", n_classes=10, embedding_dim=8)
    assert m.logits(torch.randint(0, 255, (3, 3, 32, 32), dtype=torch.uint8)).shape == (3, 10)


def test_front_end_from_a_known_H_inverts_a_noiseless_camera():
    g = torch.Generator().manual_seed(1)
    p = 2 * 6 * 6
    h = torch.eye(p) + 0.3 * torch.rand(p, p, generator=g) / p ** 0.5       # a mixing camera
    a = regularised_inverse(h, 1e-10)
    fe = InverseFrontEnd(2, 2, 6)
    fe.set_affine(a.float())
    x = torch.rand(5, 2, 6, 6, generator=g)
    y = (x.reshape(5, -1) @ h.T).reshape(5, 2, 6, 6)                       # y = H x
    assert torch.allclose(fe(y), x, atol=1e-4)
    # regularisation shrinks: a strong lambda no longer inverts
    fe.set_affine(regularised_inverse(h, 10.0).float())
    assert not torch.allclose(fe(y), x, atol=1e-2)
    with pytest.raises(ValueError, match="front end expects A of shape"):
        fe.set_affine(torch.zeros(3, 3))


def _permuted_split(n=300, size=6, seed=0):
    """A noiseless linear camera: each capture is a fixed pixel permutation of its scene."""
    rng = np.random.default_rng(seed)
    orig = torch.from_numpy(rng.integers(0, 256, (n, 3, size, size), dtype=np.uint8))
    perm = torch.from_numpy(rng.permutation(3 * size * size))
    lens = orig.reshape(n, -1)[:, perm].reshape(n, 3, size, size)
    labels = torch.from_numpy(rng.integers(0, 3, n))
    return CaptureSplit(lens, orig, labels, [f"s{i}" for i in range(n)], torch.zeros(n, dtype=torch.long),
                        ["a", "b", "c"])


def test_front_end_fitted_from_data_inverts_a_noiseless_linear_camera():
    sp = _permuted_split()
    tr, va = sp.subset(range(250)), sp.subset(range(250, 300))
    m = EmbeddingModel("cnn4", size=6, width=4, embedding_dim=8, front_end=True)
    fit = fit_front_end(m, tr, va, seed=0)
    assert fit.n_train == 250 and fit.n_val == 50 and fit.val_relative_error < 1e-3
    est = m.display_estimate(va.lensless)
    assert (est - va.original.float() / 255).abs().max() < 1e-3
    initialise_model(m, tr, va, seed=0)                        # stats of the estimates ~ originals'
    assert torch.allclose(m.norms["lensless"].mean.flatten(),
                          (tr.original.float() / 255).mean(dim=(0, 2, 3)), atol=1e-3)


def test_display_estimates_computed_once_equal_the_front_end_in_the_model():
    sp = _permuted_split(n=120, size=6, seed=3)
    tr, va = sp.subset(range(100)), sp.subset(range(100, 120))
    m = EmbeddingModel("cnn4", size=6, width=4, embedding_dim=8, n_classes=3, front_end=True)
    init = initialise_model(m, tr, va, seed=0, keep_estimates=True)
    assert init.front_end is not None and init.front_end.n_train == 100
    est = init.estimates
    assert est.shape == (100, 3, 6, 6) and est.dtype == torch.float32
    assert torch.allclose(est, m.display_estimate(tr.lensless), atol=1e-6)
    assert torch.equal(est, display_estimates(m, tr.lensless, chunk=40))
    # the input statistics are those of the estimates, however they were computed
    a, b = estimate_stats(m, tr.lensless), estimate_stats(m, tr.lensless, est)
    assert np.allclose(a, b, atol=1e-6)
    m.eval()
    whole = m(lensless=tr.lensless[:30])
    cached = m(lensless=est[:30], estimated=True)
    assert torch.allclose(whole["logits"], cached["logits"], atol=1e-5)
    assert torch.allclose(whole["lensless"], cached["lensless"], atol=1e-5)
    assert initialise_model(m, tr, va, seed=0).estimates is None          # only when asked for
    with pytest.raises(ValueError, match="estimated=True needs"):
        m.tower_input(tr.original[:2], "original", estimated=True)
    plain = EmbeddingModel("cnn4", size=6, width=4, embedding_dim=8)
    with pytest.raises(ValueError, match="estimated=True needs"):
        plain(lensless=tr.lensless[:2], estimated=True)
    with pytest.raises(ValueError, match="keep_estimates needs"):
        initialise_model(plain, tr, va, seed=0, keep_estimates=True)


def test_a_frozen_front_end_computed_once_trains_as_if_applied_every_step(tmp_path, monkeypatch):
    import opticsfree.training.trainer as trainer

    ds = make_capture_set(tmp_path / "syn", n_classes=3, per_class=20, size=8)
    cfg = {"captures": str(ds), "loss": "ce", "epochs": 2, "backbone": "cnn4", "front_end": True,
           "val_fraction": 0.25, **TINY}
    train(cfg, tmp_path / "cached", show_progress=False)
    real = trainer.initialise_model
    monkeypatch.setattr(trainer, "initialise_model",
                        lambda *a, **k: real(*a, **{**k, "keep_estimates": False}))
    train(cfg, tmp_path / "every-step", show_progress=False)
    rows = [[json.loads(x) for x in (tmp_path / r / "metrics.jsonl").read_text().splitlines()]
            for r in ("cached", "every-step")]
    assert [r["steps"] for r in rows[0]] == [r["steps"] for r in rows[1]]
    for a, b in zip(*rows):
        assert a["loss"] == pytest.approx(b["loss"], rel=1e-5)
        assert a["val_accuracy"] == pytest.approx(b["val_accuracy"], abs=1e-6)


@pytest.fixture(scope="module")
def simulated(tmp_path_factory):
    cam = load_camera_config("seed").replace(display={"supersample": 1}, sensor={"supersample": 1})
    out = tmp_path_factory.mktemp("sim") / "set"
    simulate_capture_set(load_dataset("digits"), cam, out, limit=60, seed=0, batch=32, workers=1)
    return out


def test_augmented_scenes_keep_labels_and_are_recaptured(simulated):
    tr = load_captures(simulated, "train")
    cam = scene_camera(str(simulated), tr)
    aug = augment_scenes(tr, cam, "flip", 1, seed=3)
    n = len(tr)
    assert len(aug) == 2 * n
    assert aug.ids[n:] == tr.ids and torch.equal(aug.labels[n:], tr.labels)
    assert (aug.frames[n:] == -1).all()
    assert torch.equal(aug.original[n:], tr.original.flip(-1))           # copy 1 mirrors every scene
    # the captures are the camera's captures of the flipped scenes, not flipped captures
    assert not torch.equal(aug.lensless[n:], tr.lensless.flip(-1))
    same = capture_split(cam.camera, tr.original.flip(-1).permute(0, 2, 3, 1).numpy(),
                         seed=int(json.loads((simulated / "manifest.json").read_text())["seed"]), split="x")
    assert (aug.lensless[n:].float() - same.float()).abs().mean() < 6     # same scene, other noise
    two = augment_scenes(tr, cam, "crop-flip", 2, seed=3)
    assert len(two) == 3 * n and torch.equal(two.labels[n:2 * n], tr.labels)
    assert torch.equal(augment_scenes(tr, cam, "crop-flip", 2, seed=3).lensless, two.lensless)  # seeded


def test_scene_augmentation_needs_a_simulated_set_and_never_touches_val(tmp_path, simulated):
    synthetic = make_capture_set(tmp_path / "syn", n_classes=3, per_class=10, size=8)
    with pytest.raises(ConfigError, match="scene augmentation needs a simulated capture set"):
        train({"captures": str(synthetic), "loss": "ce", "epochs": 1, "scene_augment": "flip",
               "backbone": "cnn4", **TINY}, tmp_path / "r0", show_progress=False)
    run = tmp_path / "r1"
    train({"captures": str(simulated), "loss": "ce", "epochs": 1, "scene_augment": "flip", "backbone": "wvgg",
           "pool": "max", "front_end": True, "val_fraction": 0.25, **TINY}, run, show_progress=False)
    r = json.loads((run / "config.json").read_text())["resolved"]
    assert r["n_train_rows"] == 2 * r["n_train_scenes"]                    # one re-captured copy each
    assert r["n_val_rows"] == r["n_val_scenes"]                            # validation untouched
    t = load_trained(run)
    assert t.model.front_end is not None
    assert len(t.load_split("val")) == r["n_val_scenes"]


def test_scene_refresh_draws_new_copies_each_epoch_and_resumes_exactly(tmp_path, simulated, monkeypatch,
                                                                     interrupt_in_second_validation):
    """scene_refresh: epoch 2 trains on new re-captured copies (same scenes and labels, other
    flips, shifts and noise) fed through the frozen front end; a run interrupted in epoch 2 and
    resumed draws the same copies and ends with the uninterrupted run's weights."""
    import opticsfree.training.trainer as trainer_mod

    made, real_aug = [], trainer_mod.augment_scenes

    def spy(*a, **kw):
        made.append(real_aug(*a, **kw))
        return made[-1]

    monkeypatch.setattr(trainer_mod, "augment_scenes", spy)
    cfg = {"captures": str(simulated), "loss": "ce", "epochs": 2, "scene_augment": "crop-flip",
           "scene_refresh": True, "backbone": "wvgg", "pool": "max", "front_end": True, "val_fraction": 0.25,
           **TINY}
    train(cfg, tmp_path / "full", show_progress=False)
    assert len(made) == 2
    first, second = made
    n = len(first) // 2
    assert torch.equal(first.lensless[:n], second.lensless[:n]) and first.ids == second.ids
    assert torch.equal(first.labels, second.labels)
    assert not torch.equal(first.original[n:], second.original[n:])
    assert not torch.equal(first.lensless[n:], second.lensless[n:])

    interrupt_in_second_validation(cfg, tmp_path / "cut")
    made.clear()
    train(cfg, tmp_path / "cut", resume=True, show_progress=False)
    assert torch.equal(made[-1].lensless, second.lensless)
    a = torch.load(tmp_path / "full/checkpoints/epoch_002.pt", weights_only=True)
    b = torch.load(tmp_path / "cut/checkpoints/epoch_002.pt", weights_only=True)
    for k in a["model"]:
        assert torch.equal(a["model"][k], b["model"][k]), k
    train({**cfg, "scene_refresh": False}, tmp_path / "fixed", show_progress=False)  # epoch 2 on epoch 1's copies
    c = torch.load(tmp_path / "fixed/checkpoints/epoch_002.pt", weights_only=True)
    assert any(not torch.equal(a["model"][k], c["model"][k]) for k in a["model"])  # the new copies were trained on
    with pytest.raises(ConfigError, match="scene_refresh: needs scene_augment flip or crop-flip"):
        train({**cfg, "scene_augment": "none"}, tmp_path / "r2", show_progress=False)


def test_unet_front_end_starts_from_the_regularised_inverse(tmp_path):
    from opticsfree.reconstruction.train import train_reconstruction
    from opticsfree.reconstruction.unet import UNetConfig, UNetMethod

    sp = _permuted_split(n=400, size=8, seed=2)
    m = UNetMethod(UNetConfig(width=4, front_end=True), 3, 3, 8, torch.device("cpu"), torch.Generator())
    fit = m.init_from_data(sp.lensless[:320], sp.original[:320], sp.lensless[320:], sp.original[320:], seed=0)
    assert fit["val_relative_error"] < 1e-3
    y = sp.lensless[320:].float() / 127.5 - 1
    with torch.no_grad():
        out = m.net(y)                                     # before any step: the inverse itself
    assert (out - (sp.original[320:].float() / 127.5 - 1)).abs().max() < 2e-3
    # and through the command's code path: trains, records the fit, resumes with it kept
    cs = make_capture_set(tmp_path / "set", n_classes=2, per_class=12, size=8)
    model = tmp_path / "unet"
    train_reconstruction(cs, "unet", model, epochs=1, threads=1,
                         options={"width": 4, "front_end": True, "batch_size": 8})
    cfg = json.loads((model / "config.json").read_text())
    assert cfg["front_end_fit"]["n_train"] > 0
    train_reconstruction(cs, "unet", model, epochs=2, threads=1, resume=True,
                         options={"width": 4, "front_end": True, "batch_size": 8})
    assert json.loads((model / "config.json").read_text())["front_end_fit"] == cfg["front_end_fit"]


def test_fusing_identical_frames_gives_the_single_frame_accuracy():
    from opticsfree.bayes.likelihood import log_likelihood
    from opticsfree.bayes.posterior import batch_log_posterior, log_prior_of, sequential_log_posteriors

    rng = np.random.default_rng(0)
    scores = rng.normal(size=(500, 10))
    labels = rng.integers(0, 10, 500)
    ll = log_likelihood(scores, temperature=0.7)
    prior = log_prior_of(np.full(10, 0.1))
    single = (batch_log_posterior(prior, [ll]).argmax(1) == labels).mean()
    fused = (batch_log_posterior(prior, [ll] * 4).argmax(1) == labels).mean()
    steps = sequential_log_posteriors(prior, [ll] * 4)
    assert fused == single
    assert all((s.argmax(1) == labels).mean() == single for s in steps)
    # the posterior sharpens with every identical frame, its decision does not change
    assert (np.exp(steps[-1]).max(1) >= np.exp(steps[0]).max(1) - 1e-12).all()


def test_reconstructed_set_augments_scenes_through_camera_and_model(tmp_path, simulated):
    """A reconstructed set's augmented rows are its model's reconstructions of the source camera's
    captures of the augmented scenes; the model must be the one the set was made with."""
    import shutil

    from opticsfree.captures.loader import resize_uint8
    from opticsfree.reconstruction import apply_reconstruction, load_reconstructor, train_reconstruction
    from opticsfree.training.augment import augment_seed

    model = train_reconstruction(simulated, "tikhonov", tmp_path / "tk", threads=1)
    derived = apply_reconstruction(model, simulated, tmp_path / "rec", threads=1, workers=1)
    tr = load_captures(derived, "train")
    sc = scene_camera(str(derived), tr)
    assert sc.reconstructor is not None and sc.reconstructor.method == "tikhonov"
    aug = augment_scenes(tr, sc, "flip", 1, seed=3)
    n = len(tr)
    assert len(aug) == 2 * n and aug.ids[n:] == tr.ids and torch.equal(aug.labels[n:], tr.labels)
    assert torch.equal(aug.original[n:], tr.original.flip(-1))
    rec = load_reconstructor(model)
    caps = scene_camera(str(simulated), tr)(tr.original.flip(-1), augment_seed(3, 1), "train-augment-1")
    assert torch.equal(aug.lensless[n:], rec.reconstruct(resize_uint8(caps, rec.size)))
    # the same path as the stored rows: the model's reconstructions of the stored captures
    assert torch.equal(rec.reconstruct(load_captures(simulated, "train", size=rec.size).lensless), tr.lensless)

    run = tmp_path / "r"
    train({"captures": str(derived), "loss": "ce", "epochs": 1, "scene_augment": "flip", "backbone": "cnn4",
           "val_fraction": 0.25, **TINY}, run, show_progress=False)
    r = json.loads((run / "config.json").read_text())["resolved"]
    assert r["n_train_rows"] == 2 * r["n_train_scenes"] and r["n_val_rows"] == r["n_val_scenes"]

    moved = tmp_path / "rec-moved"
    shutil.copytree(derived, moved)
    manifest = json.loads((moved / "manifest.json").read_text())
    manifest["reconstruction"]["model"] = str(tmp_path / "gone" / "model.pt")
    (moved / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ConfigError, match=r"reconstruction\.model .*missing"):
        scene_camera(str(moved), tr)
    with (tmp_path / "tk" / "model.pt").open("ab") as f:
        f.write(b"\0")
    with pytest.raises(ConfigError, match="has changed since the set was made"):
        scene_camera(str(derived), tr)


def test_whitening_bias_trains_for_the_first_epochs_only(tmp_path):
    from opticsfree.runs import load_state
    from opticsfree.training.checkpoint import training_run

    ds = make_capture_set(tmp_path / "syn", n_classes=3, per_class=20, size=16)
    base = {"captures": str(ds), "loss": "ce", "epochs": 3, "checkpoints": [1, 2, 3], "backbone": "wvgg",
            "pool": "max", "val_fraction": 0.25, **TINY}
    train({**base, "whiten_bias_epochs": 1}, tmp_path / "frozen", show_progress=False)
    train(base, tmp_path / "trained", show_progress=False)

    def states(run):
        return [load_state(training_run(tmp_path / run).checkpoint_path(e))["model"] for e in (1, 2, 3)]

    key = "towers.lensless.backbone.whiten.bias"
    frozen, trained = states("frozen"), states("trained")
    assert all(torch.equal(frozen[0][k], trained[0][k]) for k in frozen[0])   # epoch 1: the same run
    assert frozen[0][key].abs().sum() > 0                                     # trained in epoch 1 (starts at 0)
    assert torch.equal(frozen[0][key], frozen[1][key]) and torch.equal(frozen[1][key], frozen[2][key])
    assert not torch.equal(frozen[1]["head.weight"], frozen[2]["head.weight"])  # the rest still trains
    assert not torch.equal(trained[0][key], trained[1][key])
    with pytest.raises(ConfigError, match="whiten_bias_epochs: only backbone 'wvgg'"):
        train({**base, "backbone": "cnn4", "whiten_bias_epochs": 1}, tmp_path / "cnn4", show_progress=False)


def test_a_frozen_whitening_bias_gets_no_gradient():
    m = EmbeddingModel("wvgg", size=16, width=4, pool="max", n_classes=3, embedding_dim=8)
    x = torch.randint(0, 256, (4, 3, 16, 16), dtype=torch.uint8)
    assert m.train_whitening_bias(False) == 2                                # both towers
    m.logits(x).sum().backward()
    whiten = m.tower("lensless").backbone.whiten
    first = m.tower("lensless").backbone.groups[0][0][0]
    assert whiten.bias.grad is None and first.weight.grad is not None
    assert EmbeddingModel("cnn4", size=16, width=4, n_classes=3).train_whitening_bias(False) == 0


def test_whitening_bias_epochs_are_refused_with_several_processes(tmp_path):
    import opticsfree.training.trainer as trainer
    from opticsfree.training import TrainConfig
    from opticsfree.training.checkpoint import training_run
    from opticsfree.training.distributed import DistInfo

    cfg = TrainConfig(captures=str(tmp_path / "none"), loss="ce", backbone="wvgg", whiten_bias_epochs=2)
    with pytest.raises(ConfigError, match="whiten_bias_epochs: .*several processes"):
        trainer._train(cfg, training_run(tmp_path / "run"), False, False, DistInfo(world_size=2))
    assert not (tmp_path / "run").exists()                                   # refused before anything is written
