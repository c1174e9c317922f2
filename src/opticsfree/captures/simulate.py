"""Simulate a capture set: show a dataset on the camera's display and write the captures.

The work is split into fixed batches; the captures of batch ``b``, frame ``f`` use a torch
generator seeded from ``(seed, split, b, f)``, so a set is a deterministic function of its
settings, and a rerun after an interruption recomputes only batches with missing files and
writes exactly the same pixels. Image encoding (PNG originals, JPEG captures) runs in worker
processes while the main process simulates the next batch
(:func:`opticsfree.utils.parallel.map_chunks` takes the files to write as they are simulated,
a bounded number of chunks ahead). ``manifest.json`` and ``index.csv`` are
written last: a set without them is incomplete. Everything is validated (settings, output
directory, one trial capture) before the first file is written, so an invalid command leaves
nothing behind.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

import numpy as np
import torch

from opticsfree.captures.format import (
    IndexRow,
    class_folders,
    lensless_relpath,
    make_manifest,
    original_relpath,
    write_index,
    write_manifest,
)
from opticsfree.captures.writer import ImageJob, _write_chunk, encode_decode
from opticsfree.utils.parallel import map_chunks
from opticsfree.data.base import ImageDataset, stratified_limit
from opticsfree.errors import ConfigError, DataError, OpticsfreeError
from opticsfree.optics import Camera, CameraConfig
from opticsfree.utils.io import check_out_dir, check_plan_dir, ensure_dir, write_json
from opticsfree.utils.seeding import derive_seed

SIMULATION_VERSION = 1
PLAN_FILE = "simulation.json"

log = logging.getLogger(__name__)


def plan_for(dataset: ImageDataset, camera: CameraConfig, splits: Sequence[str], limit: int | None,
             frames: int, seed: int, batch: int, skipped: Sequence[dict] | None = None) -> dict:
    """The settings that determine a simulated set's content (compared when resuming).

    ``skipped`` (unreadable source images left out) is part of the plan only when not empty.
    """
    plan = {"version": SIMULATION_VERSION, "dataset": dataset.name, "source": dataset.source,
            "splits": list(splits), "limit": limit, "frames": frames, "seed": seed, "batch": batch,
            "camera": camera.to_dict()}
    if skipped:
        plan["skipped"] = sorted(str(s["path"]) for s in skipped)
    return plan


def check_out_path(out: str | Path) -> Path:
    """``out`` as a Path; ConfigError when it (or a parent) exists and is not a directory."""
    return check_out_dir(out, "a new directory or an earlier simulation")


def _check_out(out: Path, plan: dict) -> None:
    check_out_path(out)
    check_plan_dir(out, PLAN_FILE, plan, "a simulation")


def load_simulation_dataset(name: str, data: str | os.PathLike | None = None,
                            splits: Sequence[str] = ("train", "test"),
                            skip_bad: bool = False) -> tuple[ImageDataset, list[dict[str, str]]]:
    """Load the dataset to simulate, optionally leaving out unreadable image files.

    Args:
        name: dataset name (:func:`opticsfree.data.load_dataset`).
        data: its local copy.
        splits: splits to load.
        skip_bad: (``folder`` datasets: ImageFolder trees) leave out images that cannot be
            decoded (empty, truncated, not an image) instead of stopping at the first one.
            A tree that decodes completely is read through the decoded-dataset cache as usual;
            one with unreadable files is decoded without it (the cache never holds a partial
            tree).

    Returns:
        ``(dataset, skipped)``: ``skipped`` lists ``{"path", "reason"}`` per image left out
        (always empty without ``skip_bad``). Pass it to :func:`simulate_capture_set`, which
        records it as ``manifest["skipped"]``.

    Raises:
        ConfigError: ``skip_bad`` with a dataset other than ``folder``.
        DataError: as :func:`~opticsfree.data.load_dataset`; without ``skip_bad`` an unreadable
            image stops loading with an error naming the file.
    """
    from opticsfree.data import load_dataset

    if not skip_bad:
        return load_dataset(name, data=data, splits=splits), []
    if str(name).strip().lower() != "folder":
        raise ConfigError(f"--skip-bad applies to --dataset folder (ImageFolder trees), not {name!r}")
    try:
        return load_dataset(name, data=data, splits=splits), []
    except DataError:
        if data is None:
            raise
    from opticsfree.data.folder import load_folder_skipping_bad

    return load_folder_skipping_bad(data, splits)


def capture_batch(cam: Camera, images: torch.Tensor, seed: int, split: str, batch_index: int,
                  frame: int = 0) -> np.ndarray:
    """The captures of one simulation batch, as a capture set stores them (before encoding).

    Args:
        cam: the camera.
        images: uint8 (N, C, H, W) scenes of batch ``batch_index`` of ``split``.
        seed, split, batch_index, frame: identify the batch; its noise generator is seeded
            from them, so the same batch always gives the same captures.

    Returns:
        uint8 (N, Ho, Wo, C) captures.
    """
    g = torch.Generator().manual_seed(derive_seed(seed, split, batch_index, frame))
    return cam.capture(images, g).permute(0, 2, 3, 1).contiguous().numpy()


def capture_split(cam: Camera, images: np.ndarray, seed: int, split: str, batch: int = 1024) -> torch.Tensor:
    """Captures of ``images`` in memory, pixel for pixel what :func:`simulate_capture_set` writes.

    The same batches and noise seeds as a simulated set of these scenes (``frames = 1``), then
    the camera's encoding (JPEG at ``cam.jpeg_quality``) and decoding, as the loader reads them.

    Args:
        cam: the camera.
        images: uint8 (N, H, W, C) scenes, in the order a set of them would hold.
        seed: the simulation seed.
        split: split name (part of the noise seed).
        batch: scenes per simulation batch (part of the noise seed).

    Returns:
        uint8 (N, C, Ho, Wo) captures.
    """
    out = []
    for b0 in range(0, len(images), batch):
        x = torch.from_numpy(np.ascontiguousarray(images[b0:b0 + batch])).permute(0, 3, 1, 2)
        caps = encode_decode(capture_batch(cam, x, seed, split, b0 // batch), cam.jpeg_quality)
        out.append(torch.from_numpy(caps).permute(0, 3, 1, 2))
    return torch.cat(out) if out else torch.zeros(0, *cam.output_shape, dtype=torch.uint8)


def empty_classes(dataset: ImageDataset, splits: Sequence[str], limit: int | None,
                  seed: int) -> dict[str, list[str]]:
    """``{split: [class names]}`` of the classes with no image in a simulated split (only
    splits that miss some), e.g. when ``limit`` is smaller than the number of classes."""
    out: dict[str, list[str]] = {}
    for split in splits:
        sp = dataset.splits[split]
        idx = stratified_limit(sp.labels, limit, seed)
        counts = np.bincount(np.asarray(sp.labels)[idx].astype(np.int64), minlength=len(dataset.classes))
        missing = [dataset.classes[c] for c in range(len(dataset.classes)) if counts[c] == 0]
        if missing:
            out[split] = missing
    return out


def _empty_class_warnings(empty: dict[str, list[str]], n_classes: int, limit: int | None) -> list[str]:
    msgs = []
    for split, names in empty.items():
        why = (f"--limit {limit} keeps at most {limit} images for {n_classes} classes"
               if limit is not None and limit < n_classes else "the dataset has none")
        msgs.append(f"split '{split}' has no images of {len(names)} of {n_classes} classes "
                    f"({why}): {', '.join(repr(n) for n in names)}; "
                    f"{'accuracy on it cannot' if split == 'test' else 'a model cannot'} cover them")
    return msgs


def simulate_capture_set(dataset: ImageDataset, camera: CameraConfig, out: str | Path,
                         splits: Sequence[str] | None = None, limit: int | None = None,
                         frames: int = 1, seed: int = 0, batch: int = 1024, workers: int = 0,
                         on_progress: Callable[[str, int, int], None] | None = None,
                         skipped: Sequence[dict[str, str]] | None = None,
                         on_warning: Callable[[str], None] | None = None) -> Path:
    """Write a capture set of ``dataset`` seen through ``camera``.

    Args:
        dataset: the clean images (splits already loaded).
        camera: camera parameters.
        out: output directory (created; resumed if it holds the same simulation).
        splits: splits to simulate (default: all of the dataset's).
        limit: keep at most ``limit`` images per split, class-stratified (seeded).
        frames: captures per scene, each with independent noise and nuisances.
        seed: random seed of the subset selection and of the capture noise.
        batch: scenes simulated per matrix multiply (part of the set's identity).
        workers: encoding processes (:func:`~opticsfree.utils.parallel.map_chunks`): 0 one per
            CPU, 1 in this process, N at most N; a small set is encoded in this process.
        on_progress: callback ``f(split, done, total)`` in scenes.
        skipped: source images left out as unreadable (``{"path", "reason"}``, from
            :func:`load_simulation_dataset` with ``skip_bad``); stored as ``manifest["skipped"]``
            (None: no such key).
        on_warning: called with each warning (one line, e.g. a class without test images)
            before the simulation starts; default: logged on this module's logger.

    Returns:
        The output directory.

    Raises:
        ConfigError, OpticsfreeError: invalid settings, camera or output directory; raised
            before anything is written.
    """
    if frames < 1:
        raise ConfigError(f"--frames must be >= 1, got {frames}")
    if limit is not None and limit < 1:
        raise ConfigError(f"--limit must be >= 1, got {limit}")
    if batch < 1:
        raise ConfigError(f"batch must be >= 1, got {batch}")
    if workers < 0:
        raise ConfigError(f"--workers must be >= 0 (0: one per CPU), got {workers}")
    splits = list(splits or dataset.splits)
    if not splits:
        raise ConfigError(f"dataset {dataset.name} has no split to simulate")
    for s in splits:
        if s not in dataset.splits:
            raise ConfigError(f"dataset {dataset.name} has no split '{s}' (it has {', '.join(dataset.splits)})")
    shapes = {s: dataset.splits[s].images.shape[1:] for s in splits}
    if len(set(shapes.values())) > 1:
        raise DataError(f"dataset {dataset.name}: splits have different image shapes (H, W, C): "
                        + ", ".join(f"{s} {v}" for s, v in shapes.items()))
    out = Path(out)
    plan = plan_for(dataset, camera, splits, limit, frames, seed, batch, skipped)
    _check_out(out, plan)

    first = dataset.splits[splits[0]]
    channels = first.images.shape[-1]
    if channels not in (1, 3):
        raise DataError(f"dataset {dataset.name}: images have {channels} channels, expected 1 or 3")
    cam = Camera(camera, first.images.shape[1:3], channels)
    # A trial capture of one scene: an unusable camera fails here, before anything is written.
    if len(first.images):
        capture_batch(cam, torch.from_numpy(np.ascontiguousarray(first.images[:1])).permute(0, 3, 1, 2),
                      seed, splits[0], 0, 0)
    warn = on_warning or log.warning
    for msg in _empty_class_warnings(empty_classes(dataset, splits, limit, seed), len(dataset.classes), limit):
        warn(msg)
    folders = class_folders(dataset.classes)

    ensure_dir(out)
    write_json(out / PLAN_FILE, plan)
    quality = cam.jpeg_quality
    ext = "jpeg" if quality is not None else "png"
    rows: list[IndexRow] = []
    sizes: dict[str, int] = {}

    def image_jobs() -> Iterator[ImageJob]:
        """The files still missing, batch by batch (simulated as the writers ask for them)."""
        for split in splits:
            sp = dataset.splits[split]
            idx = stratified_limit(sp.labels, limit, seed)
            sizes[split] = len(idx)
            labels = [int(sp.labels[i]) for i in idx]
            names = [folders[lab] for lab in labels]  # class folders (format.class_folders)
            for d in {(split, n) for n in names}:
                ensure_dir(out / "originals" / d[0] / d[1])
                ensure_dir(out / "lensless" / d[0] / d[1])
            for b0 in range(0, len(idx), batch):
                bidx = idx[b0:b0 + batch]
                jobs: list[ImageJob] = []
                for j, i in enumerate(bidx):
                    rel = original_relpath(split, names[b0 + j], sp.ids[i])
                    if not (out / rel).exists():
                        jobs.append(ImageJob(str(out / rel), sp.images[i]))
                images = None
                for f in range(frames):
                    rels = [lensless_relpath(split, names[b0 + j], sp.ids[i], f if frames > 1 else None, ext)
                            for j, i in enumerate(bidx)]
                    for j, i in enumerate(bidx):
                        rows.append(IndexRow(split, sp.ids[i], labels[b0 + j],
                                             dataset.classes[labels[b0 + j]],
                                             original_relpath(split, names[b0 + j], sp.ids[i]), rels[j], f))
                    if all((out / r).exists() for r in rels):
                        continue
                    if images is None:
                        images = torch.from_numpy(np.ascontiguousarray(sp.images[bidx])).permute(0, 3, 1, 2)
                    caps = capture_batch(cam, images, seed, split, b0 // batch, f)
                    jobs.extend(ImageJob(str(out / r), caps[j], quality) for j, r in enumerate(rels)
                                if not (out / r).exists())
                yield from jobs
                if on_progress:
                    on_progress(split, min(b0 + batch, len(idx)), len(idx))

    try:
        for _ in map_chunks(_write_chunk, image_jobs(), workers=workers, ordered=False):
            pass
    except OSError as e:
        raise OpticsfreeError(f"cannot write {getattr(e, 'filename', None) or out}: {e.strerror}") from None

    src = {"dataset": dataset.name, "copy": dataset.source, "notes": list(dataset.notes)}
    extra: dict[str, Any] = {}
    if skipped is not None:
        extra["skipped"] = [{"path": str(s["path"]), "reason": str(s["reason"])} for s in skipped]
    write_index(out, rows, frames=frames > 1)
    write_manifest(out, make_manifest(source=src, classes=dataset.classes, splits=sizes,
                                      camera=camera.to_dict(), seed=seed, frames=frames,
                                      channels=channels, limit=limit,
                                      simulation={"batch": batch, "version": SIMULATION_VERSION},
                                      **extra))
    return out
