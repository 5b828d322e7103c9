"""train_vae on bad data (too few images, NaN, wrong range), a late NaN loss, and VAE.sample in chunks."""

from __future__ import annotations

import pytest
import torch

from genvar_helpers import vae


def _images(n: int = 64, seed: int = 0) -> torch.Tensor:
    return torch.rand(n, 1, 28, 28, generator=torch.Generator().manual_seed(seed))


def _model() -> vae.VAE:
    torch.manual_seed(0)
    return vae.MLPVAE(latent_dim=4, hidden=(32,))


@pytest.mark.parametrize("n", [10, 0])
def test_fewer_images_than_one_batch_is_a_clear_error(n):
    with pytest.raises(ValueError, match=rf"train_images holds {n} images, fewer than one batch of 32.*batch_size"):
        vae.train_vae(_model(), _images(n), epochs=1, batch_size=32, progress=False)


def test_nan_pixels_are_named():
    images = _images()
    images[3, 0, 5, 5] = float("nan")
    with pytest.raises(ValueError, match=r"train_images contain NaN.*\(1 images\)"):
        vae.train_vae(_model(), images, epochs=1, batch_size=32, progress=False)


def test_images_outside_0_1_are_named_with_the_tanh_fix():
    tanh_range = _images() * 2 - 1
    tanh_range[0, 0, 0, :2] = torch.tensor([-1.0, 1.0])
    with pytest.raises(ValueError, match=r"train_images must lie in \[0, 1\].*got \[-1, 1\].*\(x \+ 1\) / 2"):
        vae.train_vae(_model(), tanh_range, epochs=1, batch_size=32, progress=False)
    val = torch.full((8, 1, 28, 28), 0.5)
    val[0, 0, 0, 0] = 1.5
    with pytest.raises(ValueError, match=r"val_images must lie in \[0, 1\].*got \[0.5, 1.5\]"):
        vae.train_vae(_model(), _images(), val, epochs=1, batch_size=32, progress=False)


def _nan_after(monkeypatch, train_steps: int) -> None:
    """Make the training loss NaN from training step `train_steps` on (validation stays finite)."""
    real, calls = vae._loss_of, [0]

    def flaky(model, x, beta=1.0):
        loss, recon, kl = real(model, x, beta)
        if model.training:
            calls[0] += 1
            if calls[0] > train_steps:
                loss = loss * float("nan")
        return loss, recon, kl

    monkeypatch.setattr(vae, "_loss_of", flaky)


def test_a_late_nan_keeps_the_history_and_restores_the_best_weights(monkeypatch):
    model, images = _model(), _images(64)
    _nan_after(monkeypatch, train_steps=6)  # 2 steps per epoch: epochs 1-3 finish, epoch 4 diverges
    with pytest.raises(FloatingPointError, match=r"at step 6.*best validation epoch.*err.history") as caught:
        vae.train_vae(model, images, images[:16], epochs=6, batch_size=32, lr=3e-3, progress=False)
    history = caught.value.history
    assert len(history["loss"]) == 3 and len(history["val"]) == 3, "the finished epochs are kept"
    monkeypatch.undo()
    assert vae.evaluate_elbo(model, images[:16])["neg_elbo"] == pytest.approx(min(history["val"]), abs=1e-4)
    assert not model.training


def test_a_nan_without_validation_still_returns_the_history(monkeypatch):
    _nan_after(monkeypatch, train_steps=2)
    with pytest.raises(FloatingPointError, match="at step 2") as caught:
        vae.train_vae(_model(), _images(64), epochs=3, batch_size=32, progress=False)
    assert len(caught.value.history["loss"]) == 1


# --------------------------------------------------------------------------- VAE.sample(n)


def test_sample_runs_in_chunks_and_keeps_the_seeded_output():
    model = _model()
    sizes: list[int] = []
    model.decoder.register_forward_pre_hook(lambda module, args: sizes.append(len(args[0])))
    images = model.sample(2500, generator=torch.Generator().manual_seed(1))
    assert images.shape == (2500, 1, 28, 28) and max(sizes) <= 1000, f"decoded in batches of {sizes}"
    z = torch.randn(2500, 4, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        assert torch.allclose(images, torch.sigmoid(model.decode(z)), atol=1e-6)


@pytest.mark.parametrize("n", [-1, 2.5, True])
def test_sample_rejects_a_bad_count(n):
    with pytest.raises(ValueError, match=r"n must be a whole number >= 0"):
        _model().sample(n)


def test_sample_zero_is_empty():
    assert _model().sample(0).shape == (0, 1, 28, 28)


@pytest.mark.parametrize("measure", ["evaluate_elbo", "active_units", "kl_per_dim", "posterior_stats"])
@pytest.mark.parametrize(
    ("images", "message"),
    [
        (torch.rand(8, 1, 28, 28) * 2 - 1, r"\(x \+ 1\) / 2"),
        (torch.full((8, 1, 28, 28), float("nan")), "NaN"),
        (torch.empty(0, 1, 28, 28), "empty"),
    ],
    ids=["tanh range", "nan", "empty"],
)
def test_vae_measures_reject_badly_scaled_or_broken_images(measure, images, message):
    model = vae.MLPVAE(latent_dim=2, hidden=(16,))
    with pytest.raises(ValueError, match=message):
        getattr(vae, measure)(model, images)
