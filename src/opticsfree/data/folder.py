"""Any ImageFolder dataset: ``train/<class>/*`` + ``test/<class>/*``, or ``<class>/*``.

Given as a directory or a tar archive (optionally compressed) of one; one wrapper directory
around the tree is allowed. A tree without train/test folders is split 80/20 per class with a
fixed seed (:func:`opticsfree.data.split.stratified_split`). All images must share a size;
8-bit grayscale images stay one channel, everything else is converted to RGB (grayscale
images in a tree that also holds colour images are replicated to three channels). The class
order is sorted folder names (CIFAR-10's order when the folders are CIFAR-10's classes).
Decoded arrays are cached (:mod:`opticsfree.data.cache`).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence

from opticsfree.data.archive import read_members
from opticsfree.data.base import ImageDataset
from opticsfree.data.cache import Decoded, cached_decode, source_fingerprint
from opticsfree.data.imagefolder import decode_tree, is_image_path, scan_directory, tree_from_members
from opticsfree.data.locate import existing_path
from opticsfree.data.split import SPLIT_SEED, TEST_FRACTION
from opticsfree.errors import ConfigError, DataError

NAME = "folder"
EXPECTED = ("an ImageFolder tree train/<class>/<image>, test/<class>/<image> or <class>/<image> "
            "(a directory or a .tar.gz of one)")


def decode_folder(path: Path, splits: Sequence[str], skip_bad: bool = False) -> tuple[Decoded, list[dict[str, str]]]:
    """Decode the ImageFolder tree at ``path``; with ``skip_bad``, unreadable images are left out
    and returned as ``[{path, reason}, ...]`` (else the first one stops decoding, named)."""
    if path.is_dir():
        tree, kind = scan_directory(path, allow_single=True), "directory"
    else:
        tree, kind = tree_from_members(path, read_members(path, is_image_path), allow_single=True), "archive"
    if tree is None:
        raise DataError(f"{path}: no images in an ImageFolder layout (expected {EXPECTED})")
    dec = decode_tree(tree, splits, rgb=False, desc=f"decoding {path.name}", skip_bad=skip_bad)
    skipped = list(dec.skipped) if skip_bad else []
    if tree.two_split:
        form, notes = f"ImageFolder {kind}, train/test folders", []
    else:
        form = f"ImageFolder {kind}, single split"
        notes = [f"no train/test folders: split {1 - TEST_FRACTION:.0%}/{TEST_FRACTION:.0%} per class "
                 f"with seed {SPLIT_SEED}"]
    if skipped:
        notes.append(f"{len(skipped)} unreadable image(s) left out (--skip-bad), listed in the "
                     "manifest's 'skipped'")
    return Decoded(dec.classes, {s: dec.splits[s] for s in splits}, form, notes), skipped


def load_folder_skipping_bad(data: str | os.PathLike, splits: Sequence[str] = ("train", "test")
                             ) -> tuple[ImageDataset, list[dict[str, str]]]:
    """:func:`load_folder` without the unreadable images (never cached), and the list of them."""
    path = existing_path(data, EXPECTED)
    dec, skipped = decode_folder(path, splits, skip_bad=True)
    return ImageDataset(NAME, f"{path} ({dec.form})", dec.classes, dec.splits, dec.notes), skipped


def load_folder(data: str | os.PathLike | None, splits: Sequence[str] = ("train", "test")) -> ImageDataset:
    """Load an ImageFolder dataset from a directory or an archive.

    Args:
        data: the directory or tar archive (required).
        splits: which of ``"train"``, ``"test"`` to load.

    Returns:
        An :class:`ImageDataset` with uint8 images (N, H, W, 1 or 3), ids
        ``<class>_<path in the class folder without extension>``.

    Raises:
        ConfigError: ``data`` is None.
        DataError: no ImageFolder layout, a corrupt image, or images of different sizes
            (the message names the file).
    """
    if data is None:
        raise ConfigError(f"dataset 'folder' needs a path (--data PATH): {EXPECTED}")
    path = existing_path(data, EXPECTED)
    dec = cached_decode(NAME, source_fingerprint(path), splits, lambda missing: decode_folder(path, missing)[0])
    return ImageDataset(NAME, f"{path} ({dec.form})", dec.classes, dec.splits, dec.notes)
