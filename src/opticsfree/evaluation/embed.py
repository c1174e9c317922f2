"""Embedding a capture split with a trained model, and class prototypes.

A trained metric-learning model (an :class:`opticsfree.evaluation.contract.Embedder`, e.g.
:class:`opticsfree.training.TrainedModel`) has two towers: one for lensless captures and one for
the originals that were displayed. Evaluation embeds a whole
split once with both towers and works on the resulting NumPy arrays.

With multi-frame capture sets a split has one row per (scene, frame): the original of a scene
repeats on every frame row. It is embedded once per scene and copied to the rows.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

import numpy as np

from opticsfree.errors import ConfigError, DataError
from opticsfree.evaluation.contract import DOMAINS, Embedder

if TYPE_CHECKING:
    from opticsfree.captures.loader import CaptureSplit
    from opticsfree.evaluation.contract import TrainedEmbedder


@dataclass
class Embedded:
    """The embeddings of one split.

    Attributes:
        lensless: float32 (N, D) embeddings of the lensless captures, or None when the lensless
            domain was not requested.
        original: float32 (N, D) embeddings of the original shown for each row, or None when
            not requested.
        labels: int64 (N,) class indices.
        ids: N scene ids (repeated across the frames of a scene).
    """

    lensless: np.ndarray | None
    original: np.ndarray | None
    labels: np.ndarray
    ids: list[str]

    def __len__(self) -> int:
        return len(self.labels)

    def unique_originals(self) -> tuple[np.ndarray, np.ndarray]:
        """One original embedding per scene (first row of each id), with its label.

        Returns:
            ``(embeddings (S, D), labels (S,))`` for the S distinct scene ids, in order of first
            appearance. This is the gallery of originals: frames of a multi-frame set would
            otherwise count each original several times.
        """
        if self.original is None:
            raise ValueError("this Embedded has no original-domain embeddings")
        first = first_occurrences(self.ids)
        return self.original[first], self.labels[first]


def first_occurrences(ids: Sequence[str]) -> np.ndarray:
    """Indices of the first row of every distinct id, in order of appearance."""
    seen: dict[str, int] = {}
    for i, key in enumerate(ids):
        seen.setdefault(key, i)
    return np.fromiter(seen.values(), dtype=np.int64, count=len(seen))


def load_scored_split(model: TrainedEmbedder, split: str, captures: str | Path | None = None) -> Any:
    """The split a trained model is scored on: its own, or ``split`` of another capture set.

    Args:
        model: the trained model.
        split: the split name.
        captures: another capture set with the same classes (e.g. a multi-frame set made with
            ``simulate --frames K``, or real captures of the same scenes' kind); None: the run's.

    Returns:
        The loaded :class:`~opticsfree.captures.loader.CaptureSplit` at the model's size.

    Raises:
        ConfigError: ``train`` or ``val`` with ``captures`` (those are the run's own splits).
        DataError: the other set's classes differ from the run's.
    """
    if captures is None:
        return model.load_split(split)
    if split in ("train", "val"):
        raise ConfigError(f"--split {split} with --captures: train and val are the run's own "
                          f"splits; score another set's test split (--split test)")
    from opticsfree.captures.loader import load_captures

    data = load_captures(captures, split, model.size)
    if list(data.classes) != list(model.classes):
        raise DataError(f"{captures}: classes {list(data.classes)} differ from the run's "
                        f"{list(model.classes)}")
    return data


@dataclass(frozen=True)
class SceneGroups:
    """The rows of a split grouped by scene (the frames of a multi-frame set).

    Attributes:
        index: int64 (N,) scene number of every row, in ``[0, S)``.
        first: int64 (S,) first row of every scene, in order of first appearance.
        counts: int64 (S,) rows (frames) per scene.
    """

    index: np.ndarray
    first: np.ndarray
    counts: np.ndarray

    @property
    def multi_frame(self) -> bool:
        """Whether some scene has more than one row."""
        return bool(len(self.counts)) and int(self.counts.max()) > 1


def scene_groups(ids: Sequence[str]) -> SceneGroups:
    """Group the rows of a split by scene id (scenes in order of first appearance)."""
    pos: dict[str, int] = {}
    index = np.fromiter((pos.setdefault(str(k), len(pos)) for k in ids), dtype=np.int64, count=len(ids))
    return SceneGroups(index=index, first=first_occurrences(ids),
                       counts=np.bincount(index, minlength=len(pos)).astype(np.int64))


def fuse_rows(values: np.ndarray, groups: SceneGroups) -> np.ndarray:
    r"""Mean of the rows of every scene: :math:`\bar v_s = \frac{1}{|F_s|} \sum_{i \in F_s} v_i`.

    Test-time fusion of the frames of a scene: with L2-normalised embeddings the classifiers
    then use :func:`l2_normalise` of the mean (the direction the frames agree on); with
    log-probabilities the mean is the log of the normalised product of the frame likelihoods
    (a flat prior), up to a constant per scene.

    Args:
        values: (N, D) one row per (scene, frame).
        groups: :func:`scene_groups` of the same rows.

    Returns:
        float64 (S, D), scenes in the order of ``groups.first``.

    Shape:
        values: (N, D); returns: (S, D).
    """
    v = np.asarray(values, dtype=np.float64)
    if v.ndim != 2 or len(v) != len(groups.index):
        raise ValueError(f"expected values (N={len(groups.index)}, D), got shape {v.shape}")
    sums = np.zeros((len(groups.counts), v.shape[1]), dtype=np.float64)
    np.add.at(sums, groups.index, v)
    return sums / groups.counts[:, None]


def _embed_batched(model: Embedder, images: Any, domain: str, batch_size: int,
                   desc: str) -> np.ndarray:
    """Run ``model.embed`` over ``images`` (uint8 (N,C,H,W) tensor) in batches."""
    import torch

    from opticsfree.utils.progress import progress

    n = int(images.shape[0])
    chunks: list[np.ndarray] = []
    with progress(transient=True) as bar, torch.inference_mode():
        task = bar.add_task(desc, total=n)
        for start in range(0, n, batch_size):
            out = model.embed(images[start:start + batch_size], domain)
            out = out.detach().float().cpu().numpy() if isinstance(out, torch.Tensor) \
                else np.asarray(out, dtype=np.float32)
            if out.ndim != 2 or out.shape[0] != min(batch_size, n - start):
                raise ValueError(f"embed({domain}) returned shape {out.shape} for a batch of "
                                 f"{min(batch_size, n - start)} images; expected (batch, D)")
            chunks.append(out.astype(np.float32, copy=False))
            bar.advance(task, out.shape[0])
    if not chunks:
        return np.zeros((0, 0), dtype=np.float32)
    return np.ascontiguousarray(np.concatenate(chunks))


def embed_split(model: Embedder, split: CaptureSplit | str, domains: Sequence[str] = DOMAINS,
                batch_size: int = 256, name: str | None = None) -> Embedded:
    """Embed one split of captures with both towers of a trained model.

    Args:
        model: the trained model.
        split: a loaded :class:`opticsfree.captures.loader.CaptureSplit`, or a split name
            (``"train"``, ``"val"``, ``"test"``) of the run's own captures, loaded with
            ``model.load_split`` (then ``model`` must be a
            :class:`~opticsfree.evaluation.contract.TrainedEmbedder`).
        domains: which towers to run (``"lensless"``, ``"original"``); a domain left out is
            ``None`` in the result (e.g. only originals are needed for the train gallery).
        batch_size: images per forward pass.
        name: the split's name in progress bars and errors (default: ``split`` when it is a
            name, else ``"split"``).

    Returns:
        :class:`Embedded` with float32 arrays (N, D), as L2-normalised as the model makes them.

    Raises:
        DataError: the split is empty.
    """
    bad = [d for d in domains if d not in DOMAINS]
    if bad:
        raise ValueError(f"unknown domain(s) {bad}; expected a subset of {DOMAINS}")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    if name is None:
        name = split if isinstance(split, str) else "split"
    # a split name needs a TrainedEmbedder (load_split); a loaded split any Embedder
    data = model.load_split(split) if isinstance(split, str) else split  # type: ignore
    labels = np.asarray(data.labels.cpu().numpy() if hasattr(data.labels, "cpu") else data.labels,
                        dtype=np.int64)
    ids = list(data.ids)
    if len(labels) == 0:
        raise DataError(f"{getattr(model, 'captures', '?')}: split {name!r} has no captures")
    lensless = original = None
    if "lensless" in domains:
        lensless = _embed_batched(model, data.lensless, "lensless", batch_size,
                                  f"embed {name} lensless")
    if "original" in domains:
        first = first_occurrences(ids)
        if len(first) == len(ids):
            original = _embed_batched(model, data.original, "original", batch_size,
                                      f"embed {name} originals")
        else:  # multi-frame: embed each scene's original once, then copy it to its frame rows
            uniq = _embed_batched(model, data.original[first], "original", batch_size,
                                  f"embed {name} originals")
            pos = {ids[i]: j for j, i in enumerate(first)}
            original = uniq[np.array([pos[k] for k in ids], dtype=np.int64)]
    return Embedded(lensless=lensless, original=original, labels=labels, ids=ids)


@dataclass
class Gallery:
    """A run's train originals, one per scene, and the class prototypes made of them.

    Attributes:
        train: the train split embedded with the original tower only (every row, so the
            labels and scene ids of the split: ``train.labels``, ``train.ids``).
        originals: float32 (S, D) embeddings, one per train scene (first row of each id).
        labels: int64 (S,) their classes.
        prototypes: float32 (C, D) :func:`class_prototypes` of ``originals``.
    """

    train: Embedded
    originals: np.ndarray
    labels: np.ndarray
    prototypes: np.ndarray


def train_gallery(model: TrainedEmbedder, batch_size: int = 256) -> Gallery:
    """Embed the run's train originals and build the class prototypes: the reference set of the
    prototype, kNN and threshold classifiers and of the metric likelihood.

    Args:
        model: the trained model; ``model.load_split("train")`` gives the scenes it was trained
            on (without the validation scenes).
        batch_size: images per forward pass.

    Returns:
        The :class:`Gallery`.

    Raises:
        DataError: the train split is empty or a class has no train scene.
    """
    train = embed_split(model, model.load_split("train"), domains=("original",),
                        batch_size=batch_size, name="train")
    originals, labels = train.unique_originals()
    return Gallery(train=train, originals=originals, labels=labels,
                   prototypes=class_prototypes(originals, labels, len(model.classes)))


def l2_normalise(x: np.ndarray, eps: float = 1e-12) -> np.ndarray:
    r"""Rows scaled to unit Euclidean norm: :math:`x_i / \max(\lVert x_i \rVert_2, \epsilon)`."""
    x = np.asarray(x, dtype=np.float32)
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), eps)


def class_prototypes(emb_original: np.ndarray, labels: np.ndarray, n_classes: int) -> np.ndarray:
    r"""L2-normalised class means of embeddings.

    .. math:: p_c = \frac{\bar e_c}{\lVert \bar e_c \rVert_2}, \quad
              \bar e_c = \frac{1}{|\{i: y_i = c\}|} \sum_{i: y_i = c} e_i

    Args:
        emb_original: (N, D) embeddings (in evaluation, of the train originals).
        labels: (N,) class indices in ``[0, n_classes)``.
        n_classes: number of classes C.

    Returns:
        (C, D) float32 prototypes, one unit vector per class.

    Raises:
        DataError: a class has no embeddings (its prototype would be undefined), or a label is
            outside ``[0, n_classes)``.
    """
    e = np.asarray(emb_original, dtype=np.float64)
    y = np.asarray(labels, dtype=np.int64)
    if e.ndim != 2 or len(e) != len(y):
        raise ValueError(f"expected embeddings (N, D) and labels (N,), got {e.shape} and {y.shape}")
    if len(y) and (y.min() < 0 or y.max() >= n_classes):
        raise DataError(f"labels must lie in [0, {n_classes}); got {y.min()}..{y.max()}")
    counts = np.bincount(y, minlength=n_classes)
    empty = np.flatnonzero(counts == 0)
    if len(empty):
        raise DataError(f"class(es) {empty.tolist()} have no training embeddings; "
                        "cannot form their prototypes")
    sums = np.zeros((n_classes, e.shape[1]), dtype=np.float64)
    np.add.at(sums, y, e)
    return l2_normalise((sums / counts[:, None]).astype(np.float32))
