"""Pixel-mode rules shared by every image decoder: transparency composited onto white."""

from __future__ import annotations

import numpy as np
from PIL import Image

#: Grey level that transparent pixels are composited onto (white), see :func:`flatten_alpha`.
ALPHA_BACKGROUND = 255
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
