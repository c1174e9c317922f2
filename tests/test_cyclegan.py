"""CycleGAN step: the fused step (three generator calls, one call per discriminator) against the
textbook formulas, and the generator options sized for small images."""

from __future__ import annotations

import contextlib

import pytest
import torch

from opticsfree.errors import ConfigError
from opticsfree.reconstruction.base import parse_options
from opticsfree.reconstruction.cyclegan import (
    CycleGANConfig,
    CycleGANMethod,
    reference_discriminator_losses,
    reference_generator_outputs,
    reference_train_step,
)
from opticsfree.reconstruction.generators import ResnetGenerator, default_generator_size

TINY = dict(width=4, n_blocks=1, d_width=4, pool_size=3)


pytestmark = pytest.mark.usefixtures("one_thread")


def method(cin: int, cout: int, seed: int = 0, **opts) -> CycleGANMethod:
    torch.manual_seed(seed)  # init_weights draws from the global RNG
    return CycleGANMethod(CycleGANConfig(**{**TINY, **opts}), cin, cout, 16, torch.device("cpu"),
                          torch.Generator().manual_seed(seed))


def batches(cin: int, cout: int, n: int = 3, m: int = 3):
    g = torch.Generator().manual_seed(1)
    return torch.rand(n, cin, 16, 16, generator=g) * 2 - 1, torch.rand(m, cout, 16, 16, generator=g) * 2 - 1


def grads(nets) -> list[torch.Tensor]:
    return [p.grad.clone() if p.grad is not None else torch.zeros_like(p) for n in nets for p in n.parameters()]


CASES = [  # (in channels, out channels, options): with and without the identity terms
    (3, 3, {}),
    (3, 3, {"residual": True}),
    (3, 3, {"padding": "zeros", "edge_kernel": 3}),
    (1, 3, {}),
]


