"""Reconstruction of images from lensless captures.

Methods (``opticsfree reconstruct train CAPTURES --method M --out MODEL``), registered in
:mod:`.names` (one :class:`~.names.MethodSpec` line each, with their capabilities):

- ``cyclegan``: unpaired translation, the seed's method (:mod:`.cyclegan`).
- ``unet``: paired U-Net with L1 (+ SSIM) loss (:mod:`.unet`).
- ``bijective``: paired inverse and forward networks with cycle terms (:mod:`.bijective`).
- ``tikhonov``: regularised inverse of the linear camera model, known or calibrated
  (:mod:`.tikhonov`; the model: :mod:`.linear_ops` (the operator :math:`A`),
  :mod:`.sensor_model` (linearised units, known cameras); ``opticsfree calibrate`` fits the
  model of a real set: :mod:`.calibration`).

Each method's class implements a protocol of :mod:`.method` (a network method's
``NetworkMethod``, a fitted method's ``FittedModel``); every method trains through
:func:`train_reconstruction` and loads through :func:`load_reconstructor`, by its registered kind.

``opticsfree reconstruct apply MODEL CAPTURES --out CAPTURES2`` writes a derived capture set
whose lensless images are the reconstructions (:mod:`.apply`); ``opticsfree reconstruct ensemble``
averages trained models (members of ``--set member=K`` runs) into one (:mod:`.combine`,
:mod:`.ensemble`). See
docs/reconstruction.md.

The names are loaded on first use (PEP 562), so that :mod:`opticsfree.reconstruction.names`
(the method registry, read by the command line and the study config) loads without torch.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from opticsfree.utils.lazy import lazy_getattr

from opticsfree.reconstruction.names import (MethodSpec, method_names, method_spec,
                                             register_method)

if TYPE_CHECKING:
    from opticsfree.captures.linear import fit_affine
    from opticsfree.reconstruction.apply import (Reconstructor, apply_reconstruction,
                                                 load_reconstructor)
    from opticsfree.reconstruction.calibration import Calibration, calibrate, load_calibration
    from opticsfree.reconstruction.combine import EnsembleReport, ensemble_reconstruction
    from opticsfree.reconstruction.discriminators import (PatchDiscriminator, patch_layers_for,
                                                          receptive_field)
    from opticsfree.reconstruction.ensemble import EnsembleNet
    from opticsfree.reconstruction.generators import ResnetGenerator
    from opticsfree.reconstruction.image_pool import ImagePool
    from opticsfree.reconstruction.linear_ops import AffineOperator
    from opticsfree.reconstruction.names import METHODS
    from opticsfree.reconstruction.schedules import constant_then_linear_decay
    from opticsfree.reconstruction.sensor_model import SensorModel, camera_operator
    from opticsfree.reconstruction.tikhonov import TikhonovModel
    from opticsfree.reconstruction.train import list_metrics, train_reconstruction
    from opticsfree.reconstruction.unet import UNet

__all__ = [
    "METHODS", "MethodSpec", "method_names", "method_spec", "register_method",
    "train_reconstruction", "apply_reconstruction", "load_reconstructor", "Reconstructor",
    "ensemble_reconstruction", "EnsembleNet", "EnsembleReport",
    "list_metrics", "ResnetGenerator", "PatchDiscriminator", "patch_layers_for",
    "receptive_field", "UNet", "ImagePool", "constant_then_linear_decay", "AffineOperator", "SensorModel",
    "TikhonovModel", "Calibration", "calibrate", "camera_operator", "fit_affine", "load_calibration",
]

_LAZY = [n for n in __all__ if n not in ("MethodSpec", "method_names", "method_spec", "register_method")]
__getattr__ = lazy_getattr(__name__, _LAZY, ("names", "apply", "calibration", "combine", "discriminators",
                                             "ensemble", "generators", "image_pool", "linear_ops",
                                             "schedules", "sensor_model", "tikhonov", "train", "unet"))
