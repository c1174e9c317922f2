"""The one-command study: config validation, stage keys, skip/resume/failure, report files,
the CLI and the HTML in headless Chromium. Studies here use the offline ``digits`` dataset with
60 images per split, a tiny CNN at 16 x 16 and one or two epochs."""

from __future__ import annotations

import base64
import io
import json
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

from opticsfree.errors import ConfigError
from opticsfree.study import StageError, load_study_config, plan_study, run_study
from opticsfree.study.config import study_config_from_dict

TINY = """
[study]
name = "tiny"
seed = 0

[data]
dataset = "digits"
limit = 60

[captures]
camera = "seed"
quality_size = 16

[train]
losses = ["triplet"]
epochs = 2
checkpoints = [1, 2]

[train.options]
backbone = "cnn4"
width = 8
size = 16
embedding_dim = 16
batch_size = 20
{extra_options}

[baselines]
ce = {ce}
upper_bound = {upper}

[evaluate]
classifiers = ["prototype", "threshold"]
bootstrap = 20

[bayes]
enabled = true

[report]
samples = 4
"""


def write_config(path: Path, extra_options: str = "", ce: bool = True, upper: bool = True) -> Path:
    path.write_text(TINY.format(extra_options=extra_options, ce=str(ce).lower(),
                                upper=str(upper).lower()), encoding="utf-8")
    return path


def quiet(msg: str) -> None:
    pass


def statuses(result: dict) -> dict[str, str]:
    return {s["name"]: s["status"] for s in result["stages"]}


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    """One tiny study run (triplet on lensless, ce baseline, lens upper bound, Bayes)."""
    d = tmp_path_factory.mktemp("study")
    cfg = write_config(d / "tiny.toml")
    out = d / "out"
    result = run_study(cfg, out, log=quiet)
    return {"config": cfg, "out": out, "result": result}


# ----------------------------------------------------------------------------------------------
# config validation


@pytest.mark.parametrize("tables, expected", [
    ({"trian": {}}, [r"\[trian\]", "unknown table", "train", "study"]),
    ({"study": {"nmae": "x"}}, [r"\[study\] nmae", "unknown key", "name, seed, device"]),
    ({"train": {"losses": ["triplet", "contrastive"]}},
     [r"\[train\] losses\[1\]", "'contrastive'", "triplet", "quadruplet", "ce"]),
    ({"data": {"dataset": "mnist"}}, [r"\[data\] dataset", "mnist", "cifar10", "digits"]),
    ({"evaluate": {"classifiers": ["svm"]}}, [r"\[evaluate\] classifiers\[0\]", "prototype", "knn"]),
    ({"reconstruct": {"methods": ["pix2pix"]}}, [r"\[reconstruct\] methods\[0\]", "cyclegan", "tikhonov"]),
    ({"train": {"images": ["cyclegan"]}}, [r"\[train\] images", "'cyclegan'", "allowed: lensless"]),
    ({"train": {"options": {"bakbone": "cnn4"}}}, [r"\[train.options\] bakbone", "unknown key", "backbone"]),
    ({"train": {"options": {"backbone": "vgg"}}}, [r"\[train.options\] backbone", "cnn4", "resnet20"]),
    ({"train": {"options": {"loss": "ce"}}}, [r"\[train.options\] loss", r"\[train\] losses"]),
    ({"train": {"epochs": 5, "checkpoints": [10]}}, [r"\[train\] checkpoints", "between 1 and"]),
    ({"captures": {"camera": "pinhole"}}, [r"\[captures\] camera", "seed", "lens", "TOML"]),
    ({"captures": {"source": "path"}}, [r"\[captures\] path", "required"]),
    ({"study": {"device": "tpu"}}, [r"\[study\] device", "cpu", "cuda"]),
    ({"reconstruct": {"methods": ["unet"], "method": {"unet": {"epoch": 3}}}},
     [r"\[reconstruct.method.unet\] epoch", "unknown key", "epochs"]),
    ({"reconstruct": {"methods": ["cyclegan"], "method": {"cyclegan": {"options": {"front_ends": True}}}}},
     [r"\[reconstruct.method.cyclegan\] options", "unknown option.*front_ends", "front_end"]),
    ({"reconstruct": {"methods": ["unet"], "method": {"unet": {"options": {"width": "wide"}}}}},
     [r"\[reconstruct.method.unet\] options", "option width", "wide"]),
    ({"reconstruct": {"methods": ["tikhonov"], "method": {"tikhonov": {"options": {"lam": 1}}}}},
     [r"\[reconstruct.method.tikhonov\] options", "takes no options"]),
])
def test_config_errors_name_the_key_and_the_allowed_values(tables, expected):
    with pytest.raises(ConfigError) as e:
        study_config_from_dict(tables, "bad.toml")
    msg = str(e.value)
    assert msg.startswith("bad.toml: ")
    assert "\n" not in msg
    for pattern in expected:
        assert re.search(pattern, msg), (pattern, msg)


