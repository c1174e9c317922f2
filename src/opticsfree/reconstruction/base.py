"""Shared pieces of the reconstruction methods: image scaling, method options, devices and
mixed precision, and sample-image grids (the validation hold-out is
:func:`opticsfree.data.split.split_scenes`, shared with the embedding training).

Networks see images in [-1, 1] (``x / 127.5 - 1``), the range of a ``tanh`` output; captures
and reconstructions on disk and in memory are uint8.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import torch

from opticsfree.errors import ConfigError

METHODS = ("cyclegan", "unet", "bijective", "tikhonov")


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

def parse_options(config_cls: type, options: dict[str, Any] | None, method: str) -> Any:
    """Build a method's config dataclass from ``options`` (unknown keys and bad types refused).

    String values (from ``--option key=value``) are converted to the field's type.
    """
    options = dict(options or {})
    fields = {f.name: f for f in dataclasses.fields(config_cls)}
    unknown = sorted(set(options) - set(fields))
    if unknown:
        raise ConfigError(f"unknown option(s) {', '.join(unknown)} for method {method} "
                          f"(known: {', '.join(sorted(fields))})")
    values = {}
    defaults = config_cls()
    for k, v in options.items():
        default = getattr(defaults, k)
        values[k] = _convert(v, default, k, method)
    return config_cls(**values)


def _convert(value: Any, default: Any, key: str, method: str) -> Any:
    if not isinstance(value, str) or isinstance(default, str):
        return value
    low = value.strip().lower()
    try:
        if isinstance(default, bool):
            if low in ("1", "true", "yes", "on"):
                return True
            if low in ("0", "false", "no", "off"):
                return False
            raise ValueError
        if isinstance(default, int):
            return int(value)
        if isinstance(default, float):
            return float(value)
        if default is None:
            if low in ("none", "null", ""):
                return None
            try:
                return int(value)
            except ValueError:
                return float(value)
    except ValueError:
        raise ConfigError(f"option {key}={value!r} for method {method}: expected "
                          f"{type(default).__name__}") from None
    return value


def parse_key_values(pairs: list[str] | None) -> dict[str, str]:
    """``["a=1", "b=x"]`` -> ``{"a": "1", "b": "x"}``; ConfigError on a malformed pair."""
    out: dict[str, str] = {}
    for p in pairs or []:
        if "=" not in p:
            raise ConfigError(f"--option {p!r}: expected KEY=VALUE")
        k, v = p.split("=", 1)
        out[k.strip().replace("-", "_")] = v.strip()
    return out


# --------------------------------------------------------------------------- device / precision

def resolve_device(device: str) -> torch.device:
    """``cpu``, ``cuda`` or ``cuda:N``; ConfigError when CUDA is asked for but missing."""
    try:
        d = torch.device(device)
    except RuntimeError:
        raise ConfigError(f"--device {device!r}: expected cpu or cuda") from None
    if d.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError("--device cuda: no CUDA device is available (use --device cpu)")
    if d.type not in ("cpu", "cuda"):
        raise ConfigError(f"--device {device!r}: expected cpu or cuda")
    return d


@contextlib.contextmanager
def torch_threads(threads: int | None) -> Iterator[None]:
    """Use ``threads`` CPU threads in torch inside the block (None: leave torch's setting)."""
    if threads is None:
        yield
        return
    if threads < 1:
        raise ConfigError(f"--threads must be >= 1, got {threads}")
    old = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(old)


def cpu_has_bf16() -> bool:
    """True when the CPU has native bfloat16 arithmetic (AVX512-BF16 or AMX)."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            flags = f.read()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def resolve_amp(amp: str, device: torch.device) -> bool:
    """Whether to train under bf16 autocast: ``on``, ``off`` or ``auto``.

    ``auto``: on for CUDA devices with bf16 support and for CPUs with native bf16 arithmetic
    (where it measured faster, see docs/reconstruction.md), off otherwise.
    """
    if amp not in ("auto", "on", "off"):
        raise ConfigError(f"--amp must be auto, on or off, got {amp!r}")
    if amp != "auto":
        return amp == "on"
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    return cpu_has_bf16()


@contextlib.contextmanager
def autocast(device: torch.device, enabled: bool) -> Iterator[None]:
    """bf16 autocast on ``device`` when ``enabled`` (a no-op context otherwise)."""
    if not enabled:
        yield
        return
    with torch.autocast(device_type=device.type, dtype=torch.bfloat16):
        yield


# --------------------------------------------------------------------------- samples

def sample_grid(rows: list[torch.Tensor], scale: int = 4) -> np.ndarray:
    """A (H', W', 3) uint8 grid: one row of images per tensor in ``rows``.

    Args:
        rows: uint8 tensors (N, C, H, W) with the same N, H, W (C 1 or 3; grey is repeated).
        scale: nearest-neighbour magnification.
    """
    n, _, h, w = rows[0].shape
    pad = 2
    grid = np.full((len(rows) * (h * scale + pad) + pad, n * (w * scale + pad) + pad, 3), 255, np.uint8)
    for r, t in enumerate(rows):
        t = t if t.shape[1] == 3 else t[:, :1].expand(-1, 3, -1, -1)
        big = t.repeat_interleave(scale, 2).repeat_interleave(scale, 3).permute(0, 2, 3, 1).numpy()
        for i in range(n):
            y0, x0 = pad + r * (h * scale + pad), pad + i * (w * scale + pad)
            grid[y0:y0 + h * scale, x0:x0 + w * scale] = big[i]
    return grid


def save_sample_grid(path: str | os.PathLike, rows: list[torch.Tensor], scale: int = 4) -> Path:
    """Write :func:`sample_grid` as a PNG (atomically)."""
    from opticsfree.captures.writer import encode_image
    from opticsfree.utils.io import write_bytes

    write_bytes(path, encode_image(sample_grid(rows, scale), None))
    return Path(path)

