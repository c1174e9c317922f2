"""The reconstruction-method registry (opticsfree.reconstruction.names): capabilities as data,
and a new method is one module plus one registration line that reaches the command line, the
study config, training, apply and ensembles; no list of method names outside the registry."""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from opticsfree.errors import ConfigError
from opticsfree.reconstruction.names import MethodSpec, method_names, method_spec

ROOT = Path(__file__).resolve().parents[1]
PKG = ROOT / "src" / "opticsfree"

#: The new method's module: a network method (here a U-Net under another name).
METHOD_MODULE = '''
from opticsfree.reconstruction.unet import UNetMethod


class TinyMethod(UNetMethod):
    name = "tiny"
'''
#: Its one registration line.
METHOD_LINE = 'MethodSpec("tiny", "tiny_method:TinyMethod")'


def test_builtin_capabilities_are_data():
    assert method_names() == ("cyclegan", "unet", "bijective", "tikhonov")
    assert [method_spec(n).title for n in method_names()] == ["CycleGAN", "U-Net", "bijective", "Tikhonov"]
    tik, cyc, unet = method_spec("tikhonov"), method_spec("cyclegan"), method_spec("unet")
    assert not tik.network and not tik.options and tik.camera == "operator" and tik.no_ensemble
    assert cyc.network and cyc.options and cyc.front_end and not unet.front_end
    from opticsfree.reconstruction.method import FittedModel, FrontEnd, NetworkMethod
    from opticsfree.reconstruction.names import FRONT_END

    assert isinstance(tik.load_class(), type) and issubclass(tik.load_class(), FittedModel)
    assert tik.kind == "fit" and cyc.kind == unet.kind == "network"
    assert issubclass(method_spec(FRONT_END).load_class(), FrontEnd)     # the front end is a fitted method
    members = [m for m in dir(NetworkMethod) if not m.startswith("_")] + ["name", "paired", "config_cls"]
    for name in ("cyclegan", "unet", "bijective"):
        cls = method_spec(name).load_class()
        assert cls.name == name and all(hasattr(cls, m) for m in members), name
    with pytest.raises(ConfigError, match="unknown"):
        method_spec("nope")
    with pytest.raises(ValueError):
        MethodSpec("x", "m:C", network=False)           # a fit says why it is not averaged


def run_registered(tmp_path: Path, module: str, text: str, line: str, body: str) -> dict:
    """In a fresh process: put ``module`` (source ``text``) on the path, register the method of
    ``line`` (one ``MethodSpec(...)``), run ``body`` (it fills a dict ``out``) and return ``out``.
    The package is imported as any program would, after the registration."""
    mods = tmp_path / "mods"
    mods.mkdir()
    (mods / f"{module}.py").write_text(text, encoding="utf-8")
    script = "\n".join([
        "import json, sys",
        f"sys.path.insert(0, {str(mods)!r})",
        "from opticsfree.reconstruction.names import MethodSpec, register_method",
        f"register_method({line})",
        "out = {}",
        textwrap.dedent(body),
        "print(json.dumps(out))",
    ])
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    res = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env,
                         timeout=600)
    assert res.returncode == 0, res.stderr[-3000:]
    return json.loads(res.stdout.strip().splitlines()[-1])


