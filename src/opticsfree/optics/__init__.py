"""Camera physics: a display shown to a bare image sensor (or through a lens, or a PSF).

See docs/camera.md for the model and its equations.
"""

from opticsfree.optics.camera import Camera
from opticsfree.optics.config import CameraConfig, camera_from_dict, list_presets, load_camera_config
from opticsfree.optics.psf import fft_convolve
from opticsfree.optics.transfer import transfer_matrix

__all__ = ["Camera", "CameraConfig", "camera_from_dict", "list_presets", "load_camera_config",
           "fft_convolve", "transfer_matrix"]
