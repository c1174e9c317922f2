"""The one scene hold-out (opticsfree.data.split.split_scenes): frames kept together, class
stratification, limit, determinism, and that the embedding training and the reconstruction
methods hold out the same scenes."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest
import torch

from opticsfree.captures.testing import make_capture_set
from opticsfree.data.split import split_scenes
from opticsfree.errors import ConfigError


def _rows(n_scenes: int = 24, n_classes: int = 3, frames: int = 2, shuffle: bool = False):
    ids = [f"s{i:02d}" for i in range(n_scenes) for _ in range(frames)]
    labels = np.array([i % n_classes for i in range(n_scenes) for _ in range(frames)])
    if shuffle:  # frames of a scene need not be adjacent
        order = np.random.default_rng(5).permutation(len(ids))
        ids, labels = [ids[i] for i in order], labels[order]
    return ids, labels


def _scenes(ids, rows) -> list[str]:
    return sorted({ids[i] for i in rows})


@pytest.mark.parametrize("shuffle", [False, True])
def test_frames_stay_together_and_rows_partition_the_kept_scenes(shuffle):
    ids, labels = _rows(shuffle=shuffle)
    tr, va = split_scenes(ids, labels, 0.25, seed=3)
    assert tr.dtype == np.int64 and va.dtype == np.int64
    assert list(tr) == sorted(tr) and list(va) == sorted(va)
    assert not set(_scenes(ids, tr)) & set(_scenes(ids, va))
    assert sorted(np.concatenate([tr, va]).tolist()) == list(range(len(ids)))
    frames = Counter(ids)
    for rows in (tr, va):  # every frame of a chosen scene is on the same side
        got = Counter(ids[i] for i in rows)
        assert all(got[s] == frames[s] for s in got)


def test_each_class_gives_round_f_n_scenes():
    ids, labels = _rows(n_scenes=40, n_classes=4, frames=3)
    tr, va = split_scenes(ids, labels, 0.2, seed=0)
    val = _scenes(ids, va)
    assert len(val) == 8 and len(_scenes(ids, tr)) == 32
    assert Counter(int(s[1:]) % 4 for s in val) == {0: 2, 1: 2, 2: 2, 3: 2}
    # at least one per class with >= 2 scenes, never all of a class, none of a lone scene
    ids2 = ["a0", "a1", "a2", "b0", "b1", "c0"]
    lab2 = np.array([0, 0, 0, 1, 1, 2])
    tr2, va2 = split_scenes(ids2, lab2, 0.01, seed=0)
    assert Counter(lab2[va2].tolist()) == {0: 1, 1: 1}
    tr3, va3 = split_scenes(ids2, lab2, 0.99, seed=0)
    assert Counter(lab2[va3].tolist()) == {0: 2, 1: 1} and 5 in tr3


def test_limit_keeps_that_many_scenes_class_stratified_before_the_holdout():
    ids, labels = _rows(n_scenes=30, n_classes=3, frames=2)
    tr, va = split_scenes(ids, labels, 0.25, seed=1, limit=12)
    kept = _scenes(ids, np.concatenate([tr, va]))
    assert len(kept) == 12
    assert Counter(int(s[1:]) % 3 for s in kept) == {0: 4, 1: 4, 2: 4}
    assert len(_scenes(ids, va)) == 3  # round(0.25 * 4) = 1 per class
    # the limit is applied before the hold-out; a limit above the scene count keeps all
    assert len(_scenes(ids, np.concatenate(split_scenes(ids, labels, 0.25, 1, limit=100)))) == 30


def test_deterministic_for_a_seed_and_different_across_seeds():
    ids, labels = _rows(n_scenes=40)
    a = split_scenes(ids, labels, 0.2, seed=4, limit=30)
    b = split_scenes(ids, labels, 0.2, seed=4, limit=30)
    assert all(np.array_equal(x, y) for x, y in zip(a, b))
    assert not np.array_equal(split_scenes(ids, labels, 0.2, seed=5)[1], split_scenes(ids, labels, 0.2, seed=4)[1])
    # labels as a list or a torch tensor give the same choice
    for lab in (labels.tolist(), torch.as_tensor(labels)):
        c = split_scenes(ids, lab, 0.2, seed=4, limit=30)
        assert all(np.array_equal(x, y) for x, y in zip(a, c))


def test_val_fraction_zero_holds_out_nothing_and_bad_fractions_are_refused():
    ids, labels = _rows()
    tr, va = split_scenes(ids, labels, 0.0, seed=0)
    assert len(va) == 0 and va.dtype == np.int64 and tr.tolist() == list(range(len(ids)))
    tr, va = split_scenes(ids, labels, 0.0, seed=0, limit=6)
    assert len(va) == 0 and len(_scenes(ids, tr)) == 6
    for f in (-0.1, 1.0, 1.5):
        with pytest.raises(ConfigError, match="val_fraction"):
            split_scenes(ids, labels, f, seed=0)


def test_reference_selection_is_the_embedding_trainings():
    """Pinned: the scenes the embedding training held out before the hold-out was shared
    (training/data.py's split_scenes), so its runs and the study's numbers are unchanged."""
    ids, labels = _rows(n_scenes=24, n_classes=3, frames=2)
    assert _scenes(ids, split_scenes(ids, labels, 0.25, seed=7)[1]) == ["s03", "s04", "s05", "s19", "s20", "s21"]
    tr, va = split_scenes(ids, labels, 0.25, seed=7, limit=12)
    assert _scenes(ids, va) == ["s02", "s04", "s21"]
    assert _scenes(ids, tr) == ["s00", "s01", "s05", "s06", "s10", "s11", "s12", "s14", "s22"]


@pytest.mark.parametrize("seed,val_fraction,limit", [(0, 0.1, None), (3, 0.25, None), (1, 0.2, 18), (7, 0.5, 9)])
def test_training_and_reconstruction_hold_out_the_same_scenes(tmp_path_factory, seed, val_fraction, limit):
    from opticsfree.reconstruction.train import _load_data
    from opticsfree.training.data import train_val

    root = tmp_path_factory.mktemp("set")
    make_capture_set(root, n_classes=3, per_class=10, size=8, frames=2, splits=("train",))
    tv = train_val(str(root), None, val_fraction, seed, limit)
    rec_train, rec_val = _load_data(root, None, val_fraction, seed, limit)
    assert sorted(set(tv.val.ids)) == sorted(set(rec_val.ids)) and len(set(rec_val.ids)) > 0
    assert sorted(set(tv.train.ids)) == sorted(set(rec_train.ids))
    assert tv.train.ids == rec_train.ids and tv.val.ids == rec_val.ids  # same rows, same order
    assert torch.equal(tv.val.lensless, rec_val.lensless)
    if limit is not None:
        assert len(set(tv.train.ids) | set(tv.val.ids)) == limit
