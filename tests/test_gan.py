"""GAN models and training loop (notebooks 04 and 05): shapes, ranges, the sample contract, losses, NaN guard."""

from __future__ import annotations

import pytest
import torch
from committed import load_committed

from genvar_helpers import gan

GENERATORS = [
    lambda: gan.MLPGenerator(latent_dim=8, hidden=(32, 64)),
    lambda: gan.DCGANGenerator(latent_dim=8, ngf=8),
]
DISCRIMINATORS = [
    lambda: gan.MLPDiscriminator(hidden=(64, 32)),
    lambda: gan.MLPDiscriminator(hidden=(64, 32), dropout=0.0, minibatch_std=False),
    lambda: gan.DCGANDiscriminator(ndf=8),
    lambda: gan.DCGANDiscriminator(ndf=8, minibatch_std=True),
]


@pytest.mark.parametrize("make", GENERATORS)
def test_generator_forward_is_tanh_range_images(make):
    torch.manual_seed(0)
    g = make()
    out = g(torch.randn(5, g.latent_dim) * 3)
    assert out.shape == (5, 1, 28, 28)
    assert out.min() >= -1 and out.max() <= 1
    assert out.min() < 0, "tanh outputs should use the negative half of [-1, 1]"
    assert g.config["latent_dim"] == g.latent_dim
    rebuilt = type(g)(**g.config)
    assert [p.shape for p in rebuilt.parameters()] == [p.shape for p in g.parameters()]


@pytest.mark.parametrize("make", GENERATORS)
def test_sample_contract(make):
    g = make().train()
    x = g.sample(7)
    assert x.shape == (7, 1, 28, 28) and x.device == g.device
    assert x.min() >= 0 and x.max() <= 1
    assert not x.requires_grad
    assert g.training, "sample() must restore training mode"
    g.eval()
    g.sample(3)
    assert not g.training, "sample() must restore eval mode"
    z = torch.randn(4, g.latent_dim)
    assert torch.allclose(g.sample(4, z=z), (g(z) + 1) / 2), "sample(z=...) is G(z) mapped to [0, 1]"


@pytest.mark.parametrize("make", DISCRIMINATORS)
def test_discriminator_returns_unbounded_logits(make):
    torch.manual_seed(0)
    d = make()
    logits = d(torch.rand(6, 1, 28, 28) * 2 - 1)
    assert logits.shape == (6,)
    with torch.no_grad():
        for p in d.parameters():
            p.mul_(50)
    big = d(torch.rand(6, 1, 28, 28) * 2 - 1)
    assert big.abs().max() > 1, "a discriminator that outputs logits is not squashed into [0, 1]"


def test_losses_match_their_formulas():
    real, fake = torch.tensor([2.0, -1.0]), torch.tensor([0.5, -3.0])
    d_expected = -torch.log(torch.sigmoid(real)).mean() - torch.log(1 - torch.sigmoid(fake)).mean()
    assert torch.allclose(gan.discriminator_loss(real, fake), d_expected)
    assert torch.allclose(gan.generator_loss(fake), -torch.log(torch.sigmoid(fake)).mean())
    smoothed = gan.discriminator_loss(real, fake, real_target=0.9)
    assert smoothed > gan.discriminator_loss(real, fake), "label smoothing penalises confident real logits"


def test_diff_augment_keeps_shape_range_and_gradients():
    torch.manual_seed(0)
    x = (torch.rand(16, 1, 28, 28) * 2 - 1).requires_grad_()
    y = gan.diff_augment(x)
    assert y.shape == x.shape and y.min() >= -1 and y.max() <= 1
    assert not torch.equal(y, x), "augmentation changed the images"
    assert (y == -1).float().mean() > (x == -1).float().mean(), "padding and cut-out fill with the background -1"
    y.sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0, "augmentation is differentiable"
    same = gan.diff_augment(x.detach(), translation=0, cutout=0)
    assert torch.equal(same, x.detach())


def toy_batches(n: int = 64, batch_size: int = 32) -> list[tuple[torch.Tensor]]:
    """A toy 'data set': bright squares in [0, 1], two batches per epoch."""
    images = torch.zeros(n, 1, 28, 28)
    images[:, :, 8:20, 8:20] = 1
    return [(images[i : i + batch_size],) for i in range(0, n, batch_size)]


def test_training_records_history_and_lowers_discriminator_loss():
    torch.manual_seed(0)
    g, d = gan.MLPGenerator(latent_dim=8, hidden=(32,)), gan.MLPDiscriminator(hidden=(64,), dropout=0.0)
    run = gan.train_gan(g, d, toy_batches(), epochs=15, lr=1e-3, snapshot_every=10, progress=False)
    assert set(run.history) == {"loss_D", "loss_G", "D(x)", "D(G(z))"}
    assert all(len(v) == 30 for v in run.history.values())
    start, end = sum(run.history["loss_D"][:3]) / 3, sum(run.history["loss_D"][-3:]) / 3
    assert end < start - 0.2, f"D loss should fall on an easy toy batch: {start:.3f} -> {end:.3f}"
    assert sorted(run.snapshots) == [0, 10, 20, 30]
    assert run.snapshots[30].shape == (64, 1, 28, 28) and run.images_per_second > 0
    assert not g.training and not d.training


