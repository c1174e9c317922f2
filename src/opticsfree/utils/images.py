"""The package's one image decoder and its pixel-mode rule.

:func:`decode_image` turns an image file (a path, its bytes or a binary file object) into an
(H, W, C) uint8 array with C = 1 or 3; every reader of the package (capture sets, ImageFolder
trees, seed-style tuples, ``import``, ``show``) decodes through it, and ``check`` reports the
channel count it gives (:func:`decoded_channels`). The rule, by Pillow mode:

* transparency (an alpha band: ``RGBA``, ``LA``, ``PA``, ...; or a transparent palette entry /
  colour key: ``P``, ``L``, ``1``, ``RGB`` with ``transparency``) is composited onto white
  (:func:`flatten_alpha`), never dropped;
* grayscale modes give one channel: ``1`` (0 or 255), ``L``, ``LA``/``La`` (after compositing),
  ``I;16`` (and ``I;16B``/``I;16L``/``I;16N``) and ``I`` scaled by the 16-bit full range
  (``round(clip(v, 0, 65535) * 255 / 65535)``), ``F`` clipped to [0, 1] then scaled
  (``round(clip(v, 0, 1) * 255)``);
* everything else gives three channels through Pillow's ``convert("RGB")``: ``RGB``, ``RGBA``
  (after compositing), ``RGBX``, palette ``P``/``PA``, ``CMYK``, ``YCbCr``, ``HSV``, ``LAB``.

Four channels are never returned. A missing, unreadable or truncated file raises one
:class:`ImageDecodeError` (a :class:`~opticsfree.errors.DataError`) naming it.
"""

from __future__ import annotations

import io
import os
import struct
from pathlib import Path
from typing import BinaryIO, Union

import numpy as np
from PIL import Image

from opticsfree.errors import DataError

#: Grey level that transparent pixels are composited onto (white), see :func:`flatten_alpha`.
ALPHA_BACKGROUND = 255
#: Pillow modes decoded to one channel (plus the ``I;16`` variants, see :func:`is_grayscale_mode`).
GRAYSCALE_MODES = frozenset({"1", "L", "LA", "La", "I", "F"})
#: Full range of the integer modes ``I;16*`` and ``I`` (scaled to 0..255 by :func:`image_array`).
INT_FULL_RANGE = 65535

#: What :func:`decode_image` reads: a path, the file's bytes, or a binary file object.
ImageSource = Union[str, os.PathLike, bytes, bytearray, BinaryIO]


class ImageDecodeError(DataError):
    """An image file is missing, unreadable or truncated.

    Attributes:
        name: the file as named in the message.
        reason: what is wrong, without the name (``"file not found"``, ``"unreadable or
            truncated image (...)"``).
    """

    def __init__(self, name: str, reason: str):
        super().__init__(f"{name}: {reason}")
        self.name = name
        self.reason = reason


def has_alpha(img: Image.Image) -> bool:
    """Whether a Pillow image carries transparency (an alpha band or a tRNS/palette key)."""
    if img.mode in ("RGBA", "RGBa", "LA", "La", "PA"):
        return True
    return img.mode in ("P", "L", "1", "RGB") and img.info.get("transparency") is not None


def flatten_alpha(img: Image.Image) -> Image.Image:
    """Composite an image with transparency onto white (:data:`ALPHA_BACKGROUND`).

    ``out = colour * alpha + 255 * (1 - alpha)`` per channel, alpha in [0, 1], rounded. Greyscale
    modes (``LA``, ``La``, ``L``/``1`` with a transparent key) give an ``L`` image, the others
    (``RGBA``, ``RGBa``, ``PA``, ``P`` or ``RGB`` with transparency) an ``RGB`` image. An image
    without transparency is returned unchanged. Dropping the alpha band instead would show the
    colours stored under fully transparent pixels, which are arbitrary.
    """
    if not has_alpha(img):
        return img
    grey = img.mode in ("LA", "La", "L", "1")
    arr = np.asarray(img.convert("LA" if grey else "RGBA"), dtype=np.float32)
    alpha = arr[..., -1:] / 255.0
    out = arr[..., :-1] * alpha + ALPHA_BACKGROUND * (1.0 - alpha)
    out = np.clip(np.rint(out), 0, 255).astype(np.uint8)
    return Image.fromarray(np.ascontiguousarray(out[..., 0] if grey else out))


