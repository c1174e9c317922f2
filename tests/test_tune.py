"""``opticsfree tune``: Optuna over TrainConfig fields, scored on validation only, resumable,
the best settings written as a recipe that ``train --recipe FILE`` loads."""

from __future__ import annotations

import csv
import json

import pytest
from typer.testing import CliRunner

from opticsfree.captures import loader
from opticsfree.captures.testing import make_capture_set
from opticsfree.cli.main import app
from opticsfree.errors import ConfigError
from opticsfree.training import TrainConfig
from opticsfree.training.recipes import load_recipe
from opticsfree.tuning import load_space, tune

pytest.importorskip("optuna")
runner = CliRunner()
FIXED = ["epochs=3", "backbone=cnn4", "width=4", "embedding_dim=16", "batch_size=24", "warmup_epochs=0.5",
         "val_prototypes=100", "threads=1"]
SPACE = """
[weight_decay]
type = "float"
low = 1e-4
high = 0.1
log = true

[label_smoothing]
type = "categorical"
choices = [0.0, 0.2]
"""


@pytest.fixture(scope="module")
def small(tmp_path_factory):
    return make_capture_set(tmp_path_factory.mktemp("tune") / "set", n_classes=3, per_class=20, size=16)


def test_a_search_scores_on_validation_writes_a_recipe_and_resumes(small, tmp_path, monkeypatch):
    read: list[str] = []
    real = loader.load_captures

    def spy(root, split, *a, **k):
        read.append(split)
        return real(root, split, *a, **k)

    monkeypatch.setattr(loader, "load_captures", spy)
    import opticsfree.training.data as tdata
    monkeypatch.setattr(tdata, "load_captures", spy)
    (tmp_path / "space.toml").write_text(SPACE)
    out = tmp_path / "search"
    args = ["tune", str(small), "--space", str(tmp_path / "space.toml"), "--trials", "4", "--out", str(out),
            "--recipe", "seed", "--loss", "ce", "--json"] + [x for f in FIXED for x in ("--set", f)]
    r = runner.invoke(app, args)
    assert r.exit_code == 0, r.output
    res = json.loads(r.stdout)
    assert res["n_complete"] + res["n_pruned"] == 4 and res["n_complete"] >= 1
    assert read and "test" not in read                                    # the test split is never read
    rows = list(csv.DictReader((out / "trials.csv").open()))
    assert len(rows) == 4 and {r["state"] for r in rows} <= {"complete", "pruned"}
    best = max((r for r in rows if r["state"] == "complete"), key=lambda r: float(r["val_accuracy"]))
    assert int(best["trial"]) == res["best_trial"]
    assert float(best["val_accuracy"]) == pytest.approx(res["best_val_accuracy"], abs=1e-6)
    # the recipe loads and gives a valid config with the best values
    rec = load_recipe(out / "best.toml")
    loss, fields, _ = rec.fields()
    assert loss == "ce" and fields["epochs"] == 3
    assert fields["weight_decay"] == pytest.approx(res["best_params"]["weight_decay"])
    TrainConfig.from_dict({**fields, "captures": str(small), "loss": loss})
    r2 = runner.invoke(app, ["train", str(small), "--recipe", str(out / "best.toml"), "--out", str(tmp_path / "run"),
                             "--quiet"])
    assert r2.exit_code == 0, r2.output
    # rerun: continues to 5 finished trials, the first four untouched
    before = (out / "trials" / "0000" / "metrics.jsonl").read_bytes()
    r3 = runner.invoke(app, [*args[:5], "5", *args[6:]])
    assert r3.exit_code == 0, r3.output
    assert len(list(csv.DictReader((out / "trials.csv").open()))) == 5
    assert (out / "trials" / "0000" / "metrics.jsonl").read_bytes() == before
    # another space in the same folder is refused
    (tmp_path / "other.toml").write_text('[momentum]\ntype = "float"\nlow = 0.8\nhigh = 0.95\n')
    r4 = runner.invoke(app, [*args[:3], str(tmp_path / "other.toml"), *args[4:]])
    assert r4.exit_code == 2 and "holds a search with different settings (space)" in r4.stderr


