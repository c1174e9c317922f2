"""Batch sampling: class-balanced online batches, and the seed's fixed tuples read from files.

Online mode works on *scenes* (one displayed image; a multi-frame set has several captures
of it): each batch holds ``k`` classes x ``m`` distinct scenes, and for each scene one of its
frames at random, so no two rows of a batch share an original (the quadruplet miner relies on
it). One epoch is ``floor(S / (k m))`` batches for :math:`S` training scenes. The batch order
is a pure function of ``(seed, epoch)`` (no global RNG), which makes ``--resume`` exact, and
under ``torchrun`` every process draws the same global batch and keeps its own contiguous
slice (the distributed sampler).

Tuples mode reproduces the seed: the rows of ``tuples_train.csv`` (anchor, positive, close
positive, negative file names) in a fresh random order each epoch, every image decoded from
its file when the row is used.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Iterator, Sequence

import torch
from torch import Tensor
from torch.utils.data import Dataset

from opticsfree.captures.loader import resize_uint8
from opticsfree.utils.images import decode_image
from opticsfree.utils.parallel import map_chunks
from opticsfree.errors import ConfigError, DataError
from opticsfree.utils.seeding import derive_seed


def generator(*parts: object) -> torch.Generator:
    """A CPU torch generator seeded from ``parts`` (stable across runs and platforms)."""
    g = torch.Generator()
    g.manual_seed(derive_seed(*parts))
    return g


@dataclass
class SceneTable:
    """The rows of a split grouped by scene.

    Attributes:
        labels: (S,) class of each scene.
        rows: (S, K) row indices of each scene's frames, padded with -1.
        counts: (S,) number of frames of each scene.
        ids: scene ids in first-seen order.
    """

    labels: Tensor
    rows: Tensor
    counts: Tensor
    ids: list[str]

    @classmethod
    def from_rows(cls, ids: Sequence[str], labels: Tensor) -> "SceneTable":
        """Group rows by scene id (rows of one scene must share a label)."""
        order: dict[str, list[int]] = {}
        for i, s in enumerate(ids):
            order.setdefault(s, []).append(i)
        k = max((len(v) for v in order.values()), default=1)
        rows = torch.full((len(order), k), -1, dtype=torch.long)
        counts = torch.empty(len(order), dtype=torch.long)
        slab = torch.empty(len(order), dtype=torch.long)
        for j, (s, r) in enumerate(order.items()):
            rows[j, :len(r)] = torch.tensor(r)
            counts[j] = len(r)
            lab = labels[torch.tensor(r)]
            if (lab != lab[0]).any():
                raise DataError(f"scene {s!r} has frames with different labels {sorted(set(lab.tolist()))}")
            slab[j] = lab[0]
        return cls(slab, rows, counts, list(order))

    def __len__(self) -> int:
        return len(self.labels)


class ClassBalancedBatchSampler:
    """Class-balanced batches of distinct scenes ("M per class"), one random frame each.

    Args:
        scenes: the training scenes.
        m_per_class: scenes per class in a batch (:math:`m`).
        classes_per_batch: classes in a batch (:math:`k`); the global batch is :math:`k m`.
        seed: run seed; the batches of epoch :math:`e` depend only on ``(seed, e)``.
        rank: this process's rank (its slice of every global batch).
        world_size: number of processes; must divide :math:`k m`.

    Raises:
        ConfigError: a class with fewer than ``m_per_class`` scenes, more classes per batch
            than classes, or a batch not divisible by ``world_size``.

    Iterating yields int64 row indices (local batch, :math:`k m / \\text{world}` rows).
    """

    def __init__(self, scenes: SceneTable, m_per_class: int, classes_per_batch: int, seed: int,
                 rank: int = 0, world_size: int = 1):
        self.scenes = scenes
        self.m, self.k = int(m_per_class), int(classes_per_batch)
        self.seed, self.rank, self.world = int(seed), int(rank), int(world_size)
        self.classes = torch.unique(scenes.labels)
        self.by_class = {int(c): torch.nonzero(scenes.labels == c).flatten() for c in self.classes}
        small = {c: len(v) for c, v in self.by_class.items() if len(v) < self.m}
        if small:
            c, n = next(iter(small.items()))
            raise ConfigError(f"m_per_class={self.m}: class {c} has only {n} training scenes "
                              f"(lower --batch-size or m_per_class)")
        if not 1 <= self.k <= len(self.classes):
            raise ConfigError(f"classes per batch must be between 1 and {len(self.classes)}, got {self.k}")
        if self.batch_size % self.world:
            raise ConfigError(f"batch size {self.batch_size} is not divisible by {self.world} processes")
        self.epoch = 0

    @property
    def batch_size(self) -> int:
        """Global batch size :math:`k m`."""
        return self.k * self.m

    def __len__(self) -> int:
        return max(1, len(self.scenes) // self.batch_size)

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch whose batches the next iteration yields."""
        self.epoch = int(epoch)

    def global_batches(self) -> Iterator[Tensor]:
        """The global batches of the current epoch (row indices, :math:`k m` each)."""
        g = generator("class-balanced", self.seed, self.epoch)
        streams = {c: v[torch.randperm(len(v), generator=g)] for c, v in self.by_class.items()}
        pos = {c: 0 for c in streams}
        n_classes = len(self.classes)
        for _ in range(len(self)):
            cls = self.classes[torch.randperm(n_classes, generator=g)[:self.k]]
            picked = []
            for c in cls.tolist():
                s, p = streams[c], pos[c]
                if p + self.m <= len(s):
                    take = s[p:p + self.m]
                    pos[c] = p + self.m
                else:  # stream exhausted: reshuffle, never repeating a scene within the batch
                    rest = s[p:]
                    fresh = self.by_class[c][torch.randperm(len(self.by_class[c]), generator=g)]
                    dup = torch.isin(fresh, rest)
                    new = fresh[~dup]
                    need = self.m - len(rest)
                    take = torch.cat([rest, new[:need]])
                    streams[c] = torch.cat([new[need:], fresh[dup]])
                    pos[c] = 0
                picked.append(take)
            sc = torch.cat(picked)
            frame = (torch.rand(len(sc), generator=g) * self.scenes.counts[sc]).long()
            yield self.scenes.rows[sc, frame]

    def __iter__(self) -> Iterator[Tensor]:
        per = self.batch_size // self.world
        for b in self.global_batches():
            yield b[self.rank * per:(self.rank + 1) * per]


