"""Seeded, class-stratified splits: train/test for datasets that ship without one
(:func:`stratified_split`), and the validation hold-out of a capture set's train scenes
(:func:`split_scenes`)."""

from __future__ import annotations

from typing import Sequence

import numpy as np

from opticsfree.data.base import stratified_limit
from opticsfree.errors import ConfigError
from opticsfree.utils.seeding import derive_seed

#: Fraction of each class that goes to the test split.
TEST_FRACTION = 0.2
#: Seed of the split (fixed, so every run and every machine sees the same split).
SPLIT_SEED = 0


def stratified_split(labels: np.ndarray, test_fraction: float = TEST_FRACTION,
                     seed: int = SPLIT_SEED) -> tuple[np.ndarray, np.ndarray]:
    """Split row indices into train and test, class by class.

    Each class with :math:`n_c` rows sends :math:`t_c = \\operatorname{round}(f\\,n_c)` rows to
    test (at least one when :math:`n_c \\ge 2`, never all of them), chosen by a NumPy PCG64
    generator seeded with ``seed`` (stable across NumPy versions and platforms).

    Args:
        labels: (N,) integer labels.
        test_fraction: fraction :math:`f` of each class for the test split, in (0, 1).
        seed: random seed.

    Returns:
        ``(train_index, test_index)``: sorted int64 arrays that partition ``range(N)``.
    """
    labels = np.asarray(labels)
    if labels.ndim != 1:
        raise ValueError(f"labels must be 1-D, got shape {labels.shape}")
    if not 0.0 < test_fraction < 1.0:
        raise ValueError(f"test_fraction must be in (0, 1), got {test_fraction}")
    rng = np.random.default_rng(seed)
    test = []
    for c in np.unique(labels):
        rows = np.flatnonzero(labels == c)
        n = len(rows)
        k = int(round(test_fraction * n))
        if n >= 2:
            k = min(max(k, 1), n - 1)
        else:
            k = 0
        test.append(rng.permutation(rows)[:k])
    test_index = np.sort(np.concatenate(test)).astype(np.int64) if test else np.zeros(0, np.int64)
    mask = np.ones(len(labels), dtype=bool)
    mask[test_index] = False
    return np.flatnonzero(mask).astype(np.int64), test_index


def split_scenes(ids: Sequence[str], labels: np.ndarray | Sequence[int], val_fraction: float,
                 seed: int, limit: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """The validation hold-out of a train split's scenes: rows for training and for validation.

    The package's one scene hold-out: the embedding training (``train``, ``TrainedModel.load_split``)
    and the reconstruction methods (``reconstruct train``, ``calibrate``) all call it, so for the
    same ``seed``, ``val_fraction`` and ``limit`` they hold out the same scenes.

    Scenes are the distinct ``ids`` in first-seen order; all frames (rows) of a scene stay
    together, and a scene's label is the label of its first row. ``limit`` first keeps at most
    that many scenes, class-stratified (:func:`opticsfree.data.base.stratified_limit`, seeded
    with ``derive_seed("limit", seed) % 2**32``). Then each class gives
    :math:`k_c = \\mathrm{round}(f\\,n_c)` of its :math:`n_c` kept scenes to validation, at
    least one and at most :math:`n_c - 1` when :math:`f > 0` and :math:`n_c \\ge 2` (none when
    :math:`n_c = 1`): the first :math:`k_c` of a ``torch.randperm`` of the class's scenes, one
    CPU generator seeded with ``derive_seed("val-split", seed)`` drawing for the classes in
    ascending label order.

    Args:
        ids: scene id of every row.
        labels: label of every row (a NumPy array, a list or a torch tensor).
        val_fraction: :math:`f` in [0, 1); 0 holds out nothing.
        seed: seed of the choice.
        limit: optional cap on the number of scenes (positive).

    Returns:
        ``(train_rows, val_rows)``: sorted int64 row indices; rows of scenes dropped by
        ``limit`` are in neither.

    Raises:
        ConfigError: ``val_fraction`` outside [0, 1).
    """
    import torch

    if not 0 <= val_fraction < 1:
        raise ConfigError(f"val_fraction must be in [0, 1), got {val_fraction}")
    labels = np.asarray(labels)
    first: dict[str, int] = {}
    for i, s in enumerate(ids):
        first.setdefault(s, i)
    scenes = list(first)
    slab = np.asarray([int(labels[first[s]]) for s in scenes], dtype=np.int64)
    keep = stratified_limit(slab, limit, seed=derive_seed("limit", seed) % (2**32))
    scenes = [scenes[i] for i in keep]
    slab = slab[keep]
    val: set[str] = set()
    if val_fraction > 0:
        g = torch.Generator()
        g.manual_seed(derive_seed("val-split", seed))
        for c in np.unique(slab):
            members = np.flatnonzero(slab == c)
            n = len(members)
            k = min(max(int(round(val_fraction * n)), 1), n - 1) if n >= 2 else 0
            perm = torch.randperm(n, generator=g).numpy()
            val.update(scenes[j] for j in members[perm[:k]])
    kept = set(scenes)
    train_rows = np.asarray([i for i, s in enumerate(ids) if s in kept and s not in val], dtype=np.int64)
    val_rows = np.asarray([i for i, s in enumerate(ids) if s in val], dtype=np.int64)
    return train_rows, val_rows
