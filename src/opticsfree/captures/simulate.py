"""Simulate a capture set: show a dataset on the camera's display and write the captures.

The work is split into fixed batches; the captures of batch ``b``, frame ``f`` use a torch
generator seeded from ``(seed, split, b, f)``, so a set is a deterministic function of its
settings, and a rerun after an interruption recomputes only batches with missing files and
writes exactly the same pixels. Image encoding (PNG originals, JPEG captures) runs in a process
pool while the main process simulates the next batch. ``manifest.json`` and ``index.csv`` are
written last: a set without them is incomplete.
"""

from __future__ import annotations

import os
from concurrent.futures import Future, ProcessPoolExecutor
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch

from opticsfree.captures.format import (
    IndexRow,
    lensless_relpath,
    make_manifest,
    original_relpath,
    write_index,
    write_manifest,
)
from opticsfree.captures.writer import ImageJob, _write_chunk, encode_decode
from opticsfree.data.base import ImageDataset, stratified_limit
from opticsfree.errors import ConfigError, OpticsfreeError
from opticsfree.optics import Camera, CameraConfig
from opticsfree.utils.io import ensure_dir, read_json, write_json
from opticsfree.utils.seeding import derive_seed

SIMULATION_VERSION = 1
PLAN_FILE = "simulation.json"


def plan_for(dataset: ImageDataset, camera: CameraConfig, splits: Sequence[str], limit: int | None,
             frames: int, seed: int, batch: int) -> dict:
    """The settings that determine a simulated set's content (compared when resuming)."""
    return {"version": SIMULATION_VERSION, "dataset": dataset.name, "source": dataset.source,
            "splits": list(splits), "limit": limit, "frames": frames, "seed": seed, "batch": batch,
            "camera": camera.to_dict()}


def _check_out(out: Path, plan: dict) -> None:
    plan_path = out / PLAN_FILE
    if plan_path.is_file():
        old = read_json(plan_path)
        if old != plan:
            diff = sorted(k for k in set(old) | set(plan) if old.get(k) != plan.get(k))
            raise OpticsfreeError(f"{out} holds a simulation with different settings ({', '.join(diff)}); "
                                  "use another --out or delete it")
    elif out.exists() and any(p for p in out.iterdir() if not p.name.startswith(".")):
        raise OpticsfreeError(f"{out} exists and is not an opticsfree simulation; use another --out")


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


def simulate_capture_set(dataset: ImageDataset, camera: CameraConfig, out: str | Path,
                         splits: Sequence[str] | None = None, limit: int | None = None,
                         frames: int = 1, seed: int = 0, batch: int = 1024, workers: int = 0,
                         on_progress: Callable[[str, int, int], None] | None = None) -> Path:
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
        workers: encoding processes (0 = one per CPU).
        on_progress: callback ``f(split, done, total)`` in scenes.

    Returns:
        The output directory.
    """
    if frames < 1:
        raise ConfigError(f"--frames must be >= 1, got {frames}")
    if limit is not None and limit < 1:
        raise ConfigError(f"--limit must be >= 1, got {limit}")
    splits = list(splits or dataset.splits)
    for s in splits:
        if s not in dataset.splits:
            raise ConfigError(f"dataset {dataset.name} has no split '{s}' (it has {', '.join(dataset.splits)})")
    out = Path(out)
    plan = plan_for(dataset, camera, splits, limit, frames, seed, batch)
    _check_out(out, plan)
    ensure_dir(out)
    write_json(out / PLAN_FILE, plan)

    first = dataset.splits[splits[0]]
    channels = first.images.shape[-1]
    cam = Camera(camera, first.images.shape[1:3], channels)
    quality = cam.jpeg_quality
    ext = "jpeg" if quality is not None else "png"
    rows: list[IndexRow] = []
    sizes: dict[str, int] = {}
    workers = workers or os.cpu_count() or 1
    pending_futures: list[Future] = []
    try:
        with ProcessPoolExecutor(max_workers=workers) as pool:
            def submit(jobs: list[ImageJob]) -> None:
                for i in range(0, len(jobs), 256):
                    pending_futures.append(pool.submit(_write_chunk, jobs[i:i + 256]))
                # keep memory bounded: wait for the oldest tasks when too many are queued
                while len(pending_futures) > 4 * workers:
                    pending_futures.pop(0).result()

            for split in splits:
                sp = dataset.splits[split]
                idx = stratified_limit(sp.labels, limit, seed)
                sizes[split] = len(idx)
                names = [dataset.classes[int(sp.labels[i])] for i in idx]
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
                            rows.append(IndexRow(split, sp.ids[i], int(sp.labels[i]), names[b0 + j],
                                                 original_relpath(split, names[b0 + j], sp.ids[i]), rels[j], f))
                        if all((out / r).exists() for r in rels):
                            continue
                        if images is None:
                            images = torch.from_numpy(np.ascontiguousarray(sp.images[bidx])).permute(0, 3, 1, 2)
                        caps = capture_batch(cam, images, seed, split, b0 // batch, f)
                        jobs.extend(ImageJob(str(out / r), caps[j], quality) for j, r in enumerate(rels)
                                    if not (out / r).exists())
                    submit(jobs)
                    if on_progress:
                        on_progress(split, min(b0 + batch, len(idx)), len(idx))
            for fut in pending_futures:
                fut.result()
    except OSError as e:
        raise OpticsfreeError(f"cannot write {getattr(e, 'filename', None) or out}: {e.strerror}") from None

    src = {"dataset": dataset.name, "copy": dataset.source, "notes": list(dataset.notes)}
    write_index(out, rows, frames=frames > 1)
    write_manifest(out, make_manifest(source=src, classes=dataset.classes, splits=sizes,
                                      camera=camera.to_dict(), seed=seed, frames=frames,
                                      channels=channels, limit=limit,
                                      simulation={"batch": batch, "version": SIMULATION_VERSION}))
    return out
