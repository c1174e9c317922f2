"""Embedding networks: shapes, normalisation, towers, heads and bad input."""

import pytest
import torch

from opticsfree.errors import ConfigError
from opticsfree.models import BACKBONES, EmbeddingModel, ResNetCIFAR, build_backbone


def _img(n, c, s, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (n, c, s, s), dtype=torch.uint8, generator=g)


@pytest.mark.parametrize("backbone", ["cnn4", "resnet8"])
@pytest.mark.parametrize("channels", [1, 3])
@pytest.mark.parametrize("size", [16, 32])
def test_embeddings_are_unit_vectors_of_the_requested_dim(backbone, channels, size):
    m = EmbeddingModel(backbone, channels, channels, size, embedding_dim=24, width=4, n_classes=5)
    out = m(lensless=_img(3, channels, size), originals=[_img(2, channels, size, 1)])
    assert out["lensless"].shape == (3, 24) and out["originals"][0].shape == (2, 24)
    for e in (out["lensless"], out["originals"][0]):
        assert e.dtype == torch.float32
        torch.testing.assert_close(e.norm(dim=1), torch.ones(len(e)))
    assert out["logits"].shape == (3, 5)
    assert m.encode(_img(4, channels, size), "original").shape == (4, 24)


def test_default_embedding_is_128d_and_towers_differ():
    m = EmbeddingModel("cnn4", 3, 3, 16, width=4)
    assert m.embedding_dim == 128 and not m.has_head
    x = _img(2, 3, 16)
    m.eval()
    assert not torch.allclose(m.encode(x, "lensless"), m.encode(x, "original"))
    with pytest.raises(ValueError, match="no classifier head"):
        m.logits(x)


def test_shared_encoder_uses_one_tower_and_maps_gray_to_rgb():
    m = EmbeddingModel("resnet8", 1, 3, 16, embedding_dim=8, width=4, shared=True)
    assert m.tower("lensless") is m.tower("original")
    two = EmbeddingModel("resnet8", 1, 3, 16, embedding_dim=8, width=4)
    n_shared = sum(p.numel() for p in m.parameters())
    assert n_shared < sum(p.numel() for p in two.parameters())
    m.eval()
    gray = _img(2, 1, 16)
    # A gray capture equals an RGB image with three equal channels once both are standardised
    # with the same statistics.
    m.set_input_stats("lensless", [0.4], [0.2])
    m.set_input_stats("original", [0.4] * 3, [0.2] * 3)
    torch.testing.assert_close(m.encode(gray, "lensless"), m.encode(gray.expand(-1, 3, -1, -1), "original"))


def test_input_stats_standardise_inputs():
    m = EmbeddingModel("cnn4", 3, 3, 16, width=4).eval()
    x = _img(2, 3, 16)
    before = m.encode(x, "lensless")
    m.set_input_stats("lensless", [0.1, 0.2, 0.3], [0.5, 0.5, 0.5])
    assert torch.equal(m.norms["lensless"].mean.flatten(), torch.tensor([0.1, 0.2, 0.3]))
    assert not torch.allclose(before, m.encode(x, "lensless"))
    with pytest.raises(ValueError, match="3 channels"):
        m.set_input_stats("lensless", [0.1], [0.2])


def test_flatten_pool_keeps_spatial_layout():
    m = EmbeddingModel("resnet8", 3, 3, 16, embedding_dim=8, width=4, pool="flatten")
    assert m.tower("lensless").feature_dim == 16 * 4 * 4  # 4w channels at H/4 x W/4
    assert m(lensless=_img(2, 3, 16))["lensless"].shape == (2, 8)


def test_channels_last_gives_the_same_embeddings():
    m = EmbeddingModel("resnet8", 3, 3, 16, width=4).eval()
    x = _img(3, 3, 16)
    ref = m.encode(x, "lensless")
    m.to(memory_format=torch.channels_last)
    m.channels_last = True
    torch.testing.assert_close(m.encode(x, "lensless"), ref, atol=1e-5, rtol=1e-4)


