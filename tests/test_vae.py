"""VAE package code: the loss, model shapes and ranges, training, the NaN guard, the latent explorer, checkpoints."""

import math

import numpy as np
import pytest
import torch
from committed import load_committed

from genvar_helpers import vae


def _images(n: int = 64, seed: int = 0) -> torch.Tensor:
    """Grey-level 'digits': a bright blob at a random place, values in [0, 1]."""
    g = torch.Generator().manual_seed(seed)
    yy, xx = torch.meshgrid(torch.arange(28.0), torch.arange(28.0), indexing="ij")
    centres = 8 + 12 * torch.rand(n, 2, generator=g)
    d2 = (yy - centres[:, 0, None, None]) ** 2 + (xx - centres[:, 1, None, None]) ** 2
    return torch.exp(-d2 / 18).unsqueeze(1).clamp(0, 1)


MODELS = [lambda: vae.MLPVAE(latent_dim=8, hidden=(64,)), lambda: vae.ConvVAE(latent_dim=8, channels=8, hidden=32)]


def test_loss_is_recon_plus_kl_and_matches_a_direct_computation():
    torch.manual_seed(0)
    x = vae.binarize(_images(16))
    logits, mu, logvar = torch.randn(16, 1, 28, 28), torch.randn(16, 5), torch.randn(16, 5)
    loss, recon, kl = vae.vae_loss(logits, x, mu, logvar)
    assert torch.allclose(loss, recon + kl)
    p = torch.sigmoid(logits)
    direct = -(x * p.log() + (1 - x) * (1 - p).log()).sum(dim=(1, 2, 3)).mean()
    assert torch.allclose(recon, direct, rtol=1e-4), "recon is the Bernoulli NLL summed over pixels, batch mean"
    warm, recon_w, kl_w = vae.vae_loss(logits, x, mu, logvar, beta=0.25)
    assert torch.allclose(warm, recon_w + 0.25 * kl_w) and torch.allclose(kl_w, kl)


def test_kl_is_nonnegative_and_zero_only_at_the_prior():
    torch.manual_seed(1)
    kl = vae.gaussian_kl(torch.randn(1000, 4), torch.randn(1000, 4))
    assert (kl >= 0).all()
    assert vae.gaussian_kl(torch.zeros(3, 4), torch.zeros(3, 4)).abs().max() == 0
    assert vae.gaussian_kl(torch.full((1, 1), 0.1), torch.zeros(1, 1)).item() == pytest.approx(0.005)


def test_kl_matches_monte_carlo():
    torch.manual_seed(2)
    mu, logvar = torch.tensor([0.7, -1.2, 0.0]), torch.tensor([-0.5, 0.3, -2.0])
    z = mu + (0.5 * logvar).exp() * torch.randn(400_000, 3)
    log_q = -0.5 * (math.log(2 * math.pi) + logvar + (z - mu) ** 2 / logvar.exp())
    log_p = -0.5 * (math.log(2 * math.pi) + z**2)
    mc = (log_q - log_p).mean(dim=0)
    assert torch.allclose(vae.gaussian_kl(mu, logvar), mc, atol=0.01)


@pytest.mark.parametrize("make", MODELS, ids=["mlp", "conv"])
def test_shapes_and_ranges(make):
    model = make()
    x = _images(5)
    mu, logvar = model.encode(x)
    assert mu.shape == logvar.shape == (5, 8)
    logits, mu2, _ = model(x)
    assert logits.shape == (5, 1, 28, 28) and mu2.shape == (5, 8)
    assert model.decode(torch.randn(3, 8)).shape == (3, 1, 28, 28)
    samples = model.sample(7)
    assert samples.shape == (7, 1, 28, 28) and samples.min() >= 0 and samples.max() <= 1
    assert samples.device == model.device
    rebuilt = type(model)(**model.config)
    assert sum(p.numel() for p in rebuilt.parameters()) == sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize("make", MODELS, ids=["mlp", "conv"])
def test_a_few_epochs_lower_the_loss(make):
    torch.manual_seed(0)
    model = make()
    images = _images(256)
    before = vae.evaluate_elbo(model, images[:64])["neg_elbo"]
    history = vae.train_vae(model, images, images[:64], epochs=4, batch_size=32, lr=3e-3, progress=False)
    assert len(history["loss"]) == 4 and len(history["val"]) == 4
    assert history["val"][-1] < before - 50, f"validation -ELBO fell by at least 50 nats ({before:.0f} -> ...)"
    assert history["loss"][-1] < history["loss"][0]


