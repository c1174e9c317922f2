"""The embedding network: lensless and original towers mapping images to a unit sphere.

A lensless capture and the original image that was displayed come from different domains (a
smooth, low-contrast blur versus a sharp picture), so by default each domain has its own
encoder ("two towers"); ``shared=True`` uses one encoder for both, as in a Siamese network.
Each tower is: per-domain input standardisation, a convolutional backbone, pooling, and a
linear projection to ``embedding_dim``; the output is L2-normalised,

.. math:: e(x) = \\frac{W\\,\\mathrm{pool}(f(x))}{\\lVert W\\,\\mathrm{pool}(f(x)) \\rVert_2}.

An optional linear classifier head on the lensless tower's pooled features gives class logits
(the ``ce`` and ``ce+triplet`` losses).
"""

from __future__ import annotations

from typing import Literal, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from opticsfree.errors import ConfigError
from opticsfree.models.front_end import InverseFrontEnd
from opticsfree.models.global_linear import GlobalLinear
from opticsfree.models.registry import build_backbone

Domain = Literal["lensless", "original"]
DOMAINS: tuple[str, ...] = ("lensless", "original")


class InputNorm(nn.Module):
    """Scale images to [0, 1], standardise per channel and match the encoder's channels.

    ``mean`` and ``std`` are buffers (saved with the weights), set from the training data by
    :meth:`EmbeddingModel.set_input_stats`; they start at 0.5 and 0.25.

    With ``contrast=True`` the output also holds each image standardised by its *own* per-channel
    mean and standard deviation (the C channels are followed by C more),

    .. math:: \\tilde x_c = (x_c - \\bar x_c) / (s_c + \\epsilon),

    an auto-contrast: a bare-sensor capture is a nearly uniform patch whose scene information
    lies in variations far smaller than the differences in brightness and colour between
    captures, which the dataset-wide standardisation keeps dominant.

    Args:
        channels: channels of this domain's images.
        out_channels: channels the encoder expects (a 1-channel domain is repeated to 3 when a
            shared encoder also sees 3-channel images).
        contrast: append the per-image standardised channels (output ``2 * out_channels``).
    """

    def __init__(self, channels: int, out_channels: int, contrast: bool = False):
        super().__init__()
        self.channels = channels
        self.out_channels = out_channels
        self.contrast = bool(contrast)
        self.register_buffer("mean", torch.full((1, channels, 1, 1), 0.5))
        self.register_buffer("std", torch.full((1, channels, 1, 1), 0.25))

    def forward(self, x: Tensor) -> Tensor:
        if x.ndim != 4 or x.shape[1] != self.channels:
            raise ValueError(f"expected images (N, {self.channels}, H, W), got {tuple(x.shape)}")
        x = x.float() / 255.0 if x.dtype == torch.uint8 else x.float()
        if self.contrast:
            mu = x.mean(dim=(2, 3), keepdim=True)
            sd = x.std(dim=(2, 3), keepdim=True, unbiased=False)
            own = (x - mu) / (sd + 1e-3)
        x = (x - self.mean) / self.std
        if self.out_channels != self.channels:
            x = x.expand(-1, self.out_channels, -1, -1)
            if self.contrast:
                own = own.expand(-1, self.out_channels, -1, -1)
        return torch.cat([x, own], 1) if self.contrast else x


class Tower(nn.Module):
    """Backbone, pooling and linear projection (unnormalised embedding)."""

    def __init__(self, backbone: str, in_channels: int, size: int, embedding_dim: int,
                 width: int | None, pool: str):
        super().__init__()
        self.backbone = build_backbone(backbone, in_channels, width)
        self.pool = pool
        self.backbone.eval()
        with torch.no_grad():
            fmap = self.backbone(torch.zeros(1, in_channels, size, size))
        self.backbone.train()
        self.feature_dim = int(fmap[0].numel() if pool == "flatten" else fmap.shape[1])
        self.proj = nn.Linear(self.feature_dim, embedding_dim)

    def features(self, x: Tensor) -> Tensor:
        fmap = self.backbone(x)
        if self.pool == "avg":
            return fmap.mean(dim=(2, 3))
        if self.pool == "max":
            return fmap.amax(dim=(2, 3))
        return fmap.flatten(1)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        f = self.features(x)
        return self.proj(f), f