def test_backbone_registry_and_feature_maps():
    assert {"cnn4", "resnet8", "resnet14", "resnet20"} <= set(BACKBONES)
    x = torch.zeros(2, 3, 32, 32)
    assert build_backbone("cnn4", 3, width=4)(x).shape == (2, 32, 2, 2)
    assert build_backbone("resnet20", 3, width=4)(x).shape == (2, 16, 8, 8)
    n8 = sum(p.numel() for p in build_backbone("resnet8", 3).parameters())
    n20 = sum(p.numel() for p in build_backbone("resnet20", 3).parameters())
    assert n20 > 2 * n8
    # ResNet-20 with width 16 is the paper's 0.27M-parameter network.
    assert 0.26e6 < n20 < 0.28e6
    with pytest.raises(ConfigError, match="unknown"):
        build_backbone("vgg11", 3)
    with pytest.raises(ValueError, match="6n\\+2"):
        ResNetCIFAR(10, 3)


def test_bad_images_are_rejected_with_the_expected_shape():
    m = EmbeddingModel("cnn4", 1, 3, 16, width=4)
    with pytest.raises(ValueError, match=r"\(N, 1, H, W\)"):
        m.encode(_img(2, 3, 16), "lensless")
    with pytest.raises(ValueError, match="domain"):
        m.encode(_img(2, 1, 16), "reconstructed")
    with pytest.raises(ConfigError, match="channels"):
        EmbeddingModel("cnn4", 2, 3, 16)


def test_global_layer_starts_as_identity_and_feeds_the_lensless_tower_only():
    from opticsfree.models import GlobalLinear

    g = GlobalLinear(3, 2, 8)
    x = torch.randn(4, 3, 8, 8)
    torch.testing.assert_close(g(x), g.mix(x))  # W = I, b = 0 at initialisation
    with torch.no_grad():  # a dense map: one input pixel can reach every output pixel
        g.weight.fill_(1.0)
        g.mix.weight.fill_(1.0)
    bump = torch.zeros(1, 3, 8, 8)
    bump[0, :, 0, 0] = 1.0
    diff = g(bump) - g(torch.zeros_like(bump))
    assert (diff.abs() > 0).all()
    with pytest.raises(ValueError, match="8x8"):
        g(torch.zeros(1, 3, 16, 16))

    m = EmbeddingModel("cnn4", 3, 1, 16, embedding_dim=8, width=4, global_features=5)
    assert m.tower("lensless").backbone.features[0][0].in_channels == 3 + 5
    assert m.tower("original").backbone.features[0][0].in_channels == 1
    out = m(lensless=_img(2, 3, 16), originals=[_img(2, 1, 16)])
    assert out["lensless"].shape == (2, 8) and out["originals"][0].shape == (2, 8)
    with pytest.raises(ConfigError, match="two towers"):
        EmbeddingModel("cnn4", 3, 3, 16, width=4, shared=True, global_features=4)


def test_lensless_contrast_appends_per_image_standardised_channels():
    from opticsfree.models.embedding import InputNorm

    norm = InputNorm(3, 3, contrast=True)
    x = _img(4, 3, 8)
    y = norm(x)
    assert y.shape == (4, 6, 8, 8)
    torch.testing.assert_close(y[:, :3], (x.float() / 255 - 0.5) / 0.25)
    own = y[:, 3:]
    torch.testing.assert_close(own.mean(dim=(2, 3)), torch.zeros(4, 3), atol=1e-5, rtol=0)
    torch.testing.assert_close(own.std(dim=(2, 3), unbiased=False), torch.ones(4, 3), atol=1e-2, rtol=0)
    # the same pattern at another brightness and contrast gives the same standardised channels
    pattern = torch.rand(1, 3, 8, 8)
    a, b = norm(0.1 + 0.4 * pattern)[:, 3:], norm(0.3 + 0.6 * pattern)[:, 3:]
    torch.testing.assert_close(a, b, atol=0.05, rtol=0)
    assert not torch.allclose(norm(0.1 + 0.4 * pattern)[:, :3], norm(0.3 + 0.6 * pattern)[:, :3], atol=0.05)

    m = EmbeddingModel("cnn4", 3, 3, 16, embedding_dim=8, width=4, lensless_contrast=True, global_features=2)
    assert m.tower("lensless").backbone.features[0][0].in_channels == 6 + 2
    assert m(lensless=_img(2, 3, 16))["lensless"].shape == (2, 8)
    with pytest.raises(ConfigError, match="two towers"):
        EmbeddingModel("cnn4", 3, 3, 16, width=4, shared=True, lensless_contrast=True)


