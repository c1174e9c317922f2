"""Bayesian inference: priors, posteriors, KL, calibration, temperature, multi-frame, CLI."""

from __future__ import annotations

import io
import json
import math
import re

import numpy as np
import pytest
import torch
from rich.console import Console
from scipy.special import softmax
from scipy.stats import entropy
from typer.testing import CliRunner

import opticsfree.cli.bayes  # noqa: F401 - registers the command
from fake_trained import FakeTrained
from opticsfree.bayes.analysis import analyse, group_frames
from opticsfree.bayes.calibration import brier, calibration_metrics, ece, nll, reliability
from opticsfree.bayes.divergence import (
    kl_label_meanposterior,
    kl_posterior_prior,
    kl_posterior_prior_per_sample,
    kl_prior_posterior,
)
from opticsfree.bayes.likelihood import (
    fit_temperature,
    log_likelihood,
    metric_scores,
    nll_at,
    squared_distances,
)
from opticsfree.bayes.posterior import (
    batch_log_posterior,
    log_posterior,
    log_prior_of,
    posterior,
    sequential_log_posteriors,
)
from opticsfree.bayes.priors import load_prior_file, resolve_prior, train_prior, uniform_prior
from opticsfree.bayes.model import analyse_model
from opticsfree.bayes.report import bayes_analysis, summary_document, write_report
from opticsfree.cli.common import app
from opticsfree.errors import ConfigError, DataError
from opticsfree.utils.document import Document, Table, render_terminal

runner = CliRunner()
CLASSES = ["cat", "dog", "ship"]


def _rand_loglik(rng, n=50, c=5, scale=3.0):
    return rng.normal(0, scale, (n, c))


# ------------------------------------------------------------------------------- posterior


def test_posterior_rows_are_normalised_distributions():
    rng = np.random.default_rng(0)
    ll = _rand_loglik(rng)
    prior = rng.dirichlet(np.ones(5))
    q = posterior(prior, ll)
    assert q.shape == (50, 5)
    assert np.all(q >= 0)
    np.testing.assert_allclose(q.sum(1), 1.0, atol=1e-12)
    # Bayes' rule directly in probability space
    direct = prior * np.exp(ll)
    np.testing.assert_allclose(q, direct / direct.sum(1, keepdims=True), rtol=1e-10)


def test_zero_prior_class_gets_zero_posterior():
    rng = np.random.default_rng(1)
    q = posterior(np.array([0.5, 0.0, 0.5]), _rand_loglik(rng, 20, 3))
    assert np.all(q[:, 1] == 0)
    np.testing.assert_allclose(q.sum(1), 1.0)


def test_uniform_prior_leaves_normalised_likelihood_unchanged():
    rng = np.random.default_rng(2)
    scores = _rand_loglik(rng, 40, 7, scale=10.0)
    for T in (0.05, 1.0, 4.0):
        ll = log_likelihood(scores, T)
        q = posterior(uniform_prior(7), ll)
        np.testing.assert_allclose(q, softmax(scores / T, axis=1), rtol=1e-10, atol=1e-300)
        assert np.array_equal(q.argmax(1), scores.argmax(1))


def test_non_uniform_prior_shifts_posterior_towards_prior():
    ll = np.log(np.array([[0.5, 0.5]]))
    q = posterior(np.array([0.9, 0.1]), ll)
    np.testing.assert_allclose(q, [[0.9, 0.1]])


def test_sequential_update_equals_batch_product_of_likelihoods():
    rng = np.random.default_rng(3)
    prior = rng.dirichlet(np.ones(6))
    frames = [_rand_loglik(rng, 30, 6) for _ in range(5)]
    seq = sequential_log_posteriors(log_prior_of(prior), frames)
    assert seq.shape == (5, 30, 6)
    for k in range(1, 6):
        batch = batch_log_posterior(log_prior_of(prior), frames[:k])
        np.testing.assert_allclose(seq[k - 1], batch, atol=1e-10)
        # and in probability space: prior x product of likelihoods, normalised
        direct = prior * np.exp(np.sum(frames[:k], axis=0))
        np.testing.assert_allclose(np.exp(seq[k - 1]), direct / direct.sum(1, keepdims=True),
                                   rtol=1e-8)


