"""Training data in memory: the train split, its validation hold-out and input statistics.

The validation split is a class-stratified hold-out of the *scenes* of the train split (all
frames of a held-out scene go to validation, so no displayed image is seen in both); it is a
pure function of the scene ids, their labels, ``val_fraction``, ``limit`` and ``seed``, so
``TrainedModel.load_split("val")`` rebuilds it from ``config.json`` (and checks it against
the recorded hash of the held-out ids).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np
import torch

from opticsfree.captures.loader import CaptureSplit, load_captures
from opticsfree.data.base import stratified_limit
from opticsfree.errors import DataError
from opticsfree.training.sampling import generator
from opticsfree.utils.seeding import derive_seed


@dataclass
class TrainVal:
    """The rows of the train split used for training and for validation.

    Attributes:
        train: the training rows.
        val: the held-out rows (empty when ``val_fraction`` is 0).
        val_ids_sha256: SHA-256 of the sorted held-out scene ids (joined by newlines).
        n_train_scenes, n_val_scenes: scene counts.
    """

    train: CaptureSplit
    val: CaptureSplit
    val_ids_sha256: str
    n_train_scenes: int
    n_val_scenes: int


def ids_sha256(ids: list[str]) -> str:
    """SHA-256 of sorted, newline-joined scene ids."""
    return hashlib.sha256("\n".join(sorted(set(ids))).encode()).hexdigest()


def split_scenes(ids: list[str], labels: np.ndarray, val_fraction: float, seed: int,
                 limit: int | None = None) -> tuple[list[str], list[str]]:
    """Choose training and validation scenes.

    Scenes are the distinct ``ids`` (first-seen order). ``limit`` first keeps at most that many
    scenes (class-stratified, :func:`opticsfree.data.base.stratified_limit`); then each class
    gives :math:`\\mathrm{round}(f\\, n_c)` of its :math:`n_c` scenes to validation (at least
    one and at most :math:`n_c - 1` when :math:`f > 0` and :math:`n_c \\ge 2`).

    Returns:
        ``(train_ids, val_ids)``, each sorted by first appearance.
    """
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
        g = generator("val-split", seed)
        for c in np.unique(slab):
            members = np.flatnonzero(slab == c)
            n = len(members)
            k = min(max(int(round(val_fraction * n)), 1), n - 1) if n >= 2 else 0
            perm = torch.randperm(n, generator=g).numpy()
            val.update(scenes[j] for j in members[perm[:k]])
    return [s for s in scenes if s not in val], [s for s in scenes if s in val]


def rows_of(split: CaptureSplit, scene_ids: list[str]) -> np.ndarray:
    """Row indices of ``split`` whose scene is in ``scene_ids`` (index order)."""
    want = set(scene_ids)
    return np.asarray([i for i, s in enumerate(split.ids) if s in want], dtype=np.int64)


def train_val(captures: str, size: int | None, val_fraction: float, seed: int,
              limit: int | None = None) -> TrainVal:
    """Load the train split of ``captures`` and split it into training and validation rows.

    Raises:
        DataError: no train split, or a class of the manifest with no training scene.
    """
    full = load_captures(captures, "train", size)
    train_ids, val_ids = split_scenes(full.ids, full.labels.numpy(), val_fraction, seed, limit)
    tr = full.subset(rows_of(full, train_ids))
    va = full.subset(rows_of(full, val_ids))
    present = set(tr.labels.tolist())
    missing = [c for i, c in enumerate(full.classes) if i not in present]
    if missing:
        raise DataError(f"{captures}: class(es) {', '.join(map(repr, missing))} have no training "
                        f"scene in the train split (every class of the manifest needs some)")
    return TrainVal(tr, va, ids_sha256(val_ids), len(train_ids), len(val_ids))


def channel_stats(x: torch.Tensor, chunk: int = 4096) -> tuple[list[float], list[float]]:
    """Per-channel mean and standard deviation of uint8 images (N, C, H, W) on the [0, 1] scale."""
    c = x.shape[1]
    s = torch.zeros(c, dtype=torch.float64)
    s2 = torch.zeros(c, dtype=torch.float64)
    n = 0
    for i in range(0, len(x), chunk):
        v = x[i:i + chunk].to(torch.float64) / 255.0
        s += v.sum(dim=(0, 2, 3))
        s2 += (v * v).sum(dim=(0, 2, 3))
        n += v.numel() // c
    mean = s / max(n, 1)
    std = (s2 / max(n, 1) - mean * mean).clamp_min(0).sqrt()
    return mean.tolist(), std.tolist()


def prototype_rows(split: CaptureSplit, limit: int, seed: int) -> np.ndarray:
    """One row per scene (its first frame), at most ``limit`` scenes, class-stratified."""
    seen: dict[str, int] = {}
    for i, s in enumerate(split.ids):
        seen.setdefault(s, i)
    rows = np.asarray(list(seen.values()), dtype=np.int64)
    keep = stratified_limit(split.labels.numpy()[rows], limit, seed=derive_seed("proto", seed) % (2**32))
    return rows[keep]
