"""ResNet image-to-image generator (the CycleGAN generator of Zhu et al., 2017).

Architecture (``c7s1-k``: 7x7 conv, stride 1, k filters (the 7 is ``edge_kernel``); ``dk``: 3x3 conv, stride 2; ``Rk``:
residual block of two 3x3 convs; ``uk``: 3x3 transposed conv, stride 1/2), every conv followed
by instance normalisation and ReLU except the last, which ends in ``tanh``::

    c7s1-w, d2w, d4w, ..., R(2^n w) x blocks, ..., u2w, uw, c7s1-out

with ``n`` downsamplings (2 by default: a 32x32 image has an 8x8 bottleneck, a 64x64 image a
16x16 one). Inputs and outputs are in [-1, 1]; the input and output channel counts may differ
(a grayscale capture can be mapped to an RGB image).
"""

from __future__ import annotations

import torch
from torch import nn


def norm_layer(kind: str, channels: int) -> nn.Module:
    """Normalisation layer: ``instance`` (no affine, as CycleGAN), ``batch``, ``group`` or ``none``."""
    if kind == "instance":
        return nn.InstanceNorm2d(channels, affine=False, track_running_stats=False)
    if kind == "batch":
        return nn.BatchNorm2d(channels)
    if kind == "group":
        return nn.GroupNorm(min(8, channels), channels)
    if kind == "none":
        return nn.Identity()
    raise ValueError(f"unknown norm {kind!r} (instance, batch, group or none)")


PADDINGS = ("reflect", "zeros")