@pytest.mark.parametrize("cin,cout,opts", CASES)
def test_fused_generator_outputs_losses_and_gradients_equal_the_textbook_ones(cin, cout, opts):
    """G([a; b; F(b)]) and F([b; a]) give the six images of six separate calls; the generator
    loss and its gradients (every generator weight) agree within float rounding."""
    a, b = batches(cin, cout)
    fused, ref = method(cin, cout, **opts), method(cin, cout, **opts)
    if opts.get("residual"):  # move away from the identity so that every term is non-trivial
        for m in (fused, ref):
            torch.manual_seed(5)
            for p in list(m.g_ab.parameters()) + list(m.g_ba.parameters()):
                p.data.add_(0.05 * torch.randn_like(p))
    g_f = fused.generator_outputs(a, b)
    g_r = reference_generator_outputs(ref, a, b)
    assert set(g_f) == set(g_r) == ({"fake_a", "fake_b", "rec_a", "rec_b"}
                                    | ({"idt_a", "idt_b"} if cin == cout else set()))
    for k in g_f:
        torch.testing.assert_close(g_f[k], g_r[k], rtol=1e-5, atol=1e-5, msg=k)
    t_f = fused.generator_loss(a, b, g_f)
    t_r = ref.generator_loss(a, b, g_r)
    for k in t_f:
        torch.testing.assert_close(t_f[k], t_r[k], rtol=1e-5, atol=1e-6, msg=k)
    assert (float(t_f["identity"].detach()) > 0) == (cin == cout)
    t_f["loss_g"].backward()
    t_r["loss_g"].backward()
    for x, y in zip(grads([fused.g_ab, fused.g_ba]), grads([ref.g_ab, ref.g_ba]), strict=True):
        torch.testing.assert_close(x, y, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("n,m", [(3, 3), (2, 4)])
def test_fused_discriminator_losses_and_gradients_equal_the_textbook_ones(n, m):
    """D([x; x~]) scores real and pooled images in one call; L_D and its gradients are those of
    two calls, also when the real and fake batches differ in size."""
    a, b = batches(3, 3, n, m)
    pa, pb = batches(3, 3, m, n)
    fused, ref = method(3, 3), method(3, 3)
    l_f = fused.discriminator_losses(a, b, pa, pb)
    l_r = reference_discriminator_losses(ref, a, b, pa, pb)
    for x, y in zip(l_f, l_r):
        torch.testing.assert_close(x, y, rtol=1e-5, atol=1e-6)
    sum(l_f).backward()
    sum(l_r).backward()
    for x, y in zip(grads([fused.d_a, fused.d_b]), grads([ref.d_a, ref.d_b]), strict=True):
        torch.testing.assert_close(x, y, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("cin,cout,opts", CASES)
def test_fused_train_steps_follow_the_textbook_steps(cin, cout, opts):
    """Three full steps (both Adam updates, the image pools) of the fused and the textbook step
    from the same state: the same loss terms and the same weights."""
    fused, ref = method(cin, cout, **opts), method(cin, cout, **opts)
    for step in range(3):
        a, b = batches(cin, cout)
        a, b = a.roll(step, 0), b.roll(-step, 0)
        t_f = fused.train_step(a, b, contextlib.nullcontext)
        t_r = reference_train_step(ref, a, b, contextlib.nullcontext)
        assert set(t_f) == set(t_r) == {"g_gan", "cycle", "identity", "loss_g", "d_a", "d_b"}
        for k in t_f:
            torch.testing.assert_close(t_f[k], t_r[k], rtol=1e-4, atol=1e-5, msg=f"step {step}: {k}")
    # weights: where the gradient has a signal. A convolution bias followed by instance
    # normalisation has a zero gradient in exact arithmetic; Adam turns its float noise into
    # steps of about lr in either direction, different for the two steps.
    opt_state = {**ref.opt_g.state, **ref.opt_d.state}
    for k, net in fused.networks().items():
        for (name, p), q in zip(net.named_parameters(), ref.networks()[k].parameters(), strict=True):
            signal = opt_state[q]["exp_avg_sq"].sqrt() > 1e-6
            assert signal.any() or name.endswith("bias"), f"{k}.{name}"
            torch.testing.assert_close(p[signal], q[signal], rtol=1e-4, atol=1e-5, msg=f"{k}.{name}")


def test_fused_step_under_bf16_autocast_tracks_the_textbook_step():
    """Under bf16 autocast the two steps round differently (batch sizes, a promoted concatenation),
    so they agree only to bf16 precision."""
    amp = lambda: torch.autocast("cpu", dtype=torch.bfloat16)  # noqa: E731
    a, b = batches(3, 3, 4, 4)
    fused, ref = method(3, 3, residual=True), method(3, 3, residual=True)
    t_f = fused.train_step(a, b, amp)
    t_r = reference_train_step(ref, a, b, amp)
    for k in t_f:
        torch.testing.assert_close(t_f[k], t_r[k], rtol=2e-2, atol=2e-3, msg=k)


def test_generator_edge_kernel_and_padding():
    for padding in ("reflect", "zeros"):
        for k in (1, 3, 5, 7):
            g = ResnetGenerator(3, 3, 4, 1, edge_kernel=k, padding=padding)
            assert g(torch.zeros(2, 3, 16, 16)).shape == (2, 3, 16, 16)
    assert not any(isinstance(m, torch.nn.ReflectionPad2d)
                   for m in ResnetGenerator(3, 3, 4, 1, padding="zeros").modules())
    with pytest.raises(ValueError, match="edge_kernel must be a positive odd number"):
        ResnetGenerator(3, 3, 4, 1, edge_kernel=4)
    with pytest.raises(ValueError, match="unknown padding 'same'"):
        ResnetGenerator(3, 3, 4, 1, padding="same")
    with pytest.raises(ConfigError, match=r"option edge_kernel for method cyclegan: must be odd \(the output "
                                          r"keeps the image size\) \(got 4\)"):
        parse_options(CycleGANConfig, {"edge_kernel": 4}, "cyclegan")
    with pytest.raises(ConfigError, match="option padding for method cyclegan"):
        parse_options(CycleGANConfig, {"padding": "same"}, "cyclegan")


def test_defaults_by_image_size_reach_the_saved_architecture():
    """None options take default_generator_size; the architecture in model.pt records them, so
    ``apply`` rebuilds the same generator."""
    for size in (32, 64):
        w, blocks, k, pad = default_generator_size(size)
        m = CycleGANMethod(CycleGANConfig(), 3, 3, size, torch.device("cpu"), torch.Generator().manual_seed(0))
        kw = m.inference()[0]["kwargs"]
        assert (kw["width"], kw["n_blocks"], kw["edge_kernel"], kw["padding"]) == (w, blocks, k, pad)
        g = ResnetGenerator(**kw)
        g.load_state_dict(m.g_ab.state_dict())
