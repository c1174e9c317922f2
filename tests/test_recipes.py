"""Training recipes: ``opticsfree train SET --out RUN`` trains the best measured settings,
``--recipe seed`` the seed's setup exactly, options given win, a user's recipe file loads, and
bad recipes are one-line errors naming the file and the field."""

from __future__ import annotations

import importlib
import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from opticsfree.captures.testing import make_capture_set
from opticsfree.cli.main import app
from opticsfree.errors import ConfigError
from opticsfree.losses.names import LOSSES
from opticsfree.training.config import TrainConfig
from opticsfree.training.recipes import list_recipes, load_recipe, merge

runner = CliRunner()
ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def calls(monkeypatch):
    """The configs ``train`` is called with (nothing is trained)."""
    got = []

    def fake(cfg, out, resume=False, **kw):
        got.append(cfg)
        return {"epochs": cfg.epochs}

    monkeypatch.setattr(importlib.import_module("opticsfree.training.trainer"), "train", fake)
    return got


@pytest.fixture(scope="module")
def simulated(tmp_path_factory):
    """A set simulated by the `seed` camera (its scenes can be re-captured)."""
    from opticsfree.captures.simulate import simulate_capture_set
    from opticsfree.data import load_dataset
    from opticsfree.optics import load_camera_config

    return simulate_capture_set(load_dataset("digits"), load_camera_config("seed"),
                                tmp_path_factory.mktemp("rs") / "set", limit=20, workers=1)


def train_cfg(calls, captures, *args: str) -> TrainConfig:
    r = runner.invoke(app, ["train", str(captures), "--out", str(Path(captures).parent / "run"), *args])
    assert r.exit_code == 0, r.output
    return calls[-1]


def test_bundled_recipes_cover_every_loss_and_validate():
    assert {"best", "fast", "seed"} <= set(list_recipes())
    for name in list_recipes():
        r = load_recipe(name)
        assert set(r.losses) == set(LOSSES), name
        for loss in LOSSES:
            TrainConfig(captures=".", loss=loss, **r.fields(loss)[1])
            assert r.measured[loss], (name, loss)


def test_no_options_train_the_best_recipe(calls, simulated):
    cfg = train_cfg(calls, simulated)
    best = load_recipe("best")
    assert cfg.loss == best.default_loss == "ce"
    for k, v in best.losses["ce"].items():
        assert getattr(cfg, k) == v, k
    assert (cfg.backbone, cfg.width, cfg.epochs, cfg.scene_refresh) == ("wvgg", 32, 30, True)
    cfg = train_cfg(calls, simulated, "--loss", "triplet")
    assert (cfg.loss, cfg.backbone, cfg.weight_decay, cfg.weight_averaging) == ("triplet", "wvgg", 0.5, 0.98)


def test_recipe_seed_is_exactly_the_seeds_setup(calls, simulated):
    for loss in ("triplet", "quadruplet"):
        cfg = train_cfg(calls, simulated, "--recipe", "seed", "--loss", loss)
        assert cfg == TrainConfig(captures=str(simulated), loss=loss)  # every field the package default
    cfg = train_cfg(calls, simulated, "--recipe", "seed")
    assert cfg.loss == "triplet" and cfg.backbone == "cnn4" and cfg.epochs == 50


def test_options_given_win_and_recipe_fields_they_rule_out_go(calls, simulated):
    cfg = train_cfg(calls, simulated, "--epochs", "3", "--set", "weight_decay=0.1")
    assert cfg.epochs == 3 and cfg.weight_decay == 0.1 and cfg.backbone == "wvgg"
    r = runner.invoke(app, ["train", str(simulated), "--loss", "triplet", "--backbone", "cnn4",
                            "--out", str(simulated.parent / "r2")])
    assert r.exit_code == 0 and "whiten_bias_epochs left out" in r.stderr, r.output
    assert calls[-1].backbone == "cnn4" and calls[-1].whiten_bias_epochs is None
    fields, dropped = merge({"scene_refresh": True, "scene_augment": "flip"}, {"scene_augment": "none"})
    assert dropped == ["scene_refresh"] and fields == {"scene_augment": "none"}
    fields, dropped = merge({"whiten_bias_epochs": 3}, {"whiten_bias_epochs": 2, "backbone": "cnn4"})
    assert dropped == [] and fields["whiten_bias_epochs"] == 2  # an explicit value is never dropped


