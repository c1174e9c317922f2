"""Turn a capture set into in-memory uint8 tensors for training (decoded once, cached).

The decoded arrays are cached under ``<set>/.cache/``, keyed by what they were made from: the
bytes of ``index.csv``, the split, the requested size, and the size, modification time
(``mtime_ns``), change time and inode of every image file the split reads. A training run never
decodes image files per epoch, and any changed file (a capture replaced, even by a copy that
keeps the old modification time; a changed index) gives a new key, so the split is decoded
again and the stale cache file of that split and size is removed.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F

from opticsfree.captures.format import CaptureSet, IndexRow, open_capture_set
from opticsfree.data.imagefolder import decode_files
from opticsfree.utils.images import ImageDecodeError, decode_image
from opticsfree.errors import DataError
from opticsfree.utils.io import atomic_path, ensure_dir, file_state

#: Part of the cache key; bumped whenever decoding changes (3: one decoder, utils.images.decode_image).
CACHE_VERSION = 3


@dataclass
class CaptureSplit:
    """One split of a capture set in memory, one row per (scene, frame).

    Attributes:
        lensless: uint8 tensor (N, C, H, W): the captures (or reconstructions, for derived sets).
        original: uint8 tensor (N, C', H, W): the image shown on the display for that row.
        labels: int64 tensor (N,).
        ids: scene id of each row (rows of the same scene share it when there are frames).
        frames: int64 tensor (N,): frame index (0 for single-frame sets).
        classes: class names in label order.
    """

    lensless: torch.Tensor
    original: torch.Tensor
    labels: torch.Tensor
    ids: list[str]
    frames: torch.Tensor
    classes: list[str]

    def __len__(self) -> int:
        return len(self.labels)

    def subset(self, index: Sequence[int] | np.ndarray | torch.Tensor) -> "CaptureSplit":
        """The rows ``index`` of this split."""
        idx = torch.as_tensor(np.asarray(index), dtype=torch.long)
        return CaptureSplit(self.lensless[idx], self.original[idx], self.labels[idx],
                            [self.ids[i] for i in idx.tolist()], self.frames[idx], list(self.classes))


def read_images(paths: Sequence[str], workers: int | None = 0) -> list[np.ndarray]:
    """The (H, W, C) uint8 arrays of image files, in order, decoded by the package's one entry
    point for many files (:func:`opticsfree.data.imagefolder.decode_files`; ``workers`` as
    there: 0 one per CPU, 1 in this process, few files in this process).

    Raises:
        DataError: naming the first file (in order) that cannot be decoded, as
            :func:`~opticsfree.utils.images.decode_image` does.
    """
    out: list[np.ndarray] = []
    with contextlib.closing(decode_files(paths, workers=workers)) as results:
        for path, res in zip(paths, results):
            if isinstance(res, str):
                raise ImageDecodeError(path, res)
            out.append(res[0])
    return out


def stack_images(arrays: list[np.ndarray], paths: list[str], what: str) -> torch.Tensor:
    """Stack (H, W, C) arrays into a uint8 (N, C, H, W) tensor; DataError on mixed sizes."""
    shapes: dict[tuple, int] = {}
    for a in arrays:
        shapes[a.shape] = shapes.get(a.shape, 0) + 1
    if len(shapes) > 1:
        common = max(shapes, key=shapes.get)
        bad = next(p for a, p in zip(arrays, paths) if a.shape != common)
        raise DataError(f"{bad}: {what} image has shape {decode_image(bad).shape}, the others "
                        f"{common} (H, W, C); run `opticsfree check` on the set")
    return torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2).contiguous()


def resize_uint8(x: torch.Tensor, size: int | None) -> torch.Tensor:
    """Resize uint8 (N, C, H, W) images to ``size`` x ``size`` (bilinear, antialiased).

    Args:
        x: uint8 images.
        size: output side in pixels; None or the current size returns ``x`` unchanged.

    Returns:
        uint8 tensor (N, C, size, size).
    """
    if size is None or (x.shape[-2] == size and x.shape[-1] == size):
        return x
    out = []
    for i in range(0, len(x), 4096):
        y = F.interpolate(x[i:i + 4096].float(), size=(size, size), mode="bilinear",
                          antialias=True, align_corners=False)
        out.append(y.round_().clamp_(0, 255).to(torch.uint8))
    return torch.cat(out)


def _cache_key(cs: CaptureSet, split: str, size: int | None, rows: Sequence[IndexRow]) -> str | None:
    """Hash of everything the cached split is made from; None when a file cannot be stat'ed
    (then the split is decoded, which names the file)."""
    h = hashlib.sha256((cs.root / "index.csv").read_bytes())
    h.update(f"|{split}|{size}|v{CACHE_VERSION}".encode())
    root = str(cs.root)
    for rel in dict.fromkeys([r.lensless for r in rows] + [r.original for r in rows]):
        state = file_state(os.path.join(root, rel))
        if state is None:
            return None
        h.update(f"\n{rel}\x1f{state}".encode("utf-8", "surrogateescape"))
    return h.hexdigest()[:20]


def _cache_prefix(split: str, size: int | None) -> str:
    return f"{split}-s{size if size is not None else 'native'}-"


def load_captures(root: str | Path, split: str, size: int | None = None,
                  cache: bool = True) -> CaptureSplit:
    """Load one split of a capture set as uint8 tensors.

    Args:
        root: capture-set directory.
        split: split name (``train``, ``test``, ...).
        size: resize originals and captures to ``size`` x ``size`` (None keeps the stored size;
            originals are then resized to the capture size when they differ).
        cache: read/write the decoded cache under ``root/.cache``.

    Returns:
        The split, rows in index order.

    Raises:
        DataError: missing split, missing or corrupt image (named), mixed image sizes.
    """
    cs = open_capture_set(root)
    rows = cs.rows_for(split)
    classes = cs.classes
    key = _cache_key(cs, split, size, rows) if cache else None
    cache_file = cs.root / ".cache" / f"{_cache_prefix(split, size)}{key}.pt"
    if key is not None and cache_file.is_file():
        try:
            d = torch.load(cache_file, map_location="cpu", weights_only=True)
            return CaptureSplit(d["lensless"], d["original"], d["labels"], list(d["ids"]),
                                d["frames"], classes)
        except Exception:  # noqa: BLE001 - a corrupt cache is rebuilt
            pass
    for r in rows:
        if not 0 <= r.label < len(classes):
            raise DataError(f"{cs.root / 'index.csv'}: row {r.split}/{r.id}: label {r.label} out of "
                            f"range for {len(classes)} classes")
    lpaths = [str(cs.path(r.lensless)) for r in rows]
    # Originals are shared by the frames of a scene: decode each file once.
    uniq = list(dict.fromkeys(r.original for r in rows))
    opaths = [str(cs.path(o)) for o in uniq]
    lensless = stack_images(read_images(lpaths), lpaths, "lensless")
    orig_u = stack_images(read_images(opaths), opaths, "original")
    pos = {o: i for i, o in enumerate(uniq)}
    original = orig_u[torch.tensor([pos[r.original] for r in rows], dtype=torch.long)]
    target = size if size is not None else (
        None if original.shape[-2:] == lensless.shape[-2:] else lensless.shape[-1])
    if size is None and lensless.shape[-2] != lensless.shape[-1]:
        raise DataError(f"{cs.root}: captures are {tuple(lensless.shape[-2:])}, not square; pass --size N to resample them to N x N")
    lensless = resize_uint8(lensless, target)
    original = resize_uint8(original, target)
    out = CaptureSplit(lensless, original, torch.tensor([r.label for r in rows], dtype=torch.long),
                       [r.id for r in rows], torch.tensor([r.frame for r in rows], dtype=torch.long),
                       classes)
    if cache:
        # Stored only when no file changed while it was decoded (else the next load decodes anew).
        if key is not None and _cache_key(cs, split, size, rows) == key:
            prefix = _cache_prefix(split, size)
            try:
                ensure_dir(cache_file.parent)
                with atomic_path(cache_file) as tmp:
                    torch.save({"lensless": out.lensless, "original": out.original, "labels": out.labels,
                                "ids": out.ids, "frames": out.frames}, tmp)
                for old in cache_file.parent.iterdir():
                    if old.name.startswith(prefix) and old.suffix == ".pt" and old != cache_file:
                        old.unlink(missing_ok=True)  # stale: made from files changed since
            except Exception:  # noqa: BLE001 - a read-only set still loads, just without cache
                pass
    return out
