"""The runtime a run computes in: the device, whether to train under bf16 autocast (a probe of
the CPU or GPU) and in channels_last memory format (:class:`Runtime`), torch's CPU threads scoped
to a block (:func:`torch_threads`), and freed tensor memory kept in the process for reuse
(:func:`keep_freed_memory`; a CPU runtime applies it).

Both trainers (:mod:`opticsfree.training`, :mod:`opticsfree.reconstruction`) resolve their
runtime here; their run directories are :mod:`opticsfree.runs`. torch is imported inside the
functions that need it, so that configs importing this module load without it.
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import os
import sys
from dataclasses import dataclass
from typing import TYPE_CHECKING, Iterator

from opticsfree.errors import ConfigError

if TYPE_CHECKING:
    import torch


def resolve_device(device: str, local_rank: int | None = None) -> "torch.device":
    """``cpu``, ``cuda`` or ``cuda:N`` as a torch device.

    Args:
        device: the requested device.
        local_rank: this process's rank on the machine: a bare ``cuda`` becomes ``cuda:local_rank``.

    Raises:
        ConfigError: not a cpu/cuda device, or CUDA asked for where torch sees none.
    """
    import torch

    try:
        d = torch.device(device)
    except (RuntimeError, TypeError):
        raise ConfigError(f"--device {device!r}: expected cpu or cuda") from None
    if d.type not in ("cpu", "cuda"):
        raise ConfigError(f"--device {device!r}: expected cpu or cuda")
    if d.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"--device {device}: torch sees no CUDA device (use --device cpu)")
    if d.type == "cuda" and d.index is None and local_rank is not None:
        d = torch.device("cuda", local_rank)
    return d


@functools.lru_cache(maxsize=1)
def cpu_has_bf16() -> bool:
    """True when the CPU has native bf16 arithmetic (Linux ``/proc/cpuinfo`` flags
    ``avx512_bf16`` or ``amx_bf16``)."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("flags"):
                    return bool(set(line.split(":", 1)[1].split()) & {"avx512_bf16", "amx_bf16"})
    except OSError:
        pass
    return False


def _device_type(device: "str | torch.device") -> str:
    return getattr(device, "type", None) or str(device).split(":")[0]


def resolve_amp(amp: bool | None, device: "str | torch.device") -> bool:
    """Whether to train under bf16 autocast: ``True``, ``False`` or ``None`` (auto).

    Auto: on for a CUDA GPU with bf16 and for a CPU with native bf16 instructions
    (AVX512-BF16 or AMX; there it measured about 1.5x faster than float32 for cnn4 and resnet20,
    about 2x with channels_last); elsewhere bf16 is emulated and slower, so it is off.

    Raises:
        ConfigError: ``amp`` is not a bool or None.
    """
    if amp is not None and not isinstance(amp, bool):
        raise ConfigError(f"amp must be True, False or None (auto), got {amp!r}")
    if amp is not None:
        return amp
    if _device_type(device) == "cuda":
        import torch

        return bool(torch.cuda.is_available() and torch.cuda.is_bf16_supported())
    return cpu_has_bf16()


def resolve_channels_last(channels_last: bool | None, device: "str | torch.device", amp: bool,
                          with_cpu_amp: bool = True) -> bool:
    """Whether to use the channels_last memory format: ``True``, ``False`` or ``None`` (auto).

    Auto: on for CUDA, and on the CPU together with bf16 autocast when ``with_cpu_amp`` (about
    2x faster there for the embedding backbones). Off for fp32 on the CPU: with torch 2.13, fp32
    channels_last backward passes (e.g. resnet8, width 4) abort with heap corruption
    ("corrupted double-linked list").
    """
    if channels_last is not None:
        return bool(channels_last)
    return _device_type(device) == "cuda" or (with_cpu_amp and amp)


#: glibc ``mallopt`` parameters (malloc.h).
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3
#: Largest allocation kept in the heap by :func:`keep_freed_memory` (1 GiB).
KEEP_FREED_BELOW = 1 << 30
#: Set to ``0`` to leave glibc's allocator settings alone.
KEEP_FREED_ENV = "OPTICSFREE_KEEP_FREED_MEMORY"


@functools.lru_cache(maxsize=None)
def keep_freed_memory() -> bool:
    """Keep freed memory in the process for reuse instead of handing it back to the kernel.

    glibc's ``malloc`` serves each allocation above a threshold (at most 32 MiB) with its own
    ``mmap`` and unmaps it when freed, and trims the heap's freed top; a training step's large
    activations are then faulted in page by page at every step. This sets (``mallopt``) the
    mmap threshold to :data:`KEEP_FREED_BELOW` and the trim threshold to its maximum, which is
    what PyTorch's CPU performance guide gets by preloading jemalloc or tcmalloc. Measured on
    the 2-core CPU (torch 2.13, ``wvgg`` width 16, batches of 512 CIFAR-sized captures): a
    training step 0.56 s -> 0.375 s (the kernel's share of it 0.27 s -> 0), scoring 5,000
    captures 2.65 s -> 1.63 s. Numbers are unchanged; the process keeps its peak memory
    instead of returning it. Process-wide and idempotent (the first call decides); a no-op off
    glibc Linux or with ``OPTICSFREE_KEEP_FREED_MEMORY=0``.

    Returns:
        True when glibc accepted both settings.
    """
    if os.environ.get(KEEP_FREED_ENV, "1").strip() == "0" or not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL("libc.so.6")
        return bool(libc.mallopt(_M_MMAP_THRESHOLD, KEEP_FREED_BELOW)
                    and libc.mallopt(_M_TRIM_THRESHOLD, 2 ** 31 - 1))
    except (OSError, AttributeError):  # not glibc
        return False


@dataclass(frozen=True)
class Runtime:
    """Where and how a run computes.

    Attributes:
        device: the torch device.
        amp: bf16 autocast on or off.
        channels_last: channels_last memory format on or off.
    """

    device: "torch.device"
    amp: bool
    channels_last: bool

    @classmethod
    def resolve(cls, device: str = "cpu", amp: bool | None = None, channels_last: bool | None = None, *,
                local_rank: int | None = None, channels_last_with_cpu_amp: bool = True) -> "Runtime":
        """The runtime of the given settings (None: decided by :func:`resolve_amp` and
        :func:`resolve_channels_last`; see :func:`resolve_device` for the device).

        Raises:
            ConfigError: an unknown or unavailable device, or ``amp`` not a bool or None.
        """
        d = resolve_device(device, local_rank)
        if d.type == "cpu":
            keep_freed_memory()
        use_amp = resolve_amp(amp, d)
        return cls(d, use_amp, resolve_channels_last(channels_last, d, use_amp, channels_last_with_cpu_amp))

    def autocast(self) -> contextlib.AbstractContextManager:
        """A bf16 autocast context on the device when ``amp`` is on (else a no-op context)."""
        if not self.amp:
            return contextlib.nullcontext()
        import torch

        return torch.autocast(self.device.type, dtype=torch.bfloat16)


@contextlib.contextmanager
def torch_threads(threads: int | None) -> Iterator[None]:
    """Use ``threads`` CPU threads in torch inside the block (None: leave torch's setting).

    Raises:
        ConfigError: ``threads`` below 1.
    """
    import torch

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