def test_stable_for_huge_distances_and_tiny_temperature():
    rng = np.random.default_rng(4)
    x = rng.normal(0, 1e4, (10, 8))  # far from the unit prototypes: d^2 ~ 1e9
    protos = rng.normal(size=(3, 8))
    protos /= np.linalg.norm(protos, axis=1, keepdims=True)
    s = metric_scores(x, protos)
    assert np.all(np.isfinite(s)) and s.max() < -1e6
    for T in (1e-4, 1.0, 1e4):
        ll = log_likelihood(s, T)
        lp = log_posterior(log_prior_of(np.array([0.2, 0.3, 0.5])), ll)
        q = np.exp(lp)
        assert not np.isnan(lp).any() and not np.isnan(q).any()
        np.testing.assert_allclose(q.sum(1), 1.0)
        # the MAP class is still the nearest prototype
        assert np.array_equal(lp.argmax(1), s.argmax(1))
        m = calibration_metrics(lp, np.zeros(10, dtype=int))
        assert all(not math.isnan(v) for v in m.values())
        assert not math.isnan(kl_posterior_prior(q, np.array([0.2, 0.3, 0.5])))


def test_squared_distances_match_direct_computation():
    rng = np.random.default_rng(5)
    x, mu = rng.normal(size=(6, 4)), rng.normal(size=(3, 4))
    direct = ((x[:, None, :] - mu[None]) ** 2).sum(-1)
    np.testing.assert_allclose(squared_distances(x, mu), direct, rtol=1e-10)


# ------------------------------------------------------------------------------------- KL


def test_kl_posterior_prior_matches_scipy_entropy():
    rng = np.random.default_rng(6)
    q = rng.dirichlet(np.ones(10), size=25)
    prior = rng.dirichlet(np.ones(10))
    per = kl_posterior_prior_per_sample(q, prior)
    expected = np.array([entropy(qi, prior) for qi in q])
    np.testing.assert_allclose(per, expected, rtol=1e-12)
    assert kl_posterior_prior(q, prior) == pytest.approx(expected.mean(), rel=1e-12)
    assert kl_prior_posterior(q, prior) == pytest.approx(
        np.mean([entropy(prior, qi) for qi in q]), rel=1e-12)
    # uniform prior: log C - H(q)
    u = uniform_prior(10)
    np.testing.assert_allclose(kl_posterior_prior_per_sample(q, u),
                               math.log(10) - entropy(q, axis=1), rtol=1e-10)


def test_kl_label_meanposterior_matches_scipy_entropy():
    rng = np.random.default_rng(7)
    q = rng.dirichlet(np.ones(4), size=40)
    y = rng.integers(0, 4, 40)
    p = np.bincount(y, minlength=4) / 40
    assert kl_label_meanposterior(y, q) == pytest.approx(entropy(p, q.mean(0)), rel=1e-12)
    # a model whose mean posterior equals the label frequencies scores 0
    assert kl_label_meanposterior(y, np.tile(p, (40, 1))) == pytest.approx(0.0, abs=1e-15)


def test_kl_conventions_zero_and_infinite_terms():
    # 0 log 0 = 0; q > 0 where the prior is 0 gives +inf (scipy.special.rel_entr)
    half = np.array([0.5, 0.5])
    assert kl_posterior_prior(np.array([[1.0, 0.0]]), half) == pytest.approx(math.log(2))
    assert kl_posterior_prior(np.array([[0.5, 0.5]]), np.array([1.0, 0.0])) == math.inf


# ---------------------------------------------------------------------------- calibration


def test_ece_perfectly_calibrated_is_zero():
    # confidence 1 and always right
    q = np.eye(3)[[0, 1, 2, 0]]
    assert ece(q, np.array([0, 1, 2, 0])) == 0.0
    # confidence 0.8 (bin (0.8, 0.867]) right 8 times out of 10
    q = np.tile([0.8, 0.2], (10, 1))
    y = np.array([0] * 8 + [1] * 2)
    assert ece(q, y) == pytest.approx(0.0, abs=1e-12)


def test_ece_known_values():
    # 4 captures at confidence 0.9, 3 right: |0.75 - 0.9| = 0.15
    q = np.tile([0.9, 0.05, 0.05], (4, 1))
    assert ece(q, np.array([0, 0, 0, 1])) == pytest.approx(0.15)
    # two bins of 2 captures: conf 0.9 with 1/2 right, conf 0.6 with 2/2 right
    q = np.array([[0.9, 0.1], [0.9, 0.1], [0.6, 0.4], [0.6, 0.4]])
    y = np.array([0, 1, 0, 0])
    assert ece(q, y) == pytest.approx(0.5 * 0.4 + 0.5 * 0.4)
    r = reliability(q, y)
    assert len(r["count"]) == 15 and sum(r["count"]) == 4
    b09, b06 = 13, 8  # 0.9 in (13/15, 14/15], 0.6 in (8/15, 9/15]
    assert r["count"][b09] == 2 and r["accuracy"][b09] == 0.5
    assert r["count"][b06] == 2 and r["confidence"][b06] == pytest.approx(0.6)
    assert r["accuracy"][0] is None


