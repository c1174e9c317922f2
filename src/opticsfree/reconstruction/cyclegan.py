"""Unpaired lensless -> original translation with CycleGAN (Zhu et al., 2017): the seed's method.

Domains: A = lensless captures, B = originals. Two ResNet generators
:math:`G: A \\to B` (the reconstruction) and :math:`F: B \\to A`, two PatchGAN discriminators
:math:`D_A, D_B`. Least-squares GAN losses (Mao et al., 2017):

.. math::

    \\mathcal{L}_G &= \\mathbb{E}\\,(D_B(G(a)) - 1)^2 + \\mathbb{E}\\,(D_A(F(b)) - 1)^2
        + \\lambda\\,\\bigl(\\lVert F(G(a)) - a \\rVert_1 + \\lVert G(F(b)) - b \\rVert_1\\bigr)
        + \\lambda_{id}\\,\\bigl(\\lVert G(b) - b \\rVert_1 + \\lVert F(a) - a \\rVert_1\\bigr) \\\\
    \\mathcal{L}_{D_B} &= \\tfrac12\\bigl(\\mathbb{E}\\,(D_B(b) - 1)^2 + \\mathbb{E}\\,D_B(\\tilde b)^2\\bigr),
    \\qquad \\mathcal{L}_{D_A} = \\tfrac12\\bigl(\\mathbb{E}\\,(D_A(a) - 1)^2 + \\mathbb{E}\\,D_A(\\tilde a)^2\\bigr)

with :math:`\\lambda = 10`, :math:`\\lambda_{id} = 0.5\\,\\lambda` (the identity terms only when
captures and originals have the same shape, i.e. the same channel count) and
:math:`\\tilde a, \\tilde b` drawn from histories of 50 generated images
(:class:`~opticsfree.reconstruction.image_pool.ImagePool`). Adam, learning rate
:math:`2 \\cdot 10^{-4}`, :math:`\\beta_1 = 0.5`, constant then linearly decaying.

The method is unpaired: the training loop draws the batches of A and B from two independent
permutations (:func:`unpaired_batches`), so a capture and its original meet in a batch only by
chance. The pairing is used for the validation PSNR/SSIM only.
"""

from __future__ import annotations

from typing import Iterator

import torch
from pydantic import Field
from torch import nn

from opticsfree.errors import ConfigError
from opticsfree.reconstruction.base import MethodOptions
from opticsfree.reconstruction.discriminators import PatchDiscriminator, patch_layers_for
from opticsfree.reconstruction.generators import ResnetGenerator, default_generator_size, init_weights
from opticsfree.reconstruction.image_pool import ImagePool


