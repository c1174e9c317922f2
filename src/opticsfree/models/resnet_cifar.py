"""CIFAR-style residual networks (He et al. 2016, section 4.2): ResNet-8/14/20/32.

Depth :math:`6n + 2`: a 3x3 stem, three stages of :math:`n` basic blocks with widths
:math:`w, 2w, 4w` and strides 1, 2, 2. The width :math:`w` is configurable (16 in the paper).
Shortcuts that change shape use a 1x1 convolution with batch norm (option B).
"""

from __future__ import annotations

from torch import Tensor, nn


class BasicBlock(nn.Module):
    """Two 3x3 conv-BN layers with an identity (or 1x1 projection) shortcut."""

    def __init__(self, c_in: int, c_out: int, stride: int = 1):
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(c_out)
        self.relu = nn.ReLU(inplace=True)
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or c_in != c_out:
            self.shortcut = nn.Sequential(nn.Conv2d(c_in, c_out, 1, stride=stride, bias=False),
                                          nn.BatchNorm2d(c_out))

    def forward(self, x: Tensor) -> Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + self.shortcut(x))


class ResNetCIFAR(nn.Module):
    """ResNet-(6n+2) for small images; returns the last feature map.

    Args:
        depth: 8, 14, 20, 32, 44 or 56 (any :math:`6n + 2`, :math:`n \\ge 1`).
        in_channels: input channels (1 or 3).
        width: channels of the first stage (default 16; stages use w, 2w, 4w).

    Shape:
        - input: (N, in_channels, H, W), float.
        - output: (N, 4 * width, ceil(H / 4), ceil(W / 4)).

    Attributes:
        out_channels: channels of the output feature map.
    """

    def __init__(self, depth: int, in_channels: int, width: int = 16):
        super().__init__()
        if depth < 8 or (depth - 2) % 6:
            raise ValueError(f"ResNet depth must be 6n+2 with n >= 1 (8, 14, 20, ...), got {depth}")
        if in_channels < 1 or width < 1:
            raise ValueError(f"in_channels and width must be positive, got {in_channels}, {width}")
        n = (depth - 2) // 6
        self.stem = nn.Sequential(nn.Conv2d(in_channels, width, 3, padding=1, bias=False),
                                  nn.BatchNorm2d(width), nn.ReLU(inplace=True))
        layers, c = [], width
        for stage, w in enumerate([width, 2 * width, 4 * width]):
            for i in range(n):
                stride = 2 if (stage > 0 and i == 0) else 1
                layers.append(BasicBlock(c, w, stride))
                c = w
        self.layers = nn.Sequential(*layers)
        self.out_channels = c
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
        # Zero-init the last BN of each residual branch: every block starts as the identity,
        # which makes the first epochs of small-batch training noticeably more stable.
        for m in self.modules():
            if isinstance(m, BasicBlock):
                nn.init.zeros_(m.bn2.weight)

    def forward(self, x: Tensor) -> Tensor:
        return self.layers(self.stem(x))