def test_registered_method_reaches_cli_study_training_apply_and_ensemble(tmp_path):
    """In a fresh process: register (one line), then import the study config and the command
    line as any program would, train one epoch, apply the model, average two members."""
    out = run_registered(tmp_path, "tiny_method", METHOD_MODULE, METHOD_LINE, f'''
        from opticsfree.cli import reconstruct as cli
        from opticsfree.study.config import RECONSTRUCTION_METHODS, study_config_from_dict
        from opticsfree.captures.testing import make_capture_set
        from opticsfree.reconstruction import (apply_reconstruction, ensemble_reconstruction,
                                               load_reconstructor, train_reconstruction)
        from opticsfree.captures.loader import load_captures

        out.update(cli=list(cli.Method.__args__), study=list(RECONSTRUCTION_METHODS))
        cfg = study_config_from_dict({{"reconstruct": {{"methods": ["tiny"], "method": {{"tiny":
                                        {{"options": {{"width": 4}}}}}}}}}})
        out["study_methods"] = list(cfg.reconstruct.methods)
        try:
            study_config_from_dict({{"reconstruct": {{"methods": ["tiny"], "method": {{"tiny":
                                    {{"options": {{"nope": 1}}}}}}}}}}, "s.toml")
        except Exception as e:
            out["study_error"] = str(e)
        caps = make_capture_set({str(tmp_path / "set")!r}, size=8, channels=1)
        opts = {{"width": 4, "global_features": 2}}
        for k in (0, 1):
            train_reconstruction(caps, "tiny", {str(tmp_path)!r} + f"/m{{k}}", epochs=1, amp=False,
                                 options={{**opts, "member": k}}, threads=1, samples=2)
        rec = load_reconstructor({str(tmp_path / "m0")!r})
        out["method"] = rec.method
        derived = apply_reconstruction({str(tmp_path / "m0")!r}, caps, {str(tmp_path / "derived")!r},
                                       workers=1, threads=1)
        out["derived"] = len(load_captures(derived, "test"))
        ens = ensemble_reconstruction([{str(tmp_path / "m0")!r}, {str(tmp_path / "m1")!r}],
                                      {str(tmp_path / "ens")!r}, threads=1)
        out["ensemble_members"] = len(ens.members)
    ''')
    assert out["cli"][-1] == "tiny" and out["study"][-1] == "tiny"
    assert out["study_methods"] == ["tiny"]
    assert "[reconstruct.method.tiny] options" in out["study_error"] and "nope" in out["study_error"]
    assert out["method"] == "tiny" and out["derived"] > 0 and out["ensemble_members"] == 2


#: A fitted method's module: one class (its fit and its model), a global gain and offset that
#: match the captures' grey levels to the originals'.
FITTED_MODULE = '''
import torch


class GainModel:
    def __init__(self, gain, offset, out_channels):
        self.gain, self.offset, self.out_channels = float(gain), float(offset), int(out_channels)

    @classmethod
    def fit(cls, train, val, ctx):
        x, y = train.lensless.double().mean(1), train.original.double()
        gain = float(y.std() / x.std())
        return cls(gain, float(y.mean() - gain * x.mean()), y.shape[1])

    def reconstruct(self, captures):
        v = captures.double().mean(1, keepdim=True) * self.gain + self.offset
        return v.round().clamp(0, 255).to(torch.uint8).expand(-1, self.out_channels, -1, -1).contiguous()

    def metrics(self):
        return {"gain": self.gain}

    def report(self):
        return {"gain": self.gain, "offset": self.offset}

    def state(self):
        return {"gain": self.gain, "offset": self.offset, "out_channels": self.out_channels}

    @classmethod
    def from_state(cls, state):
        return cls(state["gain"], state["offset"], state["out_channels"])
'''
#: Its one registration line.
FITTED_LINE = 'MethodSpec("gain", "gain_method:GainModel", network=False, options=False, no_ensemble="one gain")'