def test_training_is_seeded_and_ema_differs():
    def once() -> gan.GANRun:
        torch.manual_seed(123)
        g, d = gan.DCGANGenerator(latent_dim=8, ngf=4), gan.DCGANDiscriminator(ndf=4)
        return gan.train_gan(
            g, d, toy_batches(), steps=3, seed=7, ema_decay=0.9, augment=gan.diff_augment, progress=False
        )

    a, b = once(), once()
    assert a.history == b.history, "same seed, same history"
    g_ema = a.generator_ema
    assert g_ema is not None and isinstance(g_ema, gan.DCGANGenerator)
    assert not any(p.requires_grad for p in g_ema.parameters())


def test_spectral_norm_discriminator_has_unit_spectral_norms_and_no_batchnorm():
    torch.manual_seed(0)
    d = gan.DCGANDiscriminator(ndf=8, minibatch_std=True, spectral_norm=True)
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in d.modules())
    for _ in range(20):  # each training-mode forward pass runs one power iteration
        d(torch.rand(4, 1, 28, 28))
    for conv in (d.net[0], d.net[2], d.head):
        sigma = torch.linalg.matrix_norm(conv.weight.detach().flatten(1), ord=2).item()
        assert abs(sigma - 1) < 0.05, f"largest singular value {sigma:.3f}, expected 1"
    original = d.net[2].parametrizations.weight.original
    assert abs(original.std().item() - 0.02) < 0.005, "DCGAN init is applied before spectral normalisation"


def test_r1_penalty_is_logged_and_validated():
    g, d = gan.DCGANGenerator(latent_dim=8, ngf=4), gan.DCGANDiscriminator(ndf=4, spectral_norm=True)
    run = gan.train_gan(g, d, toy_batches(), steps=4, r1_weight=1.0, progress=False)
    assert len(run.history["r1"]) == 4 and all(v > 0 for v in run.history["r1"])
    with pytest.raises(ValueError, match="r1_weight"):
        gan.train_gan(g, d, toy_batches(), steps=1, r1_weight=-1.0, progress=False)


def test_minibatch_std_has_finite_gradients_when_a_feature_has_no_spread():
    h = torch.randn(8, 3, 4, 4)
    h[:, 0] = 1.0  # one channel identical across the batch: zero variance
    h.requires_grad_(True)
    out = gan.MinibatchStd()(h)
    (grad,) = torch.autograd.grad(out[:, -1].sum(), h, create_graph=True)
    (second,) = torch.autograd.grad(grad.pow(2).sum(), h)  # the double backward that R1 needs
    assert torch.isfinite(grad).all() and torch.isfinite(second).all()
    expected = (h.detach().var(dim=0, unbiased=False) + 1e-8).sqrt().mean()
    assert torch.allclose(out[0, -1], expected.expand(4, 4))


def test_nan_guard_names_the_step():
    g, d = gan.MLPGenerator(latent_dim=8, hidden=(16,)), gan.MLPDiscriminator(hidden=(16,))
    with torch.no_grad():
        d.net[1].weight.fill_(float("nan"))
    with pytest.raises(FloatingPointError, match="discriminator loss became nan at step 0"):
        gan.train_gan(g, d, toy_batches(), steps=2, progress=False)


def test_amp_and_compile_switch_off_on_cpu(capsys):
    g, d = gan.MLPGenerator(latent_dim=8, hidden=(16,)), gan.MLPDiscriminator(hidden=(16,))
    run = gan.train_gan(g, d, toy_batches(), steps=2, amp=True, compile=True, progress=False)
    assert "only on CUDA" in capsys.readouterr().out
    assert len(run.history["loss_G"]) == 2


def test_train_gan_needs_epochs_or_steps():
    g, d = gan.MLPGenerator(latent_dim=8, hidden=(16,)), gan.MLPDiscriminator(hidden=(16,))
    with pytest.raises(ValueError, match="exactly one"):
        gan.train_gan(g, d, toy_batches(), progress=False)


@pytest.mark.parametrize("name", ["gan_mlp", "dcgan"])
def test_committed_checkpoint_loads_and_samples(name):
    g = load_committed(name)
    assert isinstance(g, gan.Generator)
    x = g.sample(6)
    assert x.shape == (6, 1, 28, 28) and x.min() >= 0 and x.max() <= 1
    assert x.std() > 0.1, "samples of a trained generator are not blank"
    assert (x[0] - x[1]).abs().mean() > 0.01, "two samples differ"
