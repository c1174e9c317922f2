"""Tests of opticsfree.evaluation and `opticsfree evaluate` (tiny, CPU, a few seconds)."""

from __future__ import annotations

import csv
import json
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch

from fake_trained import FakeTrained
from opticsfree.errors import ConfigError, DataError
from opticsfree.evaluation import (KNNClassifier, PrototypeClassifier, ThresholdClassifier,
                                   bootstrap_accuracy_ci, choose_threshold, class_prototypes,
                                   classification_metrics, embed_split, equal_error_rate,
                                   majority_vote, match_run, retrieval_metrics,
                                   verification_accuracy)
from opticsfree.evaluation import report
from opticsfree.evaluation.results import Evaluation
from opticsfree.evaluation.threshold_classifier import UNKNOWN, pair_distances, sweep
from opticsfree.seed_study import seed_row
from opticsfree.utils.document import Paragraph, Table, render_markdown


# --------------------------------------------------------------------------------------------
# A test double of opticsfree.training.TrainedModel: a fixed random projection of the pixels.


@dataclass
class FakeSplit:
    """Duck-typed CaptureSplit (the fields evaluation reads)."""

    lensless: torch.Tensor
    original: torch.Tensor
    labels: torch.Tensor
    ids: list
    frames: torch.Tensor
    classes: list


def make_split(n_classes: int, per_class: int, seed: int, frames: int = 1, size: int = 8,
               noise: float = 75.0) -> FakeSplit:
    """Class templates + noise; lensless = blurred original + noise (a learnable toy task)."""
    rng = np.random.default_rng(1234)  # the same class templates for every split
    templates = rng.uniform(0, 255, size=(n_classes, 3, size, size))
    rng = np.random.default_rng(seed)
    orig, lens, labels, ids, fr = [], [], [], [], []
    for c in range(n_classes):
        for j in range(per_class):
            o = np.clip(templates[c] + rng.normal(0, noise, templates[c].shape), 0, 255)
            for f in range(frames):
                blur = 0.5 * o + 0.5 * o.mean()
                ll = np.clip(blur + rng.normal(0, noise / 2, o.shape), 0, 255)
                orig.append(o)
                lens.append(ll)
                labels.append(c)
                ids.append(f"s{seed}_c{c}_{j}")
                fr.append(f)
    return FakeSplit(
        lensless=torch.tensor(np.array(lens), dtype=torch.uint8),
        original=torch.tensor(np.array(orig), dtype=torch.uint8),
        labels=torch.tensor(labels, dtype=torch.int64), ids=ids,
        frames=torch.tensor(fr, dtype=torch.int64), classes=[f"k{c}" for c in range(n_classes)])


def fake_trained(captures: Path, epoch: int, loss="triplet", n_classes: int = 3,
                 dim: int = 16, head: bool = False, frames: int = 1) -> FakeTrained:
    """The shared stand-in (tests/fake_trained.py) over three in-memory splits:
    embed = normalised fixed random projection of the pixels."""
    splits = {"train": make_split(n_classes, 8, seed=1, frames=frames),
              "val": make_split(n_classes, 4, seed=2, frames=frames),
              "test": make_split(n_classes, 6, seed=3, frames=frames)}
    return FakeTrained(captures, epoch, loss, n_classes=n_classes, dim=dim, head=head,
                       splits=splits, features="pixels", seed=7)


@dataclass
class FakeRun:
    """What the command line would load from a run directory: its checkpoints (as fakes) and
    its metrics.jsonl; ``out`` is the folder the evaluation writes to."""

    models: list
    metrics: Path
    out: Path


def make_run(tmp_path: Path, epochs=(15, 30), loss="triplet", dataset="cifar10",
             head=False) -> FakeRun:
    """Checkpoints of a fake run on a capture set whose manifest names ``dataset``."""
    captures = tmp_path / "captures"
    captures.mkdir()
    (captures / "manifest.json").write_text(json.dumps({"source": {"dataset": dataset}}))
    metrics = tmp_path / "metrics.jsonl"
    with open(metrics, "w") as f:
        for e in range(1, max(epochs, default=1) + 1):
            f.write(json.dumps({"epoch": e, "loss": 1.0 / e, "val_accuracy": 50 + e / 2,
                                "lr": 1e-3}) + "\n")
    models = [fake_trained(captures, e, loss, head=head) for e in epochs]
    return FakeRun(models, metrics, tmp_path / "out")


def test_the_fakes_and_the_trained_model_satisfy_the_contract(tmp_path):
    from opticsfree.evaluation.contract import Embedder, TrainedEmbedder

    fake = fake_trained(tmp_path, 1)
    assert isinstance(fake, TrainedEmbedder) and isinstance(fake, Embedder)
    assert not isinstance(object(), Embedder)

    class EmbedOnly:  # an Embedder (what predict needs) but not a TrainedEmbedder
        classes, size, has_head = ["a"], 8, False

        def embed(self, x, domain):
            return x

        def logits(self, x):
            return None

    assert isinstance(EmbedOnly(), Embedder) and not isinstance(EmbedOnly(), TrainedEmbedder)


def test_the_contract_imports_without_torch_numpy_or_the_rest_of_evaluation():
    """Packages that type against the contract (inference) can import it for free."""
    code = ("import sys, opticsfree.evaluation.contract as c; "
            "print(sorted(m for m in ('torch', 'numpy', 'sklearn', 'matplotlib', "
            "'opticsfree.evaluation.report') if m in sys.modules), c.TrainedEmbedder.__name__)")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=120)
    assert res.returncode == 0, res.stderr
    assert res.stdout.split() == ["[]", "TrainedEmbedder"]


# --------------------------------------------------------------------------------------------
# Prototype classifier


def test_class_prototypes_and_prototype_classifier_hand_made():
    emb = np.array([[1, 0], [3, 0], [0, 2], [0, 4], [-1, -1]], dtype=np.float32)
    labels = np.array([0, 0, 1, 1, 2])
    protos = class_prototypes(emb, labels, 3)
    np.testing.assert_allclose(protos, [[1, 0], [0, 1], [-2 ** -0.5, -2 ** -0.5]], atol=1e-6)
    clf = PrototypeClassifier(n_classes=3).fit(emb, labels)
    q = np.array([[0.9, 0.1], [0.2, 0.8], [-0.6, -0.5], [0.6, -0.8]], dtype=np.float32)
    # last query: distance to class 0 = |(0.6,-0.8)-(1,0)| = 0.894 < to class 2 (0.98)
    assert clf.predict(q).tolist() == [0, 1, 2, 0]


def test_class_prototypes_empty_class_is_a_clear_error():
    with pytest.raises(DataError, match=r"class\(es\) \[1\]"):
        class_prototypes(np.ones((2, 3)), np.array([0, 2]), 3)


