"""ImageFolder trees (``train/<class>/*``, ``test/<class>/*``, or ``<class>/*``): scan and decode.

A tree is read from a directory or from the members of a tar archive. Layouts recognised, on
relative paths of image files (hidden files and ``__MACOSX`` are ignored):

* two splits: ``train/<class>/<file>`` and ``test/<class>/<file>``;
* the same below one wrapper directory (``<name>/train/<class>/<file>``, as archives often are);
* one split (only where the caller allows it): ``<class>/<file>``, possibly below one wrapper
  directory; it is split into train/test by :func:`opticsfree.data.split.stratified_split`.

Empty class folders: a class folder with no image file in it (``<class>/`` or
``train/<class>/`` holding nothing, or only non-image files) gives no sample, so a class whose
folders are all empty is left out of the class list: the class list is the classes that have
images, as the label order has always been, and not kept with a stable index, because a class
without images cannot be split, has no prototype (evaluation's
:func:`~opticsfree.evaluation.embed.class_prototypes` refuses it) and no accuracy. Nothing is
dropped silently: :func:`scan_directory` gives one warning line naming every such folder and
saying which classes are left out and which are kept (those with images in another split);
``on_warning`` receives it, by default this module's logger (a line ``warning: ...`` on stderr
when logging is not configured), and :attr:`Tree.empty_folders` lists the folders. A tar
archive is read by its image members only, so its empty folders are not seen.

Files may sit in subfolders of a class folder. Samples are ordered by label, then by path,
and get ids ``<class>_<path within the class folder, without extension>`` made file-name-safe
and unique. Decoding uses the package's one decoder (:func:`opticsfree.utils.images.decode_image`:
transparency composited onto white, grayscale modes one channel, 16-bit images scaled by their
full range, everything else RGB), over many files through :func:`decode_files`, the package's
one entry point for decoding many image files (also the capture loader's and ``predict``'s), in
worker processes for large inputs (:func:`opticsfree.utils.parallel.map_chunks`). An unreadable
file stops decoding with an error naming it, unless the caller asks to skip such files
(``skip_bad``), which are then listed in :attr:`DecodedTree.skipped`.
"""

from __future__ import annotations

import contextlib
import logging
import os
import posixpath
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator, Sequence, Union

import numpy as np

from opticsfree.utils.images import ImageDecodeError, decode_image_format
from opticsfree.utils.parallel import map_chunks
from opticsfree.data.base import Split
from opticsfree.data.classes import folder_class_order
from opticsfree.data.ids import unique_ids
from opticsfree.data.split import stratified_split
from opticsfree.errors import DataError

#: File extensions treated as images (lower case).
IMAGE_EXTENSIONS = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".gif", ".ppm", ".pgm", ".pbm",
                              ".pnm", ".tif", ".tiff", ".webp"})
#: Split folder names of a two-split tree.
SPLIT_DIRS = ("train", "test")
#: Layouts, for error messages.
LAYOUTS = "train/<class>/<image>, test/<class>/<image>"
#: What :func:`decode_files` decodes: a path (named by itself) or ``(name, payload)``, the
#: payload being the file's path or its bytes (an archive member) and the name how messages
#: call it.
DecodeItem = Union[str, os.PathLike, tuple[str, Union[bytes, str]]]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Entry:
    """One image file of a tree.

    Attributes:
        split: ``"train"`` / ``"test"``, or ``""`` in a single-split tree.
        cls: class folder name.
        rel: path below the class folder (POSIX).
        display: how to name the file in messages (a path, or ``archive:member``).
        payload: the file's bytes (archive member) or its path (directory tree).
    """

    split: str
    cls: str
    rel: str
    display: str
    payload: bytes | str