def test_ece_agrees_with_torchmetrics():
    from torchmetrics.functional.classification import multiclass_calibration_error

    rng = np.random.default_rng(8)
    logits = rng.normal(0, 2, (300, 5))
    q = softmax(logits, axis=1)
    y = rng.integers(0, 5, 300)
    ref = multiclass_calibration_error(torch.tensor(q), torch.tensor(y), num_classes=5,
                                       n_bins=15, norm="l1")
    assert ece(q, y) == pytest.approx(float(ref), abs=1e-5)


def test_nll_and_brier_hand_values():
    q = np.array([[0.7, 0.2, 0.1], [0.25, 0.5, 0.25]])
    y = np.array([0, 2])
    assert nll(np.log(q), y) == pytest.approx(-(math.log(0.7) + math.log(0.25)) / 2)
    b = ((0.3 ** 2 + 0.2 ** 2 + 0.1 ** 2) + (0.25 ** 2 + 0.5 ** 2 + 0.75 ** 2)) / 2
    assert brier(q, y) == pytest.approx(b)


# ---------------------------------------------------------------------------- temperature


def _overconfident(rng, n=600, c=4, sharp=15.0):
    """Scores whose softmax is far too sharp: a noisy classifier scaled up."""
    y = rng.integers(0, c, n)
    clean = rng.normal(0, 1, (n, c))
    clean[np.arange(n), y] += 1.0  # ~55% accuracy
    return clean * sharp, y


def test_temperature_fitting_lowers_nll_on_overconfident_scores():
    rng = np.random.default_rng(9)
    s_val, y_val = _overconfident(rng)
    fit = fit_temperature(s_val, y_val)
    assert fit.fitted and fit.temperature > 5  # softens
    assert fit.nll_after < 0.5 * fit.nll_before
    # the optimum: no T on a fine grid does better
    grid = np.exp(np.linspace(np.log(1e-2), np.log(1e3), 400))
    assert fit.nll_after <= min(nll_at(s_val, y_val, t) for t in grid) + 1e-6
    # it generalises to held-out data of the same kind, and leaves the MAP accuracy unchanged
    s_test, y_test = _overconfident(rng)
    before = calibration_metrics(log_likelihood(s_test, 1.0), y_test)
    after = calibration_metrics(log_likelihood(s_test, fit.temperature), y_test)
    assert after["nll"] < before["nll"] and after["ece"] < before["ece"]
    assert after["accuracy"] == before["accuracy"]


def test_temperature_fitting_sharpens_underconfident_metric_scores():
    rng = np.random.default_rng(10)
    s, y = _overconfident(rng, sharp=0.05)
    fit = fit_temperature(s, y)
    assert fit.temperature < 1 and fit.nll_after < fit.nll_before


def test_temperature_without_validation_rows_is_not_fitted():
    fit = fit_temperature(np.zeros((0, 3)), np.zeros(0, dtype=int))
    assert not fit.fitted and fit.temperature == 1.0
    assert fit.to_dict()["nll_before"] is None


# --------------------------------------------------------------------------------- priors


def _write(tmp_path, obj, name="prior.json"):
    p = tmp_path / name
    p.write_text(json.dumps(obj) if not isinstance(obj, str) else obj)
    return p


def test_prior_file_valid(tmp_path):
    p = _write(tmp_path, {"dog": 0.5, "cat": 0.25, "ship": 0.25})
    np.testing.assert_allclose(load_prior_file(p, CLASSES), [0.25, 0.5, 0.25])
    np.testing.assert_allclose(resolve_prior(str(p), CLASSES), [0.25, 0.5, 0.25])
    # within the 1e-6 tolerance
    p = _write(tmp_path, {"cat": 0.3333334, "dog": 0.3333333, "ship": 0.3333333})
    assert load_prior_file(p, CLASSES).sum() == pytest.approx(1.0, abs=1e-6)


