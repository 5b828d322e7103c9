"""The hybrids of notebook 10 (`genvar_helpers.hybrid`): shapes and ranges, the parts of their losses, training
that lowers a loss, the cluster-conditioned GAN, and the `vae_gan` / `aae` / `cluster_gan` checkpoints (round trip
in a temporary folder; the committed ones once they exist)."""

from pathlib import Path

import pytest
import torch
from committed import load_committed

from genvar_helpers import checkpoints, hybrid

NOTEBOOKS = Path(__file__).resolve().parent.parent / "notebooks"
NAMES = {
    "vae_gan": "genvar_helpers.hybrid:VAEGAN",
    "aae": "genvar_helpers.hybrid:AAE",
    "cluster_gan": "genvar_helpers.hybrid:ClusterConditionalGenerator",
}


def _images(n: int = 64, seed: int = 0) -> torch.Tensor:
    """Blurry blobs in [0, 1], shaped like MNIST digits."""
    g = torch.Generator().manual_seed(seed)
    return torch.nn.functional.avg_pool2d(torch.rand(n, 1, 28, 28, generator=g), 5, 1, 2).clamp(0, 1) ** 2


@pytest.mark.parametrize(
    "model", [hybrid.VAEGAN(latent_dim=8, channels=8, hidden=16, ndf=8), hybrid.AAE(prior="mixture")]
)
def test_sample_and_reconstruct_shapes_and_range(model):
    samples = model.sample(5)
    assert samples.shape == (5, 1, 28, 28) and samples.min() >= 0 and samples.max() <= 1
    assert model.sample(0).shape == (0, 1, 28, 28)
    assert model.reconstruct(_images(3)).shape == (3, 1, 28, 28)


def test_feature_loss_is_zero_for_identical_inputs_and_positive_otherwise():
    model = hybrid.VAEGAN(latent_dim=4, channels=8, hidden=16, ndf=8)
    x = _images(6)
    logits, features = model.critic(x)
    assert logits.shape == (6,) and features.shape == (6, 2 * 8 * 7 * 7)
    assert hybrid.feature_loss(model.features(x), model.features(x)).item() == 0.0
    assert hybrid.feature_loss(model.features(x.flip(0)), model.features(x)).item() > 0
    with pytest.raises(ValueError, match="same shape"):
        hybrid.feature_loss(features[:3], features)


@pytest.mark.parametrize("prior", ["gaussian", "mixture", "ring"])
def test_prior_samplers_have_the_stated_means(prior):
    z, component = hybrid.sample_prior(prior, 20_000, generator=torch.Generator().manual_seed(0))
    assert z.shape == (20_000, 2) and component.shape == (20_000,)
    assert z.mean(0).abs().max() < 0.1, "every prior here is centred on the origin"
    if prior == "gaussian":
        assert (z.std(0) - 1).abs().max() < 0.03
    elif prior == "mixture":  # each component sits at its centre on the circle of radius 4, with std 0.5
        centres = hybrid.prior_centres("mixture")
        for k in range(10):
            assert (z[component == k].mean(0) - centres[k]).norm() < 0.05
        assert (z - centres[component]).std().sub(0.5).abs() < 0.02
    else:
        assert (z.norm(dim=1).mean() - 4).abs() < 0.01


def test_prior_checks_its_arguments():
    with pytest.raises(ValueError, match="prior must be one of"):
        hybrid.AAE(prior="uniform")
    with pytest.raises(ValueError, match="2D"):
        hybrid.AAE(latent_dim=3, prior="ring")


def test_vae_gan_training_lowers_its_reconstruction_loss():
    torch.manual_seed(0)
    model = hybrid.VAEGAN(latent_dim=8, channels=8, hidden=32, ndf=8)
    run = hybrid.train_vae_gan(model, _images(32), steps=40, batch_size=32, progress=False)
    pixel = run.history["pixel"]
    assert len(pixel) == 40 and run.generator_ema is not None
    assert sum(pixel[-5:]) / 5 < 0.9 * sum(pixel[:5]) / 5, "pixel reconstruction loss fell by over 10%"


def test_aae_training_lowers_its_reconstruction_loss():
    torch.manual_seed(0)
    model = hybrid.AAE(latent_dim=2, hidden=(64,), prior="ring", code_hidden=32)
    run = hybrid.train_aae(model, _images(32), steps=60, batch_size=32, progress=False)
    recon = run.history["recon"]
    assert set(run.history) == {"recon", "loss_D", "loss_E"}
    assert sum(recon[-5:]) / 5 < 0.9 * sum(recon[:5]) / 5, "reconstruction loss fell by over 10%"


def test_training_checks_its_inputs():
    model = hybrid.AAE(hidden=(16,))
    with pytest.raises(ValueError, match=r"lie in \[0, 1\]"):
        hybrid.train_aae(model, _images(8) * 3, steps=1, batch_size=4)
    with pytest.raises(ValueError, match="batch_size"):
        hybrid.train_aae(model, _images(8), steps=1, batch_size=16)