@dataclass
class Tree:
    """A scanned ImageFolder tree: its entries and whether it has train/test folders.

    ``empty_folders``: class folders without an image (POSIX paths relative to ``source``,
    e.g. ``dog`` or ``train/dog``); their classes are in :attr:`classes` only when another
    split's folder of the class has images (:attr:`dropped_classes` are not).
    """

    source: Path
    two_split: bool
    entries: list[Entry]
    empty_folders: list[str] = field(default_factory=list)

    @property
    def classes(self) -> list[str]:
        """Class names in label order (all splits together); classes without any image are
        not among them (see the module's docstring)."""
        return folder_class_order(e.cls for e in self.entries)

    @property
    def dropped_classes(self) -> list[str]:
        """Classes of :attr:`empty_folders` that have no image in any split (left out of
        :attr:`classes`), sorted."""
        have = {e.cls for e in self.entries}
        return sorted({posixpath.basename(f) for f in self.empty_folders} - have)

    def empty_folders_warning(self) -> str | None:
        """The one warning line about :attr:`empty_folders` (None when there is none)."""
        if not self.empty_folders:
            return None
        dropped = self.dropped_classes
        kept = sorted({posixpath.basename(f) for f in self.empty_folders} - set(dropped))
        return empty_folders_line(f"{self.source}: ", self.empty_folders, dropped, kept, "images",
                                  "images in another split")


def empty_folders_line(where: str, folders: Sequence[str], dropped: Sequence[str], kept: Sequence[str],
                       what: str, kept_because: str) -> str:
    """The one warning line about class folders without images (folder datasets and
    ``import``): which folders, which classes left the class list, which stayed and why.

    Args:
        where: a prefix naming the source (``"DIR: "``, or ``""``).
        folders: the empty folders.
        dropped: classes left out of the class list.
        kept: classes kept although a folder of theirs is empty.
        what: what labelled classes have (``"images"``, ``"pairs"``).
        kept_because: why the kept ones stayed.
    """
    parts = [f"{where}{len(folders)} class folder(s) without images: {', '.join(folders)}"]
    if dropped:
        parts.append(f"class(es) {', '.join(repr(c) for c in dropped)} left out of the class "
                     f"list (labels number the classes that have {what})")
    if kept:
        parts.append(f"class(es) {', '.join(repr(c) for c in kept)} kept ({kept_because})")
    return "; ".join(parts)


def is_image_path(rel: str) -> bool:
    """Whether a relative path names an image file that a tree may hold (not hidden)."""
    if posixpath.splitext(rel)[1].lower() not in IMAGE_EXTENSIONS:
        return False
    return not any(p.startswith(".") or p == "__MACOSX" for p in rel.split("/"))


def _layout(paths: Sequence[list[str]], allow_single: bool) -> tuple[int, bool] | None:
    """(depth of the split or class folder, two_split) for split image paths, or None."""

    def two_split_at(depth: int) -> bool:
        return any(len(p) >= depth + 3 and p[depth] in SPLIT_DIRS for p in paths)

    if not paths:
        return None
    if two_split_at(0):
        return 0, True
    tops = {p[0] for p in paths if len(p) > 1}
    wrapped = len(tops) == 1 and all(len(p) > 1 for p in paths)
    if wrapped and two_split_at(1):
        return 1, True
    if not allow_single:
        return None
    if wrapped and all(len(p) >= 3 for p in paths):
        return 1, False
    if any(len(p) >= 2 for p in paths):
        return 0, False
    return None


def _empty_folders(dirs: Sequence[str], split_paths: Sequence[list[str]], depth: int,
                   two_split: bool) -> list[str]:
    """The class folders among ``dirs`` (relative POSIX directory paths) that hold no image:
    ``[<wrapper>/]<split>/<class>`` or ``[<wrapper>/]<class>`` by the layout."""
    prefix = split_paths[0][:depth]  # the wrapper directory, when there is one
    width = depth + (2 if two_split else 1)
    full = {tuple(p[:width]) for p in split_paths if len(p) > width}
    out = []
    for d in dirs:
        parts = d.split("/")
        if len(parts) != width or parts[:depth] != prefix or tuple(parts) in full:
            continue
        if two_split and parts[depth] not in SPLIT_DIRS:
            continue
        out.append(d)
    return sorted(out)


