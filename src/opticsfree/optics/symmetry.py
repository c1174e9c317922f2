"""Is a camera left-right symmetric? The condition of test-time mirroring.

Mirroring a capture at test time (classifying :math:`F y` as well as :math:`y`, with :math:`F`
the left-right flip of an image grid) assumes that the mirrored capture is what the camera
would record of the mirrored scene: :math:`F H x = H F x` for every scene :math:`x`, that is

.. math:: F H F = H.

A bare sensor centred on the display has it; a coded mask, an off-centre or tilted sensor does
not. Two numbers say how far a camera is from it:

.. math::
    a_H = \\frac{\\lVert F H F - H \\rVert_F}{\\lVert H \\rVert_F}, \\qquad
    a_g = \\frac{\\lVert F g - g \\rVert_F}{\\lVert g \\rVert_F},

the asymmetry of the light transport and of the sensor's pixel-gain map :math:`g` (PRNU: a
random map is never symmetric; with a gain spread :math:`\\sigma` it gives
:math:`a_g \\approx \\sqrt{2}\\,\\sigma`, 1.4% for the ``seed`` preset's 1%). Mirroring is refused
when :math:`a_H` exceeds :data:`MIRROR_TOLERANCE`; :math:`a_g` is reported, since a small gain
asymmetry acts like sensor noise.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from opticsfree.optics.camera import Camera

#: The largest transfer asymmetry :math:`a_H` at which test-time mirroring is allowed.
MIRROR_TOLERANCE = 0.01


@dataclass(frozen=True)
class MirrorSymmetry:
    """How far a camera is from left-right symmetry.

    Attributes:
        transfer: :math:`a_H`, relative Frobenius norm of :math:`F H F - H`.
        gain: :math:`a_g`, relative Frobenius norm of :math:`F g - g` (pixel gains).
    """

    transfer: float
    gain: float

    @property
    def symmetric(self) -> bool:
        """True when :math:`a_H \\le` :data:`MIRROR_TOLERANCE`."""
        return self.transfer <= MIRROR_TOLERANCE

    def describe(self) -> str:
        """One line: both asymmetries in percent."""
        return (f"transfer asymmetry |FHF - H|/|H| = {100 * self.transfer:.2f}% (tolerance "
                f"{100 * MIRROR_TOLERANCE:.0f}%), pixel-gain asymmetry {100 * self.gain:.2f}%")


def mirror_symmetry(camera: Camera) -> MirrorSymmetry:
    """Measure a camera's left-right asymmetry (see the module doc).

    Args:
        camera: the camera at the image size it is used with.

    Returns:
        :class:`MirrorSymmetry`.
    """
    H = camera.matrix().double()
    ho, wo = camera.config.sensor.output_size
    h, w = camera.image_shape
    H4 = H.reshape(ho, wo, h, w)
    a_h = float(torch.linalg.norm(H4.flip(1).flip(3) - H4) / torch.linalg.norm(H4).clamp_min(1e-30))
    g = camera.fpn.gain.double()
    a_g = float(torch.linalg.norm(g.flip(-1) - g) / torch.linalg.norm(g).clamp_min(1e-30))
    return MirrorSymmetry(a_h, a_g)