# --------------------------------------------------------------------------------------------
# kNN


def brute_force_knn(gallery, gallery_labels, queries, k, n_classes):
    d = ((queries[:, None, :] - gallery[None, :, :]) ** 2).sum(-1)
    idx = np.argsort(d, axis=1, kind="stable")[:, :k]
    return majority_vote(gallery_labels[idx], n_classes), idx


def test_exact_knn_chunks_equal_numpy_brute_force():
    from opticsfree.evaluation.knn_classifier import exact_knn

    rng = np.random.default_rng(1)
    gallery = rng.normal(size=(300, 16)).astype(np.float32)
    queries = rng.normal(size=(53, 16)).astype(np.float32)
    d = ((queries[:, None, :].astype(np.float64) - gallery[None]) ** 2).sum(-1)
    want = np.argsort(d, axis=1, kind="stable")[:, :20]
    for chunk in (1, 7, 53, 1024):             # the chunking must not change the answer
        dist, idx = exact_knn(torch.from_numpy(queries), torch.from_numpy(gallery), 20, chunk)
        assert dist.dtype == torch.float32 and idx.dtype == torch.int64
        np.testing.assert_array_equal(idx.numpy(), want)
        np.testing.assert_allclose(dist.numpy(), np.take_along_axis(d, want, 1), rtol=1e-4, atol=1e-4)
    dist, idx = exact_knn(torch.zeros(0, 16), torch.from_numpy(gallery), 5)
    assert dist.shape == idx.shape == (0, 5)


def test_knn_matches_numpy_brute_force():
    rng = np.random.default_rng(0)
    gallery = rng.normal(size=(60, 8)).astype(np.float32)
    labels = rng.integers(0, 4, size=60)
    queries = rng.normal(size=(25, 8)).astype(np.float32)
    knn = KNNClassifier(n_classes=4).fit(gallery, labels)
    for k in (1, 3, 5, 10):
        expected, idx = brute_force_knn(gallery.astype(np.float64), labels, queries, k, 4)
        _, got_idx = knn.neighbours(queries, k)
        np.testing.assert_array_equal(got_idx, idx)
        np.testing.assert_array_equal(knn.set_params(k=k).predict(queries), expected)
    # and the vote itself, independently of majority_vote
    idx = brute_force_knn(gallery.astype(np.float64), labels, queries, 5, 4)[1]
    for q in range(25):
        counts = np.bincount(labels[idx[q]], minlength=4)
        assert counts[knn.set_params(k=5).predict(queries[q:q + 1])[0]] == counts.max()


def test_majority_vote_ties_go_to_the_nearest_tied_class():
    nl = np.array([[2, 1, 1, 2],    # tie 2:2 between 1 and 2 -> 2 (rank 0)
                   [0, 1, 1, 2],    # 1 has two votes
                   [3, 0, 1, 2]])   # all tie -> nearest = 3
    assert majority_vote(nl, 4).tolist() == [2, 1, 3]


def test_knn_select_k_picks_the_best_val_k_smallest_among_ties():
    # gallery on a line: class 0 at 0..4, one class-1 outlier at 0.1; queries of class 0 near 0
    gallery = np.array([[0.0], [1.0], [2.0], [3.0], [4.0], [0.1], [10.0], [11.0], [12.0]],
                       dtype=np.float32)
    labels = np.array([0, 0, 0, 0, 0, 1, 1, 1, 1])
    queries = np.array([[0.12], [0.11], [11.0]], dtype=np.float32)
    knn = KNNClassifier(n_classes=2).fit(gallery, labels)
    acc = knn.select_k(queries, np.array([0, 0, 1]), ks=(1, 3, 5, 20))
    assert acc[1] == pytest.approx(1 / 3)      # nearest is the outlier
    assert acc[3] == pytest.approx(1.0) and acc[5] == pytest.approx(1.0)
    assert 20 not in acc                       # larger than the gallery
    assert knn.k == 3


# --------------------------------------------------------------------------------------------
# Threshold


def test_threshold_rule_maximises_balanced_accuracy_and_eer_hand_made():
    matching = np.array([0.1, 0.2, 0.3, 0.6])
    non_matching = np.array([0.4, 0.5, 0.7, 0.8])
    t, acc = choose_threshold(matching, non_matching)
    # accept d <= t: t in (0.3, 0.4) gives TAR 3/4, FAR 0 -> (0.75 + 1) / 2 = 0.875, the best
    assert t == pytest.approx(0.35)
    assert acc == pytest.approx(0.875)
    assert verification_accuracy(matching, non_matching, t) == pytest.approx(0.875)
    # brute force over a fine grid agrees that nothing beats 0.875
    grid = np.linspace(0, 1, 1001)
    assert max(verification_accuracy(matching, non_matching, g) for g in grid) == pytest.approx(0.875)
    # at t in [0.4, 0.5): FAR = 1/4 (0.4) and FRR = 1/4 (0.6)
    eer, t_eer = equal_error_rate(matching, non_matching)
    assert eer == pytest.approx(0.25)
    assert 0.4 <= t_eer < 0.5


def test_threshold_balanced_accuracy_is_not_fooled_by_pair_imbalance():
    # 1 matching vs 9 non-matching: rejecting everything is 90% plain accuracy, 50% balanced
    matching = np.array([0.5])
    non_matching = np.array([0.1] + [0.9] * 8)
    t, acc = choose_threshold(matching, non_matching)
    assert 0.5 <= t < 0.9 and acc == pytest.approx(0.5 * (1 + 8 / 9))


def test_eer_agrees_with_sklearn_roc_curve():
    from sklearn.metrics import roc_curve

    rng = np.random.default_rng(3)
    m = rng.normal(0.6, 0.2, 200)
    n = rng.normal(1.1, 0.25, 700)
    eer, _ = equal_error_rate(m, n)
    y = np.r_[np.ones(len(m)), np.zeros(len(n))]
    fpr, tpr, _ = roc_curve(y, -np.r_[m, n])
    fnr = 1 - tpr
    i = np.flatnonzero(fpr - fnr >= 0)[0]
    d0, d1 = fpr[i - 1] - fnr[i - 1], fpr[i] - fnr[i]
    w = -d0 / (d1 - d0)
    assert eer == pytest.approx(fpr[i - 1] + w * (fpr[i] - fpr[i - 1]), abs=1e-12)
    s = sweep(m, n)
    assert np.all(np.diff(s.thresholds) > 0) and s.tar[-1] == 1 and s.far[-1] == 1


