"""The seed study's rig in software: a display shows each scene, a bare camera records it.

``rig capture`` collects a capture set on real hardware (pygame display; opencv or picamera2
camera) or on the virtual rig (a frame buffer and a camera model), resumable to the scene and
drift-monitored; ``rig calibrate`` measures the camera's transfer matrix with displayed
patterns; ``rig preview`` helps align the hardware. See docs/rig.md.
"""

from opticsfree.rig.config import RigConfig, load_rig_config

__all__ = ["RigConfig", "load_rig_config"]
