"""2 x 2 max pooling (stride 2, floor mode) with a faster CPU path.

.. math:: y_{n,c,i,j} = \\max_{a, b \\in \\{0, 1\\}} x_{n,c,2i+a,2j+b},
    \\qquad 0 \\le i < \\lfloor H/2 \\rfloor,\\ 0 \\le j < \\lfloor W/2 \\rfloor,

and the gradient of each output goes to the one input that gave its maximum, the first in
row-major window order on ties: PyTorch's ``F.max_pool2d(x, 2)``, values and gradients equal
bit for bit (with a NaN in a window the value is NaN in both; the gradient may go to another
input of that window).

On the CPU, PyTorch's kernel (``max_pool2d_with_indices``) on contiguous float32 maps costs
about 13 ms for 256 x 16 x 31 x 31, 13% of a ``wvgg`` width-16 training step. Here the four
strided quarter-maps of the windows are compared element-wise, :math:`y = \\max(\\max(x_{00},
x_{01}), \\max(x_{10}, x_{11}))` (about 2 ms; 5 ms with the indices below); with gradients,
three comparisons give each output's window position (row :math:`r = [\\text{bottom} >
\\text{top}]`, column the winner of that row), and the flat input index :math:`(2i + r) W + 2j
+ c` goes to PyTorch's own backward kernel (``max_pool2d_with_indices_backward``). A width-16
``wvgg`` step of 256 captures: 176 -> 164 ms (median of interleaved steps). CUDA tensors,
channels_last or other non-contiguous maps, ONNX export, tracing and compilation use
``F.max_pool2d``.
"""

from __future__ import annotations

import functools

import torch
import torch.nn.functional as F
from torch import Tensor, nn


def _quarters(x: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """The four (N, C, H//2, W//2) views ``x[..., a::2, b::2]`` (a, b = 00, 01, 10, 11) of the
    even-sized top-left part of ``x``."""
    h, w = x.shape[-2] // 2 * 2, x.shape[-1] // 2 * 2
    return (x[..., 0:h:2, 0:w:2], x[..., 0:h:2, 1:w:2], x[..., 1:h:2, 0:w:2], x[..., 1:h:2, 1:w:2])


@functools.lru_cache(maxsize=64)
def _window_origins(h2: int, w2: int, width: int) -> Tensor:
    """Flat input index :math:`2 i W + 2 j` of each window's top-left element (h2, w2)."""
    return torch.arange(h2).mul_(2 * width).unsqueeze(1) + torch.arange(w2).mul_(2).unsqueeze(0)


def _pool_values(x: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor]:
    a00, a01, a10, a11 = _quarters(x)
    top, bottom = torch.maximum(a00, a01), torch.maximum(a10, a11)
    return torch.maximum(top, bottom), top, bottom, a00, a01, a10, a11


class _MaxPool2x2(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: Tensor) -> Tensor:  # type: ignore[override]
        y, top, bottom, a00, a01, a10, a11 = _pool_values(x)
        # first in row-major order wins a tie: strictly greater moves right / down
        right_top, right_bottom, down = a01 > a00, a11 > a10, bottom > top
        col = right_top ^ (down & (right_top ^ right_bottom))
        width = x.shape[-1]
        idx = torch.add(col.long(), down.long(), alpha=width)
        idx.add_(_window_origins(y.shape[-2], y.shape[-1], width))
        ctx.save_for_backward(x, idx)
        return y

    @staticmethod
    def backward(ctx, grad: Tensor) -> Tensor:  # type: ignore[override]
        x, idx = ctx.saved_tensors
        return torch.ops.aten.max_pool2d_with_indices_backward(
            grad.contiguous(), x, [2, 2], [2, 2], [0, 0], [1, 1], False, idx)


def _use_fast_path(x: Tensor) -> bool:
    if x.device.type != "cpu" or x.ndim != 4 or not x.is_contiguous() or not x.is_floating_point():
        return False
    if min(x.shape[-2:]) < 2:
        return False
    return not (torch.jit.is_tracing() or torch.jit.is_scripting() or torch.onnx.is_in_onnx_export()
                or torch.compiler.is_compiling())


def max_pool2x2(x: Tensor) -> Tensor:
    """2 x 2 max pooling with stride 2 (floor mode): ``F.max_pool2d(x, 2)``, faster on the CPU.

    Args:
        x: feature maps.

    Returns:
        The pooled maps, equal to ``F.max_pool2d(x, 2)`` (values and gradients).

    Shape:
        - x: (N, C, H, W), H, W >= 2.
        - output: (N, C, H // 2, W // 2).
    """
    if not _use_fast_path(x):
        return F.max_pool2d(x, 2)
    if torch.is_grad_enabled() and x.requires_grad:
        return _MaxPool2x2.apply(x)
    return _pool_values(x)[0]


class MaxPool2x2(nn.Module):
    """The module form of :func:`max_pool2x2` (in place of ``nn.MaxPool2d(2)``).

    Shape:
        - input: (N, C, H, W), H, W >= 2.
        - output: (N, C, H // 2, W // 2).
    """

    def forward(self, x: Tensor) -> Tensor:
        return max_pool2x2(x)