def brute_force_rates(m, n):
    """Every distinct decision by counting: thresholds just below the smallest distance, at the
    midpoints between distinct sorted distances and at the largest; TAR/FAR by comparison."""
    ds = np.unique(np.r_[m, n])
    ts = np.r_[np.nextafter(ds[0], -np.inf), (ds[:-1] + ds[1:]) / 2, ds[-1]]
    tar = np.array([(m <= t).mean() for t in ts])
    far = np.array([(n <= t).mean() for t in ts])
    return ts, tar, far


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_sweep_choose_threshold_and_eer_equal_a_brute_force_count(seed):
    rng = np.random.default_rng(seed)
    # distances on a coarse grid: ties inside and across the matching / non-matching pairs
    m = rng.integers(0, 12, 9) / 10
    n = rng.integers(4, 20, 23) / 10
    ts, tar, far = brute_force_rates(m, n)
    s = sweep(m, n)
    np.testing.assert_array_equal(s.thresholds, ts)
    np.testing.assert_array_equal(s.tar, tar)
    np.testing.assert_array_equal(s.far, far)
    bal = 0.5 * (tar + 1 - far)
    t, acc = choose_threshold(m, n)
    assert acc == bal.max() and t == ts[np.flatnonzero(bal == bal.max())[0]]   # smallest t of the best
    assert verification_accuracy(m, n, t) == pytest.approx(acc, abs=1e-12)
    # EER: first candidate with FAR >= FRR, linear interpolation with the one before
    diff = far - (1 - tar)
    i = int(np.flatnonzero(diff >= 0)[0])
    if diff[i] == 0 or i == 0:
        want = (far[i], ts[i])
    else:
        w = -diff[i - 1] / (diff[i] - diff[i - 1])
        want = (far[i - 1] + w * (far[i] - far[i - 1]), ts[i - 1] + w * (ts[i] - ts[i - 1]))
    assert equal_error_rate(m, n) == pytest.approx(want, abs=1e-12)


def test_threshold_classifier_reject_option():
    protos = np.array([[1.0, 0.0], [0.0, 1.0]], dtype=np.float32)
    val_q = np.array([[1, 0], [0.95, 0.3], [0, 1], [0.3, 0.95]], dtype=np.float32)
    val_y = np.array([0, 0, 1, 1])
    clf = ThresholdClassifier(protos).fit(val_q, val_y)
    m, n = pair_distances(val_q, val_y, protos)
    assert np.all(m <= clf.threshold) and np.all(n > clf.threshold)
    assert clf.fit_accuracy == 1.0 and clf.fit_eer == 0.0
    x = np.array([[0.9, 0.1], [-1.0, -1.0]], dtype=np.float32)
    closed, dmin = clf.predict(x), -clf.decision_function(x).max(axis=1)
    open_ = np.where(clf.reject(x), UNKNOWN, closed)
    assert closed.tolist() == [0, 0]           # closed set: nearest prototype always
    assert open_.tolist() == [0, UNKNOWN]      # far from every prototype -> unknown
    assert dmin[1] > clf.threshold


# --------------------------------------------------------------------------------------------
# Metrics


def test_weighted_and_macro_metrics_equal_sklearn():
    from sklearn.metrics import accuracy_score, f1_score, precision_score, recall_score

    rng = np.random.default_rng(5)
    y = rng.integers(0, 5, 300)
    p = np.where(rng.random(300) < 0.6, y, rng.integers(0, 5, 300))
    p[p == 4] = 3  # class 4 never predicted: precision 0 by convention
    m = classification_metrics(y, p, 5, list("abcde"))
    assert m["accuracy"] == pytest.approx(100 * accuracy_score(y, p))
    for name, fn in (("precision", precision_score), ("recall", recall_score), ("f1", f1_score)):
        assert m[name] == pytest.approx(100 * fn(y, p, average="weighted", zero_division=0))
        assert m["macro_" + name] == pytest.approx(100 * fn(y, p, average="macro", zero_division=0))
    assert m["recall"] == pytest.approx(m["accuracy"])  # as in every row of the seed's tables
    assert m["per_class"][4]["precision"] == 0.0
    assert sum(r["support"] for r in m["per_class"]) == 300
    cm = np.array(m["confusion_matrix"])
    assert cm.shape == (5, 5) and cm.trace() == (y == p).sum()


def test_bootstrap_ci_contains_accuracy_and_is_deterministic():
    rng = np.random.default_rng(1)
    y = rng.integers(0, 3, 400)
    p = np.where(rng.random(400) < 0.7, y, (y + 1) % 3)
    acc = 100 * (y == p).mean()
    ci = bootstrap_accuracy_ci(y, p, 1000, seed=0)
    assert ci[0] < acc < ci[1]
    assert ci == bootstrap_accuracy_ci(y, p, 1000, seed=0)
    assert ci != bootstrap_accuracy_ci(y, p, 1000, seed=1)
    # width close to the normal approximation 2 * 1.96 * sqrt(p (1 - p) / n)
    half = 1.96 * np.sqrt(acc / 100 * (1 - acc / 100) / 400) * 100
    assert (ci[1] - ci[0]) == pytest.approx(2 * half, rel=0.2)
    assert bootstrap_accuracy_ci(y, y, 200, seed=0) == (100.0, 100.0)


def test_retrieval_precision_at_1_and_map_at_r_hand_made():
    # references: class 0 at x=0,1; class 1 at x=10,11. Query A (class 0) at x=0.6: ranking
    # 1(c0), 0(c0) -> AP@R = 1. Query B (class 1) at x=4: ranking 1(c0), 0(c0)... nearest is a
    # class-0 item: P@1 = 0; its R = 2 relevant items are ranks 3 and 4: MAP@R = 0 (none in top 2)
    ref = np.array([[0.0], [1.0], [10.0], [11.0]], dtype=np.float32)
    ref_y = np.array([0, 0, 1, 1])
    q = np.array([[0.6], [4.0]], dtype=np.float32)
    out = retrieval_metrics(q, np.array([0, 1]), ref, ref_y)
    assert out["precision_at_1"] == pytest.approx(50.0)
    assert out["map_at_r"] == pytest.approx(50.0)
    # query C (class 0) at x=5.4: ranking 1(c0) d4.4, 0(c0) d5.4 (< 10 at 4.6? no: 10 is 4.6)
    # ranking: 1 (4.4), 10 (4.6), 0 (5.4): R = 2, AP@R = (1/1 + 0) / 2 = 0.5
    out = retrieval_metrics(np.array([[5.4]], dtype=np.float32), np.array([0]), ref, ref_y)
    assert out["precision_at_1"] == pytest.approx(100.0)
    assert out["map_at_r"] == pytest.approx(50.0)


# --------------------------------------------------------------------------------------------
# Embedding


