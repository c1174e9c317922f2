"""Paired, cycle-consistent reconstruction: an inverse and a forward network trained jointly.

After the optics-free lab's bijective-constrained cycle-consistent model (Optica, 2022): the
inverse network :math:`G` (capture -> image) is trained together with a forward network
:math:`F` (image -> capture), which learns the camera. With a capture :math:`y` and its
original :math:`x` (both in [-1, 1]):

.. math::

    \\mathcal{L} = w_{rec}\\,\\lVert G(y) - x \\rVert_1
        + w_{fwd}\\,\\lVert F(x) - y \\rVert_1
        + w_{cyc}\\,\\bigl(\\lVert F(G(y)) - y \\rVert_1 + \\lVert G(F(x)) - x \\rVert_1\\bigr)
        + w_{adv}\\,\\mathbb{E}\\,(D(G(y)) - 1)^2

The forward term makes :math:`F` a model of the camera, and the cycle terms force
:math:`G` to produce images that the camera model maps back onto the capture (and to invert
what the camera model predicts), so :math:`G` and :math:`F` approach a bijection between the
two domains. The optional adversarial term (:math:`w_{adv} > 0`) adds a PatchGAN
:math:`D` on originals trained with the least-squares loss
:math:`\\tfrac12(\\mathbb{E}(D(x) - 1)^2 + \\mathbb{E} D(G(y))^2)`.

Both networks are :class:`~opticsfree.reconstruction.unet.UNet` with a global layer (the
forward map of a bare sensor is itself non-local).
"""

from __future__ import annotations

import torch
from pydantic import Field
from torch import nn

from opticsfree.reconstruction.base import MethodOptions
from opticsfree.reconstruction.cyclegan import lsgan, set_requires_grad
from opticsfree.reconstruction.discriminators import PatchDiscriminator, patch_layers_for
from opticsfree.reconstruction.generators import init_weights
from opticsfree.reconstruction.unet import UNet, auto_depth, ssim_loss


class BijectiveConfig(MethodOptions):
    """Options of the ``bijective`` method (``--set key=value``).

    Attributes:
        width: first-level filters of the inverse U-Net.
        forward_width: first-level filters of the forward U-Net.
        depth: U-Net poolings (None: automatic, as ``unet``).
        global_features: maps of the global layers (0 disables them).
        w_rec, w_fwd, w_cyc, w_adv: loss weights (adversarial off by default).
        ssim_weight: optional ``1 - SSIM`` term on :math:`G(y)` (as ``unet``).
        lr: Adam rate of the two networks (betas 0.9, 0.999).
        d_lr: Adam rate of the discriminator (betas 0.5, 0.999).
        decay_start: first epoch of the linear LR decay (None = half the epochs).
        batch_size: images per step.
        epochs: default number of epochs.
    """

    width: int = Field(32, ge=1, description="first-level filters of the inverse U-Net")
    forward_width: int = Field(16, ge=1, description="first-level filters of the forward U-Net")
    depth: int | None = Field(None, ge=0, description="U-Net poolings (None: as unet)")
    global_features: int = Field(8, ge=0, description="maps of the global layers (0: none)")
    w_rec: float = Field(1.0, ge=0, description="reconstruction loss weight")
    w_fwd: float = Field(1.0, ge=0, description="forward (camera model) loss weight")
    w_cyc: float = Field(0.5, ge=0, description="cycle loss weight")
    w_adv: float = Field(0.0, ge=0, description="adversarial loss weight (0: off)")
    ssim_weight: float = Field(0.0, ge=0, description="weight of the 1 - SSIM term on G(y)")
    lr: float = Field(1e-3, gt=0, description="Adam learning rate of the two networks")
    d_lr: float = Field(2e-4, gt=0, description="Adam learning rate of the discriminator")
    decay_start: int | None = Field(None, ge=0, description="first epoch of the linear decay (None: epochs // 2)")
    batch_size: int = Field(32, ge=1, description="images per step")
    epochs: int = Field(30, ge=1, description="default number of epochs")


