"""``opticsfree predict`` and ``opticsfree export`` on tiny trained runs (CPU, a few seconds each):
bad files named and skipped, the same classes as ``evaluate``, the run's temperature and
threshold, multi-frame fusion, the ONNX round trip, and the clear errors."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from opticsfree.bayes.report import bayes_analysis
from opticsfree.evaluation.report import evaluate_models
from opticsfree.training import list_checkpoints, load_trained, train
from PIL import Image
from typer.testing import CliRunner

from opticsfree.captures.testing import make_capture_set
from opticsfree.cli.main import app
from opticsfree.errors import ConfigError, DataError
from opticsfree.inference import export_onnx, load_classifier, predict, write_predictions

runner = CliRunner()
TINY = {"backbone": "cnn4", "width": 4, "embedding_dim": 16, "batch_size": 24,
        "warmup_epochs": 0.5, "val_prototypes": 100, "threads": 1}


def invoke(args: list) -> object:
    return runner.invoke(app, [str(a) for a in args])


def one_line_error(r, code: int = 2) -> str:
    assert r.exit_code == code, (r.exit_code, r.output, r.exception)
    lines = [ln for ln in r.stderr.strip().splitlines() if not ln.startswith("warning: ")]
    assert lines and lines[-1].startswith("error: ") and "Traceback" not in r.output, r.stderr
    return lines[-1]


@pytest.fixture(scope="module")
def captures(tmp_path_factory):
    """3 classes x 20 scenes per split, 16 px RGB."""
    return make_capture_set(tmp_path_factory.mktemp("cs") / "set", n_classes=3, per_class=20, size=16)


def _train(captures: Path, out: Path, **extra) -> Path:
    train({"captures": str(captures), "loss": "triplet", "epochs": 3, "checkpoints": [2],
           **TINY, **extra}, out, show_progress=False)
    return out


@pytest.fixture(scope="module")
def bare_run(captures, tmp_path_factory):
    """A run with no evaluation or Bayes outputs (no threshold, no fitted temperature)."""
    return _train(captures, tmp_path_factory.mktemp("runs") / "bare")


@pytest.fixture(scope="module")
def run(captures, tmp_path_factory):
    """A run with a validated threshold (evaluate) and a fitted temperature (bayes)."""
    out = _train(captures, tmp_path_factory.mktemp("runs") / "full")
    _evaluate(out, "threshold")
    bayes_analysis(load_trained(out), out, figures=False, run=out)
    return out


def _evaluate(run, classifier):
    """``opticsfree evaluate RUN --classifier C`` (no figures), as the command calls it."""
    models = (load_trained(run, e) for e in list_checkpoints(run))
    return evaluate_models(models, run, "test", classifier, run=run, metrics=run / "metrics.jsonl",
                           figures=False, n_resamples=10)


def _csv(path: Path) -> list[dict]:
    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


# --------------------------------------------------------------------------------------------
# predict


def test_bad_files_are_named_and_skipped_the_rest_predicted(run, captures, tmp_path):
    folder = tmp_path / "new"
    folder.mkdir()
    good = sorted((captures / "lensless" / "test").rglob("*.jpeg"))[:5]
    for i, f in enumerate(good):
        shutil.copy(f, folder / f"cap{i}.jpeg")
    data = good[0].read_bytes()
    (folder / "truncated.jpeg").write_bytes(data[:len(data) // 2])
    (folder / "notes.txt").write_text("not an image\n")
    Image.fromarray(np.full((16, 16), 128, np.uint8), mode="L").save(folder / "gray.png")
    out = tmp_path / "pred.csv"
    r = invoke(["predict", run, folder, "--out", out])
    line = one_line_error(r, code=1)
    assert "3 of 8 capture(s) could not be predicted" in line
    err = r.stderr
    for name, why in (("truncated.jpeg", "unreadable or truncated"),
                      ("notes.txt", "unreadable or truncated image"),
                      ("gray.png", "1 channel(s); the run takes 3-channel captures")):
        hit = [ln for ln in err.splitlines() if ln.startswith("skipped ") and name in ln]
        assert len(hit) == 1 and why in hit[0], (name, err)
    rows = _csv(out)
    assert sorted(Path(row["path"]).name for row in rows) == [f"cap{i}.jpeg" for i in range(5)]
    assert all(row["predicted"] in ("class0", "class1", "class2") for row in rows)
    probs = np.array([[float(row[f"p_class{c}"]) for c in range(3)] for row in rows])
    assert np.allclose(probs.sum(1), 1, atol=1e-5)
    # all good: exit 0, nothing on stderr but the summary
    r = invoke(["predict", run, *[folder / f"cap{i}.jpeg" for i in range(5)]])
    assert r.exit_code == 0, r.output
    assert len(r.stdout.strip().splitlines()) == 5


def test_predicted_classes_equal_evaluates(run, captures):
    """The capture set's test split, and the same files as a plain folder: evaluate's classes."""
    from opticsfree.evaluation.embed import class_prototypes, embed_split
    from opticsfree.evaluation.prototype_classifier import PrototypeClassifier
    clf = load_classifier(run)
    res = predict(clf, [captures], split="test")
    trained = load_trained(run)
    test = embed_split(trained, "test")
    gallery, labels = embed_split(trained, "train", domains=("original",)).unique_originals()
    want = PrototypeClassifier(n_classes=3).fit(gallery, labels).predict(test.lensless)
    assert np.array_equal(res.predicted, want)
    assert np.allclose(clf.prototypes, class_prototypes(gallery, labels, 3), atol=1e-6)
    # evaluate's own numbers for the same captures
    ev = _evaluate(run, "prototype").checkpoints[-1].to_json()
    y = np.array([int(lab[-1]) for lab in res.labels])
    cm = np.zeros((3, 3), int)
    np.add.at(cm, (y, res.predicted), 1)
    assert cm.tolist() == ev["confusion_matrix"]
    assert res.accuracy() == pytest.approx(ev["accuracy"])
    # the same files given as a folder: same classes, same posteriors
    folder = predict(clf, [captures / "lensless" / "test"])
    by_name = {Path(p[0]).name: i for i, p in enumerate(folder.paths)}
    order = [by_name[Path(p[0]).name] for p in res.paths]
    assert np.array_equal(folder.predicted[order], res.predicted)
    assert np.allclose(folder.posterior[order], res.posterior)


def test_the_runs_temperature_and_threshold_are_used(run, captures):
    from opticsfree.evaluation.threshold_classifier import UNKNOWN, ThresholdClassifier
    from opticsfree.utils.io import read_json

    clf = load_classifier(run)
    bayes = read_json(run / "bayes_test.json")
    ev = read_json(run / "eval_test_threshold.json")["checkpoints"][-1]
    assert clf.temperature == pytest.approx(bayes["temperature"])
    assert clf.temperature_source == "bayes_test.json"
    assert clf.threshold == pytest.approx(ev["threshold"]) and clf.epoch == ev["epoch"] == 3
    res = predict(clf, [captures], split="test", reject=True)
    thr = ThresholdClassifier(clf.prototypes)
    thr.threshold = clf.threshold
    emb = clf.embed(clf.model.load_split("test").lensless)
    open_set = np.where(thr.reject(emb), UNKNOWN, thr.predict(emb))
    dmin = -thr.decision_function(emb).max(axis=1)
    assert np.array_equal(res.rejected, open_set == UNKNOWN)
    assert np.allclose(res.distance, dmin, atol=1e-5)
    assert 100 * res.rejected.mean() == pytest.approx(ev["reject_rate"])
    # the posterior is softmax(-d^2 / T) under the uniform prior
    d2 = ((emb[:, None, :].astype(np.float64) - clf.prototypes[None].astype(np.float64)) ** 2).sum(-1)
    z = -d2 / clf.temperature
    q = np.exp(z - z.max(1, keepdims=True))
    assert np.allclose(res.posterior, q / q.sum(1, keepdims=True), atol=1e-6)


def test_reject_without_a_threshold_is_a_clear_error(bare_run, captures, tmp_path):
    clf = load_classifier(bare_run)
    assert clf.threshold is None and clf.temperature == 1.0 and clf.temperature_source is None
    with pytest.raises(ConfigError, match="no validated threshold"):
        predict(clf, [captures], reject=True)
    out = tmp_path / "p.csv"
    r = invoke(["predict", bare_run, captures, "--reject", "--out", out])
    line = one_line_error(r)
    assert f"--reject: {bare_run} has no validated threshold for epoch 3" in line
    assert f"opticsfree evaluate {bare_run} --classifier threshold" in line
    assert not out.exists()
    # without --reject it predicts, warning that the posteriors use T = 1
    r = invoke(["predict", bare_run, captures, "--split", "test", "--out", out])
    assert r.exit_code == 0, r.output
    assert f"fit it with `opticsfree bayes {bare_run} --checkpoint 3`" in r.stderr
    assert len(_csv(out)) == 60


def test_frames_of_a_scene_are_fused(bare_run, tmp_path):
    from opticsfree.bayes.posterior import sequential_log_posteriors

    multi = make_capture_set(tmp_path / "multi", n_classes=3, per_class=4, size=16, frames=3,
                             splits=("test",))
    clf = load_classifier(bare_run)
    folder = multi / "lensless" / "test"
    by_name = predict(clf, [folder])                        # the naming rule <scene>_fNN
    assert len(by_name.scenes) == 12 and all(len(p) == 3 for p in by_name.paths)
    assert all(Path(p[k]).stem.endswith(f"_f{k:02d}") for p in by_name.paths for k in range(3))
    by_index = predict(clf, [multi])                        # the capture set's index
    assert by_index.posterior == pytest.approx(by_name.posterior)
    by_k = predict(clf, [folder], frames_per_scene=3)      # sorted files, 3 at a time
    assert by_k.posterior == pytest.approx(by_name.posterior)
    single = predict(clf, [folder], frames_per_scene=1)
    assert len(single.scenes) == 36
    # fused = the sequential Bayesian update of the single-frame likelihoods (under the uniform
    # prior a single frame's posterior is its normalised likelihood)
    frames = [np.log(single.posterior[i::3]) for i in range(3)]
    fused = np.exp(sequential_log_posteriors(clf.log_prior, frames)[-1])
    assert np.allclose(fused, by_name.posterior, atol=1e-9)
    with pytest.raises(DataError, match="not a whole number of scenes"):
        predict(clf, [folder], frames_per_scene=5)


def test_outputs_csv_and_jsonl(run, captures, tmp_path):
    clf = load_classifier(run)
    res = predict(clf, [captures], split="test", reject=True, top=2)
    write_predictions(res, tmp_path / "p.jsonl")
    rows = [json.loads(line) for line in (tmp_path / "p.jsonl").read_text().splitlines()]
    assert len(rows) == 60
    assert set(rows[0]) == {"path", "scene", "frames", "predicted", "probability", "distance",
                            "rejected", "label", "top", "paths"}
    assert rows[0]["top"][0]["class"] == rows[0]["predicted"]
    write_predictions(res, tmp_path / "p.csv")
    header = (tmp_path / "p.csv").read_text().splitlines()[0].split(",")
    assert header == ["path", "scene", "frames", "predicted", "probability", "distance", "rejected",
                      "label", "top1", "top1_probability", "top2", "top2_probability"]
    r = invoke(["predict", run, captures, "--out", tmp_path / "p.txt"])
    assert "expected a .csv or .jsonl file" in one_line_error(r)
    (tmp_path / "dir.csv").mkdir()
    assert "is a directory" in one_line_error(invoke(["predict", run, captures, "--out",
                                                      tmp_path / "dir.csv"]))
    assert "not found" in one_line_error(invoke(["predict", run, tmp_path / "nope"]))
    assert "--top must be between 1 and 3" in one_line_error(invoke(["predict", run, captures,
                                                                     "--top", "4"]))
    r = invoke(["predict", run, captures, "--split", "test", "--json"])
    assert r.exit_code == 0
    d = json.loads(r.stdout)
    assert d["n_predicted"] == 60 and len(d["predictions"]) == 60 and d["n_failed"] == 0


def test_predictions_are_the_same_bytes_in_worker_processes(run, captures, tmp_path, monkeypatch):
    """Decoding in worker processes, read a few captures at a time: the same files as in this
    process (a bad capture included)."""
    import importlib

    from opticsfree.utils import parallel

    predict_mod = importlib.import_module("opticsfree.inference.predict")  # the module, not the function

    folder = tmp_path / "new"
    folder.mkdir()
    for i, f in enumerate(sorted((captures / "lensless" / "test").rglob("*.jpeg"))[:9]):
        shutil.copy(f, folder / f"cap{i}.jpeg")
    (folder / "cap9.jpeg").write_bytes(b"not a jpeg")
    clf = load_classifier(run)
    monkeypatch.setattr(parallel, "MIN_PARALLEL", 0)
    monkeypatch.setattr(predict_mod, "CHUNK", 4)
    outs = []
    for workers in (1, 2):
        res = predict(clf, [folder, captures], split="test", workers=workers)
        outs.append(write_predictions(res, tmp_path / f"w{workers}.csv").read_bytes())
        assert [f.path for f in res.failures] == [str(folder / "cap9.jpeg")]
    assert outs[0] == outs[1]


def test_checkpoints_by_name(run):
    from opticsfree.inference.adapter import resolve_checkpoint

    assert resolve_checkpoint(run, "last") == 3 and resolve_checkpoint(run, 2) == 2
    assert resolve_checkpoint(run, "best") in (2, 3)
    with pytest.raises(DataError, match="no checkpoint for epoch 1"):
        resolve_checkpoint(run, "1")
    with pytest.raises(ConfigError, match="expected best, last or an epoch"):
        resolve_checkpoint(run, "first")
    assert load_classifier(run, "2").threshold is not None      # evaluate validated every epoch
    assert load_classifier(run, "2").temperature_source is None  # bayes fitted the last only


def test_prototypes_are_cached_for_use_without_the_capture_set(run, monkeypatch):
    from opticsfree.inference import bundle

    first = load_classifier(run)
    assert list((run / ".cache").glob("prototypes-e003-*.npz"))
    monkeypatch.setattr(bundle, "_captures_key", lambda captures: None)  # the set is gone
    again = load_classifier(run)
    assert again.prototypes_source == "cache"
    assert np.array_equal(again.prototypes, first.prototypes)
    shutil.rmtree(run / ".cache")
    with pytest.raises(DataError, match="capture set is not there"):
        load_classifier(run)


def test_a_ce_run_is_classified_by_its_head(captures, tmp_path):
    run = tmp_path / "ce"
    train({"captures": str(captures), "loss": "ce", "epochs": 2, **TINY}, run, show_progress=False)
    clf = load_classifier(run)
    assert clf.likelihood == "ce" and clf.prototypes is None
    res = predict(clf, [captures], split="test")
    assert np.isnan(res.distance).all() and np.allclose(res.posterior.sum(1), 1)
    with pytest.raises(ConfigError, match="classified by its head"):
        predict(clf, [captures], reject=True)
    pytest.importorskip("onnxruntime")
    out = export_onnx(clf, tmp_path / "ce.onnx")
    assert out.outputs == ["posterior", "logits"] and out.fp32.agreement == 1.0


def test_test_time_mirroring_averages_a_capture_and_its_flip(run, captures, tmp_path):
    import torch
    import torch.nn.functional as F

    from opticsfree.training.checkpoint import check_mirror

    plain, mirrored = load_trained(run), load_trained(run, mirror=True)
    x = plain.load_split("test").lensless[:8]
    want = F.normalize(plain.embed(x, "lensless") + plain.embed(x.flip(-1), "lensless"), dim=1)
    torch.testing.assert_close(mirrored.embed(x, "lensless"), want)
    assert not torch.allclose(mirrored.embed(x, "lensless"), plain.embed(x, "lensless"))
    sym = torch.cat([x[..., :8], x[..., :8].flip(-1)], -1)      # a left-right symmetric capture
    torch.testing.assert_close(mirrored.embed(sym, "lensless"), plain.embed(sym, "lensless"))
    xo = plain.load_split("test").original[:4]                  # originals are never mirrored
    torch.testing.assert_close(mirrored.embed(xo, "original"), plain.embed(xo, "original"))
    # predict: refused with the exported graph, recorded in the output
    clf = load_classifier(run, mirror=True)
    with pytest.raises(ConfigError, match="--mirror: the onnx engine"):
        predict(clf, [captures], split="test", engine="onnx")
    r = invoke(["predict", run, captures, "--split", "test", "--mirror", "--json"])
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout)["mirror"] is True
    # evaluate: the mirrored scores go beside the run's own, never over them
    copy = tmp_path / "run"
    shutil.copytree(run, copy)
    before = sorted(p.name for p in copy.iterdir())
    r = invoke(["evaluate", copy, "--mirror", "--json", "--no-figures", "--checkpoint", "last"])
    assert r.exit_code == 0, r.output
    assert "no camera model" in r.stderr
    assert sorted(p.name for p in copy.iterdir()) == sorted(before + ["eval-mirror"])
    assert (copy / "eval-mirror" / "table.md").is_file()
    # the validity check: a synthetic (real-capture) set is noted; an off-centre camera refused
    assert "no camera model" in check_mirror(captures, 16)
    from opticsfree.optics import load_camera_config

    odd = tmp_path / "odd"
    shutil.copytree(captures, odd)
    m = json.loads((odd / "manifest.json").read_text())
    cam = load_camera_config("seed").to_dict()
    cam["geometry"]["offset_mm"] = [1.5, 0.0]
    m["camera"] = cam
    (odd / "manifest.json").write_text(json.dumps(m))
    with pytest.raises(ConfigError, match="--mirror: the camera of .* is not left-right symmetric"):
        check_mirror(odd, 16)
    cam["geometry"]["offset_mm"] = [0.0, 0.0]
    (odd / "manifest.json").write_text(json.dumps(m))
    assert check_mirror(odd, 16).startswith("mirroring valid")


def test_a_transformer_run_exports_to_onnx_and_agrees(captures, tmp_path):
    run = tmp_path / "vit"
    train({"captures": str(captures), "loss": "ce", "epochs": 1, **TINY, "backbone": "vit", "width": 8},
          run, show_progress=False)
    clf = load_classifier(run)
    assert clf.model.config["backbone"] == "vit"
    pytest.importorskip("onnxruntime")
    out = export_onnx(clf, tmp_path / "vit.onnx")
    assert out.fp32.agreement == 1.0 and out.fp32.max_posterior_diff < 1e-3, out.fp32


# --------------------------------------------------------------------------------------------
# export


def test_export_round_trip(run, captures, tmp_path):
    pytest.importorskip("onnxruntime")
    from opticsfree.inference.export import read_metadata, session

    out = tmp_path / "model.onnx"
    r = invoke(["export", run, "--out", out, "--int8"])
    assert r.exit_code == 0, r.output
    assert "classes agree on 100.00%" in r.stdout and "model.int8.onnx" in r.stdout
    meta = read_metadata(out)
    assert meta["classes"] == ["class0", "class1", "class2"]
    assert meta["input"]["shape"] == ["batch", 3, 16, 16] and meta["input"]["dtype"] == "uint8"
    assert float(meta["temperature"]) == pytest.approx(load_classifier(run).temperature)
    assert float(meta["threshold"]) == pytest.approx(load_classifier(run).threshold)
    # the deployed graph gives predict's posteriors and distances, at any batch size
    clf = load_classifier(run)
    res = predict(clf, [captures], split="test")
    x = clf.model.load_split("test").lensless.numpy()
    sess = session(out)
    for n in (1, 7, 60):
        post, emb, dist = sess.run(None, {"images": x[:n]})
        assert post.shape == (n, 3) and emb.shape == (n, 16) and dist.shape == (n,)
        assert np.abs(post - res.posterior[:n]).max() <= 1e-4
        assert np.array_equal(post.argmax(1), res.predicted[:n])
        assert np.allclose(dist, res.distance[:n], atol=1e-4)
    q = tmp_path / "model.int8.onnx"
    assert q.is_file() and read_metadata(q)["classes"] == meta["classes"]
    d = json.loads(invoke(["export", run, "--out", out, "--int8", "--json"]).stdout)
    assert d["fp32"]["agreement"] >= 0.999 and d["fp32"]["max_posterior_diff"] <= 1e-4
    assert d["int8_size_bytes"] == q.stat().st_size and d["int8_accuracy_change"] is not None
    assert d["int8_method"] == "dynamic"
    r = invoke(["export", run, "--out", out, "--int8", "--int8-method", "static"])
    assert r.exit_code == 0 and "static int8" in r.stdout, r.output
    assert "calibrated (min-max) on 54 train captures" in read_metadata(q)["quantization"]


def test_the_onnx_engine_predicts_as_pytorch(run, captures, tmp_path):
    pytest.importorskip("onnxruntime")
    clf = load_classifier(run)
    ref = predict(clf, [captures], split="test")
    got = predict(clf, [captures], split="test", engine="onnx", threads=1)
    assert np.array_equal(got.predicted, ref.predicted)
    assert np.abs(got.posterior - ref.posterior).max() <= 1e-4
    r = invoke(["predict", run, captures, "--split", "test", "--engine", "onnx", "--json"])
    assert r.exit_code == 0 and json.loads(r.stdout)["engine"] == "onnx", r.output


def test_export_with_the_models_front_end_and_float_input(captures, tmp_path):
    """Auto-contrast and the learned global front end are inside the graph; float input."""
    pytest.importorskip("onnxruntime")
    run = _train(captures, tmp_path / "run", lensless_contrast=True, global_features=2)
    clf = load_classifier(run)
    assert clf.preprocessing.lensless_contrast and clf.preprocessing.global_features == 2
    res = export_onnx(clf, tmp_path / "m.onnx", input_dtype="float", int8=True)
    assert res.fp32.agreement == 1.0 and res.fp32.max_posterior_diff <= 1e-4
    assert res.input_dtype == "float" and res.int8 is not None


def test_export_that_does_not_verify_writes_nothing(run, tmp_path, monkeypatch):
    pytest.importorskip("onnxruntime")
    from opticsfree.inference import export

    monkeypatch.setattr(export, "MAX_POSTERIOR_DIFF", -1.0)
    out = tmp_path / "model.onnx"
    r = invoke(["export", run, "--out", out])
    line = one_line_error(r)
    assert "does not reproduce PyTorch" in line and "nothing written" in line
    assert list(tmp_path.iterdir()) == []


def test_export_without_onnx_says_how_to_install(run, tmp_path, monkeypatch):
    import builtins

    real = builtins.__import__

    def no_onnx(name, *args, **kwargs):
        if name.split(".")[0] in ("onnx", "onnxruntime"):
            raise ImportError(f"No module named {name!r}", name=name)
        return real(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_onnx)
    line = one_line_error(invoke(["export", run, "--out", tmp_path / "m.onnx"]))
    assert "pip install 'opticsfree[export]'" in line
    assert "error: export needs the optional packages onnx and onnxruntime" in line
    assert not (tmp_path / "m.onnx").exists()


def test_cli_choices_match_the_library():
    from opticsfree.cli import inference as cli
    from opticsfree.inference import export

    assert cli.ExportFormat.__args__ == export.FORMATS
    assert cli.InputDtype.__args__ == export.INPUT_DTYPES
    assert cli.Int8Method.__args__ == export.INT8_METHODS
    import importlib

    assert cli.Engine.__args__ == importlib.import_module("opticsfree.inference.predict").ENGINES


def test_a_run_on_reconstructions_puts_captures_through_its_front_end(captures, tmp_path):
    """A run trained on a derived set (reconstructions) applies the reconstruction model to raw
    captures; the derived set itself is taken as already reconstructed."""
    from opticsfree.reconstruction import apply_reconstruction, train_reconstruction

    model = tmp_path / "unet"
    train_reconstruction(captures, "unet", model, epochs=1,
                         options={"width": 4, "global_features": 2}, amp=False, threads=1)
    derived = apply_reconstruction(model, captures, tmp_path / "derived", workers=1, threads=1)
    run = _train(derived, tmp_path / "run")
    clf = load_classifier(run)
    assert clf.preprocessing.reconstruction["method"] == "unet"
    raw = predict(clf, [captures / "lensless" / "test"])
    rec = predict(clf, [derived], split="test")
    assert np.array_equal(raw.predicted, rec.predicted)
    assert np.allclose(raw.posterior, rec.posterior, atol=1e-5)
    (model / "model.pt").unlink()
    with pytest.raises(DataError, match="reconstruction model this run's inputs were made with"):
        predict(load_classifier(run), [captures / "lensless" / "test"])
    assert len(predict(load_classifier(run), [derived], split="test").scenes) == 60
