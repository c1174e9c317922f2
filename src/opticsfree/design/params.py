"""Camera parameters addressed by dotted paths (``geometry.gap_mm``), as ``camera fit`` and
``camera sweep`` vary them.

A path names a numeric field of the camera TOML (``section.field``), or one element of a numeric
list field (``geometry.offset_mm.0`` is the x offset). Rules:

* The displayed image keeps its aspect ratio: varying ``display.width_mm`` alone scales
  ``display.height_mm`` with it (and the other way round); vary both to change the aspect.
* Integer fields (e.g. ``display.supersample``) take the rounded value.
* Every changed camera is validated like a camera file: a value outside a field's range is a
  one-line error naming the parameter.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Mapping

from opticsfree.errors import ConfigError
from opticsfree.optics import CameraConfig
from opticsfree.optics.config import camera_from_dict

#: Fields that scale together unless both are varied (the displayed image's aspect ratio).
LINKED = {"display.width_mm": "display.height_mm", "display.height_mm": "display.width_mm"}


def numeric_paths(camera: CameraConfig) -> list[str]:
    """Every dotted path of a numeric scalar field of ``camera``."""
    out = []
    for section, value in camera.to_dict().items():
        if isinstance(value, dict):
            for k, v in value.items():
                if _isparse_number(v):
                    out.append(f"{section}.{k}")
                elif isinstance(v, list) and v and all(_isparse_number(x) for x in v):
                    out.extend(f"{section}.{k}.{i}" for i in range(len(v)))
        elif _isparse_number(value):
            out.append(section)
    return sorted(out)


def _locate(d: dict, path: str) -> tuple[object, object] | None:
    """(container, key) of ``path`` in a camera dict, or None."""
    parts = path.split(".")
    node: object = d
    for part in parts[:-1]:
        if isinstance(node, dict) and part in node:
            node = node[part]
        elif isinstance(node, list) and part.isdigit() and int(part) < len(node):
            node = node[int(part)]
        else:
            return None
    last = parts[-1]
    if isinstance(node, dict) and last in node:
        return node, last
    if isinstance(node, list) and last.isdigit() and int(last) < len(node):
        return node, int(last)
    return None


def _isparse_number(v: object) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def get_value(camera: CameraConfig, path: str) -> float:
    """The value at ``path``; ConfigError for a path that is not a numeric field."""
    loc = _locate(camera.to_dict(), path)
    v = loc[0][loc[1]] if loc else None  # type: ignore[index]
    if not _isparse_number(v):
        raise ConfigError(f"unknown camera parameter {path!r}; numeric parameters of {camera.name}: "
                          f"{', '.join(numeric_paths(camera))}")
    return float(v)


def set_values(camera: CameraConfig, values: Mapping[str, float]) -> CameraConfig:
    """A copy of ``camera`` with ``values`` (dotted paths) applied, linked fields following.

    Raises:
        ConfigError: an unknown path, or a value the camera model rejects (named).
    """
    d = camera.to_dict()
    d["source_dir"] = camera.source_dir
    changes: dict[str, float] = dict(values)
    for path, value in values.items():
        other = LINKED.get(path)
        if other and other not in values:
            old = get_value(camera, path)
            changes[other] = get_value(camera, other) * (value / old if old else 1.0)
    for path, value in changes.items():
        get_value(camera, path)
        container, key = _locate(d, path)  # type: ignore[misc]
        current = container[key]
        container[key] = int(round(value)) if isinstance(current, int) else float(value)
    try:
        return camera_from_dict(d, origin=f"camera {camera.name}")
    except ConfigError as e:
        raise ConfigError(f"{', '.join(f'{k}={v:g}' for k, v in values.items())}: {e}") from None


@dataclass(frozen=True)
class Bound:
    """A parameter searched within ``[lo, hi]`` (``camera fit --free PATH=LO:HI``)."""

    path: str
    lo: float
    hi: float


@dataclass(frozen=True)
class Axis:
    """A parameter swept over ``n`` evenly spaced values ``lo..hi`` (``--param PATH=LO:HI:N``)."""

    path: str
    lo: float
    hi: float
    n: int

    def values(self) -> list[float]:
        if self.n == 1:
            return [self.lo]
        return [self.lo + (self.hi - self.lo) * i / (self.n - 1) for i in range(self.n)]


def _split(spec: str, option: str, form: str) -> tuple[str, list[str]]:
    path, sep, rng = spec.partition("=")
    if not sep or not path.strip() or not rng.strip():
        raise ConfigError(f"{option} {spec!r}: expected {form}")
    return path.strip(), rng.split(":")


def parse_number(text: str, spec: str, option: str) -> float:
    """``text`` as a finite float; ConfigError naming the option and spec otherwise."""
    try:
        v = float(text)
    except ValueError:
        raise ConfigError(f"{option} {spec!r}: {text!r} is not a number") from None
    if not math.isfinite(v):
        raise ConfigError(f"{option} {spec!r}: {text!r} is not a finite number")
    return v


def parse_bound(spec: str, camera: CameraConfig) -> Bound:
    """``PATH=LO:HI`` with LO < HI and a numeric PATH of ``camera``."""
    form = "PATH=LO:HI, e.g. geometry.gap_mm=0.3:3"
    path, parts = _split(spec, "--free", form)
    if len(parts) != 2:
        raise ConfigError(f"--free {spec!r}: expected {form}")
    lo, hi = (parse_number(p, spec, "--free") for p in parts)
    if not lo < hi:
        raise ConfigError(f"--free {spec!r}: the lower bound must be below the upper bound")
    get_value(camera, path)
    return Bound(path, lo, hi)


def parse_axis(spec: str, camera: CameraConfig) -> Axis:
    """``PATH=LO:HI:N`` with LO <= HI, N >= 1 (N = 1 needs LO = HI) and a numeric PATH."""
    form = "PATH=LO:HI:N, e.g. geometry.gap_mm=0.25:4:8"
    path, parts = _split(spec, "--param", form)
    if len(parts) != 3:
        raise ConfigError(f"--param {spec!r}: expected {form}")
    lo, hi = (parse_number(p, spec, "--param") for p in parts[:2])
    try:
        n = int(parts[2])
    except ValueError:
        raise ConfigError(f"--param {spec!r}: N must be a whole number, got {parts[2]!r}") from None
    if n < 1:
        raise ConfigError(f"--param {spec!r}: N must be >= 1")
    if lo > hi or (n > 1 and lo == hi):
        raise ConfigError(f"--param {spec!r}: expected LO < HI (or LO = HI with N = 1)")
    get_value(camera, path)
    return Axis(path, lo, hi, n)
