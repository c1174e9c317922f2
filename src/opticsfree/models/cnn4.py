"""A small four-block convolutional network (the classic "Conv-4" of few-shot learning)."""

from __future__ import annotations

from torch import Tensor, nn


def conv_block(c_in: int, c_out: int) -> nn.Sequential:
    """3x3 convolution, batch norm, ReLU and 2x2 max pooling (ceil mode, so 1x1 maps survive)."""
    return nn.Sequential(
        nn.Conv2d(c_in, c_out, 3, padding=1, bias=False),
        nn.BatchNorm2d(c_out),
        nn.ReLU(inplace=True),
        nn.MaxPool2d(2, ceil_mode=True),
    )


class CNN4(nn.Module):
    """Four conv blocks with widths ``w, 2w, 4w, 8w``; returns the last feature map.

    Args:
        in_channels: input channels (1 or 3).
        width: channels of the first block (default 32).

    Shape:
        - input: (N, in_channels, H, W), float.
        - output: (N, 8 * width, ceil(H / 16), ceil(W / 16)).

    Attributes:
        out_channels: channels of the output feature map.
    """

    def __init__(self, in_channels: int, width: int = 32):
        super().__init__()
        if in_channels < 1 or width < 1:
            raise ValueError(f"in_channels and width must be positive, got {in_channels}, {width}")
        widths = [width, 2 * width, 4 * width, 8 * width]
        blocks, c = [], in_channels
        for w in widths:
            blocks.append(conv_block(c, w))
            c = w
        self.features = nn.Sequential(*blocks)
        self.out_channels = c
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def forward(self, x: Tensor) -> Tensor:
        return self.features(x)
