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