def _entries(source: Path, items: Sequence[tuple[str, str, bytes | str]],
             allow_single: bool, dirs: Sequence[str] = ()) -> Tree | None:
    """Build a :class:`Tree` from ``(relative path, display, payload)`` items; ``dirs``: the
    tree's directories (relative POSIX paths), where empty class folders are looked for."""
    split_paths = [rel.split("/") for rel, _, _ in items]
    layout = _layout(split_paths, allow_single)
    if layout is None:
        return None
    depth, two_split = layout
    entries = []
    for parts, (_, display, payload) in zip(split_paths, items):
        if two_split:
            if len(parts) >= depth + 3 and parts[depth] in SPLIT_DIRS:
                entries.append(Entry(parts[depth], parts[depth + 1], "/".join(parts[depth + 2:]), display, payload))
        elif len(parts) >= depth + 2:
            entries.append(Entry("", parts[depth], "/".join(parts[depth + 1:]), display, payload))
    if not entries:
        return None
    return Tree(source, two_split, entries, _empty_folders(dirs, split_paths, depth, two_split))


def scan_directory(root: str | Path, allow_single: bool,
                   on_warning: Callable[[str], None] | None = None) -> Tree | None:
    """Scan a directory for an ImageFolder tree (None when it has no recognised layout).

    Class folders without images are left out (their classes too, unless another split has
    images of them) and named in one warning line given to ``on_warning`` (default: this
    module's logger, ``warning: <line>``); :attr:`Tree.empty_folders` lists them.
    """
    root = Path(root)
    items = []
    all_dirs = []
    for dirpath, dirs, files in os.walk(root):
        dirs[:] = sorted(d for d in dirs if not d.startswith(".") and d != "__MACOSX")
        all_dirs += [Path(os.path.relpath(os.path.join(dirpath, d), root)).as_posix() for d in dirs]
        for name in files:
            full = os.path.join(dirpath, name)
            rel = Path(os.path.relpath(full, root)).as_posix()
            if is_image_path(rel):
                items.append((rel, full, full))
    tree = _entries(root, items, allow_single, all_dirs)
    message = tree.empty_folders_warning() if tree is not None else None
    if message:
        (on_warning or _warn)(message)
    return tree


def _warn(message: str) -> None:
    log.warning("warning: %s", message)


def tree_from_members(archive: str | Path, members: dict[str, bytes], allow_single: bool) -> Tree | None:
    """An ImageFolder tree from archive members ``{name: bytes}`` (None when no layout fits)."""
    archive = Path(archive)
    items = [(name, f"{archive}:{name}", data) for name, data in members.items() if is_image_path(name)]
    return _entries(archive, items, allow_single)


def _decode_one(item: DecodeItem) -> tuple[np.ndarray, str] | str:
    """Decode one file with :func:`opticsfree.utils.images.decode_image_format`: ``(array,
    Pillow format)``, or why it cannot be decoded (one line, without the file's name)."""
    name, payload = item if isinstance(item, tuple) else (str(item), item)
    try:
        return decode_image_format(payload, name=name)
    except ImageDecodeError as e:
        return e.reason
    except Exception as e:  # noqa: BLE001 - any decoder failure means a bad image file
        return (f"{type(e).__name__}: {e}".splitlines() or [type(e).__name__])[0]


def _decode_chunk(items: Sequence[DecodeItem]) -> list[tuple[np.ndarray, str] | str]:
    return [_decode_one(item) for item in items]