@pytest.mark.parametrize("shape", [(3, 4, 31, 31), (2, 5, 16, 16), (2, 3, 7, 10), (1, 1, 2, 3)])
@pytest.mark.parametrize("ties", [False, True])
def test_max_pool2x2_equals_torch_max_pool_in_values_and_gradients(shape, ties):
    from opticsfree.models.pooling import max_pool2x2

    g = torch.Generator().manual_seed(sum(shape))
    # ties: integer values in 0..2, so most windows hold equal maxima (the first must win)
    x = (torch.randint(0, 3, shape, generator=g).float() if ties else torch.randn(shape, generator=g))
    grad = torch.randn(shape[0], shape[1], shape[2] // 2, shape[3] // 2, generator=g)
    xa, xb = x.clone().requires_grad_(), x.clone().requires_grad_()
    ya, yb = max_pool2x2(xa), torch.nn.functional.max_pool2d(xb, 2)
    ya.backward(grad)
    yb.backward(grad)
    assert torch.equal(ya, yb) and torch.equal(xa.grad, xb.grad)
    assert ya.grad_fn is not None and "MaxPool2x2" in type(ya.grad_fn).__name__  # the fast path ran
    with torch.no_grad():
        assert torch.equal(max_pool2x2(x), yb)


def test_max_pool2x2_falls_back_to_torch_where_the_fast_path_does_not_apply():
    from opticsfree.models.pooling import MaxPool2x2, max_pool2x2

    x = torch.randn(2, 3, 8, 8).to(memory_format=torch.channels_last).requires_grad_()
    y = max_pool2x2(x)
    assert "MaxPool2DWithIndices" in type(y.grad_fn).__name__
    torch.testing.assert_close(MaxPool2x2()(x), torch.nn.functional.max_pool2d(x, 2))
    with pytest.raises(RuntimeError):  # too small for a window: torch's own error
        max_pool2x2(torch.randn(1, 1, 1, 4))


def test_wvgg_pools_with_the_fast_path():
    from opticsfree.models.pooling import MaxPool2x2
    from opticsfree.models.whitened_vgg import WhitenedVGG

    net = WhitenedVGG(3, 4)
    assert sum(isinstance(m, MaxPool2x2) for m in net.modules()) == 3
    assert not any(isinstance(m, torch.nn.MaxPool2d) for m in net.modules())
    ref = WhitenedVGG(3, 4)
    ref.load_state_dict(net.state_dict())  # same keys: old checkpoints load
    for group in ref.groups:
        group[0][1] = torch.nn.MaxPool2d(2)
    x = torch.randn(3, 3, 32, 32)
    net.eval(), ref.eval()
    assert torch.equal(net(x), ref(x))


@pytest.mark.parametrize("size", [32, 16, 12])
def test_vit_shapes_and_every_token_sees_the_whole_image(size):
    from opticsfree.models.vit import HEAD_DIM, HybridViT

    m = build_backbone("vit", 3, width=8).eval()
    assert isinstance(m, HybridViT) and m.out_channels == 32 and m.out_channels % HEAD_DIM == 0
    x = torch.rand(2, 3, size, size, requires_grad=True)
    y = m(x)
    side = -(-size // 4)
    assert y.shape == (2, 32, side, side)
    # global receptive field: the first output token depends on the far corner of the image
    # (a weighted sum: the final layer norm makes a plain sum over channels constant)
    (y[0, :, 0, 0] * torch.linspace(-1, 1, y.shape[1])).sum().backward()
    assert x.grad[0, :, -1, -1].abs().sum() > 0 and x.grad[1].abs().sum() == 0
    e = EmbeddingModel("vit", 3, 3, size, embedding_dim=16, width=8, n_classes=4)
    out = e(lensless=_img(3, 3, size), originals=[_img(3, 3, size, 1)])
    assert out["lensless"].shape == (3, 16) and out["logits"].shape == (3, 4)
    with pytest.raises(ValueError, match="must be positive"):
        HybridViT(3, 0)
