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

One step calls each generator on concatenated batches, three generator calls instead of six
(:meth:`CycleGANMethod.generator_outputs`), and each discriminator once on its real and pooled
fake images (:meth:`CycleGANMethod.discriminator_losses`): the same losses and gradients, as
instance normalisation treats every image alone (:func:`reference_train_step` is the textbook
step, for the tests and ``bench/bench_cyclegan.py``).

The method is unpaired: the training loop draws the batches of A and B from two independent
permutations (:func:`unpaired_batches`), so a capture and its original meet in a batch only by
chance. The pairing is used for the validation PSNR/SSIM only.
"""

from __future__ import annotations

from typing import Any, Callable, Iterator, Literal

import torch
from pydantic import Field, field_validator
from torch import nn

from opticsfree.errors import ConfigError
from opticsfree.reconstruction.base import MethodOptions
from opticsfree.reconstruction.discriminators import (PatchDiscriminator, default_discriminator_width,
                                                      patch_layers_for)
from opticsfree.reconstruction.generators import ResnetGenerator, default_generator_size, init_weights
from opticsfree.reconstruction.image_pool import ImagePool


class CycleGANConfig(MethodOptions):
    """Options of the ``cyclegan`` method (``--set key=value``).

    Attributes:
        width: generator filters ``ngf`` (None: 16 up to 32 px images, else 64;
            :func:`~.generators.default_generator_size`).
        n_blocks: generator residual blocks (None: 2 up to 32 px, else 9).
        n_down: generator downsamplings.
        edge_kernel: kernel side of the generator's first and last convolutions, odd (None: 7,
            CycleGAN's ``c7s1``).
        padding: how the generator's stride-1 convolutions keep the image size, ``reflect``
            (CycleGAN) or ``zeros`` (None: ``zeros`` up to 32 px, about 25% faster there; else
            ``reflect``).
        d_width: discriminator filters ``ndf`` (None: 16 up to 32 px, else 64;
            :func:`~.discriminators.default_discriminator_width`).
        d_layers: PatchGAN stride-2 layers (None: scaled to the image size).
        lambda_cycle: :math:`\\lambda`.
        identity: :math:`\\lambda_{id} / \\lambda` (0 disables the identity terms).
        pool_size: image history size.
        lr: Adam rate of generators and discriminators.
        beta1: Adam :math:`\\beta_1`.
        decay_start: first epoch of the linear decay (None = half the epochs).
        batch_size: images of each domain per step (CycleGAN used 1; 32 keeps a CPU's matrix
            units busy with the small 32 px networks).
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
    edge_kernel: int | None = Field(None, ge=1, description="kernel side of the generator's first and last "
                                    "convolutions, odd (None: by image size)")
    padding: Literal["reflect", "zeros"] | None = Field(None, description="generator padding of the stride-1 "
                                                        "convolutions (None: by image size)")
    d_width: int | None = Field(None, ge=1, description="discriminator filters (None: by image size)")
    d_layers: int | None = Field(None, ge=0, description="PatchGAN stride-2 layers (None: by image size)")
    lambda_cycle: float = Field(10.0, ge=0, description="cycle-consistency weight")
    identity: float = Field(0.5, ge=0, description="identity weight / lambda_cycle (0: off)")
    pool_size: int = Field(50, ge=0, description="image history size")
    lr: float = Field(2e-4, gt=0, description="Adam learning rate")
    beta1: float = Field(0.5, ge=0, lt=1, description="Adam beta1")
    decay_start: int | None = Field(None, ge=0, description="first epoch of the linear decay (None: epochs // 2)")
    batch_size: int = Field(32, ge=1, description="images of each domain per step")
    epochs: int = Field(20, ge=1, description="default number of epochs")
    residual: bool = Field(False, description="generators learn a correction of their input, starting as the identity")
    front_end: bool = Field(False, description="translate the camera's Tikhonov inverse of each capture (frozen; "
                            "lambda chosen on validation) instead of the raw capture; implies residual")

    @field_validator("edge_kernel")
    @classmethod
    def _odd_edge_kernel(cls, v: int | None) -> int | None:
        if v is not None and v % 2 == 0:
            raise ValueError("must be odd (the output keeps the image size)")
        return v


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


