"""Encode and write capture-set images, in parallel, atomically, skipping finished files; read
them back with the package's one decoder (:func:`opticsfree.utils.images.decode_image`;
worker pools from :func:`opticsfree.utils.parallel.process_pool`)."""

from __future__ import annotations

import io
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np
from PIL import Image

from opticsfree.errors import OpticsfreeError
from opticsfree.utils.images import decode_image
from opticsfree.utils.parallel import process_pool, resolve_workers

@dataclass(frozen=True)
class ImageJob:
    """One image to write: ``path`` (absolute), ``pixels`` (H, W, C) uint8, format and quality."""

    path: str
    pixels: np.ndarray
    quality: int | None = None  # JPEG quality; None = PNG (lossless)


def encode_image(pixels: np.ndarray, quality: int | None) -> bytes:
    """Encode (H, W, C) uint8 pixels as PNG (``quality`` None) or JPEG at ``quality``."""
    arr = pixels[..., 0] if pixels.shape[-1] == 1 else pixels
    img = Image.fromarray(np.ascontiguousarray(arr))
    buf = io.BytesIO()
    if quality is None:
        img.save(buf, format="PNG", compress_level=1)
    else:
        img.save(buf, format="JPEG", quality=int(quality))
    return buf.getvalue()


def _write_one(job: ImageJob) -> None:
    data = encode_image(job.pixels, job.quality)
    tmp = f"{job.path}.{os.getpid()}.tmp"
    with open(tmp, "wb") as f:
        f.write(data)
    os.replace(tmp, job.path)


def _write_chunk(jobs: Sequence[ImageJob]) -> int:
    for job in jobs:
        _write_one(job)
    return len(jobs)


def pending(jobs: Iterable[ImageJob]) -> list[ImageJob]:
    """The jobs whose file does not exist yet (finished files are complete: writes are atomic)."""
    return [j for j in jobs if not os.path.exists(j.path)]


def write_images(jobs: Sequence[ImageJob], workers: int = 0, chunk: int = 512,
                 on_progress=None) -> int:
    """Write ``jobs`` (creating directories), in ``workers`` processes (0 = one per CPU).

    Each file is written to a temporary name and renamed, so an interrupted run never leaves
    a partial image and a rerun only writes what is missing.

    Args:
        jobs: images to write.
        workers: processes to encode with; 0 uses ``os.cpu_count()``, 1 writes in-process.
        chunk: images per task.
        on_progress: optional callback ``f(n_written)`` after each chunk.

    Returns:
        Number of images written.
    """
    if not jobs:
        return 0
    for d in {os.path.dirname(j.path) for j in jobs}:
        try:
            os.makedirs(d, exist_ok=True)
        except OSError as e:
            raise OpticsfreeError(f"cannot create {d}: {e.strerror}") from None
    chunks = [jobs[i:i + chunk] for i in range(0, len(jobs), chunk)]
    workers = resolve_workers(workers)
    done = 0
    try:
        if workers == 1 or len(chunks) == 1:
            for c in chunks:
                done += _write_chunk(c)
                if on_progress:
                    on_progress(len(c))
        else:
            with process_pool(workers) as pool:
                for n in pool.map(_write_chunk, chunks):
                    done += n
                    if on_progress:
                        on_progress(n)
    except OSError as e:
        raise OpticsfreeError(f"cannot write {getattr(e, 'filename', '') or 'image'}: {e.strerror}") from None
    return done


def encode_decode(pixels: np.ndarray, quality: int | None) -> np.ndarray:
    """What a stored image reads back as: (N, H, W, C) uint8 encoded and decoded in memory.

    With ``quality`` None (PNG, lossless) the pixels come back unchanged; with a JPEG quality
    they carry exactly the compression loss of a file written by :func:`write_images` and read
    by :func:`read_image`.
    """
    if quality is None:
        return pixels
    return np.stack([read_image(io.BytesIO(encode_image(p, quality))) for p in pixels])


def read_image(path: str | Path | io.BytesIO) -> np.ndarray:
    """Decode an image file (or in-memory bytes) to (H, W, C) uint8, C = 1 or 3.

    The package's one decoder, :func:`opticsfree.utils.images.decode_image` (its pixel-mode
    rule: transparency composited onto white, grayscale modes one channel, 16-bit images
    scaled by their full range, never 4 channels).

    Raises:
        DataError: naming the file when it is missing, unreadable or truncated.
    """
    return decode_image(path)