def is_grayscale_mode(mode: str) -> bool:
    """Whether images of Pillow ``mode`` decode to one channel (see the module docstring)."""
    return mode in GRAYSCALE_MODES or mode.startswith("I;16")


def decoded_channels(img: Image.Image) -> int:
    """Channels (1 or 3) that :func:`decode_image` gives for ``img``, read from its header only."""
    return 1 if is_grayscale_mode(img.mode) else 3


def image_array(img: Image.Image) -> np.ndarray:
    """Apply the pixel-mode rule (module docstring) to a loaded Pillow image: (H, W, C) uint8."""
    mode = img.mode
    if mode.startswith("I;16") or mode == "I":
        v = np.asarray(img).astype(np.float64)
        arr = np.rint(np.clip(v, 0, INT_FULL_RANGE) * (255.0 / INT_FULL_RANGE)).astype(np.uint8)
    elif mode == "F":
        v = np.nan_to_num(np.asarray(img, dtype=np.float64), nan=0.0)
        arr = np.rint(np.clip(v, 0.0, 1.0) * 255.0).astype(np.uint8)
    else:
        img = flatten_alpha(img)  # transparency composited onto white: L or RGB
        if is_grayscale_mode(mode):
            arr = np.asarray(img.convert("L"))
        else:
            arr = np.asarray(img.convert("RGB"))
    if arr.ndim == 2:
        arr = arr[:, :, None]
    return np.ascontiguousarray(arr, dtype=np.uint8)


def _source_name(source: ImageSource, name: str | None) -> str:
    if name is not None:
        return name
    if isinstance(source, (str, os.PathLike)):
        return str(source)
    if isinstance(source, (bytes, bytearray)):
        return "<image bytes>"
    return str(getattr(source, "name", None) or "<in-memory image>")


def decode_image_format(source: ImageSource, *, name: str | None = None) -> tuple[np.ndarray, str]:
    """:func:`decode_image`, also returning Pillow's format name (``"PNG"``, ``"JPEG"``, ``"?"``)."""
    label = _source_name(source, name)
    src = io.BytesIO(source) if isinstance(source, (bytes, bytearray)) else source
    if isinstance(src, Path):
        src = str(src)
    try:
        with Image.open(src) as img:
            img.load()
            fmt = img.format or "?"
            arr = image_array(img)
    except FileNotFoundError:
        raise ImageDecodeError(label, "file not found") from None
    except IsADirectoryError:
        raise ImageDecodeError(label, "is a directory, not an image file") from None
    except PermissionError as e:
        raise ImageDecodeError(label, f"unreadable ({e.strerror})") from None
    except (OSError, SyntaxError, ValueError, EOFError, IndexError, struct.error,
            Image.DecompressionBombError) as e:  # what Pillow raises for a corrupt file
        detail = (str(e).splitlines() or [""])[0] or type(e).__name__
        raise ImageDecodeError(label, f"unreadable or truncated image ({detail})") from None
    return arr, fmt


def decode_image(source: ImageSource, *, name: str | None = None) -> np.ndarray:
    """Decode an image file to (H, W, C) uint8, C = 1 (grayscale) or 3, never 4.

    The pixel-mode rule (also in docs/formats.md, "Decoding images"):

    * transparency (``RGBA``, ``LA``, ``PA``, ``La``, ``RGBa``; ``P``/``L``/``1``/``RGB`` with a
      transparent palette entry or colour key) is composited onto white
      (``out = colour * alpha + 255 * (1 - alpha)``, :func:`flatten_alpha`);
    * grayscale modes give C = 1: ``1`` (0/255), ``L``, ``LA``/``La`` (composited); 16- and
      32-bit integer images (``I;16*``, ``I``) are scaled by the 16-bit full range,
      ``round(clip(v, 0, 65535) * 255 / 65535)``; ``F`` is clipped to [0, 1] and scaled,
      ``round(clip(v, 0, 1) * 255)``;
    * every other mode gives C = 3 via Pillow's ``convert("RGB")``: ``RGB``, ``RGBA``
      (composited), palette ``P``/``PA``, ``CMYK``, ``YCbCr``, ``HSV``, ``LAB``, ...

    Args:
        source: a path, the file's bytes, or a binary file object (e.g. ``io.BytesIO``).
        name: how to name the file in an error (default: the path, or ``<image bytes>``).

    Raises:
        ImageDecodeError: (a :class:`~opticsfree.errors.DataError`) naming the file when it is
            missing, unreadable, not an image or truncated.
    """
    return decode_image_format(source, name=name)[0]