@pytest.mark.parametrize("text, needle", [
    ('[nope]\ntype = "float"\nlow = 0\nhigh = 1\n', "[nope]: not a training setting"),
    ('[captures]\ntype = "categorical"\nchoices = ["a"]\n', "[captures]: cannot be searched"),
    ('[lr]\ntype = "float"\nlow = 1\nhigh = 0.1\n', "[lr]: needs low < high"),
    ('[lr]\ntype = "float"\nlow = 0\nhigh = 0.1\nlog = true\n', "[lr]: a log scale needs low > 0"),
    ('[width]\ntype = "int"\nlow = 4\nhigh = 8\nstep = 2\nspread = 1\n', "[width].spread: unknown key"),
    ('[augment]\ntype = "categorical"\n', "[augment]: a categorical parameter needs"),
    ('', "no parameters"),
])
def test_bad_spaces_are_one_line_errors_naming_the_field(tmp_path, text, needle):
    (tmp_path / "s.toml").write_text(text)
    with pytest.raises(ConfigError) as e:
        load_space(tmp_path / "s.toml")
    assert needle in str(e.value) and "\n" not in str(e.value)


def test_a_field_both_fixed_and_searched_is_refused(small, tmp_path):
    (tmp_path / "s.toml").write_text(SPACE)
    with pytest.raises(ConfigError, match="--set weight_decay: also searched"):
        tune(small, load_space(tmp_path / "s.toml"), tmp_path / "o", 1, recipe="seed", loss="ce",
             fields={"weight_decay": 0.1})
    assert not (tmp_path / "o").exists()


RECON_SPACE = """
[ssim_weight]
type = "float"
low = 0.0
high = 2.0

[lr]
type = "float"
low = 1e-4
high = 1e-2
log = true
"""


def _spy_loader(monkeypatch) -> list[str]:
    """Record the split of every ``load_captures`` call, wherever the function was imported."""
    import sys

    read: list[str] = []
    real = loader.load_captures

    def spy(root, split, *a, **k):
        read.append(split)
        return real(root, split, *a, **k)

    for mod in list(sys.modules.values()):
        if getattr(mod, "load_captures", None) is real:
            monkeypatch.setattr(mod, "load_captures", spy)
    return read


def test_a_reconstruction_search_scores_psnr_on_validation_and_writes_a_reconstruction_recipe(small, tmp_path,
                                                                                            monkeypatch):
    import opticsfree.reconstruction.train  # noqa: F401  (imported before the spy is set)
    from opticsfree.reconstruction.recipes import load_recipe as load_recon_recipe

    read = _spy_loader(monkeypatch)
    (tmp_path / "space.toml").write_text(RECON_SPACE)
    out = tmp_path / "search"
    args = ["tune", str(small), "--reconstruct", "unet", "--space", str(tmp_path / "space.toml"), "--trials", "3",
            "--out", str(out), "--json", "--set", "epochs=2", "--set", "width=4", "--set", "batch_size=16",
            "--set", "scene_augment=none"]
    r = runner.invoke(app, args)
    assert r.exit_code == 0, r.output
    res = json.loads(r.stdout)
    assert res["score"] == "val_psnr" and "best_val_accuracy" not in res
    assert read and "test" not in read                                     # the test split is never read
    rows = list(csv.DictReader((out / "trials.csv").open()))
    assert len(rows) == 3 and list(rows[0])[:4] == ["trial", "state", "val_psnr", "last_epoch"]
    # each trial is a reconstruct-train MODEL directory; its score is its best validation PSNR
    for row in rows:
        if row["state"] == "complete":
            psnr = [json.loads(line)["val_psnr"] for line in (out / "trials" / f"{int(row['trial']):04d}" /
                                                               "metrics.jsonl").read_text().splitlines()]
            assert float(row["val_psnr"]) == pytest.approx(max(psnr), abs=1e-5)
    best = max((r for r in rows if r["state"] == "complete"), key=lambda r: float(r["val_psnr"]))
    assert int(best["trial"]) == res["best_trial"]
    assert float(best["val_psnr"]) == pytest.approx(res["best_val_psnr"], abs=1e-5)
    # the recipe is a reconstruction recipe: the bundled best recipe's U-Net settings, --set, the best values
    rec = load_recon_recipe(out / "best.toml")
    opts, _ = rec.for_method("unet")
    assert opts["epochs"] == 2 and opts["width"] == 4 and opts["front_end"] is True
    assert opts["ssim_weight"] == pytest.approx(res["best_params"]["ssim_weight"])
    assert "dB PSNR validation" in rec.measured["unet"]
    r2 = runner.invoke(app, ["reconstruct", "train", str(small), "--method", "unet", "--recipe",
                             str(out / "best.toml"), "--out", str(tmp_path / "model")])
    assert r2.exit_code == 0, r2.output
    cfg = json.loads((tmp_path / "model" / "config.json").read_text())
    assert cfg["method_config"]["lr"] == pytest.approx(res["best_params"]["lr"])


