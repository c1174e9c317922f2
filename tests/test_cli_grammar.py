"""One command-line grammar: ``--set KEY=VALUE`` in ``train`` and ``reconstruct train``, choices
checked by typer (listing the choices), ``--amp/--no-amp`` in both, help defaults taken from
TrainConfig, and a command line that starts without loading torch."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

import opticsfree.cli.main  # noqa: F401  registers every command
from opticsfree.cli.common import app, parse_key_values
from opticsfree.errors import ConfigError
from opticsfree.losses.criterion import LOSSES
from opticsfree.models.registry import BACKBONES
from opticsfree.training.config import TrainConfig

runner = CliRunner()


def flat(output: str) -> str:
    """CLI output without rich's box drawing and line wrapping (for substring checks)."""
    return " ".join(output.translate({ord(c): " " for c in "│╭╮╰╯─"}).split())


def test_key_value_grammar():
    got = parse_key_values(["a=3", "b=0.5", "c=true", "d=null", "e=[0.05,0.3]", "f=sgd", "g-h=x",
                            "i=a=b", "j=", "k=\"4\"", "a=4"])
    assert got == {"a": 4, "b": 0.5, "c": True, "d": None, "e": [0.05, 0.3], "f": "sgd", "g_h": "x",
                   "i": "a=b", "j": "", "k": "4"}
    assert isinstance(got["a"], int) and isinstance(got["b"], float)
    for bad in ("novalue", "=3"):
        with pytest.raises(ConfigError, match=f"--set '{bad}': expected KEY=VALUE"):
            parse_key_values([bad])


def _capture(monkeypatch, module: str, name: str) -> list:
    import importlib

    calls: list = []

    def fake(*args, **kwargs):
        calls.append((args, kwargs))
        return {"run": "x"}

    monkeypatch.setattr(importlib.import_module(module), name, fake)
    return calls


def test_train_and_reconstruct_parse_set_the_same_way(monkeypatch, tmp_path):
    train_calls = _capture(monkeypatch, "opticsfree.training.trainer", "train")
    rec_calls = _capture(monkeypatch, "opticsfree.reconstruction.train", "train_reconstruction")
    items = ["--set", "margin=1", "--set", "quad-margins=[0.05,0.3]", "--set", "optimizer=sgd"]
    r = runner.invoke(app, ["train", str(tmp_path), "--loss", "quadruplet", "--out", str(tmp_path / "r"), *items])
    assert r.exit_code == 0, r.output
    cfg = train_calls[0][0][0]
    assert (cfg.margin, cfg.quad_margins, cfg.optimizer) == (1.0, (0.05, 0.3), "sgd")
    items = ["--set", "width=4", "-o", "decay-start=null", "--option", "lr=1e-3"]
    r = runner.invoke(app, ["reconstruct", "train", str(tmp_path), "--method", "unet", "--out",
                            str(tmp_path / "m"), *items])
    assert r.exit_code == 0, r.output
    kwargs = rec_calls[0][1]
    assert kwargs["options"] == {"width": 4, "decay_start": None, "lr": 1e-3}
    assert kwargs["amp"] is None                                     # auto unless --amp/--no-amp
    for flag, want in (("--amp", True), ("--no-amp", False)):
        r = runner.invoke(app, ["reconstruct", "train", str(tmp_path), "--method", "unet", "--out",
                                str(tmp_path / "m"), flag])
        assert r.exit_code == 0 and rec_calls[-1][1]["amp"] is want
        r = runner.invoke(app, ["train", str(tmp_path), "--loss", "triplet", "--out", str(tmp_path / "r"), flag])
        assert r.exit_code == 0 and train_calls[-1][0][0].amp is want


def test_train_set_errors_name_the_field(tmp_path):
    base = ["train", str(tmp_path), "--loss", "triplet", "--out", str(tmp_path / "r")]
    for extra, needle in [(["--set", "margin=wide"], "field 'margin'"),
                          (["--set", "nope=1"], "unknown field"),
                          (["--set", "epochs=3", "--epochs", "4"], "use the --epochs option instead")]:
        r = runner.invoke(app, base + extra)
        assert r.exit_code == 2 and needle in flat(r.output), (extra, r.output)


@pytest.mark.parametrize("option,bad,choices", [
    ("--loss", "quad", LOSSES),
    ("--backbone", "resnet99", BACKBONES),
    ("--sampling", "random", ("online", "tuples")),
    ("--mining", "easy", ("all", "semihard", "hard", "none")),
    ("--device", "tpu", ("cpu", "cuda")),
])
def test_train_choices_are_checked_and_listed(tmp_path, option, bad, choices):
    args = ["train", str(tmp_path), "--loss", "triplet", "--out", str(tmp_path / "r")]
    if option == "--loss":
        args[3] = bad
    else:
        args += [option, bad]
    r = runner.invoke(app, args)
    listed = ", ".join(f"'{c}'" for c in choices)
    assert r.exit_code == 2 and f"'{bad}' is not one of {listed}" in flat(r.output), r.output
    assert not (tmp_path / "r").exists()


def test_other_fixed_choices_are_checked(tmp_path):
    for args, needle in [
        (["simulate", "--dataset", "digits", "--camera", "seed", "--out", str(tmp_path / "s"), "--split", "both"],
         "'both' is not one of 'train', 'test', 'all'"),
        (["bayes", str(tmp_path), "--likelihood", "knn"], "'knn' is not one of 'auto', 'metric', 'ce'"),
        (["bayes", str(tmp_path), "--split", "dev"], "'dev' is not one of 'test', 'val', 'train'"),
        (["run", str(tmp_path / "x.toml"), "--device", "gpu"], "'gpu' is not one of 'cpu', 'cuda'"),
        (["reconstruct", "apply", str(tmp_path), str(tmp_path), "--out", str(tmp_path / "d"), "--device", "gpu"],
         "'gpu' is not one of 'cpu', 'cuda'"),
    ]:
        r = runner.invoke(app, args)
        assert r.exit_code == 2 and needle in flat(r.output), (args, r.output)


def test_help_defaults_come_from_train_config():
    out = flat(runner.invoke(app, ["train", "--help"], terminal_width=200).output)
    for field, option in [("epochs", "--epochs"), ("batch_size", "--batch-size"), ("backbone", "--backbone"),
                          ("sampling", "--sampling"), ("val_fraction", "--val-fraction"), ("seed", "--seed"),
                          ("device", "--device"), ("workers", "--workers")]:
        default = TrainConfig.model_fields[field].default
        after = out.split(f" {option} ", 1)[1]
        assert after[after.index("[default:"):].startswith(f"[default: ({default})]"), field
    assert "[default: (0.002 adamw, 0.1 sgd)]" in out
    for cmd in (["train", "--help"], ["reconstruct", "train", "--help"]):
        out = flat(runner.invoke(app, cmd, terminal_width=200).output)
        assert "--amp --no-amp" in out and "on where the CPU/GPU has native bf16" in out


def test_the_command_line_starts_without_torch():
    code = ("import sys, opticsfree.cli.main; "
            "print(json.dumps(sorted(m for m in ('torch', 'numpy', 'opticsfree.training.trainer') "
            "if m in sys.modules)))")
    src = str(Path(__file__).resolve().parents[1] / "src")
    out = subprocess.run([sys.executable, "-c", "import json; " + code], capture_output=True, text=True,
                         check=True, env={"PYTHONPATH": src, "PATH": ""}).stdout
    assert json.loads(out) == []
