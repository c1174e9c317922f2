"""Paired reconstruction with a U-Net: lensless capture -> original, trained with L1 (+ SSIM).

A bare sensor spreads every display pixel over the whole capture, so the inverse map is
non-local. The U-Net therefore starts with an optional learned global layer
(:class:`GlobalLinear`, the "trainable inversion" idea of FlatNet): a 1x1 mixing to ``k``
feature maps, each mapped by one dense :math:`P \\times P` matrix shared by the features
(:math:`P = H W`), initialised to the identity. Its output is concatenated with the capture
and fed to a standard U-Net (``depth`` 2x2 max-poolings, two 3x3 conv + GroupNorm + ReLU per
level, bilinear upsampling with skip connections, ``tanh`` output).

Loss, for a capture :math:`y`, its original :math:`x` (both in [-1, 1]) and the net :math:`G`:

.. math::

    \\mathcal{L} = \\lVert G(y) - x \\rVert_1
        + w_{ssim}\\,\\bigl(1 - \\mathrm{SSIM}(\\tfrac{G(y)+1}{2}, \\tfrac{x+1}{2})\\bigr)

(:math:`w_{ssim} = 0` by default; SSIM from torchmetrics, data range 1).

With ``front_end`` (physics-informed, as the lensless-imaging field's learned-inverse-then-network
designs) the net first maps the capture to the display grid with a learned affine inverse
:math:`\\hat x = A y + c` (:class:`~opticsfree.models.front_end.InverseFrontEnd`), initialised
from the camera's regularised inverse (the ridge estimator of ``camera info``, fitted on the
training pairs with its strength chosen on validation), sees :math:`[y, \\hat x]` and predicts
a correction: :math:`G(y) = \\hat x + r(y, \\hat x)`, the correction's last layer starting at
zero, so training starts from the linear reconstruction.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from pydantic import Field
from torch import nn

from opticsfree.captures.linear import fit_inverse
from opticsfree.models.front_end import InverseFrontEnd
from opticsfree.models.global_linear import GlobalLinear
from opticsfree.models.pooling import max_pool2x2
from opticsfree.reconstruction.base import MethodOptions
from opticsfree.reconstruction.generators import init_weights, norm_layer


class ConvBlock(nn.Module):
    """Two 3x3 conv + norm + ReLU."""

    def __init__(self, cin: int, cout: int, norm: str = "group"):
        super().__init__()
        self.block = nn.Sequential(
            nn.Conv2d(cin, cout, 3, padding=1), norm_layer(norm, cout), nn.ReLU(inplace=True),
            nn.Conv2d(cout, cout, 3, padding=1), norm_layer(norm, cout), nn.ReLU(inplace=True))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.block(x)


class UNet(nn.Module):
    """U-Net with an optional global layer at the input.

    Args:
        in_channels: input channels (the capture).
        out_channels: output channels (the original); may differ from ``in_channels``.
        size: image side (needed by the global layer; must be divisible by ``2 ** depth``).
        width: filters of the first level, doubled per level (capped at ``8 * width``).
        depth: number of 2x2 poolings.
        global_features: maps of the :class:`GlobalLinear` layer (0 disables it).
        norm: normalisation (``group`` default: independent of the batch size).
        front_end: start with a learned affine inverse and predict a correction to it.

    Shape:
        (N, in_channels, size, size) in [-1, 1] -> (N, out_channels, size, size) in [-1, 1].
    """

    def __init__(self, in_channels: int, out_channels: int, size: int, width: int = 32, depth: int = 3,
                 global_features: int = 8, norm: str = "group", front_end: bool = False):
        super().__init__()
        if size % (2 ** depth) or size // (2 ** depth) < 1:
            raise ValueError(f"image side {size} must be a multiple of 2**depth = {2 ** depth}")
        self.in_channels, self.out_channels, self.size = in_channels, out_channels, size
        self.front = InverseFrontEnd(in_channels, out_channels, size) if front_end else None
        self.glob = GlobalLinear(in_channels, global_features, size) if global_features > 0 else None
        ch = in_channels + (global_features if global_features > 0 else 0) + (out_channels if front_end else 0)
        widths = [min(width * 2 ** i, width * 8) for i in range(depth + 1)]
        self.down = nn.ModuleList()
        for w in widths:
            self.down.append(ConvBlock(ch, w, norm))
            ch = w
        self.up = nn.ModuleList()
        for w in reversed(widths[:-1]):
            self.up.append(ConvBlock(ch + w, w, norm))
            ch = w
        self.head = nn.Conv2d(ch, out_channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim != 4 or x.shape[1] != self.in_channels or x.shape[-2:] != (self.size, self.size):
            raise ValueError(f"expected (N, {self.in_channels}, {self.size}, {self.size}), got {tuple(x.shape)}")
        parts = [x]
        if self.glob is not None:
            parts.append(self.glob(x))
        est = self.front(x) if self.front is not None else None
        if est is not None:
            parts.append(est.to(x.dtype))
        h = torch.cat(parts, 1) if len(parts) > 1 else x
        skips = []
        for i, block in enumerate(self.down):
            h = block(h)
            if i < len(self.down) - 1:
                skips.append(h)
                h = max_pool2x2(h)
        for block in self.up:
            s = skips.pop()
            h = F.interpolate(h, size=s.shape[-2:], mode="bilinear", align_corners=False)
            h = block(torch.cat([h, s], 1))
        if est is not None:
            return est + self.head(h).float()
        return torch.tanh(self.head(h))


def ssim_loss(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """``1 - SSIM`` of images in [-1, 1] (compared in [0, 1], torchmetrics, data range 1)."""
    from torchmetrics.functional.image import structural_similarity_index_measure

    p = (pred.float() + 1) / 2
    t = (target.float() + 1) / 2
    return 1.0 - structural_similarity_index_measure(p, t, data_range=1.0)


class UNetConfig(MethodOptions):
    """Options of the ``unet`` method (``--set key=value``).

    Attributes:
        width: first-level filters.
        depth: poolings (default: 3 for 32 px, 4 for 64 px and larger; ``None`` = automatic).
        global_features: maps of the global layer (0 = plain U-Net).
        ssim_weight: :math:`w_{ssim}` (0 = L1 only).
        lr: Adam learning rate (betas 0.9, 0.999).
        decay_start: first epoch of the linear LR decay (None = half the epochs).
        batch_size: images per step.
        epochs: default number of epochs.
    """

    width: int = Field(32, ge=1, description="first-level filters")
    depth: int | None = Field(None, ge=0, description="poolings (None: 3 for 32 px, 4 for 64 px and larger)")
    global_features: int = Field(8, ge=0, description="maps of the global layer (0: plain U-Net)")
    ssim_weight: float = Field(0.0, ge=0, description="weight of the 1 - SSIM term (0: L1 only)")
    lr: float = Field(1e-3, gt=0, description="Adam learning rate")
    decay_start: int | None = Field(None, ge=0, description="first epoch of the linear decay (None: epochs // 2)")
    batch_size: int = Field(32, ge=1, description="images per step")
    epochs: int = Field(30, ge=1, description="default number of epochs")
    front_end: bool = Field(False, description="start from a learned affine inverse initialised from the camera's regularised inverse; predict a correction")
    front_end_lr_scale: float = Field(0.0, ge=0, description="learning rate of the front end relative to lr (0: frozen)")


def auto_depth(size: int) -> int:
    """Poolings for a U-Net on ``size`` px images: 3 up to 32 px, 4 above (at most log2(size) - 1)."""
    want = 3 if size <= 32 else 4
    k = 0
    while k < want and size % (2 ** (k + 1)) == 0 and size // 2 ** (k + 1) >= 2:
        k += 1
    return k


class UNetMethod:
    """Trains a :class:`UNet` on (capture, original) pairs."""

    name = "unet"
    paired = True
    config_cls = UNetConfig

    def __init__(self, cfg: UNetConfig, in_channels: int, out_channels: int, size: int,
                 device: torch.device, generator: torch.Generator):
        self.cfg = cfg
        self.device = device
        self.arch = {"class": "UNet", "kwargs": dict(
            in_channels=in_channels, out_channels=out_channels, size=size, width=cfg.width,
            depth=cfg.depth if cfg.depth is not None else auto_depth(size),
            global_features=cfg.global_features, front_end=cfg.front_end)}
        self.net = UNet(**self.arch["kwargs"])
        init_weights(self.net)  # convs ~ N(0, 0.02); the global layer stays the identity
        if cfg.front_end:  # the correction starts at zero: training starts from the inverse
            nn.init.zeros_(self.net.head.weight)
            nn.init.zeros_(self.net.head.bias)
        self.net.to(device)
        if self.net.front is not None and cfg.front_end_lr_scale == 0:
            self.net.front.requires_grad_(False)  # frozen at the regularised inverse
        front = [p for p in self.net.front.parameters() if p.requires_grad] if self.net.front is not None else []
        rest = [p for p in self.net.parameters() if p.requires_grad and all(p is not q for q in front)]
        groups = [{"params": rest}] + ([{"params": front, "lr": cfg.lr * cfg.front_end_lr_scale}] if front else [])
        self.opt = torch.optim.Adam(groups, lr=cfg.lr, betas=(0.9, 0.999))

    def networks(self) -> dict[str, nn.Module]:
        return {"net": self.net}

    def init_from_data(self, lensless: torch.Tensor, original: torch.Tensor, val_lensless: torch.Tensor,
                       val_original: torch.Tensor, seed: int) -> dict | None:
        """Initialise the front end (if any) from the training pairs (uint8 (N, C, H, W)).

        The inverse is fitted on the [0, 1] scale, :math:`\\hat x = A y + c`, and moved to the
        net's [-1, 1] scale: :math:`A' = A`, :math:`c' = A\\mathbf{1} + 2c - 1`.

        Returns:
            The ridge fit's report (None without a front end).
        """
        if self.net.front is None:
            return None
        a, c, report = fit_inverse(lensless, original, val_lensless, val_original, seed)
        self.net.front.set_affine(a, a.sum(1) + 2 * c - 1)
        return {k: report[k] for k in ("lambda_relative", "val_relative_error", "n_train", "n_val")}

    def optimizers(self) -> dict[str, torch.optim.Optimizer]:
        return {"opt": self.opt}

    def extra_state(self) -> dict:
        return {}

    def load_extra_state(self, state: dict) -> None:
        pass

    def inference(self) -> tuple[dict, nn.Module]:
        """(architecture spec, network) of the lensless -> original map."""
        return self.arch, self.net

    def train_step(self, capture: torch.Tensor, original: torch.Tensor, amp) -> dict[str, torch.Tensor]:
        """One Adam step on a batch (both in [-1, 1]); returns detached loss terms."""
        self.net.train()
        with amp():
            pred = self.net(capture)
            l1 = (pred.float() - original).abs().mean()
        loss = l1
        terms = {"l1": l1.detach()}
        if self.cfg.ssim_weight > 0:
            s = ssim_loss(pred, original)
            loss = loss + self.cfg.ssim_weight * s
            terms["ssim_loss"] = s.detach()
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        self.opt.step()
        terms["loss"] = loss.detach()
        return terms
