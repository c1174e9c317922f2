"""Camera physics: a display shown to a bare image sensor (or through a lens, or a PSF).

See docs/camera.md for the model and its equations. The names are loaded on first use (PEP 562),
so that :mod:`opticsfree.optics.config` (the presets and camera files, read by the command line
for its help texts) loads without torch.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from opticsfree.utils.lazy import lazy_getattr

if TYPE_CHECKING:
    from opticsfree.optics.camera import Camera
    from opticsfree.optics.config import CameraConfig, camera_from_dict, list_presets, load_camera_config
    from opticsfree.optics.psf import fft_convolve
    from opticsfree.optics.transfer import transfer_matrix

__all__ = ["Camera", "CameraConfig", "camera_from_dict", "list_presets", "load_camera_config",
           "fft_convolve", "transfer_matrix"]

__getattr__ = lazy_getattr(__name__, __all__, ("config", "camera", "psf", "transfer"))