class EmbeddingModel(nn.Module):
    """Lensless and original encoders with L2-normalised outputs and an optional class head.

    Args:
        backbone: backbone name (see :data:`opticsfree.models.registry.BACKBONES`).
        lensless_channels: channels of the lensless captures (1 or 3).
        original_channels: channels of the original images (1 or 3).
        size: input side in pixels (images are ``size`` x ``size``).
        embedding_dim: embedding dimension :math:`D` (default 128).
        shared: one encoder for both domains instead of two towers.
        n_classes: add a linear classifier head with this many classes (None: no head).
        width: backbone width (None: the backbone's default).
        pool: ``"avg"`` (global average pooling), ``"max"`` (global max pooling, as the fast
            CIFAR recipes use with ``wvgg``) or ``"flatten"`` (keep the spatial layout of
            the last feature map; a bare sensor's response depends on where a point of the
            scene is, which average pooling discards).
        global_features: with :math:`k > 0`, the lensless tower first applies a learned
            non-local linear layer (:class:`~opticsfree.models.global_linear.GlobalLinear`,
            :math:`k` maps) and sees the capture and those maps stacked (:math:`C + k`
            channels): a bare sensor mixes the whole scene into every pixel, which a
            convolutional backbone cannot undo locally. Two towers only.
        lensless_contrast: the lensless tower also sees each capture standardised by its own
            mean and standard deviation (:class:`InputNorm` with ``contrast``). Two towers only.
        front_end: lensless captures first pass through a learned affine inverse to the
            display grid (:class:`~opticsfree.models.front_end.InverseFrontEnd`, initialised
            by the trainer from the camera's regularised inverse); the lensless encoder then
            sees an image with ``original_channels`` channels.

    Shape:
        - images: uint8 (N, C, size, size) (or float in [0, 1]).
        - embeddings: float32 (N, D), unit L2 norm.
        - logits: float32 (N, n_classes).
    """

    def __init__(self, backbone: str = "resnet20", lensless_channels: int = 3,
                 original_channels: int = 3, size: int = 32, embedding_dim: int = 128,
                 shared: bool = False, n_classes: int | None = None, width: int | None = None,
                 pool: str = "avg", global_features: int = 0, lensless_contrast: bool = False,
                 front_end: bool = False):
        super().__init__()
        if pool not in ("avg", "max", "flatten"):
            raise ConfigError(f"pool: expected 'avg', 'max' or 'flatten', got {pool!r}")
        if embedding_dim < 1:
            raise ConfigError(f"embedding_dim: must be positive, got {embedding_dim}")
        for name, c in (("lensless", lensless_channels), ("original", original_channels)):
            if c not in (1, 3):
                raise ConfigError(f"{name} images have {c} channels; expected 1 or 3")
        if size < 1:
            raise ConfigError(f"size: must be positive, got {size}")
        if global_features < 0:
            raise ConfigError(f"global_features: must be >= 0, got {global_features}")
        if lensless_contrast and shared:
            raise ConfigError("lensless_contrast needs two towers; drop --shared or set "
                              "lensless_contrast=false")
        if global_features and shared:
            raise ConfigError("global_features needs two towers (the lensless tower gets the global "
                              "layer); drop --shared or set global_features=0")
        self.shared = bool(shared)
        self.front_end = (InverseFrontEnd(lensless_channels, original_channels, size)
                          if front_end else None)
        if front_end:  # the lensless encoder sees the display-grid estimate
            lensless_channels = original_channels
        c_lensless = lensless_channels * (2 if lensless_contrast else 1)
        self.glob = GlobalLinear(c_lensless, global_features, size) if global_features else None
        self.embedding_dim = int(embedding_dim)
        self.channels_last = False
        if self.shared:
            c = max(lensless_channels, original_channels)
            self.norms = nn.ModuleDict({"lensless": InputNorm(lensless_channels, c),
                                        "original": InputNorm(original_channels, c)})
            self.towers = nn.ModuleDict({"shared": Tower(backbone, c, size, embedding_dim, width, pool)})
        else:
            self.norms = nn.ModuleDict({"lensless": InputNorm(lensless_channels, lensless_channels,
                                                              lensless_contrast),
                                        "original": InputNorm(original_channels, original_channels)})
            self.towers = nn.ModuleDict({
                "lensless": Tower(backbone, c_lensless + int(global_features), size,
                                  embedding_dim, width, pool),
                "original": Tower(backbone, original_channels, size, embedding_dim, width, pool),
            })
        self.head: nn.Linear | None = None
        if n_classes is not None:
            if n_classes < 2:
                raise ConfigError(f"a classifier head needs at least 2 classes, got {n_classes}")
            self.head = nn.Linear(self.tower("lensless").feature_dim, int(n_classes))

    @property
    def has_head(self) -> bool:
        """True when the model has a classifier head (``logits`` works)."""
        return self.head is not None

    def tower(self, domain: str) -> Tower:
        """The encoder of ``domain`` (the same module for both domains when shared)."""
        if domain not in DOMAINS:
            raise ValueError(f"domain must be 'lensless' or 'original', got {domain!r}")
        return self.towers["shared"] if self.shared else self.towers[domain]

    @torch.no_grad()
    def set_input_stats(self, domain: str, mean: Sequence[float], std: Sequence[float]) -> None:
        """Set the per-channel mean and standard deviation (on the [0, 1] scale) of ``domain``."""
        self.tower(domain)  # validates the name
        norm = self.norms[domain]
        m = torch.as_tensor(list(mean), dtype=torch.float32).view(1, -1, 1, 1)
        s = torch.as_tensor(list(std), dtype=torch.float32).clamp_min(1e-3).view(1, -1, 1, 1)
        if m.shape[1] != norm.channels or s.shape[1] != norm.channels:
            raise ValueError(f"{domain} has {norm.channels} channels, got stats for {m.shape[1]}")
        norm.mean.copy_(m)
        norm.std.copy_(s)

    def display_estimate(self, x: Tensor) -> Tensor:
        """The front end's display-grid image of lensless captures (float, [0, 1] scale).

        Shape:
            (N, lensless_channels, size, size) uint8 or float -> (N, original_channels, size, size).
        """
        if self.front_end is None:
            raise ValueError("this model has no front end")
        x = x.float() / 255.0 if x.dtype == torch.uint8 else x.float()
        return self.front_end(x)

    def tower_input(self, x: Tensor, domain: str, estimated: bool = False) -> Tensor:
        """What the ``domain`` backbone sees: front end (lensless), standardisation, global maps.

        Args:
            x: images of ``domain``.
            domain: ``"lensless"`` or ``"original"``.
            estimated: lensless ``x`` already holds the front end's display estimates
                (:meth:`display_estimate`, computed once for a frozen front end); the front
                end is skipped.
        """
        if estimated and (domain != "lensless" or self.front_end is None):
            raise ValueError("estimated=True needs lensless inputs and a model with a front end")
        if domain == "lensless" and self.front_end is not None and not estimated:
            x = self.display_estimate(x)
        x = self.norms[domain](x)
        if self.glob is not None and domain == "lensless":
            x = torch.cat([x, self.glob(x)], 1)
        return x

    @torch.no_grad()
    def init_from_data(self, lensless: Tensor, originals: Tensor, seed: int = 0) -> None:
        """Data-dependent initialisation of backbones that have one (``wvgg``'s whitening).

        Call after :meth:`set_input_stats` (and the front end's initialisation): the backbone
        is set up on the inputs it will see.

        Args:
            lensless: a sample of lensless captures (N, C, H, W), uint8.
            originals: a sample of original images (M, C', H, W), uint8.
            seed: seed of the backbone's own sampling.
        """
        samples = {"lensless": lensless, "original": originals}
        towers = (("shared", ("lensless", "original")),) if self.shared else (
            ("lensless", ("lensless",)), ("original", ("original",)))
        for name, domains in towers:
            backbone = self.towers[name].backbone
            if hasattr(backbone, "init_from_data"):
                x = torch.cat([self.tower_input(samples[d], d).float() for d in domains])
                backbone.init_from_data(x, seed=seed)

    def train_whitening_bias(self, trainable: bool) -> int:
        """Train or freeze the whitening bias of every backbone that has one (``wvgg``; see
        :meth:`opticsfree.models.whitened_vgg.WhitenedVGG.train_whitening_bias`).

        Returns:
            How many backbones have one (0: nothing changed).
        """
        backbones = [t.backbone for t in self.towers.values() if hasattr(t.backbone, "train_whitening_bias")]
        for b in backbones:
            b.train_whitening_bias(trainable)
        return len(backbones)

    def _encode(self, x: Tensor, domain: str, estimated: bool = False) -> tuple[Tensor, Tensor]:
        tower = self.tower(domain)
        x = self.tower_input(x, domain, estimated)
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        return tower(x)

    def encode(self, x: Tensor, domain: str) -> Tensor:
        """L2-normalised float32 embeddings (N, D) of images ``x`` from ``domain``."""
        z, _ = self._encode(x, domain)
        return F.normalize(z.float(), dim=1)

    def logits(self, x: Tensor) -> Tensor:
        """Class logits (N, n_classes) of lensless images ``x`` (requires a head)."""
        if self.head is None:
            raise ValueError("this model has no classifier head")
        _, f = self._encode(x, "lensless")
        return self.head(f).float()

    def forward(self, lensless: Tensor | None = None,
                originals: Sequence[Tensor] = (), estimated: bool = False) -> dict[str, object]:
        """Embed a batch of lensless captures and any number of batches of originals.

        One call per training step (what DistributedDataParallel expects); each batch is a
        separate forward pass through its tower.

        Args:
            lensless: lensless images (N, C, H, W) or None.
            originals: batches of original images, each (M_k, C', H, W).
            estimated: ``lensless`` holds the front end's display estimates (float, on the
                display grid; :meth:`display_estimate`) instead of captures: what the trainer
                passes when a frozen front end's outputs are computed once for the whole set.

        Returns:
            ``{"lensless": (N, D) or None, "originals": [(M_k, D), ...],
            "logits": (N, n_classes) or None}``; embeddings are L2-normalised float32.
        """
        out: dict[str, object] = {"lensless": None, "originals": [], "logits": None}
        if lensless is not None:
            z, f = self._encode(lensless, "lensless", estimated)
            out["lensless"] = F.normalize(z.float(), dim=1)
            if self.head is not None:
                out["logits"] = self.head(f).float()
        out["originals"] = [F.normalize(self._encode(o, "original")[0].float(), dim=1)
                            for o in originals]
        return out