class CycleGANConfig(MethodOptions):
    """Options of the ``cyclegan`` method (``--set key=value``).

    Attributes:
        width: generator filters ``ngf`` (None: 32 up to 32 px images, else 64).
        n_blocks: generator residual blocks (None: 6 up to 32 px, else 9).
        n_down: generator downsamplings.
        d_width: discriminator filters ``ndf``.
        d_layers: PatchGAN stride-2 layers (None: scaled to the image size).
        lambda_cycle: :math:`\\lambda`.
        identity: :math:`\\lambda_{id} / \\lambda` (0 disables the identity terms).
        pool_size: image history size.
        lr: Adam rate of generators and discriminators.
        beta1: Adam :math:`\\beta_1`.
        decay_start: first epoch of the linear decay (None = half the epochs).
        batch_size: images per step (CycleGAN used 1; larger batches are faster on CPU).
        epochs: default number of epochs.
        residual: both generators learn a correction of their input and start as the identity
            (:class:`~.generators.ResnetGenerator` ``residual``); for a domain A that is already
            an image, e.g. the reconstructions of a physics-based inverse (``tikhonov``).
        front_end: physics first, then unpaired refinement, in one model: domain A becomes the
            camera's Tikhonov inverse of each capture, :math:`\\hat v = T(y)`
            (:mod:`.tikhonov`: the set's known camera, a ``--camera`` calibration, or an operator
            fitted from the training pairs when the set has neither; :math:`\\lambda` and the
            prior chosen on validation pairs), frozen, and both generators are residual, so
            :math:`G(y) = T(y) + g(T(y))` starts at the Tikhonov reconstruction. The saved model
            applies :math:`T` then :math:`G`.
    """

    width: int | None = Field(None, ge=1, description="generator filters (None: by image size)")
    n_blocks: int | None = Field(None, ge=0, description="generator residual blocks (None: by image size)")
    n_down: int = Field(2, ge=0, description="generator downsamplings")
    d_width: int = Field(64, ge=1, description="discriminator filters")
    d_layers: int | None = Field(None, ge=0, description="PatchGAN stride-2 layers (None: by image size)")
    lambda_cycle: float = Field(10.0, ge=0, description="cycle-consistency weight")
    identity: float = Field(0.5, ge=0, description="identity weight / lambda_cycle (0: off)")
    pool_size: int = Field(50, ge=0, description="image history size")
    lr: float = Field(2e-4, gt=0, description="Adam learning rate")
    beta1: float = Field(0.5, ge=0, lt=1, description="Adam beta1")
    decay_start: int | None = Field(None, ge=0, description="first epoch of the linear decay (None: epochs // 2)")
    batch_size: int = Field(4, ge=1, description="images per step")
    epochs: int = Field(20, ge=1, description="default number of epochs")
    residual: bool = Field(False, description="generators learn a correction of their input, starting as the identity")
    front_end: bool = Field(False, description="translate the camera's Tikhonov inverse of each capture (frozen; "
                            "lambda chosen on validation) instead of the raw capture; implies residual")