def padded_conv(cin: int, cout: int, k: int, padding: str) -> list[nn.Module]:
    """A stride-1 ``k`` x ``k`` convolution that keeps the image size (``k`` odd).

    ``reflect``: a reflection padding of ``k // 2`` then the convolution (CycleGAN's choice, two
    layers); ``zeros``: the convolution's own zero padding (one layer, no padded copy of the
    feature maps; about 25% faster for the whole CycleGAN step at 32x32 on a bf16 CPU).

    Raises:
        ValueError: an unknown ``padding``.
    """
    if padding == "reflect":
        return [nn.ReflectionPad2d(k // 2), nn.Conv2d(cin, cout, k)]
    if padding == "zeros":
        return [nn.Conv2d(cin, cout, k, padding=k // 2)]
    raise ValueError(f"unknown padding {padding!r} ({' or '.join(PADDINGS)})")


class ResnetBlock(nn.Module):
    """``x + conv(relu(norm(conv(x))))`` with reflection padding and normalisation.

    Args:
        channels: feature channels (in = out).
        norm: normalisation kind (see :func:`norm_layer`).
        dropout: dropout probability between the two convolutions (0 = none).
        padding: ``reflect`` or ``zeros`` (see :func:`padded_conv`).
    """

    def __init__(self, channels: int, norm: str = "instance", dropout: float = 0.0, padding: str = "reflect"):
        super().__init__()
        layers: list[nn.Module] = [*padded_conv(channels, channels, 3, padding),
                                   norm_layer(norm, channels), nn.ReLU(inplace=True)]
        if dropout > 0:
            layers.append(nn.Dropout(dropout))
        layers += [*padded_conv(channels, channels, 3, padding), norm_layer(norm, channels)]
        self.block = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.block(x)


class ResnetGenerator(nn.Module):
    """ResNet generator with configurable width, residual block count and downsamplings.

    Args:
        in_channels: channels of the input image (1 or 3).
        out_channels: channels of the output image (1 or 3; may differ from ``in_channels``).
        width: filters of the first layer (``ngf``); doubled at each downsampling.
        n_blocks: residual blocks at the bottleneck (CycleGAN: 6 for 128 px, 9 for 256 px).
        n_down: stride-2 downsamplings (the image side must be divisible by ``2 ** n_down``).
        norm: normalisation kind.
        dropout: dropout in the residual blocks.
        residual: learn a correction of the input instead of the image,
            :math:`G(x) = \\mathrm{clip}(x + h(x), -1, 1)` with :math:`h` the network without its
            final tanh (needs ``in_channels == out_channels``); :meth:`zero_correction` makes the
            generator start as the identity. For inputs that are already images (e.g. the output
            of a physics-based inverse).
        edge_kernel: kernel side ``k`` of the first and last convolutions (``c7s1``: 7, the
            CycleGAN choice for 256 px images; odd, padded by ``k // 2``).
        padding: how the stride-1 convolutions keep the image size: ``reflect`` (CycleGAN) or
            ``zeros`` (:func:`padded_conv`).

    Shape:
        input (N, in_channels, H, W) in [-1, 1] -> output (N, out_channels, H, W) in [-1, 1].
    """

    def __init__(self, in_channels: int, out_channels: int, width: int = 64, n_blocks: int = 9,
                 n_down: int = 2, norm: str = "instance", dropout: float = 0.0, residual: bool = False,
                 edge_kernel: int = 7, padding: str = "reflect"):
        super().__init__()
        if in_channels < 1 or out_channels < 1 or width < 1 or n_blocks < 0 or n_down < 0:
            raise ValueError("channels and width must be positive, n_blocks and n_down >= 0")
        if edge_kernel < 1 or edge_kernel % 2 == 0:
            raise ValueError(f"edge_kernel must be a positive odd number, got {edge_kernel}")
        if residual and in_channels != out_channels:
            raise ValueError(f"a residual generator needs as many input as output channels, got "
                             f"{in_channels} -> {out_channels}")
        self.in_channels, self.out_channels, self.n_down = in_channels, out_channels, n_down
        self.residual = residual
        if padding not in PADDINGS:
            raise ValueError(f"unknown padding {padding!r} ({' or '.join(PADDINGS)})")
        layers: list[nn.Module] = [*padded_conv(in_channels, width, edge_kernel, padding),
                                   norm_layer(norm, width), nn.ReLU(inplace=True)]
        ch = width
        for _ in range(n_down):
            layers += [nn.Conv2d(ch, ch * 2, 3, stride=2, padding=1), norm_layer(norm, ch * 2),
                       nn.ReLU(inplace=True)]
            ch *= 2
        layers += [ResnetBlock(ch, norm, dropout, padding) for _ in range(n_blocks)]
        for _ in range(n_down):
            layers += [nn.ConvTranspose2d(ch, ch // 2, 3, stride=2, padding=1, output_padding=1),
                       norm_layer(norm, ch // 2), nn.ReLU(inplace=True)]
            ch //= 2
        layers += padded_conv(ch, out_channels, edge_kernel, padding)
        if not residual:
            layers.append(nn.Tanh())
        self.model = nn.Sequential(*layers)

    def zero_correction(self) -> None:
        """Zero the last convolution, so that a residual generator starts as the identity.

        Raises:
            ValueError: the generator is not residual (its output would be a constant).
        """
        if not self.residual:
            raise ValueError("zero_correction() is for residual generators")
        last = [m for m in self.model if isinstance(m, nn.Conv2d)][-1]
        nn.init.zeros_(last.weight)
        nn.init.zeros_(last.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim != 4 or x.shape[1] != self.in_channels:
            raise ValueError(f"expected (N, {self.in_channels}, H, W), got {tuple(x.shape)}")
        k = 2 ** self.n_down
        if x.shape[-1] % k or x.shape[-2] % k or min(x.shape[-2:]) // k < 2:
            raise ValueError(f"image side {tuple(x.shape[-2:])} must be a multiple of {k} and at "
                             f"least {2 * k} for {self.n_down} downsamplings")
        if self.residual:
            return (x + self.model(x)).clamp(-1.0, 1.0)
        return self.model(x)


def init_weights(module: nn.Module, std: float = 0.02) -> None:
    """CycleGAN initialisation: conv weights ~ N(0, std), biases 0, norm scales ~ N(1, std)."""
    for m in module.modules():
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)):
            nn.init.normal_(m.weight, 0.0, std)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, (nn.BatchNorm2d, nn.GroupNorm)) and m.weight is not None:
            nn.init.normal_(m.weight, 1.0, std)
            nn.init.zeros_(m.bias)


def default_generator_size(size: int) -> tuple[int, int, int, str]:
    """Default ``(width, n_blocks, edge_kernel, padding)`` of the generator for an image side ``size``.

    Larger than 32 px: width 64, 9 blocks, 7x7 edges, reflection padding (the CycleGAN
    defaults). 32 px and smaller: width 16, 2 blocks, 7x7 edges, zero padding: sized for 32x32
    (an 8x8 bottleneck), 7.5x fewer multiply-adds than width 32 with 6 blocks
    (docs/reconstruction.md, "Speed").
    """
    return (16, 2, 7, "zeros") if size <= 32 else (64, 9, 7, "reflect")
