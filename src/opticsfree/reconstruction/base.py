"""Shared pieces of the reconstruction methods: image scaling, method options and sample-image
grids with labelled rows (the validation hold-out is :func:`opticsfree.data.split.split_scenes`,
shared with the embedding training; devices, mixed precision and threads are the runtime's,
:mod:`opticsfree.utils.runtime`).

Networks see images in [-1, 1] (``x / 127.5 - 1``), the range of a ``tanh`` output; captures
and reconstructions on disk and in memory are uint8.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Literal, Sequence

import numpy as np
import torch
from pydantic import BaseModel, ConfigDict, Field, ValidationError, ValidationInfo, field_validator

from opticsfree.errors import ConfigError
from opticsfree.reconstruction.names import method_names
from opticsfree.utils.seeding import derive_seed


def __getattr__(name: str) -> Any:
    # METHODS: the registered method names (opticsfree.reconstruction.names), read on every access
    if name == "METHODS":
        return method_names()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


# --------------------------------------------------------------------------- image scaling

def to_model(x: torch.Tensor, device: torch.device | str | None = None,
             channels_last: bool = False) -> torch.Tensor:
    """uint8 images (N, C, H, W) -> float32 in [-1, 1] on ``device``."""
    x = x.to(device) if device is not None else x
    y = x.float().div_(127.5).sub_(1.0)
    return y.contiguous(memory_format=torch.channels_last) if channels_last else y


def to_uint8(y: torch.Tensor) -> torch.Tensor:
    """Float images in [-1, 1] -> uint8 (rounded, clipped), on the CPU."""
    return ((y.detach().float().cpu() + 1.0) * 127.5).round_().clamp_(0, 255).to(torch.uint8)


# --------------------------------------------------------------------------- options

class MethodOptions(BaseModel):
    """Base of the method option models (``--set KEY=VALUE`` of ``reconstruct train``).

    Unknown keys are refused and types are strict (an int where an int is expected; an int is
    accepted for a float; no strings converted), so a wrong key or type is a one-line
    :class:`~opticsfree.errors.ConfigError` naming the option (see :func:`parse_options`).

    Every deep method (``cyclegan``, ``unet``, ``bijective``) also takes the scene augmentation
    of the embedding training (:mod:`opticsfree.captures.augment`): ``scene_copies`` augmented
    versions of each training scene, re-captured by the set's simulated camera and appended to
    the training pairs (the validation hold-out and the test split are never augmented). With
    ``scene_refresh`` the copies are drawn again before every epoch (new flips, shifts and sensor
    noise, seeded by the run's seed and the epoch, so a resumed run sees the same copies), at the
    cost of one re-capture of the training scenes per epoch; without it the same copies serve
    every epoch.

    ``member`` makes independent members of an ensemble (``reconstruct ensemble``) from one
    command: member :math:`k > 0` draws its initial weights, its batch order and its augmented
    copies from :func:`member_seed` instead of the run's seed, while the validation hold-out
    stays that of the run's seed, so all members of an ensemble train and choose their
    checkpoints on the same scenes (a front end's fit is seeded by the run's seed too, on the
    member's own augmented pairs). Member 0 is the plain run.

    Attributes:
        scene_augment: ``none``, ``flip`` or ``crop-flip``.
        scene_copies: augmented copies of each training scene.
        scene_refresh: draw new copies before every epoch.
        member: ensemble member (0: the plain run).
    """

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)

    scene_augment: Literal["none", "flip", "crop-flip"] = Field(
        "none", description="add augmented training scenes re-captured by the set's camera (simulated sets)")
    scene_copies: int = Field(1, ge=1, le=16, description="augmented copies of each training scene (scene_augment)")
    scene_refresh: bool = Field(False, description="draw new augmented copies (and their sensor noise) before every epoch")
    member: int = Field(0, ge=0, description="ensemble member: k > 0 draws weights, batch order and augmented copies from another seed, keeping the hold-out (0: the plain run)")

    @field_validator("scene_refresh")
    @classmethod
    def _refresh_needs_augment(cls, v: bool, info: ValidationInfo) -> bool:
        if v and info.data.get("scene_augment", "none") == "none":
            raise ValueError("needs scene_augment flip or crop-flip")
        return v


def member_seed(seed: int, member: int) -> int:
    """The seed of a run's weights, batch order and augmented copies: ``seed`` itself for member 0,
    ``derive_seed("ensemble-member", seed, member) % 2**31`` for member :math:`k > 0`."""
    if member < 0:
        raise ValueError(f"member must be >= 0, got {member}")
    return seed if member == 0 else derive_seed("ensemble-member", seed, member) % 2**31


def parse_options(config_cls: type[MethodOptions], options: dict[str, Any] | None, method: str) -> MethodOptions:
    """Validate a method's ``options`` into its option model (defaults for the rest).

    Raises:
        ConfigError: an unknown option (the message lists the known ones) or a bad value (the
            message names the option, what was expected and what was given).
    """
    options = dict(options or {})
    try:
        return config_cls.model_validate(options)
    except ValidationError as e:
        err = e.errors()[0]
        if err.get("type") == "extra_forbidden":
            unknown = sorted(set(options) - set(config_cls.model_fields))
            shared = list(MethodOptions.model_fields)  # the method's own options first
            known = [k for k in config_cls.model_fields if k not in shared] + shared
            raise ConfigError(f"unknown option(s) {', '.join(unknown)} for method {method} "
                              f"(known: {', '.join(known)})") from None
        key = str(err["loc"][0]) if err.get("loc") else "?"
        msg = err.get("msg", "invalid value").removeprefix("Value error, ")
        raise ConfigError(f"option {key} for method {method}: {msg[0].lower() + msg[1:]} "
                          f"(got {options.get(key)!r})") from None


# --------------------------------------------------------------------------- samples

def _label_font(px: int):
    """Pillow's built-in font at ``px`` pixels (its bitmap font where FreeType is missing)."""
    from PIL import ImageFont

    try:
        return ImageFont.load_default(size=px)
    except (TypeError, ImportError, OSError):  # old Pillow or no FreeType: the fixed bitmap font
        return ImageFont.load_default()


def sample_grid(rows: Sequence[torch.Tensor], labels: Sequence[str], scale: int = 4) -> np.ndarray:
    """A (H', W', 3) uint8 grid: one row of images per tensor in ``rows``, each row named at its
    left by its label (black text on the white margin).

    Args:
        rows: uint8 tensors (N, C, H, W) with the same N, H, W (C 1 or 3; grey is repeated).
        labels: what each row shows, one per row (e.g. ``"capture"``, ``"unet"``,
            ``"original"``); a label may span lines (``"\\n"``).
        scale: nearest-neighbour magnification.

    Returns:
        The grid, the label margin on its left.

    Raises:
        ValueError: no rows, a label count other than the row count, an empty label, or rows of
            different N, H, W (the message names the argument).
    """
    from PIL import Image, ImageDraw

    if len(rows) == 0:
        raise ValueError("rows: expected at least one row of images, got none")
    if isinstance(labels, str) or len(labels) != len(rows):
        got = "a single string" if isinstance(labels, str) else str(len(labels))
        raise ValueError(f"labels: expected one label per row ({len(rows)}), got {got}")
    if any(not isinstance(t, str) or not t.strip() for t in labels):
        raise ValueError(f"labels: every label must be a non-empty string, got {list(labels)!r}")
    if scale < 1:
        raise ValueError(f"scale: must be >= 1, got {scale}")
    n, _, h, w = rows[0].shape
    if any(t.ndim != 4 or (t.shape[0], t.shape[2], t.shape[3]) != (n, h, w) for t in rows):
        raise ValueError(f"rows: every tensor must be (N, C, H, W) = ({n}, C, {h}, {w}), got "
                         f"{[tuple(t.shape) for t in rows]}")
    pad, text_pad = 2, 6
    row_h = h * scale
    font = _label_font(max(10, min(16, row_h // 2)))
    measure = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    boxes = [measure.multiline_textbbox((0, 0), t, font=font) for t in labels]
    margin = max(b[2] - b[0] for b in boxes) + 2 * text_pad
    grid = np.full((len(rows) * (row_h + pad) + pad, margin + n * (w * scale + pad) + pad, 3), 255, np.uint8)
    for r, t in enumerate(rows):
        t = t if t.shape[1] == 3 else t[:, :1].expand(-1, 3, -1, -1)
        big = t.repeat_interleave(scale, 2).repeat_interleave(scale, 3).permute(0, 2, 3, 1).numpy()
        for i in range(n):
            y0, x0 = pad + r * (row_h + pad), margin + pad + i * (w * scale + pad)
            grid[y0:y0 + row_h, x0:x0 + w * scale] = big[i]
    img = Image.fromarray(grid)
    draw = ImageDraw.Draw(img)
    for r, (text, box) in enumerate(zip(labels, boxes)):
        y_mid = pad + r * (row_h + pad) + row_h / 2
        draw.multiline_text((text_pad - box[0], y_mid - (box[1] + box[3]) / 2), text, fill=(0, 0, 0), font=font)
    return np.asarray(img).copy()


def save_sample_grid(path: str | os.PathLike, rows: Sequence[torch.Tensor], labels: Sequence[str],
                     scale: int = 4) -> Path:
    """Write :func:`sample_grid` as a PNG, atomically (:func:`opticsfree.utils.io.write_bytes`).

    Args:
        path: the PNG file.
        rows: uint8 tensors (N, C, H, W), one grid row each.
        labels: what each row shows, one per row.
        scale: nearest-neighbour magnification.

    Returns:
        ``path``.
    """
    from opticsfree.captures.writer import encode_image
    from opticsfree.utils.io import write_bytes

    write_bytes(path, encode_image(sample_grid(rows, labels, scale), None))
    return Path(path)