def auto_batch(n_classes: int, batch_size: int, m_per_class: int | None,
               min_class_scenes: int) -> tuple[int, int]:
    """Choose ``(m, k)`` for a requested batch size.

    With ``m_per_class`` None, all classes go in every batch when the batch allows at least 2
    per class (:math:`m = \\lfloor B / C \\rfloor`), else :math:`m = 2`; :math:`m` is capped by
    the smallest class. :math:`k = \\min(C, \\lfloor B / m \\rfloor)`.

    Returns:
        ``(m_per_class, classes_per_batch)``; the batch is :math:`k m \\le B`.
    """
    if m_per_class is None:
        m = max(2, batch_size // max(n_classes, 1))
        m = max(2, min(m, min_class_scenes))
    else:
        m = m_per_class
    if m > batch_size:
        raise ConfigError(f"m_per_class={m} is larger than batch_size={batch_size}")
    k = min(n_classes, batch_size // m)
    if k < 2:
        raise ConfigError(f"batch_size={batch_size} with m_per_class={m} holds a single class; "
                          f"metric losses need at least 2 classes per batch")
    return m, k


class TupleBatchSampler:
    """Shuffled batches of tuple rows (the seed's loader), sliced per process.

    Args:
        n_rows: number of tuple rows.
        batch_size: global batch size (the last incomplete batch is dropped when there is more
            than one batch).
        seed: run seed; the order of epoch :math:`e` depends only on ``(seed, e)``.
        rank, world_size: the process's slice of every global batch.
    """

    def __init__(self, n_rows: int, batch_size: int, seed: int, rank: int = 0, world_size: int = 1):
        self.n, self.b, self.seed = int(n_rows), min(int(batch_size), int(n_rows)), int(seed)
        self.rank, self.world = int(rank), int(world_size)
        if self.b % self.world:
            raise ConfigError(f"batch size {self.b} is not divisible by {self.world} processes")
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return max(1, self.n // self.b)

    def __iter__(self) -> Iterator[list[int]]:
        perm = torch.randperm(self.n, generator=generator("tuples", self.seed, self.epoch))
        per = self.b // self.world
        for i in range(len(self)):
            batch = perm[i * self.b:(i + 1) * self.b]
            yield batch[self.rank * per:(self.rank + 1) * per].tolist()


@dataclass(frozen=True)
class TupleRow:
    """One seed tuple: absolute file paths and labels."""

    anchor: str
    positive: str
    close_positive: str
    negative: str
    label: int
    negative_label: int


class TupleDataset(Dataset):
    """Seed-style tuples decoded from their image files on every access.

    Args:
        rows: the tuples.
        size: images are resized to ``size`` x ``size`` (bilinear, antialiased) when needed.
        originals: which originals a row needs: 0 (``ce``), 2 (positive, negative) or 3
            (positive, close positive, negative).

    Items are ``(anchor, originals, label, negative_label)`` with uint8 (C, H, W) images and
    ``originals`` a (n, C', H, W) tensor.
    """

    def __init__(self, rows: Sequence[TupleRow], size: int, originals: int):
        self.rows, self.size, self.originals = list(rows), int(size), int(originals)

    def __len__(self) -> int:
        return len(self.rows)

    def _read(self, path: str) -> Tensor:
        x = torch.tensor(decode_image(path)).permute(2, 0, 1)[None]
        return resize_uint8(x, self.size)[0]

    def __getitem__(self, i: int):
        r = self.rows[i]
        paths = {0: [], 2: [r.positive, r.negative], 3: [r.positive, r.close_positive, r.negative]}[self.originals]
        anchor = self._read(r.anchor)
        if paths:
            orig = torch.stack([self._read(p) for p in paths])
        else:
            orig = torch.empty(0, dtype=torch.uint8)
        return anchor, orig, r.label, r.negative_label


def _read_batches(batches: list[list[TupleRow]], size: int, originals: int) -> list[tuple[Tensor, ...]]:
    """Decode whole batches of tuples (a :func:`~opticsfree.utils.parallel.map_chunks` task)."""
    ds = TupleDataset([], size, originals)
    out = []
    for rows in batches:
        ds.rows = rows
        items = [ds[i] for i in range(len(rows))]
        out.append((torch.stack([a for a, _, _, _ in items]), torch.stack([o for _, o, _, _ in items]),
                    torch.tensor([y for _, _, y, _ in items]), torch.tensor([n for _, _, _, n in items])))
    return out


def tuple_batches(ds: TupleDataset, batches: Iterable[list[int]], workers: int) -> Iterator[tuple[Tensor, ...]]:
    """An epoch's batches of ``ds``, decoded ahead of training in ``workers`` processes through
    the package's one fan-out (:func:`~opticsfree.utils.parallel.map_chunks`, one batch per
    task, in order).

    Args:
        ds: the tuples.
        batches: the epoch's row indices per batch (:class:`TupleBatchSampler`).
        workers: decoding processes; 0 or 1 decode in this process.

    Returns:
        ``(anchors (B, C, H, W), originals (B, n, C', H, W) or (B, 0), labels (B,),
        negative labels (B,))`` per batch, as :meth:`TupleDataset.__getitem__` gives each row.
    """
    rows = [[ds.rows[i] for i in b] for b in batches]
    fn = functools.partial(_read_batches, size=ds.size, originals=ds.originals)
    return map_chunks(fn, rows, workers=max(int(workers), 1), chunk=1, min_parallel=2)


def load_tuple_rows(root: str | Path, keep_ids: set[str], seed: int) -> tuple[list[TupleRow], Path]:
    """Read ``root/tuples_train.csv`` (written by ``make_tuples`` when missing) for the scenes
    ``keep_ids``.

    Rows whose anchor belongs to a scene outside ``keep_ids`` (the held-out validation scenes,
    or scenes dropped by ``--limit``) are dropped, so validation stays unseen. A kept row whose
    close positive or negative lies outside ``keep_ids`` keeps its anchor and positive and gets
    that reference drawn again, as ``make_tuples`` draws it, among the kept scenes: the close
    positive uniformly from the other kept scenes of the anchor's class, the negative
    uniformly from the kept scenes of the other classes (``numpy.random.default_rng`` seeded
    from ``seed``, in file order). Every kept scene thus keeps its row, however small
    ``keep_ids`` is.

    Returns:
        The kept rows (absolute paths) and the CSV path.

    Raises:
        DataError: an unknown file in the CSV, a label that disagrees with the index, or no
            row left (or no kept scene to draw a reference from).
    """
    import numpy as np

    from opticsfree.captures.format import open_capture_set
    from opticsfree.captures.tuples import make_tuples, read_tuples, tuples_path

    cs = open_capture_set(root)
    path = tuples_path(cs.root, "train")
    if not path.is_file():
        make_tuples(cs.root, "train", seed)
    recs = read_tuples(path)
    train_rows = [r for r in cs.rows if r.split == "train"]
    lensless = {r.lensless: r for r in train_rows}
    original = {r.original: r for r in train_rows}
    # kept scenes (one original each) by class, in index order: the pools of redrawn references
    pools: dict[int, list] = {}
    for r in {r.id: r for r in train_rows if r.id in keep_ids}.values():
        pools.setdefault(r.label, []).append(r)
    others = {c: [x for lab, xs in pools.items() if lab != c for x in xs] for c in pools}
    position = {x.id: i for xs in pools.values() for i, x in enumerate(xs)}
    rng = np.random.default_rng(derive_seed(seed, "tuples-redraw"))

    def redraw(a, what: str):
        # the negative: any kept scene of another class; the close positive: any other kept
        # scene of the anchor's class (index j skips the anchor's own position, as make_tuples)
        pool = others.get(a.label, []) if what == "negative" else pools.get(a.label, [])
        own = None if what == "negative" else position[a.id]
        n_choices = len(pool) - (own is not None)
        if n_choices < 1:
            raise DataError(f"{path}: no kept train scene to draw a {what} for "
                            f"{a.lensless} from (keep more scenes, e.g. a larger --limit)")
        j = int(rng.integers(n_choices))
        return pool[j + (own is not None and j >= own)]

    out = []
    for lineno, d in enumerate(recs, start=2):
        try:
            a = lensless[d["anchor_img"]]
            p, c, n = (original[d[k]] for k in ("positive_img", "close_positive_img", "negative_img"))
        except KeyError as e:
            raise DataError(f"{path}: line {lineno}: {e.args[0]!r} is not a train image of "
                            f"{cs.root / 'index.csv'} (remake the file with `opticsfree tuples`)") from None
        if d["label"] != a.label or p.label != a.label or c.label != a.label or n.label == a.label:
            raise DataError(f"{path}: line {lineno}: labels disagree with index.csv (anchor {a.label}, "
                            f"row {d['label']}, positive {p.label}, close {c.label}, negative {n.label})")
        if a.id not in keep_ids or p.id not in keep_ids:
            continue
        if c.id not in keep_ids:
            c = redraw(a, "close positive")
        if n.id not in keep_ids:
            n = redraw(a, "negative")
        out.append(TupleRow(str(cs.path(a.lensless)), str(cs.path(p.original)),
                            str(cs.path(c.original)), str(cs.path(n.original)), a.label, n.label))
    if not out:
        raise DataError(f"{path}: no tuple left after removing validation/limited-out scenes")
    return out, path