@pytest.mark.parametrize("args, needle", [
    (["--reconstruct", "unet", "--loss", "ce"], "--loss ce: a reconstruction search (--reconstruct) trains no loss"),
    (["--metric", "ssim"], "--metric ssim: a training search is scored by validation accuracy"),
    (["--reconstruct", "tikhonov"], "--reconstruct tikhonov: the method takes no options"),
])
def test_reconstruction_search_misuse_is_one_line(small, tmp_path, args, needle):
    (tmp_path / "space.toml").write_text(RECON_SPACE)
    r = runner.invoke(app, ["tune", str(small), "--space", str(tmp_path / "space.toml"), "--trials", "1",
                            "--out", str(tmp_path / "o"), *args])
    assert r.exit_code == 2 and needle in r.stderr, r.output
    assert not (tmp_path / "o").exists()


def test_a_reconstruction_space_names_the_method_options(tmp_path):
    from opticsfree.tuning import Target

    (tmp_path / "s.toml").write_text('[weight_decay]\ntype = "float"\nlow = 1e-4\nhigh = 0.1\n')
    with pytest.raises(ConfigError, match=r"\[weight_decay\]: not an option of method unet"):
        load_space(tmp_path / "s.toml", Target("unet", "psnr"))
    (tmp_path / "s.toml").write_text('[member]\ntype = "int"\nlow = 0\nhigh = 3\n')
    with pytest.raises(ConfigError, match=r"\[member\]: cannot be searched"):
        load_space(tmp_path / "s.toml", Target("unet", "ssim"))
    space = load_space(tmp_path.joinpath("s.toml").write_text(RECON_SPACE) and tmp_path / "s.toml",
                       Target("unet", "ssim"))
    assert list(space.params) == ["ssim_weight", "lr"]


def test_values_a_finished_trial_had_are_not_trained_again(small, tmp_path, monkeypatch):
    import opticsfree.training as training

    trained: list[str] = []
    real = training.train

    def counting(cfg, run, *a, **k):
        trained.append(str(run))
        return real(cfg, run, *a, **k)

    monkeypatch.setattr(training, "train", counting)
    (tmp_path / "s.toml").write_text('[label_smoothing]\ntype = "categorical"\nchoices = [0.1]\n')
    from opticsfree.cli.common import parse_key_values

    fields = parse_key_values(FIXED, "--set")
    res = tune(small, load_space(tmp_path / "s.toml"), tmp_path / "o", 3, recipe="seed", loss="ce", fields=fields)
    assert len(trained) == 1 and res.n_complete == 3                       # one run, three finished trials
    rows = list(csv.DictReader((tmp_path / "o" / "trials.csv").open()))
    assert [r["same_as"] for r in rows] == ["", "0", "0"]
    assert len({r["val_accuracy"] for r in rows}) == 1 and len({r["run"] for r in rows}) == 1