@pytest.mark.parametrize("obj, fragment", [
    ({"cat": 0.5, "dog": 0.5}, "'ship' is missing"),
    ({"cat": 1.2, "dog": -0.2, "ship": 0.0}, "'dog' has negative"),
    ({"cat": 0.5, "dog": 0.3, "ship": 0.1}, "sum to 0.9"),
    ({"cat": 0.5, "dog": 0.3, "ship": 0.2, "bird": 0.0}, "unknown class 'bird'"),
    ({"cat": "0.5", "dog": 0.3, "ship": 0.2}, "'cat' has '0.5'"),
    ([0.2, 0.3, 0.5], "expected a JSON object"),
    ("{not json", "invalid JSON"),
])
def test_prior_file_errors_name_file_and_class(tmp_path, obj, fragment):
    p = _write(tmp_path, obj, "my_prior.json")
    with pytest.raises(DataError) as e:
        load_prior_file(p, CLASSES)
    msg = str(e.value)
    assert "my_prior.json" in msg and fragment in msg
    assert "\n" not in msg


def test_prior_spec_neither_name_nor_file(tmp_path):
    with pytest.raises(DataError, match="uniform', 'train' or a JSON prior file"):
        resolve_prior(str(tmp_path / "nope.json"), CLASSES)


def test_train_prior_counts_scenes_once():
    y = np.array([0, 0, 1, 1, 1, 2])
    np.testing.assert_allclose(train_prior(y, 3), [2 / 6, 3 / 6, 1 / 6])
    # frames of the same scene count once: scenes a (0, 2 frames), b (1, 3 frames), c (2, 1)
    ids = ["a", "a", "b", "b", "b", "c"]
    np.testing.assert_allclose(train_prior(y, 3, ids=ids), [1 / 3, 1 / 3, 1 / 3])
    with pytest.raises(DataError, match="'ship' has no training example"):
        train_prior(np.array([0, 1]), 3, classes=CLASSES)


# -------------------------------------------------------------------------- analysis core


def _prototypes(rng, c=3, d=8):
    protos = rng.normal(size=(c, d))
    return protos / np.linalg.norm(protos, axis=1, keepdims=True)


def _draw(rng, protos, n_per=40, noise=0.9, frames=1):
    """Unit embeddings scattered around class prototypes; ``frames`` noisy rows per scene."""
    c, d = protos.shape
    y = np.repeat(np.arange(c), n_per)
    rows_x, rows_y, ids, fr = [], [], [], []
    for i, lab in enumerate(y):
        for f in range(frames):
            x = protos[lab] + rng.normal(0, noise / math.sqrt(d), d)
            rows_x.append(x / np.linalg.norm(x))
            rows_y.append(lab)
            ids.append(f"s{i}")
            fr.append(f)
    return np.array(rows_x), np.array(rows_y), ids, np.array(fr)


def test_uniform_prior_map_accuracy_equals_prototype_classifier():
    from opticsfree.evaluation import PrototypeClassifier

    rng = np.random.default_rng(11)
    true = _prototypes(rng)
    xtr, ytr, _, _ = _draw(rng, true)
    clf = PrototypeClassifier(n_classes=3).fit(xtr, ytr)
    xv, yv, _, _ = _draw(rng, true)
    xt, yt, _, _ = _draw(rng, true)
    protos = clf.prototypes.astype(np.float64)
    out = analyse(metric_scores(xv, protos), yv, metric_scores(xt, protos), yt, uniform_prior(3))
    proto_acc = 100.0 * float((clf.predict(xt) == yt).mean())
    assert 40 < proto_acc < 100  # a non-trivial case
    assert out.accuracy == pytest.approx(proto_acc)
    assert out.before.accuracy == pytest.approx(proto_acc)
    for key in ("kl_posterior_prior", "kl_label_meanposterior", "nll", "brier", "ece"):
        assert math.isfinite(getattr(out.fitted, key))
    assert 0 <= out.fitted.kl_posterior_prior <= math.log(3)
    # the metric scores at T = 1 are under-confident (d^2 <= 4): fitting sharpens them
    assert out.temperature < 1 and out.fitted.nll < out.before.nll
    # the JSON: the fitted metrics at the top level, in order, then T = 1 under before_temperature
    js = out.to_json()
    assert list(js)[:8] == ["temperature", "accuracy", "nll", "brier", "ece",
                            "kl_posterior_prior", "kl_label_meanposterior", "kl_prior_posterior"]
    assert js["accuracy"] == out.accuracy and js["before_temperature"]["temperature"] == 1.0
    assert js["temperature_fit"]["fitted"] and "mean_frame" not in js
    # 4 example captures: one per class first, then filled with further scenes
    assert [e["label"] for e in js["examples"]][:3] == [0, 1, 2] and len(js["examples"]) == 4
    assert set(js["examples"][0]) == {"row", "label", "prior", "likelihood", "posterior"}