def decode_files(items: Sequence[DecodeItem], *, workers: int | None = 0, desc: str | None = None,
                 on_progress: Callable[[int], None] | None = None) -> Iterator[tuple[np.ndarray, str] | str]:
    """Decode many image files: the package's one entry point for that (ImageFolder trees,
    the capture loader, ``predict``), each file with the one decoder,
    :func:`opticsfree.utils.images.decode_image`.

    Args:
        items: per file, its path, or ``(name, payload)``: the payload a path or the file's
            bytes, the name how to call it in messages (:data:`DecodeItem`).
        workers: decoding processes (:func:`~opticsfree.utils.parallel.map_chunks`): 0 one per
            CPU, 1 in this process, N at most N; few files are decoded in this process.
        desc: label of a transient progress bar (None: none).
        on_progress: called with the number of files of each decoded chunk.

    Returns:
        An iterator, in the order of ``items``, of ``(array, format)`` per file (``array``
        uint8 (H, W, C), C = 1 or 3; ``format`` Pillow's name, e.g. ``"PNG"``) or, for a file
        that cannot be decoded (missing, empty, truncated, not an image), the reason as a
        one-line string. Close it (or exhaust it) to stop the workers.
    """
    return map_chunks(_decode_chunk, items, workers=workers, desc=desc, on_progress=on_progress)


def decode_images(items: Sequence[tuple[str, bytes | str]], rgb: bool, desc: str = "decoding",
                  workers: int | None = 0, skip_bad: bool = False,
                  skipped: list[tuple[int, str, str]] | None = None) -> tuple[np.ndarray, set[str]]:
    """Decode image files into one uint8 (N, H, W, C) array (with :func:`decode_files`).

    Args:
        items: ``(display name, payload)`` per image; payload is the file's bytes or its path.
        rgb: convert every image to RGB (C = 3). Otherwise grayscale images (the one-channel
            modes of :func:`opticsfree.utils.images.decode_image`) stay one channel, and
            when grayscale and colour images are mixed, the grayscale ones are replicated to
            three channels.
        desc: progress bar label.
        workers: decoding processes: 0 one per CPU, 1 in this process, N at most N; few images
            are decoded in this process (:func:`~opticsfree.utils.parallel.map_chunks`).
        skip_bad: leave out the images that cannot be decoded (empty, truncated, not an image)
            instead of stopping; each is appended to ``skipped``.
        skipped: with ``skip_bad``, receives ``(index in items, display name, reason)`` per image
            left out.

    Returns:
        ``(images, formats)``: the array in input order (without skipped images) and the set of
        Pillow format names seen.

    Raises:
        DataError: an image cannot be decoded (unless ``skip_bad``), no image can (with
            ``skip_bad``), or an image's size differs from the first image's (the message names
            the file).
    """
    n = len(items)
    if n == 0:
        raise ValueError("no images to decode")
    arrays: list[np.ndarray] = []
    formats: set[str] = set()
    ref: tuple[int, int] | None = None
    ref_name = ""
    bad: list[tuple[int, str, str]] = []
    with contextlib.closing(decode_files(items, workers=workers, desc=desc)) as results:
        for i, ((name, _), res) in enumerate(zip(items, results)):
            if isinstance(res, str):
                if not skip_bad:
                    raise DataError(f"{name}: cannot decode image ({res}); remove or replace "
                                    f"the file (simulate --skip-bad skips unreadable images)")
                bad.append((i, name, res))
                continue
            a, fmt = res
            if ref is None:
                ref, ref_name = a.shape[:2], name
            elif a.shape[:2] != ref:
                raise DataError(
                    f"{name}: image size {a.shape[1]}x{a.shape[0]} differs from "
                    f"{ref_name} ({ref[1]}x{ref[0]}); all images must share a size")
            arrays.append(a)
            formats.add(fmt)
    if skipped is not None:
        skipped.extend(bad)
    if ref is None:
        raise DataError(f"none of the {n} images could be decoded; first: {bad[0][1]} ({bad[0][2]})")
    channels = 3 if rgb or any(a.shape[2] == 3 for a in arrays) else 1
    out = np.empty((len(arrays), ref[0], ref[1], channels), dtype=np.uint8)
    for i, a in enumerate(arrays):
        out[i] = a  # (H, W, 1) broadcasts to 3 channels (rgb, or mixed with colour)
    return out, formats