def test_embed_split_batches_and_embeds_each_scene_original_once(tmp_path):
    model = fake_trained(tmp_path, 1, {"loss": "triplet"}, frames=3)
    emb = embed_split(model, "test", batch_size=5)
    n = 3 * 6 * 3
    assert emb.lensless.shape == (n, 16) and emb.original.shape == (n, 16)
    assert emb.lensless.dtype == np.float32
    assert model.calls == {"lensless": n, "original": n // 3}
    np.testing.assert_allclose(np.linalg.norm(emb.lensless, axis=1), 1, atol=1e-5)
    # frames of a scene share the same original embedding, and it equals a direct embedding
    data = model.load_split("test")
    direct = model.embed(data.original, "original").numpy()
    np.testing.assert_allclose(emb.original, direct, atol=1e-6)
    g, gl = emb.unique_originals()
    assert len(g) == n // 3 and gl.tolist() == data.labels[::3].tolist()
    only = embed_split(model, "val", domains=("original",))
    assert only.lensless is None and only.original.shape[0] == 36


def test_fuse_rows_is_the_mean_of_each_scenes_rows():
    from opticsfree.evaluation.embed import fuse_rows, scene_groups

    ids = ["b", "a", "b", "c", "a", "b"]
    v = np.arange(12, dtype=np.float64).reshape(6, 2)
    g = scene_groups(ids)
    assert g.index.tolist() == [0, 1, 0, 2, 1, 0] and g.first.tolist() == [0, 1, 3]
    assert g.counts.tolist() == [3, 2, 1] and g.multi_frame
    np.testing.assert_allclose(fuse_rows(v, g), [v[[0, 2, 5]].mean(0), v[[1, 4]].mean(0), v[3]])
    assert not scene_groups(["x", "y"]).multi_frame
    with pytest.raises(ValueError, match="expected values"):
        fuse_rows(v[:4], g)


def _repeat_frames(split: FakeSplit, k: int) -> FakeSplit:
    """Every row of a single-frame split repeated as k identical frames of its scene."""
    rep = lambda t: t.repeat_interleave(k, dim=0)  # noqa: E731
    return FakeSplit(lensless=rep(split.lensless), original=rep(split.original),
                     labels=rep(split.labels), ids=[i for i in split.ids for _ in range(k)],
                     frames=torch.arange(k).repeat(len(split.ids)), classes=split.classes)


@pytest.mark.parametrize("classifier", ["prototype", "knn", "threshold", "head"])
def test_fused_accuracy_on_identical_frames_equals_single_frame_accuracy(tmp_path, classifier):
    model = fake_trained(tmp_path, 1, "triplet", head=True)
    single = report.evaluate_checkpoint(model, classifier=classifier, n_resamples=200)
    assert single.fused_accuracy is None and single.fused_accuracy_ci is None
    assert single.n_scenes == single.n == 18
    assert single.to_json()["fused_accuracy"] is None
    model._splits["test"] = _repeat_frames(model._splits["test"], 3)
    multi = report.evaluate_checkpoint(model, classifier=classifier, n_resamples=200)
    assert multi.n == 54 and multi.n_scenes == 18
    assert multi.accuracy == pytest.approx(single.accuracy)
    assert multi.fused_accuracy == pytest.approx(single.accuracy)
    assert multi.fused_accuracy_ci == pytest.approx(single.accuracy_ci)  # same rows, same seed


def test_head_fusion_is_the_product_of_the_frame_likelihoods(tmp_path):
    model = fake_trained(tmp_path, 1, "triplet", head=True, frames=3)
    r = report.evaluate_checkpoint(model, classifier="head", n_resamples=50)
    data = model.load_split("test")
    logp = torch.log_softmax(model.logits(data.lensless), dim=1).reshape(-1, 3, 3)  # scene, frame, class
    pred = logp.sum(1).argmax(1)  # argmax of prior x prod_f p(c | frame f), flat prior
    assert r.fused_accuracy == pytest.approx(100 * (pred == data.labels[::3]).double().mean().item())


@pytest.mark.parametrize("classifier", ["prototype", "knn"])
def test_fusing_independent_noisy_frames_beats_one_frame(tmp_path, classifier):
    """(The fake's head is an untrained random map, so only the distance classifiers here.)"""
    model = fake_trained(tmp_path, 1, "triplet", head=True, frames=5)
    r = report.evaluate_checkpoint(model, classifier=classifier, n_resamples=100)
    assert r.n == 5 * r.n_scenes and r.fused_accuracy is not None
    assert r.fused_accuracy > r.accuracy
    # the summary shows both, labelled
    ev = report.write_evaluation(Evaluation(split="test", classifier=classifier, loss="triplet",
                                            images="lensless", checkpoints=[r]), tmp_path / "out")
    text = render_markdown(report.summary_document(ev), tmp_path)
    assert "Fused" in text and "one prediction per scene" in text
    assert ev.to_json()["conventions"]["fused"].startswith("multi-frame sets only")


# --------------------------------------------------------------------------------------------
# Seed tables


def test_seed_rows_and_run_matching(tmp_path):
    assert seed_row("triplet", "lensless", 50).accuracy == 31.13
    assert seed_row("quadruplet", "reconstructed", 15).f1 == 40.26
    assert seed_row("triplet", "lensless", 20) is None
    cifar = tmp_path / "c"
    cifar.mkdir()
    (cifar / "manifest.json").write_text(json.dumps({"source": {"dataset": "cifar10"}}))
    fmnist = tmp_path / "f"
    fmnist.mkdir()
    (fmnist / "manifest.json").write_text(json.dumps({"source": {"dataset": "fashion-mnist"}}))
    recon = tmp_path / "r"
    recon.mkdir()
    (recon / "manifest.json").write_text(json.dumps({
        "source": {"dataset": "cifar10"}, "derived_from": {"method": "cyclegan"}}))
    row = match_run({"loss": "quadruplet", "captures": str(cifar)}, 30)
    assert (row.table, row.accuracy) == (3, 31.84)
    assert match_run({"loss": "triplet", "captures": str(recon)}, 50).table == 2
    assert match_run({"loss": "triplet", "captures": str(fmnist)}, 50) is None
    assert match_run({"loss": "quadruplet-chen", "captures": str(cifar)}, 50) is None
    assert match_run({"loss": "ce", "captures": str(cifar)}, 50) is None
    assert match_run({"loss": "triplet", "captures": str(tmp_path / "none")}, 50) is None


# --------------------------------------------------------------------------------------------
# evaluate_models on the test double


CONTRACT_KEYS = {"epoch", "classifier", "accuracy", "precision", "recall", "f1", "accuracy_ci"}


def test_evaluate_models_prototype_tables_json_and_figures(tmp_path):
    run = make_run(tmp_path, epochs=(15, 30))
    ev = report.evaluate_models(run.models, run.out, run="RUN", metrics=run.metrics, figures=True)
    results = [c.to_json() for c in ev.checkpoints]
    assert [r["epoch"] for r in results] == [15, 30]        # ordered by epoch
    for r in results:
        assert CONTRACT_KEYS <= set(r) and r["classifier"] == "prototype"
        assert 0 <= r["accuracy"] <= 100 and r["n"] == 18
        assert 100 / 3 + 20 < r["accuracy"] < 100            # learnable, but not perfectly
        lo, hi = r["accuracy_ci"]
        assert lo <= r["accuracy"] <= hi
        assert r["recall"] == pytest.approx(r["accuracy"])
        assert 0 <= r["precision_at_1"] <= 100 and 0 <= r["map_at_r"] <= 100
    # the numbers equal an independent computation with the fake model
    model = run.models[0]
    protos = class_prototypes(model.embed(model.load_split("train").original, "original").numpy(),
                              model.load_split("train").labels.numpy(), 3)
    test = model.load_split("test")
    pred = PrototypeClassifier()
    pred.prototypes = protos
    p = pred.predict(model.embed(test.lensless, "lensless").numpy())
    assert results[0]["accuracy"] == pytest.approx(100 * (p == test.labels.numpy()).mean())
    assert ev.checkpoints[0].accuracy == results[0]["accuracy"]

    # seed rows: triplet on CIFAR-10 lensless -> Table 1, epochs 15 and 30
    assert results[0]["seed"]["accuracy"] == 16.40 and results[1]["seed"]["accuracy"] == 30.73
    out = run.out
    assert ev.out == out and ev.json_path == out / "eval_test_prototype.json"
    assert ev.table_paths == (out / "table.md", out / "table.csv")
    rows = list(csv.reader((out / "table.csv").read_text().splitlines()))
    assert rows[0] == ["Model", "Accuracy", "Precision", "Recall", "F1score", "Epochs"]
    assert [r[0] for r in rows[1:]] == ["ours (triplet, lensless, prototype)",
                                        "seed Table 1 (triplet, lensless)"] * 2
    assert rows[2] == ["seed Table 1 (triplet, lensless)", "16.40", "15.47", "16.40", "10.92", "15"]
    assert rows[1][1] == f"{results[0]['accuracy']:.2f}" and rows[3][5] == "30"
    md = (out / "table.md").read_text()
    assert md.startswith("# out: prototype classifier, test split")
    assert "| Model | Accuracy | Precision | Recall | F1score | Epochs |" in md
    assert "| seed Table 1 (triplet, lensless) | 30.73 | 30.37 | 30.73 | 30.22 | 30 |" in md
    assert "| --- | ---: | ---: | ---: | ---: | ---: |" in md.splitlines()
    assert "support-weighted" in md

    # the terminal summary (opticsfree evaluate without --json): one row per checkpoint
    summary = report.summary_document(ev)
    assert summary.title == "RUN: prototype classifier, test split"
    table = summary.blocks[0]
    assert isinstance(table, Table) and table.columns[-1] == "Seed acc."
    assert [r.cells[0] for r in table.rows] == ["15", "30"]
    assert table.rows[0].cells[1] == f"{results[0]['accuracy']:.2f}"
    assert [r.cells[-1] for r in table.rows] == ["16.40", "30.73"]
    assert summary.blocks[-1] == Paragraph(f"wrote {out / 'table.md'}, {out / 'table.csv'}, "
                                           f"{ev.json_path}, {out / 'figures'}/")

    full = json.loads((out / "eval_test_prototype.json").read_text())
    assert full == ev.to_json()
    assert list(full) == ["run", "captures", "split", "classifier", "images", "loss", "conventions",
                          "bootstrap", "figures", "checkpoints"]
    assert (full["run"], full["loss"], full["images"]) == ("RUN", "triplet", "lensless")
    assert full["captures"] is None  # the run's own set
    assert "fused" not in full["conventions"]  # single-frame: no fused accuracy to explain
    assert [c["epoch"] for c in full["checkpoints"]] == [15, 30]
    assert len(full["checkpoints"][0]["confusion_matrix"]) == 3
    assert "support-weighted" in full["conventions"]["precision_recall_f1"]
    figs = {Path(p).name for p in full["figures"]}
    assert figs == {"threshold_test.png", "confusion_test_prototype.png", "tsne_test.png",
                    "learning_curves.png"}
    for name in figs:
        assert (out / "figures" / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert all(c.artifacts is None for c in ev.checkpoints)   # dropped once written


def test_checkpoint_json_key_order_and_summary():
    """The per-checkpoint objects keep the documented key order; the summary (--json) leaves
    out the bulky detail keys and nothing else."""
    from opticsfree.evaluation.results import CheckpointEvaluation, KnnParams

    c = CheckpointEvaluation(
        epoch=3, classifier="knn", split="test", n=4, accuracy=50.0, precision=40.0, recall=50.0,
        f1=44.0, accuracy_ci=(10.0, 90.0), macro_precision=1.0, macro_recall=2.0, macro_f1=3.0,
        n_scenes=2, fused_accuracy=50.0, fused_accuracy_ci=(0.0, 100.0), precision_at_1=60.0, map_at_r=30.0, per_class=[{"class": "a"}],
        confusion_matrix=[[1, 1], [1, 1]], classes=["a", "b"],
        params=KnnParams(k=5, val_accuracy_by_k={1: 10.0, 5: 20.0}, gallery_size=7),
        seed=seed_row("triplet", "lensless", 15))
    full = c.to_json()
    assert list(full) == ["epoch", "classifier", "split", "n", "accuracy", "precision", "recall",
                          "f1", "accuracy_ci", "macro_precision", "macro_recall", "macro_f1",
                          "n_scenes", "fused_accuracy", "fused_accuracy_ci",
                          "precision_at_1", "map_at_r", "k", "val_accuracy_by_k", "gallery_size",
                          "per_class", "confusion_matrix", "classes", "seed"]
    assert full["val_accuracy_by_k"] == {"1": 10.0, "5": 20.0} and full["accuracy_ci"] == [10.0, 90.0]
    assert full["seed"]["accuracy"] == 16.40
    summary = c.to_json(detail=False)
    assert set(full) - set(summary) == {"per_class", "confusion_matrix", "classes"}
    json.dumps(full)  # JSON-ready


def test_evaluate_models_knn_and_threshold(tmp_path):
    run = make_run(tmp_path, epochs=(15,))
    ev = report.evaluate_models(run.models, run.out, classifier="knn", figures=False)
    r = ev.checkpoints[0]
    assert r.classifier == "knn" and r.params.k in (1, 3, 5, 10, 20)
    assert set(r.to_json()["val_accuracy_by_k"]) == {"1", "3", "5", "10", "20"}
    assert r.params.gallery_size == 24
    t = report.evaluate_models(run.models, run.out, classifier="threshold",
                               figures=False).checkpoints[0].to_json()
    for key in ("threshold", "verification_accuracy", "eer", "val_verification_accuracy",
                "reject_rate", "accuracy_with_reject"):
        assert key in t
    assert 0 <= t["eer"] <= 100 and 0 < t["threshold"] < 2
    # closed-set threshold accuracy = nearest prototype
    p = report.evaluate_models(run.models, run.out, classifier="prototype",
                               figures=False).checkpoints[0]
    assert t["accuracy"] == p.accuracy
    assert t["accuracy_with_reject"] <= t["accuracy"]
    assert (run.out / "eval_test_knn.json").is_file()
    assert (run.out / "eval_test_threshold.json").is_file()
    assert not (run.out / "figures").exists()
    # val split: a separate table, no seed rows (the seed's numbers are test numbers)
    v = report.evaluate_models(run.models, run.out, split="val", figures=False).checkpoints[0]
    assert v.seed is None and v.n == 12 and (run.out / "table_val.md").is_file()
    # the same checkpoint scored on its own, without writing anything
    alone = report.evaluate_checkpoint(run.models[0], "test", "knn")
    assert alone.to_json() == ev.checkpoints[0].to_json()


def test_each_classifier_keeps_its_own_table(tmp_path):
    """The run's default classifier writes table.md/csv, another table_<classifier>.*: the
    default's table survives evaluating with threshold, and each holds its own numbers."""
    run = make_run(tmp_path, epochs=(15,))
    default = report.evaluate_models(run.models, run.out, figures=False, n_resamples=50)
    before = (run.out / "table.md").read_text(), (run.out / "table.csv").read_text()
    thr = report.evaluate_models(run.models, run.out, classifier="threshold", figures=False,
                                 n_resamples=50)
    assert default.table_paths == (run.out / "table.md", run.out / "table.csv")
    assert thr.table_paths == (run.out / "table_threshold.md", run.out / "table_threshold.csv")
    assert ((run.out / "table.md").read_text(), (run.out / "table.csv").read_text()) == before
    for ev in (default, thr):
        md, csv_path = ev.table_paths
        rows = list(csv.reader(csv_path.read_text().splitlines()))
        c = ev.checkpoints[0]
        ours = f"ours (triplet, lensless, {ev.classifier})"
        assert rows[1] == [ours, f"{c.accuracy:.2f}", f"{c.precision:.2f}", f"{c.recall:.2f}",
                           f"{c.f1:.2f}", "15"]
        assert md.read_text().startswith(f"# out: {ev.classifier} classifier, test split")
        assert f"| {ours} |" in md.read_text()
        # the terminal summary names the classifier's own files
        assert report.summary_document(ev).blocks[-1] == Paragraph(
            f"wrote {md}, {csv_path}, {ev.json_path}")
    # another split: _<split> after the classifier
    v = report.evaluate_models(run.models, run.out, split="val", classifier="threshold",
                               figures=False, n_resamples=50)
    assert v.table_paths[0] == run.out / "table_threshold_val.md" and v.table_paths[0].is_file()
    assert sorted(p.name for p in run.out.glob("table*")) == [
        "table.csv", "table.md", "table_threshold.csv", "table_threshold.md",
        "table_threshold_val.csv", "table_threshold_val.md"]


def test_table_paths_follow_the_runs_default_classifier(tmp_path):
    """The default classifier depends on the loss: head for ce, prototype otherwise."""
    from opticsfree.evaluation.results import table_paths

    assert table_paths(tmp_path, "test") == (tmp_path / "table.md", tmp_path / "table.csv")
    assert table_paths(tmp_path, "val")[0] == tmp_path / "table_val.md"
    assert table_paths(tmp_path, "test", "head", "ce")[0] == tmp_path / "table.md"
    assert table_paths(tmp_path, "test", "prototype", "ce+triplet")[0] == tmp_path / "table.md"
    assert table_paths(tmp_path, "test", "head", "ce+triplet")[1] == tmp_path / "table_head.csv"
    assert table_paths(tmp_path, "val", "knn", "triplet")[0] == tmp_path / "table_knn_val.md"


def test_evaluate_models_head_classifier(tmp_path):
    run = make_run(tmp_path, epochs=(15,), loss="ce", head=False)
    with pytest.raises(ConfigError, match="no classifier head"):
        report.evaluate_models(run.models, run.out, classifier="head", figures=False)
    (tmp_path / "h").mkdir()
    run2 = make_run(tmp_path / "h", epochs=(15,), loss="ce", head=True)
    r = report.evaluate_models(run2.models, run2.out, classifier="head",
                               figures=False).checkpoints[0]
    assert r.classifier == "head" and r.seed is None     # ce has no seed row
    # ce never trains the original tower: distance classifiers are refused, head is the default
    for clf in ("prototype", "knn", "threshold"):
        with pytest.raises(ConfigError, match=f"--classifier {clf}: .*loss 'ce'.*--classifier head"):
            report.evaluate_models(run2.models, run2.out, classifier=clf, figures=False)
    d = report.evaluate_models(run2.models, run2.out, figures=False).checkpoints[0]
    assert d.classifier == "head" and d.accuracy == r.accuracy
    assert json.loads((run2.out / "eval_test_head.json").read_text())["classifier"] == "head"
    assert report.default_classifier("triplet") == "prototype"
    model = run2.models[0]
    test = model.load_split("test")
    pred = model.logits(test.lensless).argmax(1).numpy()
    assert r.accuracy == pytest.approx(100 * (pred == test.labels.numpy()).mean())


def test_evaluate_models_bad_arguments(tmp_path):
    run = make_run(tmp_path, epochs=(15,))
    with pytest.raises(DataError, match="no checkpoints to evaluate") as e:
        report.evaluate_models([], run.out)
    assert str(run.out) in str(e.value)
    with pytest.raises(ConfigError, match="unknown 'svm'"):
        report.evaluate_models(run.models, run.out, classifier="svm")
    with pytest.raises(ConfigError, match="unknown 'svm'"):
        report.evaluate_checkpoint(run.models[0], classifier="svm")
    assert not run.out.exists()  # refused before any output


def test_evaluate_models_loads_one_model_ahead(tmp_path):
    """A generator of checkpoints is consumed one ahead (to know which is last, for the
    figures) and no further, so the command line never holds more than two models."""
    run = make_run(tmp_path, epochs=(1, 2, 3))
    seen = []

    def load():
        for i, m in enumerate(run.models):
            # when model i is loaded, every model before i - 1 has been evaluated, none after
            seen.append([bool(x.calls["lensless"]) for x in run.models])
            assert seen[-1] == [j < i - 1 for j in range(3)], seen
            yield m

    ev = report.evaluate_models(load(), run.out, figures=True, n_resamples=10)
    assert [c.epoch for c in ev.checkpoints] == [1, 2, 3] and len(seen) == 3
    names = {p.name for p in ev.figures}
    assert "confusion_test_prototype.png" in names
    assert "learning_curves.png" not in names   # no metrics.jsonl given


def test_knn_and_threshold_need_the_val_split(tmp_path):
    run = make_run(tmp_path, epochs=(15,))
    no_val = run.models[0]
    del no_val._splits["val"]
    for clf in ("knn", "threshold"):
        with pytest.raises(DataError, match=f"--classifier {clf} tunes on the run's val split"):
            report.evaluate_models([no_val], run.out, classifier=clf, figures=False)
    # the prototype classifier does not need val; its threshold figure then has no line
    report.evaluate_models([no_val], run.out, figures=True)
    assert (run.out / "figures" / "threshold_test.png").is_file()


def test_learning_curves_reader(tmp_path):
    from opticsfree.evaluation.figures import plot_learning_curves, read_metrics_jsonl

    p = tmp_path / "metrics.jsonl"
    p.write_text('{"epoch": 1, "loss": 2.0, "lr": 0.0}\n{"epoch": 2, "loss": 1.0, "lr": 0.0}\n'
                 '{"epoch": 3, "lo')  # a run still writing its last line
    assert [r["epoch"] for r in read_metrics_jsonl(p)] == [1, 2]
    assert plot_learning_curves(p, tmp_path / "lc.png") == tmp_path / "lc.png"
    p.write_text('{"epoch": 1}\nnot json\n')
    with pytest.raises(DataError, match="line 2"):
        read_metrics_jsonl(p)
    assert plot_learning_curves(tmp_path / "absent.jsonl", tmp_path / "x.png") is None


def test_evaluate_models_on_a_real_capture_set(tmp_path):
    """The evaluation reads the CaptureSplit of captures.loader correctly, multi-frame too."""
    from opticsfree.captures import loader, testing

    caps = testing.make_capture_set(tmp_path / "caps", n_classes=3, per_class=6, size=8,
                                    frames=2, splits=("train", "test"))

    class LoaderTrained(FakeTrained):
        def load_split(self, split):
            if split == "val":  # the run's held-out part of train: every 3rd scene
                tr = loader.load_captures(caps, "train")
                return tr.subset(np.arange(0, len(tr), 3))
            return loader.load_captures(caps, split)

    out = tmp_path / "out"
    ev = report.evaluate_models([LoaderTrained(caps, 1, "quadruplet",
                                                          classes=["class0", "class1", "class2"])], out, classifier="knn",
                                figures=True)
    r = ev.checkpoints[0]
    assert r.n == 3 * 6 * 2 and r.params.gallery_size == 3 * 6  # one original per scene
    assert r.classes == ["class0", "class1", "class2"]
    assert r.seed is None                      # a synthetic set is not CIFAR-10
    assert "seed" not in (out / "table_knn.md").read_text().split("|", 1)[1]
    assert not (out / "figures" / "learning_curves.png").exists()   # no metrics.jsonl
    assert (out / "figures" / "tsne_test.png").is_file()


# --------------------------------------------------------------------------------------------
# A real run: training, then the library and the command line


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory):
    """Real training (1 epoch, tiny CNN, tiny synthetic set, ce+triplet: a head and towers)."""
    from opticsfree import training
    from opticsfree.captures.testing import make_capture_set

    base = tmp_path_factory.mktemp("evaluation_run")
    captures = make_capture_set(base / "caps", n_classes=3, per_class=8, size=8)
    out = base / "run"
    training.train({"captures": str(captures), "loss": "ce+triplet", "epochs": 1,
                    "backbone": "cnn4", "width": 8, "embedding_dim": 16, "batch_size": 12,
                    "val_fraction": 0.25, "seed": 0, "threads": 1}, out, show_progress=False)
    return out


def _cli():
    import typer

    import opticsfree.cli.evaluate  # noqa: F401  (registers the command)
    from opticsfree.cli.common import app

    # a Typer app with a single command runs it directly; with several, by name
    prefix = ["evaluate"] if isinstance(typer.main.get_command(app), typer.core.TyperGroup) else []
    return app, prefix


def test_integration_train_one_epoch_then_evaluate(trained_run, tmp_path, contract_view):
    """Every classifier on a real checkpoint; the library needs no more than the contract."""
    from opticsfree import training
    from opticsfree.evaluation.contract import TrainedEmbedder

    run = trained_run
    assert training.list_checkpoints(run) == [1]
    model = training.load_trained(run)
    assert isinstance(model, TrainedEmbedder) and model.loss == "ce+triplet"
    for clf in ("prototype", "knn", "threshold", "head"):
        out = tmp_path / clf
        ev = report.evaluate_models([model], out, classifier=clf, run=run,
                                    metrics=run / "metrics.jsonl",
                                    figures=clf == "prototype", n_resamples=200)
        r = ev.checkpoints[0].to_json()
        assert CONTRACT_KEYS <= set(r) and r["epoch"] == 1 and r["n"] == 24
        assert r["seed"] is None                      # synthetic set, ce+triplet: no seed row
        # the same numbers through an object that has the contract's members only
        view = report.evaluate_checkpoint(contract_view(model), "test", clf, n_resamples=200)
        assert view.to_json() == r
    assert (tmp_path / "prototype" / "table.md").is_file()
    assert (tmp_path / "prototype" / "figures" / "learning_curves.png").is_file()
    assert not (run / "table.md").exists()            # nothing written into the run


def test_cli_evaluate_json_table_and_out(trained_run, tmp_path):
    from typer.testing import CliRunner

    run = tmp_path / "run"
    shutil.copytree(trained_run, run)
    cmd, prefix = _cli()
    runner = CliRunner()
    res = runner.invoke(cmd, prefix + [str(run), "--json", "--no-figures"])
    assert res.exit_code == 0, res.output
    out = json.loads(res.stdout)
    assert [o["epoch"] for o in out] == [1]
    for o in out:
        assert CONTRACT_KEYS <= set(o) and "per_class" not in o and "classes" not in o
        assert len(o["accuracy_ci"]) == 2 and o["classifier"] == "prototype"
        assert "seed" in o and o["seed"] is None
    # by default the outputs go to the run directory, as the file says
    saved = json.loads((run / "eval_test_prototype.json").read_text())
    assert saved["run"] == str(run) and saved["checkpoints"][0]["accuracy"] == out[0]["accuracy"]
    assert (run / "table.md").is_file() and not (run / "figures").exists()

    default_table = (run / "table.md").read_text()
    res = runner.invoke(cmd, prefix + [str(run), "--classifier", "threshold", "--no-figures"])
    assert res.exit_code == 0, res.output
    text = " ".join(res.stdout.split())
    assert "support-weighted" in text and "test split" in text and "EER" in text
    # threshold has its own tables; the default classifier's are left as they were
    assert (run / "table.md").read_text() == default_table
    assert "threshold classifier" in (run / "table_threshold.md").read_text()
    assert (run / "table_threshold.csv").is_file()
    assert str(run / "table_threshold.md") in text

    # --out: everything goes there, nothing new into the run
    before = sorted(p.name for p in run.iterdir())
    elsewhere = tmp_path / "elsewhere"
    res = runner.invoke(cmd, prefix + [str(run), "--classifier", "knn", "--out", str(elsewhere)])
    assert res.exit_code == 0, res.output
    assert sorted(p.name for p in run.iterdir()) == before
    assert {p.name for p in elsewhere.iterdir()} == {"eval_test_knn.json", "table_knn.md",
                                                     "table_knn.csv", "figures"}
    assert (elsewhere / "figures" / "learning_curves.png").is_file()
    assert str(elsewhere / "table_knn.md") in " ".join(res.stdout.split())
    assert json.loads((elsewhere / "eval_test_knn.json").read_text())["run"] == str(run)


def test_cli_evaluate_another_multi_frame_set_reports_fused_accuracy(trained_run, tmp_path):
    """--captures scores a multi-frame test set of the same classes: single-frame and fused
    accuracy side by side, in RUN/eval-<set name>/ (the run's own files are left alone)."""
    from typer.testing import CliRunner

    from opticsfree.captures.testing import make_capture_set

    run = tmp_path / "run"
    shutil.copytree(trained_run, run)
    before = sorted(p.name for p in run.iterdir())
    multi = make_capture_set(tmp_path / "multi", n_classes=3, per_class=8, size=8, frames=3,
                             splits=("test",), seed=1)
    cmd, prefix = _cli()
    runner = CliRunner()
    res = runner.invoke(cmd, prefix + [str(run), "--captures", str(multi), "--classifier", "head",
                                       "--json", "--no-figures"])
    assert res.exit_code == 0, res.output
    (o,) = json.loads(res.stdout)
    assert o["n"] == 3 * 3 * 8 and o["n_scenes"] == 3 * 8
    assert 0 <= o["fused_accuracy"] <= 100 and len(o["fused_accuracy_ci"]) == 2
    assert o["seed"] is None  # another set: no published seed row applies
    saved = json.loads((run / "eval-multi" / "eval_test_head.json").read_text())
    assert saved["captures"] == str(multi.resolve()) and "fused" in saved["conventions"]
    assert sorted(p.name for p in run.iterdir()) == sorted(before + ["eval-multi"])
    # the run's own single-frame test split: no fusion
    (own,) = json.loads(runner.invoke(cmd, prefix + [str(run), "--json", "--no-figures"]).stdout)
    assert own["fused_accuracy"] is None and own["n_scenes"] == own["n"]
    other = make_capture_set(tmp_path / "other", n_classes=4, per_class=4, size=8, splits=("test",))
    bad = runner.invoke(cmd, prefix + [str(run), "--captures", str(other)])
    assert bad.exit_code != 0 and "classes" in bad.output and "other" in bad.output
    bad = runner.invoke(cmd, prefix + [str(run), "--captures", str(multi), "--split", "val"])
    assert bad.exit_code != 0 and "--split val with --captures" in bad.output


def test_cli_evaluate_one_checkpoint(tmp_path):
    from typer.testing import CliRunner

    from opticsfree import training
    from opticsfree.captures.testing import make_capture_set

    caps = make_capture_set(tmp_path / "caps", n_classes=3, per_class=8, size=8)
    run = tmp_path / "run"
    training.train({"captures": str(caps), "loss": "triplet", "epochs": 3, "checkpoints": [1, 2, 3],
                    "backbone": "cnn4", "width": 4, "embedding_dim": 8, "batch_size": 12,
                    "val_fraction": 0.25, "seed": 0, "threads": 1}, run, show_progress=False)
    cmd, prefix = _cli()
    runner = CliRunner()
    epochs = {}
    for spec in ("2", "last", "best"):
        res = runner.invoke(cmd, prefix + [str(run), "--checkpoint", spec, "--json", "--no-figures"])
        assert res.exit_code == 0, res.output
        epochs[spec] = [o["epoch"] for o in json.loads(res.stdout)]
    best = training.trainer.summarize(run)["best_epoch"]
    assert epochs == {"2": [2], "last": [3], "best": [best]}
    bad = runner.invoke(cmd, prefix + [str(run), "--checkpoint", "7"])
    assert bad.exit_code != 0 and "no checkpoint for epoch 7" in bad.output
    bad = runner.invoke(cmd, prefix + [str(run), "--checkpoint", "first"])
    assert bad.exit_code != 0 and "--checkpoint first" in bad.output


def test_cli_evaluate_user_errors(trained_run, tmp_path):
    from typer.testing import CliRunner

    cmd, prefix = _cli()
    runner = CliRunner()
    res = runner.invoke(cmd, prefix + [str(tmp_path / "missing"), "--json"])
    assert res.exit_code == 2
    assert "error:" in res.output and "missing" in res.output and "not found" in res.output
    empty = tmp_path / "empty"
    (empty / "checkpoints").mkdir(parents=True)
    (empty / "config.json").write_text("{}")
    res = runner.invoke(cmd, prefix + [str(empty)])
    assert res.exit_code == 2 and "no checkpoints" in res.output and str(empty) in res.output
    a_file = tmp_path / "file"
    a_file.write_text("x")
    res = runner.invoke(cmd, prefix + [str(trained_run), "--out", str(a_file)])
    assert res.exit_code == 2 and "--out" in res.output and "is a file" in res.output
    assert not (trained_run / "table.md").exists()


def test_docs_seed_study_shows_the_codes_published_numbers():
    """docs/seed-study.md (the product's own summary of the study) and opticsfree.seed_study
    (where every report reads the numbers) hold the same numbers."""
    from pathlib import Path

    from opticsfree import seed_study

    doc = (Path(__file__).resolve().parents[1] / "docs" / "seed-study.md").read_text(encoding="utf-8")
    images = {"lensless": "captures", "reconstructed": "reconstructions"}
    for r in seed_study.ROWS:
        row = (f"| {r.loss} | {images[r.images]} | {r.epochs} | {r.accuracy:.2f} | {r.precision:.2f} | "
               f"{r.recall:.2f} | {r.f1:.2f} |")
        assert row in doc, row
    for q in (seed_study.DEGRADATION, seed_study.CYCLEGAN):
        assert f"MSE {q.mse}" in doc and f"{q.psnr} dB" in doc and f"SSIM {q.ssim}" in doc, q
    for (loss, kind), kl in seed_study.KL.items():
        assert f"{loss} on {images[kind]} {kl}" in doc, (loss, kind, kl)