def test_group_frames_orders_by_frame_and_checks():
    ids = ["b", "a", "a", "b", "a", "b"]
    frames = np.array([1, 2, 0, 0, 1, 2])
    labels = np.array([1, 0, 0, 1, 0, 1])
    g = group_frames(ids, labels, frames)
    assert g.scene_ids == ["b", "a"] and g.k == 3
    np.testing.assert_array_equal(g.index, [[3, 0, 5], [2, 4, 1]])
    np.testing.assert_array_equal(g.labels, [1, 0])
    assert group_frames(ids, labels, frames, k=2).index.shape == (2, 2)
    with pytest.raises(DataError, match="only 3 frame"):
        group_frames(ids, labels, frames, k=4)
    with pytest.raises(DataError, match="different labels"):
        group_frames(ids, np.array([1, 0, 1, 1, 0, 1]), frames)


def test_multi_frame_sequential_fusion_in_analyse():
    rng = np.random.default_rng(12)
    protos = _prototypes(rng)
    xv, yv, _, _ = _draw(rng, protos, noise=1.2)
    xt, yt, ids, fr = _draw(rng, protos, noise=1.2, frames=4)
    sv, st = metric_scores(xv, protos), metric_scores(xt, protos)
    g = group_frames(ids, yt, fr)
    m = xt[g.index].mean(1)
    m /= np.linalg.norm(m, axis=1, keepdims=True)
    prior = np.array([0.5, 0.3, 0.2])
    out = analyse(sv, yv, st, yt, prior, g, metric_scores(m, protos))
    curve = out.frames
    assert [r.k for r in curve] == [1, 2, 3, 4]
    assert curve[-1].accuracy > curve[0].accuracy  # evidence accumulates
    assert curve[-1].kl > curve[0].kl  # and the posterior moves further from the prior
    assert 0 <= out.mean_frame.accuracy <= 100 and out.mean_frame.k == 4
    # the curve's last point is exactly prior x product of the 4 frame likelihoods
    T = out.temperature
    lls = [log_likelihood(st[g.index[:, k]], T) for k in range(4)]
    q = np.exp(batch_log_posterior(np.log(prior), lls))
    assert curve[-1].accuracy == pytest.approx(100 * (q.argmax(1) == g.labels).mean())
    assert curve[-1].kl == pytest.approx(kl_posterior_prior(q, prior))
    assert out.n == len(yt) and out.n_scenes == 120
    js = out.to_json()
    assert js["mean_frame_accuracy"] == js["mean_frame"]["accuracy"] == out.mean_frame.accuracy
    assert js["frames"][-1] == {"k": 4, "accuracy": curve[-1].accuracy, "kl": curve[-1].kl,
                                "nll": curve[-1].nll}


# ------------------------------------------------------------------- run-level and the CLI


def fake_trained(root, has_head=False, loss="triplet") -> FakeTrained:
    """The shared stand-in (tests/fake_trained.py) over a tiny capture set: |FFT| of the
    mean-removed grey image (blind to the stripes' phase and to the capture's shift, sensitive
    to their orientation, the class), so the double classifies well."""
    return FakeTrained(root, 1, loss, classes=["class0", "class1", "class2"], dim=12,
                       head=has_head, features="spectrum", seed=0, logit_scale=4.0)


@pytest.fixture(scope="module")
def capture_sets(tmp_path_factory):
    from opticsfree.captures.testing import make_capture_set

    base = tmp_path_factory.mktemp("bayes_sets")
    single = make_capture_set(base / "single", per_class=6, splits=("train", "val", "test"))
    multi = make_capture_set(base / "multi", per_class=5, frames=3,
                             splits=("train", "val", "test"))
    return single, multi


def _invoke(args):
    # typer runs a lone command without its name; with several commands the name is needed
    several = len(app.registered_commands) + len(app.registered_groups) > 1
    return runner.invoke(app, (["bayes"] if several else []) + [str(a) for a in args])


