"""Camera configuration: validated parameter sets loaded from TOML presets or user files.

Every field has physical units in its name (``_mm``, ``_um``, ``_deg``, ``_e`` for electrons,
``_s`` for seconds, ``_px`` for output pixels), a unit that no suffix names in its ``Field``'s
``json_schema_extra={"unit": ...}``, or none (a ratio, gamma or count); :func:`field_unit` reads
them (for axis labels). A user copies a preset (``opticsfree.optics.presets/<name>.toml``), edits
it and passes the file with ``--camera my.toml``. Unknown or invalid fields raise a
:class:`~opticsfree.errors.ConfigError` naming the file and the field.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Literal, get_args

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from opticsfree.errors import ConfigError
from opticsfree.utils.io import bundled_or_file, read_toml

PRESET_DIR = Path(__file__).parent / "presets"


#: Units by field-name suffix (the convention above), longest suffix first.
UNIT_SUFFIXES: tuple[tuple[str, str], ...] = (
    ("_e_per_s", "e⁻/s"), ("_mm", "mm"), ("_um", "µm"), ("_deg", "°"), ("_px", "px"),
    ("_e", "e⁻"), ("_s", "s"),
)


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class DisplayConfig(_Strict):
    """The display (LCD) that shows the image.

    The image is shown over ``width_mm`` x ``height_mm``, one display element per image pixel.
    Luminance of an element with value ``v`` in [0, 1]:
    ``L = black_level + (1 - black_level) * v ** gamma``, times the backlight map.
    """

    width_mm: float = Field(gt=0)
    height_mm: float = Field(gt=0)
    gamma: float = Field(2.2, gt=0)
    black_level: float = Field(0.0, ge=0, lt=1)
    emission_exponent: float = Field(1.0, ge=0, description="a in the cos^a angular emission profile")
    backlight_falloff: float = Field(0.0, ge=0, lt=1, description="relative luminance loss at the image corners")
    supersample: int = Field(3, ge=1, le=16, description="emitters per display element per axis")


class GeometryConfig(_Strict):
    """Where the sensor sits relative to the display (the display plane is z = gap)."""

    gap_mm: float = Field(gt=0)
    offset_mm: tuple[float, float] = (0.0, 0.0)
    tilt_deg: tuple[float, float] = (0.0, 0.0)

    @field_validator("tilt_deg")
    @classmethod
    def _small_tilt(cls, v: tuple[float, float]) -> tuple[float, float]:
        if max(abs(v[0]), abs(v[1])) > 20:
            raise ValueError("tilt must be within +/-20 degrees (a small misalignment)")
        return v


class PixelConfig(_Strict):
    """Angular acceptance of a sensor pixel (its microlens) and the package aperture.

    The acceptance is a Gaussian in the angle between the incoming ray and the pixel's chief ray,
    whose angle from the normal grows linearly from 0 at the centre to ``chief_ray_angle_deg``
    at the corner of the active area (pointing towards the centre, as microlenses are shifted
    for a lens's exit pupil).
    """

    chief_ray_angle_deg: float = Field(0.0, ge=0, le=45)
    acceptance_deg: float = Field(90.0, gt=0, description="Gaussian sigma of the angular acceptance")
    aperture_mm: tuple[float, float] | None = Field(None, description="package opening, full width x height")
    aperture_height_mm: float = Field(0.5, gt=0, description="height of the package opening above the die")


class SensorConfig(_Strict):
    """The image sensor: geometry, colour, exposure and noise chain."""

    width_mm: float = Field(gt=0, description="width of the active area used")
    height_mm: float = Field(gt=0)
    pixel_um: float = Field(1.4, gt=0, description="physical pixel pitch (documents the binning)")
    output_size: tuple[int, int] = Field((32, 32), description="output pixel grid (rows, cols) after binning",
                                         json_schema_extra={"unit": "px"})
    supersample: int = Field(2, ge=1, le=16, description="integration samples per output pixel per axis")
    colour_matrix: list[list[float]] = Field(
        default_factory=lambda: [[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]],
        description="rows: sensor channels R,G,B; columns: display primaries R,G,B")
    full_well_e: float = Field(4500.0, gt=0)
    auto_exposure: Literal["per-image", "calibrated"] = "per-image"
    exposure_target: float = Field(0.4, gt=0, le=1, description="mean signal as a fraction of full well")
    signal_rate_e_per_s: float = Field(2.0e5, gt=0, description="electrons/s of a pixel under a uniform white display")
    max_exposure_s: float = Field(0.1, gt=0)
    dark_current_e_per_s: float = Field(10.0, ge=0)
    read_noise_e: float = Field(3.0, ge=0)
    prnu: float = Field(0.01, ge=0, lt=0.5, description="pixel gain non-uniformity (std, relative)")
    dsnu_e: float = Field(1.0, ge=0, description="pixel offset non-uniformity (std, electrons)")
    adc_bits: int = Field(10, ge=1, le=16, json_schema_extra={"unit": "bit"})
    output_gamma: float = Field(2.2, gt=0)
    jpeg_quality: int | None = Field(85, ge=1, le=100, description="JPEG quality of captures; None = PNG")
    readout: Literal["direct", "rotate-180", "mirror-x", "mirror-y"] = Field(
        "direct", description="orientation of the read-out image relative to the display as seen from the "
                              "sensor: a module whose readout assumes an inverting lens gives 'rotate-180' "
                              "without it")

    @field_validator("output_size")
    @classmethod
    def _positive_size(cls, v: tuple[int, int]) -> tuple[int, int]:
        if any(int(x) < 1 for x in v):
            raise ValueError(f"each dimension (rows, cols) must be >= 1, got {list(v)}")
        return v

    @field_validator("colour_matrix")
    @classmethod
    def _three_by_three(cls, v: list[list[float]]) -> list[list[float]]:
        if len(v) != 3 or any(len(r) != 3 for r in v):
            raise ValueError("must be a 3x3 matrix (sensor channels x display primaries)")
        if any(x < 0 for r in v for x in r):
            raise ValueError("entries must be non-negative")
        return v


class NuisanceConfig(_Strict):
    """Per-capture random nuisances (independent for every frame)."""

    shift_std_mm: float = Field(0.0, ge=0, description="std of the display's lateral shift")
    flicker_std: float = Field(0.0, ge=0, lt=0.5, description="std of the relative brightness")


class LensConfig(_Strict):
    """An ideal lens that images the display onto the sensor (``type = "lens"``)."""

    blur_px: float = Field(0.0, ge=0, description="Gaussian blur sigma in output pixels")


class PsfConfig(_Strict):
    """A shift-invariant camera given by a measured PSF image (``type = "psf"``)."""

    path: str = Field(description="PSF image (.npy or image file), relative to the TOML file")
    pixel_mm: float = Field(gt=0, description="PSF pixel size on the display plane")


class CameraConfig(_Strict):
    """A complete camera: display, geometry, pixel, sensor and nuisances.

    ``type``: ``bare`` (shift-variant transfer matrix from the geometry), ``lens`` (the display
    imaged onto the sensor) or ``psf`` (FFT convolution with a measured PSF).
    """

    name: str
    description: str = ""
    type: Literal["bare", "lens", "psf"] = "bare"
    seed: int = Field(0, ge=0, description="seed of the fixed-pattern noise (PRNU/DSNU)")
    display: DisplayConfig
    geometry: GeometryConfig
    pixel: PixelConfig = PixelConfig()
    sensor: SensorConfig
    nuisance: NuisanceConfig = NuisanceConfig()
    lens: LensConfig = LensConfig()
    psf: PsfConfig | None = None
    source_dir: str | None = Field(None, exclude=True, description="directory of the TOML file")

    @model_validator(mode="after")
    def _psf_given(self) -> "CameraConfig":
        if self.type == "psf" and self.psf is None:
            raise ValueError("type = 'psf' needs a [psf] table with path and pixel_mm")
        return self

    def to_dict(self) -> dict:
        """The full parameter set (for manifests)."""
        return self.model_dump(mode="json")

    def digest(self, *parts: object) -> str:
        """A short hash of the parameters (and ``parts``) for cache keys."""
        blob = json.dumps(self.to_dict(), sort_keys=True) + "|" + "|".join(map(str, parts))
        return hashlib.sha256(blob.encode()).hexdigest()[:16]

    def replace(self, **changes: object) -> "CameraConfig":
        """A copy with nested changes, e.g. ``replace(geometry={"gap_mm": 4})``."""
        d = self.model_dump()
        d["source_dir"] = self.source_dir
        for k, v in changes.items():
            if isinstance(v, dict) and isinstance(d.get(k), dict):
                d[k] = {**d[k], **v}
            else:
                d[k] = v
        return CameraConfig(**d)


def _model_of(annotation: object) -> type[BaseModel] | None:
    """The pydantic model in a field's annotation (``PsfConfig | None`` gives PsfConfig)."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    return next((a for a in get_args(annotation) if isinstance(a, type) and issubclass(a, BaseModel)), None)


def field_unit(path: str) -> str:
    """The unit of the camera field at a dotted ``path`` (as ``camera sweep --param`` names it).

    A field's ``json_schema_extra`` ``unit`` when it has one, else the unit its name's suffix
    names (:data:`UNIT_SUFFIXES`), else ``""`` (dimensionless). An element of a list field
    (``geometry.offset_mm.0``) has the list's unit.

    Args:
        path: ``section.field`` (``geometry.gap_mm``), ``section.field.INDEX`` or a top-level
            field (``seed``).

    Returns:
        The unit symbol (``"mm"``, ``"µm"``, ``"°"``, ...), or ``""`` for a dimensionless field.

    Raises:
        ConfigError: ``path`` names no field of :class:`CameraConfig`.
    """
    parts = path.split(".")
    while len(parts) > 1 and parts[-1].isdigit():
        parts.pop()
    model: type[BaseModel] | None = CameraConfig
    info = None
    for part in parts:
        info = model.model_fields.get(part) if model is not None else None
        if info is None or part == "source_dir":
            raise ConfigError(f"path: unknown camera field {path!r}")
        model = _model_of(info.annotation)
    if model is not None:
        raise ConfigError(f"path: {path!r} is a section of the camera, not a field")
    extra = info.json_schema_extra if isinstance(info.json_schema_extra, dict) else {}
    if "unit" in extra:
        return str(extra["unit"])
    return next((unit for suffix, unit in UNIT_SUFFIXES if parts[-1].endswith(suffix)), "")


def list_presets() -> list[str]:
    """Names of the bundled presets."""
    return sorted(p.stem for p in PRESET_DIR.glob("*.toml"))


def preset_path(name: str) -> Path:
    """Path of a bundled preset TOML file."""
    return PRESET_DIR / f"{name}.toml"


def _format_validation(path: Path | str, e: ValidationError) -> str:
    err = e.errors()[0]
    loc = ".".join(str(x) for x in err["loc"]) or "(top level)"
    msg = err["msg"]
    if err["type"] == "extra_forbidden":
        msg = "unknown field"
    extra = f" (+{len(e.errors()) - 1} more)" if len(e.errors()) > 1 else ""
    return f"{path}: field '{loc}': {msg}{extra}"


def camera_from_dict(d: dict, origin: str | Path = "<camera>") -> CameraConfig:
    """Validate a parameter dict (e.g. a manifest's ``camera``) into a CameraConfig."""
    try:
        return CameraConfig(**d)
    except ValidationError as e:
        raise ConfigError(_format_validation(origin, e)) from None


def load_camera_config(preset_or_path: str | Path) -> CameraConfig:
    """Load a camera from a bundled preset's name (:func:`list_presets`) or a TOML file.

    Raises:
        ConfigError: unknown preset, unreadable TOML, or an invalid field (named).
    """
    path = bundled_or_file(preset_or_path, list_presets(), PRESET_DIR, "camera preset")
    data = read_toml(path, "camera file")
    data.setdefault("source_dir", str(path.parent.resolve()))
    return camera_from_dict(data, path)
