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
    items = ["--set", "width=4", "--set", "decay-start=null", "--set", "lr=1e-3", "--recipe", "plain"]
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
                          ("device", "--device"), ("workers", "--loader-workers")]:
        default = TrainConfig.model_fields[field].default
        after = out.split(f" {option} ", 1)[1]
        assert after[after.index("[default:"):].startswith(f"[default: ({default})"), field
    assert "[default: (0.002 adamw, 0.1 sgd);" in out
    for cmd in (["train", "--help"], ["reconstruct", "train", "--help"]):
        out = flat(runner.invoke(app, cmd, terminal_width=200).output)
        assert "--amp / --no-amp" in out and "on where the CPU/GPU has native bf16" in out


def test_the_command_line_starts_without_torch():
    code = ("import sys, opticsfree.cli.main; "
            "print(json.dumps(sorted(m for m in ('torch', 'numpy', 'opticsfree.training.trainer') "
            "if m in sys.modules)))")
    src = str(Path(__file__).resolve().parents[1] / "src")
    out = subprocess.run([sys.executable, "-c", "import json; " + code], capture_output=True, text=True,
                         check=True, env={"PYTHONPATH": src, "PATH": ""}).stdout
    assert json.loads(out) == []


# --- one table of shared options (cli/common.py: SHARED_OPTIONS) -----------------------------

from typing import get_origin  # noqa: E402

from typer.models import OptionInfo  # noqa: E402

from opticsfree.cli.common import GRAMMAR_EXCEPTIONS, RETIRED_OPTIONS, SHARED_OPTIONS  # noqa: E402
from test_cli_bounds import _commands, _params  # noqa: E402

def _decls(name: str, info) -> tuple:
    """An option's declared names; in the ``Annotated`` form typer takes the first positional
    argument (stored as ``default``) as the first name."""
    decls = tuple(info.param_decls or ())
    if isinstance(info.default, str) and info.default.startswith("-"):
        decls = (info.default, *decls)
    return decls or ("--" + name.replace("_", "-"),)


OPTIONS = [(" ".join(path), decl, tp, info) for path, cb in _commands(app) for name, tp, info in _params(cb)
           if isinstance(info, OptionInfo) for decl in _decls(name, info)]


def _kind(tp) -> type:
    origin = get_origin(tp)
    if origin is list or tp is list:
        return list
    if origin is not None and "Literal" in str(origin):
        return str
    return tp


def test_every_command_keeps_the_shared_grammar():
    seen: dict[str, set] = {}
    for cmd, decl, tp, info in OPTIONS:
        flag = decl.split("/")[0]
        assert flag not in RETIRED_OPTIONS, f"{cmd} {flag}: retired, use {RETIRED_OPTIONS[flag]}"
        seen.setdefault(flag, set()).add(cmd)
        if flag not in SHARED_OPTIONS or (cmd, flag) in GRAMMAR_EXCEPTIONS:
            continue
        want, bounds, meaning = SHARED_OPTIONS[flag]
        if want is not object:
            assert _kind(tp) is want, f"{cmd} {flag}: {tp}, the grammar says {want.__name__} ({meaning})"
        if bounds is not None:
            assert (info.min, info.max) == (bounds.get("min"), bounds.get("max")), \
                f"{cmd} {flag}: bounds {info.min}..{info.max}, the grammar says {bounds} ({meaning})"
    shared_by_several = {f for f, cmds in seen.items() if len(cmds) > 1}
    missing = shared_by_several - set(SHARED_OPTIONS) - {"--help"}
    assert not missing, f"options taken by several commands but not in SHARED_OPTIONS: {sorted(missing)}"
    for cmd, flag in GRAMMAR_EXCEPTIONS:
        assert cmd in seen.get(flag, ()), f"stale exception: {cmd} has no {flag}"


def test_workers_mean_the_same_everywhere_and_one_is_in_process():
    from opticsfree.utils.parallel import InlineExecutor, process_pool, resolve_workers

    helps = {cmd: info.help for cmd, decl, tp, info in OPTIONS if decl == "--workers"}
    assert set(helps) >= {"simulate", "predict", "reconstruct apply"} and "train" not in helps
    assert all("0: one per CPU, 1: in this process" in h for h in helps.values()), helps
    import os
    assert resolve_workers(0) == (os.cpu_count() or 1) and resolve_workers(3) == 3
    with pytest.raises(ValueError, match="workers must be >= 0"):
        resolve_workers(-1)
    with process_pool(1) as pool:
        assert isinstance(pool, InlineExecutor)
        assert pool.submit(os.getpid).result() == os.getpid()
        assert list(pool.map(abs, [-1, -2])) == [1, 2]
        with pytest.raises(ZeroDivisionError):
            pool.submit(divmod, 1, 0).result()


@pytest.mark.parametrize("cmd", [["predict"], ["export"], ["train"], ["quality"], ["rig", "capture"]])
def test_help_shows_flags_as_flags_and_keeps_brackets(cmd):
    out = runner.invoke(app, [*cmd, "--help"], terminal_width=80).output
    assert "<bool>" not in out                           # --json is a flag, not a value
    for line in out.splitlines():
        assert len(line) <= 80 or "|" in line, line      # only an unbreakable choice list may run on
    if cmd in (["predict"], ["export"]):
        assert "opticsfree[export]" in flat(out)         # not eaten as markup
    if cmd == ["train"]:                                 # choices are never broken mid-word
        assert "<triplet|quadruplet|quadruplet-chen|ce|ce+triplet>" in out


def test_json_is_a_flag_and_a_value_after_it_is_refused(tmp_path):
    r = runner.invoke(app, ["quality", str(tmp_path), "--json", "true"])
    assert r.exit_code == 2 and "true" in r.output and "Traceback" not in r.output