def test_registered_fitted_method_trains_applies_and_resumes(tmp_path):
    """A fitted method is one module plus one line, trained, saved, loaded and applied through
    the same entry points as every method (no file of the package names it)."""
    out = run_registered(tmp_path, "gain_method", FITTED_MODULE, FITTED_LINE, f'''
        import torch
        from opticsfree.cli import reconstruct as cli
        from opticsfree.captures.testing import make_capture_set
        from opticsfree.captures.loader import load_captures
        from opticsfree.errors import ConfigError
        from opticsfree.reconstruction import (apply_reconstruction, ensemble_reconstruction,
                                               load_reconstructor, train_reconstruction)
        from opticsfree.reconstruction.method import FittedModel

        caps = make_capture_set({str(tmp_path / "set")!r}, size=8, channels=1)
        model = {str(tmp_path / "m")!r}
        rows = []
        train_reconstruction(caps, "gain", model, threads=1, samples=2, on_epoch=rows.append)
        rec = load_reconstructor(model)
        test = load_captures(caps, "test")
        state = torch.load(model + "/model.pt", weights_only=True)
        out.update({{"cli": list(cli.Method.__args__), "protocol": isinstance(rec.fitted, FittedModel),
                "method": rec.method, "epoch": rec.epoch, "net": rec.net is None,
                "same": torch.equal(rec.reconstruct(test.lensless), rec.fitted.reconstruct(test.lensless)),
                "rows": rows, "keys": list(state), "config": json.load(open(model + "/config.json")),
                "report": json.load(open(model + "/gain.json"))}})
        derived = apply_reconstruction(model, caps, {str(tmp_path / "derived")!r}, workers=1, threads=1)
        out["derived"] = len(load_captures(derived, "test"))
        train_reconstruction(caps, "gain", model, threads=1, samples=2, resume=True)   # fits again
        out["metrics"] = [json.loads(l) for l in open(model + "/metrics.jsonl")]
        try:
            ensemble_reconstruction([model, model], {str(tmp_path / "ens")!r})
        except ConfigError as e:
            out["ensemble_error"] = str(e)
    ''')
    assert out["cli"][-1] == "gain" and out["protocol"] and out["same"] and out["net"]
    assert out["method"] == "gain" and out["epoch"] is None
    [row] = out["rows"]
    assert list(row) == ["epoch", "gain", "val_psnr", "val_ssim", "val_mse", "seconds"] and row["epoch"] == 1
    assert out["keys"] == ["format", "method", "epoch", "gain", "size", "in_channels", "out_channels",
                           "captures", "config"]
    cfg = out["config"]
    assert cfg["method"] == "gain" and cfg["epochs"] is None and cfg["camera"] is None and cfg["n_val"] > 0
    assert out["report"]["gain"] == row["gain"] and out["derived"] > 0
    assert [r["epoch"] for r in out["metrics"]] == [1]                     # a resume refits: one row
    assert (tmp_path / "m" / "samples" / "epoch_001.png").is_file()
    assert "gain model has no network to average (one gain)" in out["ensemble_error"]


def test_a_fitted_method_takes_no_options_and_is_not_averaged(tmp_path):
    from opticsfree.captures.testing import make_capture_set
    from opticsfree.reconstruction import ensemble_reconstruction, train_reconstruction

    caps = make_capture_set(tmp_path / "set", size=8, channels=1)
    with pytest.raises(ConfigError, match="method tikhonov takes no options"):
        train_reconstruction(caps, "tikhonov", tmp_path / "t", options={"width": 4})
    with pytest.raises(ConfigError, match="--camera applies to --method tikhonov and to cyclegan "
                                          "with --set front_end=true only"):
        train_reconstruction(caps, "unet", tmp_path / "u", camera="bare")
    train_reconstruction(caps, "tikhonov", tmp_path / "t", threads=1, samples=2)
    with pytest.raises(ConfigError, match="tikhonov model has no network to average"):
        ensemble_reconstruction([tmp_path / "t", tmp_path / "t"], tmp_path / "e")


def test_no_list_of_method_names_outside_the_registry():
    names = set(method_names())
    modules = {p.stem for p in (PKG / "reconstruction").glob("*.py")}  # (tikhonov.py, unet.py)
    found = []
    for path in sorted(PKG.rglob("*.py")):
        if path == PKG / "reconstruction" / "names.py":
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
            elts = getattr(node, "elts", None)
            if isinstance(node, ast.Dict):
                elts = node.keys
            strings = [e.value for e in elts or () if isinstance(e, ast.Constant) and isinstance(e.value, str)]
            if set(strings) <= modules:  # a list of modules (the package's lazy loader)
                continue
            if len([s for s in strings if s in names]) >= 2:
                found.append(f"{path.relative_to(PKG)}:{node.lineno}: {strings}")
    assert found == [], found