def l1(x: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean absolute error :math:`\\overline{|x - t|}` in float32 (``x`` may be bf16)."""
    return (x.float() - target.float()).abs().mean()


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
        w0, b0, k0, p0 = default_generator_size(size)
        width = cfg.width if cfg.width is not None else w0
        blocks = cfg.n_blocks if cfg.n_blocks is not None else b0
        edge = cfg.edge_kernel if cfg.edge_kernel is not None else k0
        d_layers = cfg.d_layers if cfg.d_layers is not None else patch_layers_for(size)
        d_width = cfg.d_width if cfg.d_width is not None else default_discriminator_width(size)
        residual = cfg.residual or cfg.front_end
        if residual and in_channels != out_channels:
            what = "front_end=true" if cfg.front_end else "residual=true"
            raise ConfigError(f"cyclegan option {what} needs captures and originals with the same "
                             f"channels, got {in_channels} and {out_channels}")
        gk = dict(width=width, n_blocks=blocks, n_down=cfg.n_down, residual=residual, edge_kernel=edge,
                  padding=cfg.padding or p0)
        self.arch = {"class": "ResnetGenerator",
                     "kwargs": dict(in_channels=in_channels, out_channels=out_channels, **gk)}
        self.g_ab = ResnetGenerator(in_channels, out_channels, **gk)
        self.g_ba = ResnetGenerator(out_channels, in_channels, **gk)
        self.d_a = PatchDiscriminator(in_channels, d_width, d_layers)
        self.d_b = PatchDiscriminator(out_channels, d_width, d_layers)
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

    def generator_outputs(self, real_a: torch.Tensor, real_b: torch.Tensor) -> dict[str, torch.Tensor]:
        """The generator images of one step, in three generator calls instead of six.

        Instance normalisation (no running statistics) and reflection padding act on each image
        alone, so a generator applied to a concatenated batch returns the concatenation of its
        outputs on the parts: with :math:`[x; y]` the batch concatenation,

        .. math::

            F([b; a]) = [\\tilde a; F(a)], \\qquad
            G([a; b; \\tilde a]) = [\\tilde b; G(b); G(\\tilde a)], \\qquad
            F(\\tilde b) = F(G(a)),

        with :math:`\\tilde a = F(b)`, :math:`\\tilde b = G(a)` (the identity images
        :math:`G(b), F(a)` only when :attr:`use_identity`). The result equals the six separate
        calls of the textbook step (:func:`reference_generator_outputs`) up to float rounding;
        larger batches keep the CPU's matrix units busier and pay the per-layer overhead once.

        Args:
            real_a: (N, C, H, W) domain A batch in [-1, 1].
            real_b: (M, C', H, W) domain B batch in [-1, 1].

        Returns:
            ``fake_b`` :math:`G(a)`, ``rec_a`` :math:`F(G(a))`, ``fake_a`` :math:`F(b)`,
            ``rec_b`` :math:`G(F(b))` and, with the identity terms, ``idt_b`` :math:`G(b)` and
            ``idt_a`` :math:`F(a)`.
        """
        n, m = len(real_a), len(real_b)
        out: dict[str, torch.Tensor] = {}
        if self.use_identity:
            out["fake_a"], out["idt_a"] = self.g_ba(torch.cat([real_b, real_a])).split([m, n])
            out["fake_b"], out["idt_b"], out["rec_b"] = self.g_ab(
                torch.cat([real_a, real_b, out["fake_a"]])).split([n, m, m])
        else:
            out["fake_a"] = self.g_ba(real_b)
            out["fake_b"], out["rec_b"] = self.g_ab(torch.cat([real_a, out["fake_a"]])).split([n, m])
        out["rec_a"] = self.g_ba(out["fake_b"])
        return out

    def generator_loss(self, real_a: torch.Tensor, real_b: torch.Tensor, g: dict[str, torch.Tensor]
                       ) -> dict[str, torch.Tensor]:
        """:math:`\\mathcal{L}_G` (module docstring) of the images of :meth:`generator_outputs`.

        Returns:
            ``g_gan``, ``cycle``, ``identity`` (0 without the identity terms) and ``loss_g``
            :math:`= g_{gan} + \\lambda\\,cycle + \\lambda\\lambda_{id}\\,identity`.
        """
        cfg = self.cfg
        g_gan = lsgan(self.d_b(g["fake_b"]), True) + lsgan(self.d_a(g["fake_a"]), True)
        cyc = l1(g["rec_a"], real_a) + l1(g["rec_b"], real_b)
        loss_g = g_gan + cfg.lambda_cycle * cyc
        idt = torch.zeros((), device=real_a.device)
        if self.use_identity:
            idt = l1(g["idt_b"], real_b) + l1(g["idt_a"], real_a)
            loss_g = loss_g + cfg.lambda_cycle * cfg.identity * idt
        return {"g_gan": g_gan, "cycle": cyc, "identity": idt, "loss_g": loss_g}

    def discriminator_losses(self, real_a: torch.Tensor, real_b: torch.Tensor, pool_a: torch.Tensor,
                             pool_b: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """:math:`\\mathcal{L}_{D_A}, \\mathcal{L}_{D_B}` with one call per discriminator.

        Each discriminator scores its real and pooled fake images as one batch,
        :math:`[s_r; s_f] = D([x; \\tilde x])` (exact for the same reason as in
        :meth:`generator_outputs`), then
        :math:`\\mathcal{L}_D = \\tfrac12(\\overline{(s_r - 1)^2} + \\overline{s_f^2})`.

        Args:
            real_a, real_b: the real batches.
            pool_a, pool_b: the pooled fakes :math:`\\tilde a, \\tilde b` (detached).

        Returns:
            ``(loss_da, loss_db)``.
        """
        def one(d: nn.Module, real: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
            s_real, s_fake = d(torch.cat([real, fake.to(real.dtype)])).split([len(real), len(fake)])
            return 0.5 * (lsgan(s_real, True) + lsgan(s_fake, False))

        return one(self.d_a, real_a, pool_a), one(self.d_b, real_b, pool_b)

    def train_step(self, real_a: torch.Tensor, real_b: torch.Tensor, amp) -> dict[str, torch.Tensor]:
        """One generator step and one discriminator step on unpaired batches (in [-1, 1]).

        Three generator calls (:meth:`generator_outputs`), one call of each discriminator for
        :math:`\\mathcal{L}_G` and one for its own loss (:meth:`discriminator_losses`); the
        same losses and gradients as the textbook step (:func:`reference_train_step`).

        Args:
            real_a: (N, C, H, W) domain A batch.
            real_b: (M, C', H, W) domain B batch.
            amp: a callable returning the autocast context (or a no-op context).

        Returns:
            The detached loss terms ``g_gan, cycle, identity, loss_g, d_a, d_b``.
        """
        return self.update(real_a, real_b, amp, self.generator_outputs, self.discriminator_losses)

    def update(self, real_a: torch.Tensor, real_b: torch.Tensor, amp: Any,
               outputs: Callable[[torch.Tensor, torch.Tensor], dict[str, torch.Tensor]],
               d_losses: Callable[..., tuple[torch.Tensor, torch.Tensor]]) -> dict[str, torch.Tensor]:
        """One generator step and one discriminator step with the given ways of computing the
        generator images (``outputs(real_a, real_b)``) and the discriminator losses
        (``d_losses(real_a, real_b, pool_a, pool_b)``): the fused ones (:meth:`train_step`) or the
        textbook ones (:func:`reference_train_step`)."""
        for n in self.networks().values():
            n.train()
        # --- generators (the discriminators' weights get no gradient)
        set_requires_grad([self.d_a, self.d_b], False)
        with amp():
            g = outputs(real_a, real_b)
            terms = self.generator_loss(real_a, real_b, g)
        self.opt_g.zero_grad(set_to_none=True)
        terms["loss_g"].backward()
        self.opt_g.step()
        # --- discriminators (on pooled fakes)
        set_requires_grad([self.d_a, self.d_b], True)
        pa = self.pool_a.query(g["fake_a"].float())
        pb = self.pool_b.query(g["fake_b"].float())
        with amp():
            loss_da, loss_db = d_losses(real_a, real_b, pa, pb)
        self.opt_d.zero_grad(set_to_none=True)
        (loss_da + loss_db).backward()
        self.opt_d.step()
        return {**{k: v.detach() for k, v in terms.items()}, "d_a": loss_da.detach(), "d_b": loss_db.detach()}


def reference_generator_outputs(m: CycleGANMethod, real_a: torch.Tensor, real_b: torch.Tensor
                                ) -> dict[str, torch.Tensor]:
    """The generator images of the textbook step: one generator call per image set (six with
    the identity terms). What :meth:`CycleGANMethod.generator_outputs` must equal; for the tests
    and the benchmark (``bench/bench_cyclegan.py``)."""
    out = {"fake_b": m.g_ab(real_a), "fake_a": m.g_ba(real_b)}
    out["rec_a"] = m.g_ba(out["fake_b"])
    out["rec_b"] = m.g_ab(out["fake_a"])
    if m.use_identity:
        out["idt_b"] = m.g_ab(real_b)
        out["idt_a"] = m.g_ba(real_a)
    return out


def reference_discriminator_losses(m: CycleGANMethod, real_a: torch.Tensor, real_b: torch.Tensor,
                                   pool_a: torch.Tensor, pool_b: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """:math:`\\mathcal{L}_{D_A}, \\mathcal{L}_{D_B}` with one discriminator call per image set
    (what :meth:`CycleGANMethod.discriminator_losses` must equal)."""
    loss_da = 0.5 * (lsgan(m.d_a(real_a), True) + lsgan(m.d_a(pool_a), False))
    loss_db = 0.5 * (lsgan(m.d_b(real_b), True) + lsgan(m.d_b(pool_b), False))
    return loss_da, loss_db


def reference_train_step(m: CycleGANMethod, real_a: torch.Tensor, real_b: torch.Tensor, amp
                         ) -> dict[str, torch.Tensor]:
    """:meth:`CycleGANMethod.train_step` with the textbook calls (:func:`reference_generator_outputs`,
    :func:`reference_discriminator_losses`): the same update, for the tests and the benchmark."""
    return m.update(real_a, real_b, amp, lambda a, b: reference_generator_outputs(m, a, b),
                    lambda *images: reference_discriminator_losses(m, *images))
