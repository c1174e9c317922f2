"""Scenes augmented before the camera sees them: the one mechanism of both trainers.

A lensless capture cannot be flipped or cropped: a flipped capture is not the capture of the
flipped scene (a bare sensor's response is neither shift- nor mirror-invariant). The scene can
be, before the camera sees it:

- :func:`augment_originals`: random flips (and crops) of original images (a batch of the
  original tower, or the scenes of :func:`augment_scenes`).
- :func:`augment_scenes`: ``copies`` augmented versions of every training scene, each shown to
  the camera of the capture set (the full simulation: optics, sensor noise with its own seed,
  the set's JPEG encoding), appended to the training rows with the scene's id and label and the
  augmented image as the original. The validation and test splits are never augmented: only the
  training rows of a run pass through here. With ``scene_refresh`` a trainer calls it again
  before every epoch, seeded by :func:`refresh_seed`, so each epoch sees new copies. A real rig
  can do the same by displaying flipped and shifted scenes and importing those captures.

Used by the embedding training (``opticsfree train --set scene_augment=...``; for a reconstructed
set it adds the set's reconstruction model, :class:`opticsfree.training.augment.SceneCamera`) and
by the reconstruction training (``opticsfree reconstruct train --set scene_augment=...``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import torch
import torch.nn.functional as F
from torch import Tensor

from opticsfree.captures.format import read_manifest
from opticsfree.captures.loader import CaptureSplit
from opticsfree.captures.simulate import capture_split
from opticsfree.errors import ConfigError
from opticsfree.optics.camera import Camera
from opticsfree.optics.config import camera_from_dict
from opticsfree.utils.seeding import derive_seed

#: Scene-augmentation modes (``scene_augment`` of both trainers).
SCENE_MODES = ("none", "flip", "crop-flip")
#: What re-captures scenes: ``camera(scenes uint8 (N, C, H, W), seed, split) -> rows uint8``.
SceneCaptureFn = Callable[[Tensor, int, str], Tensor]


def augment_originals(x: Tensor, mode: str, g: torch.Generator, rank: int = 0, world: int = 1,
                      flips: Tensor | None = None) -> Tensor:
    """Random horizontal flips (and crops) of the original images of a batch.

    The random draws are made for the global batch and sliced, so a run gives the same result
    in one process or many.

    Args:
        x: uint8 (b, C, H, W) local batch.
        mode: ``"flip"`` or ``"crop-flip"`` (reflect-pad by H/8, random crop back).
        g: the augmentation generator.
        rank, world: this process's slice of the global batch.
        flips: (b,) bool: which images to flip (None: each with probability 1/2).

    Returns:
        uint8 (b, C, H, W).
    """
    b = len(x)
    n = b * world
    if flips is None:
        flips = torch.rand(n, generator=g)[rank * b:(rank + 1) * b] < 0.5
    out = torch.where(flips[:, None, None, None], x.flip(-1), x)
    if mode == "crop-flip":
        h, w = x.shape[-2:]
        pad = max(1, h // 8)
        offs = torch.randint(0, 2 * pad + 1, (n, 2), generator=g)[rank * b:(rank + 1) * b]
        padded = F.pad(out.float(), (pad, pad, pad, pad), mode="reflect").to(x.dtype)
        out = torch.stack([padded[i, :, oy:oy + h, ox:ox + w] for i, (oy, ox) in enumerate(offs.tolist())])
    return out


@dataclass
class SceneCapture:
    r"""The simulated camera of a capture set, as a function of scenes:
    :math:`y = \mathrm{JPEG}(\mathrm{camera}(x))` (:func:`~opticsfree.captures.simulate.capture_split`).

    Attributes:
        camera: the simulated camera.
    """

    camera: Camera

    def __call__(self, scenes: Tensor, seed: int, split: str) -> Tensor:
        """Captures of ``scenes``.

        Args:
            scenes: uint8 scenes (the originals).
            seed: the sensor-noise seed.
            split: split name (part of the noise seed).

        Returns:
            uint8 captures.

        Shape:
            - scenes: (N, C, H, W)
            - output: (N, C', H', W'), the camera's output size.
        """
        return capture_split(self.camera, scenes.permute(0, 2, 3, 1).numpy(), seed=seed, split=split)


def camera_for_scenes(camera: dict[str, Any], where: str, split: CaptureSplit,
                      field: str = "camera") -> SceneCapture:
    """The camera described by a manifest's ``field`` entry (``where``: the manifest's path),
    for the scenes of ``split``.

    Raises:
        ConfigError: the entry is not a simulated camera (real captures cannot be re-run).
    """
    if camera.get("type") == "real" or "geometry" not in camera:
        raise ConfigError(f"{where}: scene augmentation needs a simulated capture set (its camera "
                          f"re-captures the augmented scenes); for a real rig, display flipped/shifted "
                          f"scenes and import them")
    config = camera_from_dict(camera, f"{where}: {field}")
    return SceneCapture(Camera(config, tuple(split.original.shape[-2:]), int(split.original.shape[1])))


def scene_capture(captures: str, split: CaptureSplit) -> SceneCapture:
    """The simulated camera that made the capture set ``captures`` (its manifest), for the
    scenes of ``split``.

    Raises:
        ConfigError: the set holds real (imported) or reconstructed images.
    """
    manifest = read_manifest(captures)
    return camera_for_scenes(manifest.get("camera") or {}, f"{captures}/manifest.json", split)


def augment_seed(seed: int, k: int) -> int:
    """The sensor-noise seed of augmented copy ``k`` (1-based) of a run seeded ``seed``."""
    return derive_seed("scene-augment", seed, k) % 2**31


def refresh_seed(seed: int, epoch: int) -> int:
    """The seed of the augmented copies drawn anew (``scene_refresh``) for ``epoch`` of a run
    seeded ``seed``: the epoch as its trainer counts it (``reconstruct train`` from 0, ``train``
    from 1); the first epoch trains on the copies seeded by ``seed`` itself."""
    return derive_seed("scene-refresh", seed, epoch) % 2**31


def augment_scenes(split: CaptureSplit, camera: SceneCaptureFn, mode: str, copies: int,
                   seed: int) -> CaptureSplit:
    """``split`` followed by ``copies`` augmented versions of its scenes, re-captured by ``camera``.

    Copy :math:`k` (1-based) of ``flip`` mirrors every scene when :math:`k` is odd (none when
    even: a second noise draw); ``crop-flip`` flips each scene with probability 1/2 and shifts it
    by up to 1/8 of its side (reflect padding), drawn from a generator seeded by ``seed`` and
    :math:`k`. Each copy's sensor noise has its own seed (:func:`augment_seed`); the rows of a
    reconstructed set are the model's reconstructions of those captures.

    Args:
        split: the training rows (one frame per scene is used: the first).
        camera: what turns scenes into rows of the set (:func:`scene_capture`, or for a
            reconstructed set :func:`opticsfree.training.augment.scene_camera`).
        mode: ``"flip"`` or ``"crop-flip"``.
        copies: augmented copies per scene (>= 1).
        seed: the run's seed.

    Returns:
        A split with ``len(split) + copies * scenes`` rows; augmented rows keep the scene's id
        and label and have frame index ``-k``.
    """
    if mode not in SCENE_MODES[1:]:
        raise ConfigError(f"scene_augment: expected one of {', '.join(SCENE_MODES)}, got {mode!r}")
    if copies < 1:
        raise ConfigError(f"scene_copies: must be >= 1, got {copies}")
    first: dict[str, int] = {}
    for i, s in enumerate(split.ids):
        first.setdefault(s, i)
    rows = torch.as_tensor(list(first.values()), dtype=torch.long)
    scenes = split.original[rows]
    lensless, originals, labels, ids, frames = [split.lensless], [split.original], [split.labels], list(split.ids), [split.frames]
    for k in range(1, copies + 1):
        g = torch.Generator().manual_seed(derive_seed("scene-augment", seed, k))
        flips = torch.full((len(rows),), k % 2 == 1) if mode == "flip" else None
        aug = augment_originals(scenes, mode, g, flips=flips)
        caps = camera(aug, seed=augment_seed(seed, k), split=f"train-augment-{k}")
        if caps.shape[-2:] != split.lensless.shape[-2:]:
            raise ConfigError(f"scene augmentation re-captures at the stored size {tuple(caps.shape[-2:])}, "
                              f"but the run resizes captures to {tuple(split.lensless.shape[-2:])}; "
                              f"leave size unset")
        lensless.append(caps)
        originals.append(aug)
        labels.append(split.labels[rows])
        ids.extend(split.ids[i] for i in rows.tolist())
        frames.append(torch.full((len(rows),), -k, dtype=split.frames.dtype))
    return CaptureSplit(torch.cat(lensless), torch.cat(originals), torch.cat(labels), ids,
                        torch.cat(frames), list(split.classes))
