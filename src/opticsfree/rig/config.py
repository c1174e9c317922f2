"""The rig file: a display that shows each scene and a camera that records it, in physical terms.

A rig file (TOML, validated by pydantic; docs/rig.md documents every field) has three tables::

    name = "my-rig"

    [display]                  # what shows the scene
    backend = "pygame"         # pygame (a real window) or virtual (a frame buffer in memory)
    screen_px = [1080, 2340]   # the screen (fullscreen) or window size, width x height
    pitch_mm = 0.0635          # the screen's pixel pitch
    position_px = [508, 1138]  # top-left corner of the drawn image (x, y), screen pixels
    size_px = [64, 64]         # drawn image size, width x height, screen pixels ...
    size_mm = [4.064, 4.064]   # ... and in mm: must equal size_px x pitch_mm within half a pixel

    [camera]                   # what records it
    backend = "opencv"         # opencv, picamera2 or virtual
    ...

    [monitor]                  # drift: a reference scene and a black frame every N scenes
    every = 200

Pixel sizes and positions on the screen and in camera frames are ``[width, height]`` and
``[x, y]`` (the convention of screens and video devices); ``output_size`` of the stored captures
is ``[rows, cols]`` like a camera file's ``sensor.output_size``. Any bad field is a one-line
:class:`~opticsfree.errors.ConfigError` naming the file and the field.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from opticsfree.errors import ConfigError
from opticsfree.optics.config import _format_validation
from opticsfree.utils.io import read_toml

#: Display backends (:data:`opticsfree.rig.display.DISPLAYS` holds their classes).
DISPLAY_BACKENDS = ("pygame", "virtual")
#: Camera backends (:data:`opticsfree.rig.camera.CAMERAS` holds their classes).
CAMERA_BACKENDS = ("opencv", "picamera2", "virtual")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class DisplaySection(_Strict):
    """The screen that shows each scene.

    The image is drawn at ``position_px`` with ``size_px`` screen pixels (``interpolation``
    resamples it), the rest of the screen at the grey level ``background``. ``size_mm`` is the
    physical size of the drawn image; it must agree with ``size_px * pitch_mm`` within half a
    pixel, so the file cannot describe a geometry the screen does not have.
    """

    backend: Literal[DISPLAY_BACKENDS]  # type: ignore[valid-type]
    mode: Literal["window", "fullscreen"] = "window"
    screen: int = Field(0, ge=0, description="screen index (pygame: SDL display number)")
    screen_px: tuple[int, int] = Field(description="screen or window size, width x height (pixels)")
    pitch_mm: float = Field(gt=0, description="the screen's pixel pitch (mm)")
    position_px: tuple[int, int] | None = Field(
        None, description="top-left corner (x, y) of the drawn image; default: centred")
    size_px: tuple[int, int] = Field(description="drawn image size, width x height (screen pixels)")
    size_mm: tuple[float, float] = Field(description="drawn image size, width x height (mm)")
    interpolation: Literal["nearest", "bilinear"] = "nearest"
    background: int = Field(0, ge=0, le=255, description="grey level of the screen around the image")
    settle_s: float = Field(0.0, ge=0, description="wait after each change of the screen (LCD response)")

    @model_validator(mode="after")
    def _geometry(self) -> "DisplaySection":
        if min(self.screen_px) < 1 or min(self.size_px) < 1:
            raise ValueError("screen_px and size_px must be >= 1 pixel in each dimension")
        for axis, px, mm in zip(("width", "height"), self.size_px, self.size_mm):
            if abs(px * self.pitch_mm - mm) > 0.5 * self.pitch_mm:
                raise ValueError(
                    f"size_mm {list(self.size_mm)} disagrees with size_px {list(self.size_px)} x "
                    f"pitch_mm {self.pitch_mm} = {[round(p * self.pitch_mm, 4) for p in self.size_px]} "
                    f"mm ({axis} off by more than half a pixel)")
        x, y = self.origin
        if x < 0 or y < 0 or x + self.size_px[0] > self.screen_px[0] or y + self.size_px[1] > self.screen_px[1]:
            raise ValueError(f"the drawn image (position_px {[x, y]}, size_px {list(self.size_px)}) "
                             f"does not fit on the screen ({list(self.screen_px)})")
        return self

    @property
    def origin(self) -> tuple[int, int]:
        """Top-left corner (x, y) of the drawn image in screen pixels."""
        if self.position_px is not None:
            return int(self.position_px[0]), int(self.position_px[1])
        return ((self.screen_px[0] - self.size_px[0]) // 2, (self.screen_px[1] - self.size_px[1]) // 2)


class CameraSection(_Strict):
    """The camera that records the screen.

    Settings a backend can lock (``exposure``, ``gain``, ``white_balance``) are ``"auto"`` or a
    value; what the device would not lock is reported by ``rig capture`` and everything set is
    recorded in the capture set's manifest.
    """

    backend: Literal[CAMERA_BACKENDS]  # type: ignore[valid-type]
    # opencv
    device: int | None = Field(None, ge=0, description="opencv: camera index (/dev/videoN)")
    source: str | None = Field(None, description="opencv: a video file or image sequence "
                                                 "(e.g. frames/%04d.png) instead of a device")
    # virtual
    model: str | None = Field(None, description="virtual: camera preset or camera TOML file")
    noise: bool = Field(True, description="virtual: False gives the expected capture (no random noise, "
                                          "no nuisances)")
    nuisances: bool = Field(True, description="virtual: the camera file's per-capture display jitter and "
                                              "flicker; False: a rigid rig, sensor noise only")
    drift_gain_per_scene: float = Field(0.0, description="virtual: relative brightness change per scene")
    drift_shift_mm_per_scene: tuple[float, float] = Field(
        (0.0, 0.0), description="virtual: lateral display drift per scene (x, y), mm")
    # every backend
    resolution: tuple[int, int] | None = Field(None, description="frame size to request, width x height")
    discard: int = Field(1, ge=0, description="frames dropped after each change of the screen")
    exposure: Literal["auto"] | float = Field("auto", description="'auto' or a locked exposure time (s)")
    gain: Literal["auto"] | float = Field("auto", description="'auto' or a locked analogue gain")
    white_balance: Literal["auto"] | float = Field("auto", description="'auto' or a locked colour temperature (K)")
    crop: tuple[int, int, int, int] | None = Field(None, description="region of interest x, y, width, height")
    output_size: tuple[int, int] | None = Field(
        None, description="stored capture size, rows x cols (area resampling); default: the cropped frame")
    format: Literal["jpeg", "png"] = Field("jpeg", description="storage of the captures")
    jpeg_quality: int = Field(90, ge=1, le=100)
    timeout_s: float = Field(5.0, gt=0, description="longest wait for a frame before the camera counts as stopped")

    @model_validator(mode="after")
    def _backend_fields(self) -> "CameraSection":
        if self.backend == "virtual" and not self.model:
            raise ValueError("the virtual camera needs model = a camera preset or TOML file")
        if self.backend == "opencv" and (self.device is None) == (self.source is None):
            raise ValueError("the opencv camera needs exactly one of device (an index) or source (a file)")
        if self.backend != "virtual" and (not self.noise or not self.nuisances or self.drift_gain_per_scene
                                          or any(self.drift_shift_mm_per_scene)):
            raise ValueError("noise, nuisances and drift_* describe the virtual camera only")
        for name in ("exposure", "gain", "white_balance"):
            v = getattr(self, name)
            if v != "auto" and v <= 0:
                raise ValueError(f"{name} must be 'auto' or a positive value, got {v}")
        if self.crop is not None and (self.crop[0] < 0 or self.crop[1] < 0 or min(self.crop[2:]) < 1):
            raise ValueError(f"crop must be x >= 0, y >= 0, width >= 1, height >= 1, got {list(self.crop)}")
        if self.output_size is not None and min(self.output_size) < 1:
            raise ValueError(f"output_size must be >= 1 in each dimension, got {list(self.output_size)}")
        return self

    @property
    def jpeg(self) -> int | None:
        """JPEG quality of stored captures (None: PNG)."""
        return self.jpeg_quality if self.format == "jpeg" else None


class MonitorSection(_Strict):
    """Drift monitoring: every ``every`` scenes the reference scene and a black frame are
    captured again; a warning is given once when a threshold is crossed."""

    every: int = Field(100, ge=0, description="scenes between checks (0: no monitoring)")
    min_psnr_db: float = Field(30.0, description="warn when the reference capture falls below this "
                                                  "PSNR against its first capture")
    max_dark: float = Field(0.05, ge=0, le=1, description="warn when the mean of a black frame's capture "
                                                           "exceeds this (fraction of full scale)")
    max_clipped: float = Field(0.01, ge=0, le=1, description="warn when more than this fraction of the "
                                                              "reference capture's pixels is clipped (255)")


class RigConfig(_Strict):
    """A complete rig: display, camera and drift monitor."""

    name: str
    description: str = ""
    display: DisplaySection
    camera: CameraSection
    monitor: MonitorSection = MonitorSection()
    source_dir: str | None = Field(None, exclude=True, description="directory of the TOML file")

    def to_dict(self) -> dict:
        """The full rig (for manifests)."""
        return self.model_dump(mode="json")

    def digest(self) -> str:
        """A short hash of the rig's settings (compared when a capture resumes)."""
        return hashlib.sha256(json.dumps(self.to_dict(), sort_keys=True).encode()).hexdigest()[:16]

    def resolve(self, path: str) -> Path:
        """A path from the rig file, relative to the file's directory."""
        p = Path(path)
        return p if p.is_absolute() or self.source_dir is None else Path(self.source_dir) / p


def load_rig_config(path: str | Path, overrides: dict[str, object] | None = None) -> RigConfig:
    """Load and validate a rig file (e.g. ``configs/rigs/virtual-seed.toml``).

    Args:
        path: the TOML file.
        overrides: ``{"section.field": value}`` set before validation (the commands' ``--set``,
            e.g. ``{"camera.nuisances": False}``).

    Raises:
        ConfigError: a missing or unreadable file, invalid TOML, a bad override, or an invalid
            field (named, one line).
    """
    path = Path(path)
    data = read_toml(path, "rig file")
    for key, value in (overrides or {}).items():
        section, _, name = key.partition(".")
        if not name or section not in ("display", "camera", "monitor"):
            raise ConfigError(f"--set {key}: expected SECTION.FIELD with SECTION display, camera or monitor "
                              "(e.g. --set camera.noise=false)")
        data.setdefault(section, {})[name] = value
    data.setdefault("source_dir", str(path.parent.resolve()))
    try:
        return RigConfig(**data)
    except ValidationError as e:
        raise ConfigError(_format_validation(path, e)) from None
