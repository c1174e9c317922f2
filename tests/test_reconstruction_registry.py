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
    from opticsfree.reconstruction.method import FittedModel, NetworkMethod

    assert isinstance(tik.load_class(), type) and issubclass(tik.load_class(), FittedModel)
    members = [m for m in dir(NetworkMethod) if not m.startswith("_")] + ["name", "paired", "config_cls"]
    for name in ("cyclegan", "unet", "bijective"):
        cls = method_spec(name).load_class()
        assert cls.name == name and all(hasattr(cls, m) for m in members), name
    with pytest.raises(ConfigError, match="unknown"):
        method_spec("nope")
    with pytest.raises(ValueError):
        MethodSpec("x", "m:C", network=False)           # a fit says why it is not averaged


def test_registered_method_reaches_cli_study_training_apply_and_ensemble(tmp_path):
    """In a fresh process: register (one line), then import the study config and the command
    line as any program would, train one epoch, apply the model, average two members."""
    mods = tmp_path / "mods"
    mods.mkdir()
    (mods / "tiny_method.py").write_text(METHOD_MODULE, encoding="utf-8")
    script = textwrap.dedent(f'''
        import json, sys
        sys.path.insert(0, {str(mods)!r})
        from opticsfree.reconstruction.names import MethodSpec, register_method
        register_method({METHOD_LINE})

        from opticsfree.cli import reconstruct as cli
        from opticsfree.study.config import RECONSTRUCTION_METHODS, study_config_from_dict
        from opticsfree.captures.testing import make_capture_set
        from opticsfree.reconstruction import (apply_reconstruction, ensemble_reconstruction,
                                               load_reconstructor, train_reconstruction)
        from opticsfree.captures.loader import load_captures

        out = {{"cli": list(cli.Method.__args__), "study": list(RECONSTRUCTION_METHODS)}}
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
        print(json.dumps(out))
    ''')
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    res = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env,
                         timeout=600)
    assert res.returncode == 0, res.stderr[-3000:]
    out = json.loads(res.stdout.strip().splitlines()[-1])
    assert out["cli"][-1] == "tiny" and out["study"][-1] == "tiny"
    assert out["study_methods"] == ["tiny"]
    assert "[reconstruct.method.tiny] options" in out["study_error"] and "nope" in out["study_error"]
    assert out["method"] == "tiny" and out["derived"] > 0 and out["ensemble_members"] == 2


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