def test_bayes_analysis_matches_prototype_classifier_and_writes_out(capture_sets, tmp_path):
    from opticsfree.evaluation import embed_split, evaluate_checkpoint
    from opticsfree.evaluation.contract import TrainedEmbedder

    fake = fake_trained(capture_sets[0])
    assert isinstance(fake, TrainedEmbedder)
    out_dir = tmp_path / "out"
    result = bayes_analysis(fake, out_dir, run="RUN")
    out = result.to_json(detail=False)
    for key in ("kl_posterior_prior", "kl_label_meanposterior", "accuracy", "nll", "brier",
                "ece", "temperature"):
        assert isinstance(out[key], float), key
    assert not {"reliability", "reliability_before", "examples"} & set(out)
    assert out["before_temperature"]["temperature"] == 1.0
    assert out["likelihood"] == "metric" and out["prior"] == "uniform" and out["run"] == "RUN"
    assert out["frames_per_scene"] == 1 and len(out["frames"]) == 1
    assert out["captures"] == str(capture_sets[0]) and out["classes"] == fake.classes
    # MAP accuracy with a uniform prior == the evaluation's prototype classifier accuracy
    ev = evaluate_checkpoint(fake, "test", "prototype", n_resamples=10)
    assert out["accuracy"] == pytest.approx(ev.accuracy) == result.analysis.accuracy
    assert len(embed_split(fake, "test").labels) == out["n"] == 18
    # the files: figures, then the report, which lists them and itself
    names = ["bayes_test_bars.png", "bayes_test_reliability.png"]
    assert result.outputs == [str(out_dir / "figures" / n) for n in names] + [
        str(out_dir / "bayes_test.json")]
    for n in names:
        assert (out_dir / "figures" / n).stat().st_size > 1000
    saved = json.loads((out_dir / "bayes_test.json").read_text())
    assert saved == result.to_json() and saved["outputs"] == result.outputs
    assert saved["accuracy"] == out["accuracy"] and "reliability" in saved
    assert list(saved)[-11:] == ["prior", "prior_probs", "likelihood", "split", "captures",
                                 "epoch", "run", "classes", "frames_available", "conventions",
                                 "outputs"]


def test_analyse_model_writes_nothing_and_write_report_writes_it(capture_sets, tmp_path):
    fake = fake_trained(capture_sets[0])
    result = analyse_model(fake, frames=1)
    assert result.outputs == []
    assert not [p for p in capture_sets[0].rglob("*") if "bayes" in p.name]
    write_report(result, tmp_path / "o", figures=False)
    assert [p.name for p in (tmp_path / "o").iterdir()] == ["bayes_test.json"]
    assert result.outputs == [str(tmp_path / "o" / "bayes_test.json")]


def test_bayes_train_and_file_priors(capture_sets, tmp_path):
    fake = fake_trained(capture_sets[0])
    out = analyse_model(fake, prior="train").to_json()
    assert out["prior_probs"] == pytest.approx([1 / 3] * 3)  # balanced tiny set
    pf = tmp_path / "p.json"
    pf.write_text(json.dumps({"class0": 0.98, "class1": 0.01, "class2": 0.01}))
    skewed = analyse_model(fake, prior=pf).to_json()
    assert skewed["prior"] == "file:p.json"
    assert skewed["kl_label_meanposterior"] > out["kl_label_meanposterior"]
    # human-readable output
    doc = summary_document(analyse_model(fake, run="RUN"))
    assert doc.title == "run RUN  epoch 1  split test  likelihood metric  prior uniform"
    table = next(b for b in doc.blocks if isinstance(b, Table))
    assert list(table.columns) == ["", "T = 1", "fitted T"]
    assert [r.cells[0] for r in table.rows][-2:] == ["KL(posterior||prior)",
                                                     "KL(labels||mean posterior)"]
    lines = summary_text(doc).splitlines()
    assert lines[0] == doc.title
    assert any(re.match(r"\s*KL\(posterior\|\|prior\)\s+\d+\.\d{4}\s+\d+\.\d{4}$", line)
               for line in lines)


def summary_text(doc: Document) -> str:
    """What ``opticsfree bayes`` prints for ``doc`` (trailing spaces dropped)."""
    buf = io.StringIO()
    render_terminal(doc, Console(file=buf, width=120, color_system=None))
    return "\n".join(line.rstrip() for line in buf.getvalue().splitlines())


def test_bayes_user_errors(capture_sets, tmp_path):
    fake = fake_trained(capture_sets[0])
    bad = tmp_path / "bad_prior.json"
    bad.write_text(json.dumps({"class0": 0.5, "class1": 0.5}))
    with pytest.raises(DataError, match="bad_prior.json.*class2|class2.*bad_prior.json"):
        analyse_model(fake, prior=bad)
    with pytest.raises(DataError, match="only 1 frame"):
        analyse_model(fake, frames=3)
    with pytest.raises(DataError, match="--frames must be >= 1"):
        analyse_model(fake, frames=0)
    with pytest.raises(ConfigError, match="--split"):
        analyse_model(fake, split="bogus")
    with pytest.raises(ConfigError, match="--likelihood ce: .*no classifier head"):
        analyse_model(fake, likelihood="ce")
    with pytest.raises(ConfigError, match="--split val with --captures"):
        analyse_model(fake, split="val", captures=capture_sets[1])