def test_a_real_capture_set_leaves_out_scene_augmentation(calls, tmp_path):
    real = make_capture_set(tmp_path / "real", n_classes=2, per_class=4, size=8)
    m = json.loads((real / "manifest.json").read_text())
    m["camera"] = {"type": "real", "notes": "a bench rig"}
    (real / "manifest.json").write_text(json.dumps(m))
    r = runner.invoke(app, ["train", str(real), "--out", str(tmp_path / "run")])
    assert r.exit_code == 0, r.output
    assert "holds real captures" in r.stderr and "scene_augment, scene_refresh" in r.stderr
    assert calls[-1].scene_augment == "none" and calls[-1].scene_refresh is False


def test_a_user_recipe_file_and_its_errors(calls, simulated, tmp_path):
    mine = tmp_path / "mine.toml"
    mine.write_text('name = "mine"\ndefault_loss = "quadruplet"\n[loss.quadruplet]\nmeasured = "?"\n'
                    'backbone = "resnet8"\nepochs = 7\n')
    cfg = train_cfg(calls, simulated, "--recipe", str(mine))
    assert (cfg.loss, cfg.backbone, cfg.epochs) == ("quadruplet", "resnet8", 7)
    r = runner.invoke(app, ["train", str(simulated), "--recipe", str(mine), "--loss", "ce", "--out", str(tmp_path / "x")])
    assert r.exit_code == 2 and "has no [loss.ce] table" in r.stderr
    for text, words in (('name = "b"\ndefault_loss = "ce"\n[loss.ce]\nbackbon = "wvgg"\n', "field 'loss.ce.backbon'"),
                        ('name = "b"\ndefault_loss = "ce"\n[loss.ce]\nepochs = -2\n', "field 'epochs'"),
                        ('name = "b"\ndefault_loss = "hinge"\n[loss.hinge]\n', "unknown loss 'hinge'"),
                        ('name = "b"\ndefault_loss = "ce"\nextra = 1\n[loss.ce]\n', "field 'extra': unknown field"),
                        ('name = "b"\ndefault_loss = "ce"\n[loss.ce]\nloss = "ce"\n', "set by the command")):
        bad = tmp_path / "bad.toml"
        bad.write_text(text)
        with pytest.raises(ConfigError) as e:
            load_recipe(bad)
        assert str(e.value).startswith(str(bad)) and words in str(e.value) and "\n" not in str(e.value), str(e.value)
        r = runner.invoke(app, ["train", str(simulated), "--recipe", str(bad), "--out", str(tmp_path / "x")])
        assert r.exit_code == 2 and words in r.stderr
    r = runner.invoke(app, ["train", str(simulated), "--recipe", "quickest", "--out", str(tmp_path / "x")])
    assert r.exit_code == 2 and "unknown recipe 'quickest'" in r.stderr


def test_help_and_docs_list_the_recipes_with_their_numbers():
    raw = runner.invoke(app, ["train", "--help"], terminal_width=400).output
    out = " ".join(raw.translate({ord(c): " " for c in "│╭╮╰╯─"}).split())
    doc = (ROOT / "docs" / "metric-learning.md").read_text()
    for name in list_recipes():
        r = load_recipe(name)
        assert name in out and " ".join(r.measured[r.default_loss].split()) in out
        for loss in LOSSES:
            assert r.measured[loss] in doc, (name, loss)


def test_the_default_recipe_on_tiny_captures_says_to_resample(tmp_path):
    """The best recipe's wvgg cannot take 8 x 8 inputs: one line naming --size, no traceback."""
    tiny = make_capture_set(tmp_path / "tiny", n_classes=2, per_class=6, size=8)
    r = runner.invoke(app, ["train", str(tiny), "--out", str(tmp_path / "run")])
    assert r.exit_code == 2 and r.exception is None or isinstance(r.exception, SystemExit), r.exception
    lines = [ln for ln in r.stderr.splitlines() if ln.startswith("error: ")]
    assert len(lines) == 1 and "needs inputs of at least 10 x 10" in lines[0] and "--size 16" in lines[0]
    r = runner.invoke(app, ["train", str(tiny), "--out", str(tmp_path / "run2"), "--size", "16", "--epochs", "1",
                            "--quiet", "--batch-size", "12", "--set", "val_prototypes=20"])
    assert r.exit_code == 0, r.output