@dataclass
class DecodedTree:
    """The decoded splits of a tree, its classes and the image formats it contained.

    ``skipped``: ``{"path", "reason"}`` of every unreadable image left out (``skip_bad``).
    """

    classes: list[str]
    splits: dict[str, Split]
    formats: set[str]
    skipped: list[dict[str, str]] = field(default_factory=list)


def _ids(entries: Sequence[Entry]) -> list[str]:
    return unique_ids(f"{e.cls}_{posixpath.splitext(e.rel)[0]}" for e in entries)


def decode_tree(tree: Tree, splits: Sequence[str], rgb: bool, desc: str = "decoding",
                skip_bad: bool = False) -> DecodedTree:
    """Decode the images of ``splits`` of a tree.

    For a two-split tree, only the requested splits are decoded. A single-split tree is
    decoded whole and split (seeded, stratified 80/20); both splits are returned.

    Args:
        tree: from :func:`scan_directory` or :func:`tree_from_members`.
        splits: split names wanted (``"train"``, ``"test"``).
        rgb: see :func:`decode_images`.
        desc: progress bar label.
        skip_bad: leave out unreadable images (listed in ``DecodedTree.skipped``) instead of
            stopping at the first. Ids are those the files have in the whole tree, so they do
            not change when a file is skipped.

    Returns:
        A :class:`DecodedTree`; labels index ``tree.classes``.

    Raises:
        DataError: a requested split has no images (or, with ``skip_bad``, no readable ones),
            an image is corrupt (without ``skip_bad``), or sizes differ.
    """
    classes = tree.classes
    index = {c: i for i, c in enumerate(classes)}

    def ordered(entries: list[Entry]) -> list[Entry]:
        return sorted(entries, key=lambda e: (index[e.cls], e.rel))

    if tree.two_split:
        groups = {}
        for s in splits:
            g = ordered([e for e in tree.entries if e.split == s])
            if not g:
                raise DataError(f"{tree.source}: the ImageFolder tree has no {s}/<class>/ images "
                                f"(expected {LAYOUTS})")
            groups[s] = g
        flat = [e for s in splits for e in groups[s]]
        bad: list[tuple[int, str, str]] = []
        images, formats = decode_images([(e.display, e.payload) for e in flat], rgb, desc,
                                        skip_bad=skip_bad, skipped=bad)
        keep = np.ones(len(flat), dtype=bool)
        keep[[i for i, _, _ in bad]] = False
        out, start, kstart = {}, 0, 0
        for s in splits:
            g = groups[s]
            k = keep[start:start + len(g)]
            if not k.any():
                raise DataError(f"{tree.source}: none of the {len(g)} images of {s}/<class>/ could be "
                                f"decoded (skipped as unreadable)")
            labels = np.fromiter((index[e.cls] for e in g), dtype=np.int64, count=len(g))[k]
            ids = [i for i, ok in zip(_ids(g), k) if ok]
            n_kept = int(k.sum())
            out[s] = Split(images[kstart:kstart + n_kept], labels, ids)
            start += len(g)
            kstart += n_kept
        return DecodedTree(classes, out, formats, _skipped(bad))

    flat = ordered(list(tree.entries))
    bad = []
    images, formats = decode_images([(e.display, e.payload) for e in flat], rgb, desc,
                                    skip_bad=skip_bad, skipped=bad)
    keep = np.ones(len(flat), dtype=bool)
    keep[[i for i, _, _ in bad]] = False
    labels = np.fromiter((index[e.cls] for e in flat), dtype=np.int64, count=len(flat))[keep]
    whole = Split(images, labels, [i for i, ok in zip(_ids(flat), keep) if ok])
    train_idx, test_idx = stratified_split(labels)
    if len(test_idx) == 0:
        raise DataError(f"{tree.source}: too few images to split into train and test "
                        "(each class needs at least 2)")
    return DecodedTree(classes, {"train": whole.subset(train_idx), "test": whole.subset(test_idx)}, formats,
                       _skipped(bad))


def _skipped(bad: Sequence[tuple[int, str, str]]) -> list[dict[str, str]]:
    return [{"path": name, "reason": reason} for _, name, reason in bad]
