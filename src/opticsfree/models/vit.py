"""A small hybrid vision transformer: a convolutional stem, then attention over the whole
image (the seed study's "future work").

A lens-less capture spreads every scene point over the whole sensor, so a feature of the
scene is a pattern spread across the image, not a local edge. Self-attention lets every token
look at every other one from the first block on. The stem (two 3x3 convolutions with stride 2,
batch norm and GELU) turns an (H, W) image into an (H/4, W/4) grid of ``d``-dimensional
tokens; a learned position embedding (an 8 x 8 grid, resized bilinearly to other token
grids) is added; ``depth`` pre-norm transformer blocks follow:

.. math::
    z' = z + \\operatorname{MHSA}(\\operatorname{LN}(z)), \\qquad
    z'' = z' + \\operatorname{MLP}(\\operatorname{LN}(z')),

    \\operatorname{MHSA}(x) = \\operatorname{concat}_h
        \\operatorname{softmax}\\!\\Big(\\frac{Q_h K_h^\\top}{\\sqrt{d_h}}\\Big) V_h \\; W_o,

with :math:`d_h = 32` channels per head and an MLP of :math:`4d` hidden units. The output is the
final token grid as a feature map, so every tower pooling of
:class:`~opticsfree.models.embedding.EmbeddingModel` applies unchanged. Written with torch only
(``scaled_dot_product_attention``); it exports to ONNX like the convolutional backbones.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

#: Channels per attention head.
HEAD_DIM = 32
#: Side of the learned position-embedding grid (the token grid of a 32 x 32 image).
POS_GRID = 8


class Attention(nn.Module):
    """Multi-head self-attention over tokens.

    Args:
        dim: token channels :math:`d` (a multiple of :data:`HEAD_DIM`).

    Shape:
        - input: (N, T, dim).
        - output: (N, T, dim).
    """

    def __init__(self, dim: int):
        super().__init__()
        if dim % HEAD_DIM:
            raise ValueError(f"dim must be a multiple of {HEAD_DIM}, got {dim}")
        self.heads = dim // HEAD_DIM
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: Tensor) -> Tensor:
        n, t, d = x.shape
        q, k, v = self.qkv(x).reshape(n, t, 3, self.heads, HEAD_DIM).permute(2, 0, 3, 1, 4)
        y = F.scaled_dot_product_attention(q, k, v)
        return self.proj(y.transpose(1, 2).reshape(n, t, d))


class Block(nn.Module):
    """One pre-norm transformer block (attention, then an MLP of ``4 dim`` units).

    Shape:
        - input: (N, T, dim).
        - output: (N, T, dim).
    """

    def __init__(self, dim: int):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.attn = Attention(dim)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = nn.Sequential(nn.Linear(dim, 4 * dim), nn.GELU(), nn.Linear(4 * dim, dim))

    def forward(self, x: Tensor) -> Tensor:
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class HybridViT(nn.Module):
    """Convolutional stem (stride 4), learned positions, ``depth`` transformer blocks.

    Args:
        in_channels: input channels (any positive number).
        width: the stem's first width :math:`w`; tokens have :math:`d = 4w` channels (rounded
            up to a multiple of :data:`HEAD_DIM`).
        depth: transformer blocks.

    Shape:
        - input: (N, in_channels, H, W), float, H and W >= 4.
        - output: (N, d, ceil(H / 4), ceil(W / 4)): 8 x 8 for 32 x 32 input.

    Attributes:
        out_channels: :math:`d`, the channels of the output feature map.
    """

    def __init__(self, in_channels: int, width: int = 32, depth: int = 4):
        super().__init__()
        if in_channels < 1 or width < 1 or depth < 1:
            raise ValueError(f"in_channels, width and depth must be positive, got {in_channels}, {width}, {depth}")
        dim = -(-4 * width // HEAD_DIM) * HEAD_DIM
        self.stem = nn.Sequential(
            nn.Conv2d(in_channels, width, 3, stride=2, padding=1, bias=False), nn.BatchNorm2d(width), nn.GELU(),
            nn.Conv2d(width, dim, 3, stride=2, padding=1, bias=False), nn.BatchNorm2d(dim), nn.GELU(),
            nn.Conv2d(dim, dim, 1))
        self.pos = nn.Parameter(torch.zeros(1, dim, POS_GRID, POS_GRID))
        nn.init.trunc_normal_(self.pos, std=0.02)
        self.blocks = nn.Sequential(*(Block(dim) for _ in range(depth)))
        self.norm = nn.LayerNorm(dim)
        self.out_channels = dim

    def forward(self, x: Tensor) -> Tensor:
        z = self.stem(x)
        n, d, h, w = z.shape
        pos = self.pos if (h, w) == (POS_GRID, POS_GRID) else \
            F.interpolate(self.pos, size=(h, w), mode="bilinear", align_corners=False)
        tokens = (z + pos).flatten(2).transpose(1, 2)
        tokens = self.norm(self.blocks(tokens))
        return tokens.transpose(1, 2).reshape(n, d, h, w)