def test_warmup_and_early_stopping_restore_the_best_weights():
    torch.manual_seed(0)
    model = vae.MLPVAE(latent_dim=4, hidden=(32,))
    images = _images(128)
    history = vae.train_vae(model, images, images[:32], epochs=6, batch_size=32, warmup_epochs=2, progress=False)
    assert history["beta"][0] == pytest.approx(0.5) and history["beta"][-1] == 1.0
    best = min(v for v, b in zip(history["val"], history["beta"], strict=True) if b >= 1)
    assert vae.evaluate_elbo(model, images[:32])["neg_elbo"] == pytest.approx(best, abs=1e-4)


def test_nan_guard_names_the_step():
    model = vae.MLPVAE(latent_dim=4, hidden=(16,))
    with torch.no_grad():
        model.decoder[1].weight.fill_(float("nan"))
    with pytest.raises(FloatingPointError, match="at step 0"):
        vae.train_vae(model, _images(64), epochs=1, batch_size=32, progress=False)


def test_explorer_callback_decodes_the_chosen_code():
    torch.manual_seed(0)
    model = vae.MLPVAE(latent_dim=3, hidden=(16,)).eval()
    base = torch.tensor([0.5, -1.0, 2.0])
    image = vae.explorer_image(model, base, {0: 1.5, 2: -0.3})
    expected = torch.sigmoid(model.decode(torch.tensor([[1.5, -1.0, -0.3]])))[0, 0].detach().numpy()
    assert isinstance(image, np.ndarray) and image.shape == (28, 28)
    assert np.allclose(image, expected, atol=1e-6)
    assert torch.equal(base, torch.tensor([0.5, -1.0, 2.0])), "the callback does not modify the base code"
    ui = vae.latent_explorer(model, base, dims=[0, 1])  # builds headlessly
    assert len(ui.children[0].children) == 2


def test_traversal_codes_and_latent_plane():
    codes = vae.traversal_codes(torch.zeros(4), dims=[1, 3], values=[-1.0, 0.0, 2.0])
    assert codes.shape == (6, 4)
    assert codes[:3, 1].tolist() == [-1.0, 0.0, 2.0] and codes[3:, 3].tolist() == [-1.0, 0.0, 2.0]
    assert codes[:3, 3].abs().sum() == 0
    plane = vae.latent_plane(2.0, 5)
    assert plane.shape == (25, 2) and plane[0].tolist() == [-2.0, 2.0] and plane[-1].tolist() == [2.0, -2.0]


def test_active_units_and_kl_per_dim():
    torch.manual_seed(0)
    model = vae.MLPVAE(latent_dim=4, hidden=(16,))
    with torch.no_grad():  # make dimension 2 ignore the input: posterior = prior there
        head = model.encoder[-1]
        head.weight[[2, 6]] = 0
        head.bias[[2, 6]] = 0
    count, variances = vae.active_units(model, _images(100), threshold=1e-6)
    assert count == 3 and variances[2] == 0
    kl = vae.kl_per_dim(model, _images(100))
    assert kl.shape == (4,) and kl[2].abs() < 1e-7 and (kl >= 0).all()


def test_train_val_split_is_disjoint():
    images = torch.arange(50.0).reshape(50, 1, 1, 1)
    train, val = vae.train_val_split(images, 10, seed=3)
    assert len(train) == 40 and len(val) == 10
    assert set(train.flatten().tolist()).isdisjoint(val.flatten().tolist())


@pytest.mark.parametrize("name", ["vae_mlp", "vae_conv"])
def test_committed_checkpoint_loads_and_samples(name):
    load_committed(name)


def test_random_shift_moves_whole_pixels():
    x = _images(32)
    shifted = vae.random_shift(x, 1, torch.Generator().manual_seed(0))
    assert shifted.shape == x.shape and torch.allclose(shifted.sum((1, 2, 3)), x.sum((1, 2, 3)))
    assert set(shifted.unique().tolist()) <= set(x.unique().tolist()), "no interpolation: grey levels are kept"
    assert not torch.equal(shifted, x) and torch.equal(vae.random_shift(x, 0), x)