def unpaired_batches(n_a: int, n_b: int, batch_size: int, generator: torch.Generator
                     ) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Index batches of two domains from independent random permutations.

    One epoch covers ``max(n_a, n_b)`` images of each domain (the smaller domain is cycled
    through further permutations); ``a`` and ``b`` indices are never tied to each other.

    Yields:
        ``(idx_a, idx_b)`` int64 tensors of ``batch_size`` (the last batch may be smaller).
    """
    n = max(n_a, n_b)

    def stream(m: int) -> torch.Tensor:
        reps = -(-n // m)
        return torch.cat([torch.randperm(m, generator=generator) for _ in range(reps)])[:n]

    pa, pb = stream(n_a), stream(n_b)
    for i in range(0, n, batch_size):
        yield pa[i:i + batch_size], pb[i:i + batch_size]


def lsgan(scores: torch.Tensor, real: bool) -> torch.Tensor:
    """Least-squares GAN loss: mean of ``(D - 1)^2`` for real targets, ``D^2`` for fake."""
    s = scores.float()
    return ((s - 1.0) ** 2).mean() if real else (s ** 2).mean()


def set_requires_grad(nets: list[nn.Module], flag: bool) -> None:
    for n in nets:
        for p in n.parameters():
            p.requires_grad_(flag)


class CycleGANMethod:
    """Two generators, two discriminators, two pools, two Adam optimizers."""

    name = "cyclegan"
    paired = False
    config_cls = CycleGANConfig
    # ``front_end`` (the Tikhonov inverse applied to the captures before the networks; the
    # training loop fits it and feeds its reconstructions as domain A) is a capability of the
    # method's registry entry (opticsfree.reconstruction.names: camera="front_end")

    def __init__(self, cfg: CycleGANConfig, in_channels: int, out_channels: int, size: int,
                 device: torch.device, generator: torch.Generator):
        self.cfg = cfg
        self.device = device
        w0, b0 = default_generator_size(size)
        width = cfg.width if cfg.width is not None else w0
        blocks = cfg.n_blocks if cfg.n_blocks is not None else b0
        d_layers = cfg.d_layers if cfg.d_layers is not None else patch_layers_for(size)
        residual = cfg.residual or cfg.front_end
        if residual and in_channels != out_channels:
            what = "front_end=true" if cfg.front_end else "residual=true"
            raise ConfigError(f"cyclegan option {what} needs captures and originals with the same "
                             f"channels, got {in_channels} and {out_channels}")
        gk = dict(width=width, n_blocks=blocks, n_down=cfg.n_down, residual=residual)
        self.arch = {"class": "ResnetGenerator",
                     "kwargs": dict(in_channels=in_channels, out_channels=out_channels, **gk)}
        self.g_ab = ResnetGenerator(in_channels, out_channels, **gk)
        self.g_ba = ResnetGenerator(out_channels, in_channels, **gk)
        self.d_a = PatchDiscriminator(in_channels, cfg.d_width, d_layers)
        self.d_b = PatchDiscriminator(out_channels, cfg.d_width, d_layers)
        for n in (self.g_ab, self.g_ba, self.d_a, self.d_b):
            init_weights(n)
            n.to(device)
        if residual:  # both generators start as the identity
            self.g_ab.zero_correction()
            self.g_ba.zero_correction()
        self.use_identity = cfg.identity > 0 and in_channels == out_channels
        self.pool_a = ImagePool(cfg.pool_size, generator)
        self.pool_b = ImagePool(cfg.pool_size, generator)
        betas = (cfg.beta1, 0.999)
        self.opt_g = torch.optim.Adam(list(self.g_ab.parameters()) + list(self.g_ba.parameters()),
                                      lr=cfg.lr, betas=betas)
        self.opt_d = torch.optim.Adam(list(self.d_a.parameters()) + list(self.d_b.parameters()),
                                      lr=cfg.lr, betas=betas)

    def networks(self) -> dict[str, nn.Module]:
        return {"g_ab": self.g_ab, "g_ba": self.g_ba, "d_a": self.d_a, "d_b": self.d_b}

    def optimizers(self) -> dict[str, torch.optim.Optimizer]:
        return {"g": self.opt_g, "d": self.opt_d}

    def extra_state(self) -> dict:
        return {"pool_a": self.pool_a.state_dict(), "pool_b": self.pool_b.state_dict()}

    def load_extra_state(self, state: dict) -> None:
        self.pool_a.load_state_dict(state["pool_a"], self.device)
        self.pool_b.load_state_dict(state["pool_b"], self.device)

    def inference(self) -> tuple[dict, nn.Module]:
        return self.arch, self.g_ab

    def train_step(self, real_a: torch.Tensor, real_b: torch.Tensor, amp) -> dict[str, torch.Tensor]:
        """One generator step and one discriminator step on unpaired batches (in [-1, 1])."""
        cfg = self.cfg
        for n in self.networks().values():
            n.train()
        # --- generators
        set_requires_grad([self.d_a, self.d_b], False)
        with amp():
            fake_b = self.g_ab(real_a)
            rec_a = self.g_ba(fake_b)
            fake_a = self.g_ba(real_b)
            rec_b = self.g_ab(fake_a)
            g_gan = lsgan(self.d_b(fake_b), True) + lsgan(self.d_a(fake_a), True)
            cyc = (rec_a.float() - real_a).abs().mean() + (rec_b.float() - real_b).abs().mean()
            loss_g = g_gan + cfg.lambda_cycle * cyc
            idt = torch.zeros((), device=real_a.device)
            if self.use_identity:
                idt = (self.g_ab(real_b).float() - real_b).abs().mean() + \
                      (self.g_ba(real_a).float() - real_a).abs().mean()
                loss_g = loss_g + cfg.lambda_cycle * cfg.identity * idt
        self.opt_g.zero_grad(set_to_none=True)
        loss_g.backward()
        self.opt_g.step()
        # --- discriminators (on pooled fakes)
        set_requires_grad([self.d_a, self.d_b], True)
        pa = self.pool_a.query(fake_a.float())
        pb = self.pool_b.query(fake_b.float())
        with amp():
            loss_da = 0.5 * (lsgan(self.d_a(real_a), True) + lsgan(self.d_a(pa), False))
            loss_db = 0.5 * (lsgan(self.d_b(real_b), True) + lsgan(self.d_b(pb), False))
        self.opt_d.zero_grad(set_to_none=True)
        (loss_da + loss_db).backward()
        self.opt_d.step()
        return {"g_gan": g_gan.detach(), "cycle": cyc.detach(), "identity": idt.detach(),
                "loss_g": loss_g.detach(), "d_a": loss_da.detach(), "d_b": loss_db.detach()}
