"""Augmentation for the embedding training: the scenes of a reconstructed set, through its camera
and its model.

The mechanism itself (flips and crops of the scenes, re-captured by the set's simulated camera,
appended to the training rows; validation and test never augmented) lives one layer down, in
:mod:`opticsfree.captures.augment`, shared with the reconstruction training. What this module
adds is the one thing only the embedding training needs: a reconstructed set (``opticsfree
reconstruct apply``) is augmented the same way, its manifest naming the simulated camera its
captures came from and the reconstruction model, so an augmented scene is captured by that
camera and then reconstructed by that model (:class:`SceneCamera`), exactly the path its other
rows took.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from torch import Tensor

from opticsfree.captures.augment import (
    SCENE_MODES,
    SceneCapture,
    augment_originals,
    augment_scenes,
    augment_seed,
    camera_for_scenes,
    refresh_seed,
)
from opticsfree.captures.format import read_manifest
from opticsfree.captures.loader import CaptureSplit, resize_uint8
from opticsfree.errors import ConfigError, OpticsfreeError
from opticsfree.reconstruction.apply import Reconstructor, load_reconstructor
from opticsfree.utils.io import file_sha256

__all__ = ["SCENE_MODES", "SceneCamera", "augment_originals", "augment_scenes", "augment_seed", "refresh_seed",
           "scene_camera"]


@dataclass
class SceneCamera(SceneCapture):
    r"""What turns a scene into a row of a capture set: the simulated camera, followed, for a
    reconstructed set, by the reconstruction model that made the set.

    .. math::
        y = \mathrm{JPEG}(\mathrm{camera}(x)) \quad \text{or} \quad
        y = R(\mathrm{resize}_{s_R}(\mathrm{JPEG}(\mathrm{camera}(x))))

    Attributes:
        camera: the simulated camera (of the set, or of the set it was reconstructed from).
        reconstructor: the set's reconstruction model (None: the rows are the captures).
    """

    reconstructor: Reconstructor | None = None

    def __call__(self, scenes: Tensor, seed: int, split: str) -> Tensor:
        """Rows of the capture set for ``scenes`` (arguments and shapes as
        :meth:`SceneCapture.__call__`): the captures, or for a reconstructed set the model's
        reconstructions of them at the model's size."""
        caps = super().__call__(scenes, seed, split)
        if self.reconstructor is None:
            return caps
        return self.reconstructor.reconstruct(resize_uint8(caps, self.reconstructor.size))


def scene_camera(captures: str, split: CaptureSplit) -> SceneCamera:
    """The camera that made the capture set ``captures`` (from its manifest), for the scenes
    (originals) of ``split``; for a reconstructed set, the camera of its source set followed by
    its reconstruction model (on the CPU).

    Raises:
        ConfigError: the set holds real (imported) captures, whose camera cannot be re-run; a
            reconstructed set whose model is missing or has changed since the set was made.
    """
    where = f"{captures}/manifest.json"
    manifest = read_manifest(captures)
    cam = manifest.get("camera") or {}
    rec = None
    if cam.get("type") == "reconstruction":
        source = manifest.get("derived_from") or {}
        info = manifest.get("reconstruction") or {}
        cam = source.get("camera") or {}
        if cam.get("type") == "real" or "geometry" not in cam:
            raise ConfigError(f"{where}: scene augmentation of a reconstructed set needs captures "
                              f"simulated by a camera (derived_from.camera); these came from "
                              f"{cam.get('type', 'an unknown source')!r}")
        model = Path(str(info.get("model", "")))
        if not model.is_file():
            raise ConfigError(f"{where}: scene augmentation re-runs the reconstruction model "
                              f"reconstruction.model = {str(model)!r}, which is missing")
        if file_sha256(model) != info.get("model_sha256"):
            raise ConfigError(f"{where}: the reconstruction model {model} has changed since the set "
                              f"was made (sha256 differs from reconstruction.model_sha256); re-run "
                              f"`reconstruct apply` or restore the model")
        try:
            rec = load_reconstructor(model, "cpu")
        except OpticsfreeError as e:
            raise ConfigError(f"{where}: scene augmentation cannot load reconstruction.model: {e}") from None
    field = "derived_from.camera" if rec is not None else "camera"
    return SceneCamera(camera_for_scenes(cam, where, split, field).camera, rec)
