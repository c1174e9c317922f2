"""Encode and write capture-set images, in parallel, atomically, skipping finished files; read
them back with the package's one decoder (:func:`opticsfree.utils.images.decode_image`).
Work is spread by the package's one fan-out, :func:`opticsfree.utils.parallel.map_chunks`, and
every file is written through :func:`opticsfree.utils.io.atomic_path`."""

from __future__ import annotations

import io
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, Sequence

import numpy as np
from PIL import Image

from opticsfree.errors import OpticsfreeError
from opticsfree.utils.images import decode_image
from opticsfree.utils.io import write_bytes
from opticsfree.utils.parallel import map_chunks

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
    write_bytes(job.path, encode_image(job.pixels, job.quality))


def _write_chunk(jobs: Sequence[ImageJob]) -> list[str]:
    """Write ``jobs`` (a :func:`~opticsfree.utils.parallel.map_chunks` task); their paths."""
    for job in jobs:
        _write_one(job)
    return [job.path for job in jobs]


def pending(jobs: Iterable[ImageJob]) -> list[ImageJob]:
    """The jobs whose file does not exist yet (finished files are complete: writes are atomic)."""
    return [j for j in jobs if not os.path.exists(j.path)]


def write_images(jobs: Sequence[ImageJob], workers: int = 0,
                 on_progress: Callable[[int], None] | None = None) -> int:
    """Write ``jobs`` (creating directories), in ``workers`` processes (0 = one per CPU).

    Each file is written to a temporary name and renamed
    (:func:`~opticsfree.utils.io.atomic_path`), so an interrupted run never leaves a partial
    image and a rerun only writes what is missing.

    Args:
        jobs: images to write.
        workers: processes to encode with (:func:`~opticsfree.utils.parallel.map_chunks`):
            0 one per CPU, 1 in this process, N at most N.
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
    done = 0
    try:
        for _ in map_chunks(_write_chunk, jobs, workers=workers, on_progress=on_progress,
                            ordered=False):
            done += 1
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