def test_bayes_multi_frame(capture_sets, tmp_path):
    fake = fake_trained(capture_sets[1])
    result = bayes_analysis(fake, tmp_path)
    out = result.to_json(detail=False)
    assert out["frames_per_scene"] == 3 and [f["k"] for f in out["frames"]] == [1, 2, 3]
    assert out["n"] == 45 and out["n_scenes"] == 15
    assert "mean_frame_accuracy" in out
    assert (tmp_path / "figures" / "bayes_test_frames.png").is_file()
    out2 = analyse_model(fake, frames=2).to_json(detail=False)
    assert out2["frames_per_scene"] == 2 and out2["n"] == 30
    # T is fitted on the whole val split either way, so the first two curve points coincide
    assert out2["temperature"] == out["temperature"]
    assert out2["frames"] == out["frames"][:2]
    text = summary_text(summary_document(result)).splitlines()
    assert any(line.startswith("mean of 3 frames") for line in text)
    assert any(re.match(r"\s*3\s+\d+\.\d{2}\s+\d+\.\d{4}$", line) for line in text)
    assert f"wrote {tmp_path / 'bayes_test.json'}" in text


def test_bayes_ce_likelihood_uses_head(capture_sets):
    fake = fake_trained(capture_sets[0], has_head=True, loss="ce")
    out = analyse_model(fake)
    assert out.likelihood == "ce"
    ev = fake.load_split("test")
    head_acc = 100.0 * float((fake.logits(ev.lensless).argmax(1) == ev.labels).float().mean())
    assert out.analysis.accuracy == pytest.approx(head_acc)
    assert analyse_model(fake, likelihood="metric").likelihood == "metric"


# ------------------------------------------------------ integration with the real training


@pytest.mark.parametrize("loss, kind", [("triplet", "metric"), ("ce", "ce")])
def test_integration_train_one_epoch_then_bayes(tmp_path, loss, kind, contract_view):
    from opticsfree import training
    from opticsfree.captures.testing import make_capture_set
    from opticsfree.evaluation import evaluate_checkpoint

    captures = make_capture_set(tmp_path / "caps", n_classes=3, per_class=8, size=8, frames=2)
    run = tmp_path / "run"
    training.train({"captures": str(captures), "loss": loss, "backbone": "cnn4", "width": 4,
                    "embedding_dim": 8, "epochs": 1, "batch_size": 12, "val_fraction": 0.25,
                    "val_prototypes": 64, "seed": 0, "threads": 1}, run, show_progress=False)
    res = _invoke([run, "--json"])
    assert res.exit_code == 0, res.output
    out = json.loads(res.stdout)
    assert out["likelihood"] == kind and out["run"] == str(run)
    assert out["epoch"] == training.list_checkpoints(run)[-1] == 1
    best = _invoke([run, "--json", "--checkpoint", "best", "--out", tmp_path / "best"])  # evaluate's grammar
    assert best.exit_code == 0 and json.loads(best.stdout)["epoch"] == 1, best.output
    assert out["frames_per_scene"] == 2 and len(out["frames"]) == 2 and out["n"] == 48
    assert not {"reliability", "reliability_before", "examples"} & set(out)
    for key in ("kl_posterior_prior", "kl_label_meanposterior", "accuracy", "nll", "brier",
                "ece", "temperature"):
        assert isinstance(out[key], float) and math.isfinite(out[key]), key
    assert out["temperature_fit"]["fitted"] and out["temperature_fit"]["n"] > 0
    trained = training.load_trained(run)
    if kind == "metric":  # uniform prior: MAP = the evaluation's prototype classifier
        ev = evaluate_checkpoint(trained, "test", "prototype", n_resamples=10)
    else:  # uniform prior: MAP = the classifier head's argmax
        ev = evaluate_checkpoint(trained, "test", "head", n_resamples=10)
    assert out["accuracy"] == pytest.approx(ev.accuracy)
    assert (run / "bayes_test.json").is_file()
    assert (run / "figures" / "bayes_test_frames.png").is_file()
    # the library needs no more of the model than the contract: the same report
    view = analyse_model(contract_view(trained), run=run).to_json(detail=False)
    assert {**view, "outputs": out["outputs"]} == out