@pytest.mark.parametrize("name", ["quick.toml", "seed.toml"])
def test_shipped_configs_validate(name):
    """The configs the docs tell users to run load and pass every option check (train and
    reconstruction options included), so a renamed option fails here, not an hour into a study."""
    from pathlib import Path

    cfg = load_study_config(Path(__file__).resolve().parents[1] / "configs" / name)
    assert cfg.train.losses == ["triplet", "quadruplet"]
    assert cfg.reconstruct.methods == ["cyclegan", "unet"]
    if name == "seed.toml":  # the seed's layout: 50 epochs, checkpoints 15 / 30 / 50
        assert (cfg.train.epochs, cfg.train.checkpoints) == (50, [15, 30, 50])


def test_config_file_errors_and_relative_paths(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        load_study_config(tmp_path / "missing.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text("[study\nname = 1", encoding="utf-8")
    with pytest.raises(ConfigError, match=r"bad.toml: invalid TOML"):
        load_study_config(bad)
    # a camera file and a prior file relative to the config file's directory
    sub = tmp_path / "cfg"
    sub.mkdir()
    from opticsfree.optics.config import preset_path

    shutil.copy(preset_path("lens"), sub / "mycam.toml")
    (sub / "prior.json").write_text(json.dumps({str(i): 0.1 for i in range(10)}), encoding="utf-8")
    f = sub / "study.toml"
    f.write_text('[data]\ndataset = "digits"\n[captures]\ncamera = "mycam.toml"\n'
                 '[bayes]\nprior = "prior.json"\n', encoding="utf-8")
    cfg = load_study_config(f)
    assert cfg.captures.camera == str((sub / "mycam.toml").resolve())
    assert cfg.bayes.prior == str((sub / "prior.json").resolve())
    assert cfg.source == str(f)


def test_defaults_are_the_seed_study():
    cfg = study_config_from_dict({}, "empty.toml")
    assert cfg.data.dataset == "cifar10"
    assert cfg.captures.camera == "seed"
    assert cfg.train.losses == ["triplet", "quadruplet"]
    assert cfg.train.epochs == 50 and cfg.checkpoints() == [15, 30, 50]
    assert cfg.images() == ["lensless"]


# ----------------------------------------------------------------------------------------------
# stage keys


def _keys(tables: dict) -> dict[str, str]:
    return {s.name: s.key for s in plan_study(study_config_from_dict(tables, "t.toml"))}


def test_a_recipe_run_beside_the_seeds_protocol():
    base = {"data": {"dataset": "digits", "limit": 60}, "train": {"losses": ["triplet"], "epochs": 2,
                                                                  "options": {"backbone": "cnn4"}},
            "baselines": {"ce": True, "upper_bound": False, "recipe": "fast"}}
    stages = {s.name: s for s in plan_study(study_config_from_dict(base, "t.toml"))}
    run = stages["train/recipe-fast-ce/lensless"]
    from opticsfree.training.recipes import load_recipe

    want = load_recipe("fast").losses["ce"]
    assert {k: run.params[k] for k in want if k != "epochs"} == {k: v for k, v in want.items() if k != "epochs"}
    assert run.params["epochs"] == 2 and run.params["role"] == "recipe"  # the study's budget
    assert stages["train/ce/lensless"].params["backbone"] == "cnn4"  # the seed-protocol runs keep theirs
    assert "evaluate/recipe-fast-ce/lensless" in stages and "bayes/recipe-fast-ce/lensless" not in stages
    with pytest.raises(ConfigError, match=r"\[baselines\] recipe.*unknown recipe 'quickest'"):
        study_config_from_dict({**base, "baselines": {"recipe": "quickest"}}, "t.toml")


def test_stage_keys_change_only_downstream_of_the_changed_field():
    base = {"data": {"dataset": "digits", "limit": 60}, "train": {"losses": ["triplet"], "epochs": 2},
            "baselines": {"ce": True, "upper_bound": True}}
    k0 = _keys(base)
    assert _keys(base) == k0  # deterministic
    assert set(k0) >= {"data", "captures/lensless", "tuples/lensless", "train/triplet/lensless",
                       "evaluate/triplet/lensless", "bayes/triplet/lensless", "train/ce/lensless",
                       "captures/upper-bound", "train/triplet/upper-bound", "report"}

    def changed(tables):
        k = _keys(tables)
        return {n for n in k if k[n] != k0.get(n)}

    # a training field: every training run, its evaluation and Bayes, and the report
    c = changed({**base, "train": {**base["train"], "options": {"width": 4}}})
    assert c == {n for n in k0 if n.split("/")[0] in ("train", "evaluate", "bayes", "report")}
    # an evaluation field: the metric runs' evaluations and the report only (the ce baseline
    # is evaluated with its head whatever the classifiers)
    c = changed({**base, "evaluate": {"classifiers": ["prototype"]}})
    assert c == {"evaluate/triplet/lensless", "evaluate/triplet/upper-bound", "report"}
    # the camera: the lensless set and everything built on it, not the data or the upper bound
    c = changed({**base, "captures": {"camera": "bare-sensor"}})
    assert "data" not in c and "captures/upper-bound" not in c and "train/triplet/upper-bound" not in c
    assert {"captures/lensless", "tuples/lensless", "train/triplet/lensless", "report"} <= c
    # the report title: the report only
    assert changed({**base, "report": {"title": "x"}}) == {"report"}


# ----------------------------------------------------------------------------------------------
# running


def test_study_runs_every_stage_and_writes_the_report(study):
    res, out = study["result"], study["out"]
    assert set(statuses(res).values()) == {"ran"}
    for name in ("report.html", "report.md", "results.json", "study.toml", "study.json"):
        assert (out / name).is_file(), name
    for s in res["stages"]:
        done = json.loads((Path(s["dir"]) / "DONE.json").read_text())
        assert done["key"] == s["key"] and done["wall_s"] >= 0

    results = json.loads((out / "results.json").read_text())
    t1 = results["tables"]["1"]
    assert [r["epoch"] for r in t1["ours"]["triplet/lensless"]] == [1, 2]
    assert [r["accuracy"] for r in t1["seed"]] == [16.40, 30.73, 31.13]
    run = results["runs"]["triplet/lensless"]
    final = run["results"]["prototype"][-1]
    assert 0 <= final["accuracy"] <= 100 and final["recall"] == pytest.approx(final["accuracy"])
    assert results["runs"]["ce/lensless"]["primary_classifier"] == "head"
    assert results["runs"]["triplet/upper-bound"]["role"] == "upper-bound"
    assert results["degradation"]["seed"]["psnr"] == 10.74
    assert results["degradation"]["ours"]["n"] == 60
    # the lens camera is far less degraded than the bare sensor
    assert results["degradation"]["upper_bound"]["psnr"] > results["degradation"]["ours"]["psnr"] + 10
    b = results["bayes"]["triplet/lensless"]
    assert b["seed_kl"] == 0.41 and b["kl_posterior_prior"] >= 0
    prov = results["provenance"]
    assert prov["package_version"] and prov["dataset"] == "digits"
    assert {s["stage"] for s in prov["stages"]} == set(statuses(res)) - {"report"}

    md = (out / "report.md").read_text()
    assert "| Model | Accuracy | Precision | Recall | F1score | Epochs |" in md
    for heading in ("Table 1: triplet loss, lensless images", "Table 3: quadruplet loss, lensless images",
                    "Baselines", "Reconstruction quality", "Bayesian inference", "Provenance"):
        assert heading in md, heading
    assert "31.13" in md and "10.74" in md and "18.68" in md and "0.41" in md
    for link in re.findall(r"!\[[^\]]*\]\(([^)]+)\)", md):  # figure links resolve from OUT
        assert (out / link).is_file(), link

    html = (out / "report.html").read_text()
    assert html.count("<table>") >= 8
    assert "<script" not in html and "http://" not in html and "https://" not in html
    images = re.findall(r'src="data:image/png;base64,([^"]+)"', html)
    assert len(images) >= 5  # samples, threshold, confusion, t-SNE, learning curves, Bayes
    from PIL import Image

    for data in images:
        Image.open(io.BytesIO(base64.b64decode(data))).verify()


def test_rerun_skips_everything_and_a_training_change_reruns_only_downstream(study, tmp_path):
    out = study["out"]
    before = {s["name"]: s for s in study["result"]["stages"]}
    again = run_study(study["config"], out, log=quiet)
    assert set(statuses(again).values()) == {"skipped"}

    changed_cfg = write_config(tmp_path / "tiny.toml", extra_options="weight_decay = 0.01")
    res = run_study(changed_cfg, out, log=quiet)
    st = statuses(res)
    for name, status in st.items():
        downstream = name.split("/")[0] in ("train", "evaluate", "bayes", "report")
        assert status == ("ran" if downstream else "skipped"), (name, status)
        if not downstream:
            assert {s["name"]: s for s in res["stages"]}[name]["dir"] == before[name]["dir"]
    cfg = json.loads((Path({s["name"]: s for s in res["stages"]}["train/triplet/lensless"]["dir"])
                      / "run" / "config.json").read_text())
    assert cfg["weight_decay"] == 0.01
    # the first config again: all its stages are still there; its report is published again
    back = run_study(study["config"], out, log=quiet)
    assert set(statuses(back).values()) == {"skipped"}
    assert json.loads((out / "study.json").read_text())["config"]["train"]["options"].get("weight_decay") is None


def test_unfinished_stage_resumes(study):
    out = study["out"]
    res = run_study(study["config"], out, log=quiet)
    train_dir = Path({s["name"]: s for s in res["stages"]}["train/triplet/lensless"]["dir"])
    (train_dir / "DONE.json").unlink()  # as if interrupted after its last epoch
    res = run_study(study["config"], out, log=quiet)
    st = statuses(res)
    assert st["train/triplet/lensless"] == "ran"
    assert all(v == "skipped" for k, v in st.items() if k != "train/triplet/lensless")
    done = json.loads((train_dir / "DONE.json").read_text())
    assert done["resumed"] is True
    assert done["outputs"]["summary"]["resumed_from"] == 2  # the trainer resumed, trained nothing


def test_sigterm_stops_the_study_like_ctrl_c_and_records_the_attempt(tmp_path, monkeypatch):
    """A batch scheduler's SIGTERM mid-stage: the study stops with KeyboardInterrupt, the stage's
    attempt time is kept in ATTEMPTS.json, and the previous SIGTERM handler is back."""
    import os
    import signal
    import time

    from dataclasses import replace

    from opticsfree.study import names as stage_registry

    def killed(stage, directory, ctx):
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(5)  # the handler raises before this ends
        raise AssertionError("SIGTERM was not turned into an interrupt")

    monkeypatch.setitem(stage_registry.REGISTRY._entries, "tuples",
                        replace(stage_registry.stage_spec("tuples"), function=killed))
    before = signal.getsignal(signal.SIGTERM)
    cfg = write_config(tmp_path / "t.toml", extra_options="", ce=False, upper=False)
    with pytest.raises(KeyboardInterrupt):
        run_study(cfg, tmp_path / "out", log=quiet)
    assert signal.getsignal(signal.SIGTERM) is before
    stages = {p.name.rsplit("-", 1)[0]: p for p in (tmp_path / "out" / "stages").iterdir()}
    assert (stages["captures-lensless"] / "DONE.json").is_file()
    attempts = json.loads((stages["tuples-lensless"] / "ATTEMPTS.json").read_text())
    assert len(attempts) == 1 and 0 < attempts[0]["wall_s"] < 5


def test_a_failing_stage_stops_the_study_and_keeps_finished_stages(tmp_path):
    # 90% of 6 scenes per class held out leaves 1 training scene per class: training refuses
    cfg = write_config(tmp_path / "fail.toml", extra_options="val_fraction = 0.9", ce=False, upper=False)
    out = tmp_path / "out"
    with pytest.raises(StageError) as e:
        run_study(cfg, out, log=quiet)
    msg = str(e.value)
    assert msg.startswith("stage train/triplet/lensless failed: ")
    assert "training scene" in msg and "rerun the same command to resume" in msg
    stages = {p.name.rsplit("-", 1)[0]: p for p in (out / "stages").iterdir()}
    for kept in ("data", "captures-lensless", "tuples-lensless"):
        assert (stages[kept] / "DONE.json").is_file(), kept
    failed = stages["train-triplet-lensless"]
    assert not (failed / "DONE.json").exists()
    assert "training scene" in json.loads((failed / "FAILED.json").read_text())["error"]
    assert not (out / "report.html").exists()

    # fixed config: the finished stages are reused
    fixed = write_config(tmp_path / "fixed.toml", extra_options="", ce=False, upper=False)
    res = run_study(fixed, out, log=quiet)
    st = statuses(res)
    assert st["data"] == st["captures/lensless"] == st["tuples/lensless"] == "skipped"
    assert st["train/triplet/lensless"] == "ran" and (out / "report.html").is_file()


def test_reconstruction_stages(tmp_path):
    text = TINY.format(extra_options="", ce="false", upper="false").replace(
        "[train]\n", '[reconstruct]\nmethods = ["unet"]\nepochs = 1\nsize = 16\n'
        '[reconstruct.method.unet]\noptions = { width = 4 }\n\n[train]\n', 1).replace(
        "epochs = 2\ncheckpoints = [1, 2]", "epochs = 1")
    cfg = tmp_path / "rec.toml"
    cfg.write_text(text, encoding="utf-8")
    out = tmp_path / "out"
    res = run_study(cfg, out, log=quiet)
    st = statuses(res)
    assert {"reconstruct/unet", "captures/unet", "tuples/unet", "train/triplet/unet",
            "bayes/triplet/unet"} <= set(st)
    results = json.loads((out / "results.json").read_text())
    assert "unet" in results["reconstruction_quality"]
    assert list(results["tables"]["2"]["ours"]) == ["triplet/unet"]
    derived = json.loads((Path(results["captures"]["unet"]["captures"]) / "manifest.json").read_text())
    assert derived["reconstruction"]["method"] == "unet" and "derived_from" in derived
    md = (out / "report.md").read_text()
    assert "reconstructed (U-Net)" in md and "ours: U-Net" in md
    assert "| U-Net | width=4 | 1 |" in md  # the reconstruction training table names the options


# ----------------------------------------------------------------------------------------------
# command line and browser


def test_cli_run(study, tmp_path):
    from typer.testing import CliRunner

    import opticsfree.cli.run  # noqa: F401 - registers `run` (until cli/main.py imports it)
    from opticsfree.cli.main import app

    r = CliRunner().invoke(app, ["run", str(study["config"]), "--out", str(study["out"]), "--json"])
    assert r.exit_code == 0, r.output
    summary = json.loads(r.stdout[r.stdout.index("{"):])
    assert all(s["status"] == "skipped" for s in summary["stages"])
    assert summary["report"]["html"].endswith("report.html")

    bad = tmp_path / "bad.toml"
    bad.write_text('[train]\nlosses = ["hinge"]\n', encoding="utf-8")
    r = CliRunner().invoke(app, ["run", str(bad)])
    assert r.exit_code == 2
    assert "error: " in r.output and "[train] losses[0]" in r.output and "triplet" in r.output


def _chromium() -> str | None:
    for name in ("/usr/bin/chromium", "chromium", "chromium-browser"):
        path = shutil.which(name) if not name.startswith("/") else (name if Path(name).is_file() else None)
        if path:
            return path
    return None


def test_report_html_in_headless_chromium(study):
    chromium = _chromium()
    if chromium is None:
        pytest.skip("chromium is not installed (Debian: apt-get install chromium)")
    html = (study["out"] / "report.html").resolve()
    with tempfile.TemporaryDirectory() as profile:
        proc = subprocess.run([chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                               "--no-first-run", "--disable-background-networking",
                               "--disable-component-update", "--disable-sync", f"--user-data-dir={profile}",
                               "--enable-logging=stderr", "--v=0", "--dump-dom", html.as_uri()],
                              capture_output=True, text=True, timeout=180)
    assert proc.returncode == 0, proc.stderr[-2000:]
    dom = proc.stdout
    assert "<table>" in dom and "</html>" in dom
    for text in ("Table 1: triplet loss, lensless images", "Baselines", "Bayesian inference",
                 "Reconstruction quality", "Provenance", "31.13"):
        assert text in dom, text
    assert dom.count("<table>") >= 8
    assert "Failed to load resource" not in proc.stderr and "Uncaught" not in proc.stderr