@pytest.mark.parametrize("name", NAMES)
def test_registered_for_notebook_10(name):
    assert checkpoints.TRAINED_MODELS[name] == "10_hybrids.ipynb"
    assert (NOTEBOOKS / checkpoints.TRAINED_MODELS[name]).exists()
    assert checkpoints.TRAINED_CLASSES[name] == NAMES[name]


@pytest.mark.parametrize(
    ("name", "model"),
    [("vae_gan", hybrid.VAEGAN(latent_dim=6, channels=8, hidden=16, ndf=8)), ("aae", hybrid.AAE(prior="mixture"))],
)
def test_save_and_load_round_trip(name, model, tmp_path, monkeypatch):
    monkeypatch.setenv(checkpoints.WEIGHTS_ENV, str(tmp_path))
    meta = {"images_seen": 640, "wall_seconds": 1.5, "protocol": {"fd": 2.0}, "data_source": "bundled"}
    checkpoints.save_trained(model, name, meta, force=True)
    loaded = checkpoints.load_trained(name, device="cpu")
    assert type(loaded) is type(model) and loaded.config == model.config
    assert loaded.meta["images_seen"] == 640
    for (key, a), b in zip(model.state_dict().items(), loaded.state_dict().values(), strict=True):
        assert torch.equal(a, b), key
    g = torch.Generator().manual_seed(3)
    assert torch.equal(model.sample(4, generator=g), loaded.sample(4, generator=torch.Generator().manual_seed(3)))


@pytest.mark.parametrize("name", NAMES)
def test_committed_checkpoint_loads_and_samples(name):
    model = load_committed(name)
    assert model.meta["images_seen"] > 0 and model.meta["wall_seconds"] > 0


def test_cluster_codes_groups_digits_that_the_encoder_codes_alike():
    class TwoBlobCoder(torch.nn.Module):
        """An 'encoder' whose mean is the image's brightness: dark and bright images fall in two clusters."""

        device = torch.device("cpu")

        def encode(self, x):
            mean = x.flatten(1).mean(1, keepdim=True)
            return mean, torch.zeros_like(mean)

    images = torch.cat([torch.full((30, 1, 28, 28), 0.1), torch.full((10, 1, 28, 28), 0.9)])
    assignments, shares = hybrid.cluster_codes(TwoBlobCoder(), images, k=2)
    assert assignments.shape == (40,) and assignments.dtype == torch.long
    assert len(set(assignments[:30].tolist())) == 1 and len(set(assignments[30:].tolist())) == 1
    assert assignments[0] != assignments[-1]
    assert sorted(shares.tolist()) == pytest.approx([0.25, 0.75])
    with pytest.raises(ValueError, match="k must lie"):
        hybrid.cluster_codes(TwoBlobCoder(), images, k=1)


def test_cluster_generator_samples_clusters_by_their_shares():
    model = hybrid.ClusterConditionalGenerator(ngf=8, n_classes=5)
    model.cluster_shares.copy_(torch.tensor([0.0, 0.0, 1.0, 0.0, 0.0]))
    torch.manual_seed(0)
    z = model.latent(6)
    unconditional = model.sample(6, z=z)
    assert unconditional.shape == (6, 1, 28, 28) and unconditional.min() >= 0 and unconditional.max() <= 1
    assert torch.equal(unconditional, model.sample(6, labels=torch.full((6,), 2), z=z)), "all mass on cluster 2"
    assert not torch.equal(unconditional, model.sample(6, labels=torch.zeros(6, dtype=torch.long), z=z))
    with pytest.raises(ValueError, match="labels must lie"):
        model.sample(2, labels=torch.tensor([0, 5]))


def test_committed_cluster_gan_holds_its_cluster_shares():
    model = load_committed("cluster_gan")
    assert model.cluster_shares.sum().item() == pytest.approx(1.0, abs=1e-5)
    assert (model.cluster_shares > 0).all() and len(model.cluster_shares) == model.meta["n_clusters"]


def test_cluster_gan_round_trip_keeps_its_shares(tmp_path, monkeypatch):
    monkeypatch.setenv(checkpoints.WEIGHTS_ENV, str(tmp_path))
    model = hybrid.ClusterConditionalGenerator(ngf=8, n_classes=4)
    model.cluster_shares.copy_(torch.tensor([0.1, 0.2, 0.3, 0.4]))
    checkpoints.save_trained(model, "cluster_gan", {"n_clusters": 4, "data_source": "bundled"}, force=True)
    loaded = checkpoints.load_trained("cluster_gan", device="cpu")
    assert type(loaded) is hybrid.ClusterConditionalGenerator and loaded.config == model.config
    assert torch.equal(loaded.cluster_shares, model.cluster_shares)