@pytest.fixture(scope="module")
def triplet_run(tmp_path_factory):
    """A real tiny run (1 epoch, one frame per scene)."""
    from opticsfree import training
    from opticsfree.captures.testing import make_capture_set

    base = tmp_path_factory.mktemp("bayes_run")
    captures = make_capture_set(base / "caps", n_classes=3, per_class=8, size=8)
    run = base / "run"
    training.train({"captures": str(captures), "loss": "triplet", "backbone": "cnn4", "width": 4,
                    "embedding_dim": 8, "epochs": 1, "batch_size": 12, "val_fraction": 0.25,
                    "val_prototypes": 64, "seed": 0, "threads": 1}, run, show_progress=False)
    return run


def _one_line_error(res, *needles):
    assert res.exit_code == 2, res.output
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "Traceback" not in res.output
    for n in needles:
        assert n in lines[0], (n, lines[0])


def test_cli_bayes_user_errors_and_out(triplet_run, tmp_path):
    run = triplet_run
    bad = tmp_path / "bad_prior.json"
    bad.write_text(json.dumps({"class0": 0.5, "class1": 0.5}))
    _one_line_error(_invoke([run, "--prior", bad]), "bad_prior.json", "class2")
    _one_line_error(_invoke([run, "--frames", "3"]), "only 1 frame")
    res = _invoke([run, "--split", "bogus"])
    assert res.exit_code == 2 and "--split" in res.output
    _one_line_error(_invoke([tmp_path / "nope"]), "nope", "not a training run")
    _one_line_error(_invoke([run, "--checkpoint", "7"]), "no checkpoint for epoch 7")
    _one_line_error(_invoke([run, "--checkpoint", "soon"]), "--checkpoint soon", "best, last or an epoch")
    a_file = tmp_path / "file"
    a_file.write_text("x")
    _one_line_error(_invoke([run, "--out", a_file]), "--out", "is a file")
    assert not (run / "bayes_test.json").exists()   # every error came before any output
    # --out: the report and its figures go there, nothing into the run
    before = sorted(p.name for p in run.iterdir())
    res = _invoke([run, "--out", tmp_path / "o", "--prior", "train"])
    assert res.exit_code == 0, res.output
    assert sorted(p.name for p in run.iterdir()) == before
    assert sorted(p.name for p in (tmp_path / "o").iterdir()) == ["bayes_test.json", "figures"]
    assert f"wrote {tmp_path / 'o' / 'bayes_test.json'}" in res.stdout
    saved = json.loads((tmp_path / "o" / "bayes_test.json").read_text())
    assert saved["run"] == str(run) and saved["prior"] == "train"


def test_bayes_on_another_multi_frame_capture_set(tmp_path):
    """A run trained on one frame per scene fuses the frames of another set (--captures)."""
    from opticsfree import training
    from opticsfree.captures.testing import make_capture_set

    one = make_capture_set(tmp_path / "one", n_classes=3, per_class=8, size=8, frames=1)
    multi = make_capture_set(tmp_path / "multi", n_classes=3, per_class=8, size=8, frames=3,
                             splits=("test",), seed=1)
    other = make_capture_set(tmp_path / "other", n_classes=4, per_class=4, size=8, splits=("test",))
    run = tmp_path / "run"
    training.train({"captures": str(one), "loss": "triplet", "backbone": "cnn4", "width": 4,
                    "embedding_dim": 8, "epochs": 1, "batch_size": 12, "val_fraction": 0.25,
                    "val_prototypes": 64, "seed": 0, "threads": 1}, run, show_progress=False)
    own = json.loads(_invoke([run, "--json"]).stdout)
    res = _invoke([run, "--captures", multi, "--json"])
    assert res.exit_code == 0, res.output
    out = json.loads(res.stdout)
    assert out["frames_per_scene"] == 3 and [f["k"] for f in out["frames"]] == [1, 2, 3]
    assert out["n"] == 3 * 3 * 8 and out["captures"] == str(multi)
    assert out["temperature"] == own["temperature"]  # fitted on the run's own val split
    assert (run / "bayes_test-multi.json").is_file() and (run / "bayes_test.json").is_file()
    assert (run / "figures" / "bayes_test-multi_frames.png").is_file()
    bad = _invoke([run, "--captures", other])
    assert bad.exit_code != 0 and "classes" in bad.output and "other" in bad.output
    bad = _invoke([run, "--captures", multi, "--split", "train"])
    assert bad.exit_code != 0 and "--split train" in bad.output