class BijectiveMethod:
    """Inverse and forward U-Nets (and an optional discriminator) trained on pairs."""

    name = "bijective"
    paired = True
    config_cls = BijectiveConfig

    def __init__(self, cfg: BijectiveConfig, in_channels: int, out_channels: int, size: int,
                 device: torch.device, generator: torch.Generator):
        self.cfg = cfg
        self.device = device
        depth = cfg.depth if cfg.depth is not None else auto_depth(size)
        self.arch = {"class": "UNet", "kwargs": dict(
            in_channels=in_channels, out_channels=out_channels, size=size, width=cfg.width,
            depth=depth, global_features=cfg.global_features)}
        self.inverse = UNet(**self.arch["kwargs"])
        self.forward_net = UNet(out_channels, in_channels, size, cfg.forward_width, depth,
                                cfg.global_features)
        nets = [self.inverse, self.forward_net]
        self.disc = None
        if cfg.w_adv > 0:
            self.disc = PatchDiscriminator(out_channels, 64, patch_layers_for(size))
            nets.append(self.disc)
        for n in nets:
            init_weights(n)
            n.to(device)
        self.opt = torch.optim.Adam(list(self.inverse.parameters()) + list(self.forward_net.parameters()),
                                    lr=cfg.lr, betas=(0.9, 0.999))
        self.opt_d = (torch.optim.Adam(self.disc.parameters(), lr=cfg.d_lr, betas=(0.5, 0.999))
                      if self.disc is not None else None)

    def networks(self) -> dict[str, nn.Module]:
        d = {"inverse": self.inverse, "forward": self.forward_net}
        if self.disc is not None:
            d["disc"] = self.disc
        return d

    def optimizers(self) -> dict[str, torch.optim.Optimizer]:
        d = {"opt": self.opt}
        if self.opt_d is not None:
            d["opt_d"] = self.opt_d
        return d

    def extra_state(self) -> dict:
        return {}

    def load_extra_state(self, state: dict) -> None:
        pass

    def inference(self) -> tuple[dict, nn.Module]:
        return self.arch, self.inverse

    def train_step(self, y: torch.Tensor, x: torch.Tensor, amp) -> dict[str, torch.Tensor]:
        """One step on paired batches: capture ``y``, original ``x`` (both in [-1, 1])."""
        cfg = self.cfg
        for n in self.networks().values():
            n.train()
        if self.disc is not None:
            set_requires_grad([self.disc], False)
        with amp():
            x_hat = self.inverse(y)
            y_hat = self.forward_net(x)
            rec = (x_hat.float() - x).abs().mean()
            fwd = (y_hat.float() - y).abs().mean()
            cyc = (self.forward_net(x_hat).float() - y).abs().mean() + \
                  (self.inverse(y_hat).float() - x).abs().mean()
            loss = cfg.w_rec * rec + cfg.w_fwd * fwd + cfg.w_cyc * cyc
            adv = torch.zeros((), device=y.device)
            if self.disc is not None:
                adv = lsgan(self.disc(x_hat), True)
                loss = loss + cfg.w_adv * adv
        terms = {"rec": rec.detach(), "fwd": fwd.detach(), "cycle": cyc.detach()}
        if cfg.ssim_weight > 0:
            s = ssim_loss(x_hat, x)
            loss = loss + cfg.ssim_weight * s
            terms["ssim_loss"] = s.detach()
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        self.opt.step()
        terms["loss"] = loss.detach()
        if self.disc is not None:
            set_requires_grad([self.disc], True)
            with amp():
                loss_d = 0.5 * (lsgan(self.disc(x), True) + lsgan(self.disc(x_hat.detach().float()), False))
            self.opt_d.zero_grad(set_to_none=True)
            loss_d.backward()
            self.opt_d.step()
            terms["adv"] = adv.detach()
            terms["d"] = loss_d.detach()
        return terms
