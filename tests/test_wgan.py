"""Notebook 08 in the package: Wasserstein losses, the WGAN-GP penalty, clipping, spectral norms and `train_wgan`."""

from __future__ import annotations

import inspect
import math

import pytest
import torch
from torch import nn

from genvar_helpers import gan
from genvar_helpers.data import TensorBatches, ring_of_gaussians
from genvar_helpers.gan2d import (
    Discriminator2D,
    Generator2D,
    check_critic,
    clip_weights,
    gradient_penalty,
    wasserstein_critic_loss,
    wasserstein_generator_loss,
)


class Recorder(nn.Module):
    """A critic 0.5 * ||x||^2 per sample (gradient: x itself) that keeps the inputs it was called on."""

    def __init__(self) -> None:
        super().__init__()
        self.seen: list[torch.Tensor] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.seen.append(x.detach().clone())
        return 0.5 * x.pow(2).flatten(1).sum(dim=1)


def _pair(n: int = 64, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, 1, 4, 4, generator=g), torch.randn(n, 1, 4, 4, generator=g)


# --------------------------------------------------------------------------- losses and the gradient penalty


def test_wasserstein_losses_are_differences_of_mean_scores():
    real, fake = torch.tensor([1.0, 3.0]), torch.tensor([-2.0, 0.0, 1.0])
    assert wasserstein_critic_loss(real, fake).item() == pytest.approx(-1 / 3 - 2)  # mean fake - mean real
    assert wasserstein_generator_loss(fake).item() == pytest.approx(1 / 3)
    assert gan.wasserstein_critic_loss is wasserstein_critic_loss, "gan and gan2d share one implementation"


def test_penalty_of_a_linear_critic_is_exactly_its_weight_norm_minus_one_squared():
    torch.manual_seed(0)
    w = torch.randn(1, 4, 4, requires_grad=True)
    critic = lambda x: (w * x).sum(dim=(1, 2, 3))  # noqa: E731  gradient w at every x_hat, whatever alpha
    real, fake = _pair()
    expected = (w.norm() - 1) ** 2
    for seed in (1, 2):
        penalty = gradient_penalty(critic, real, fake, torch.Generator().manual_seed(seed))
        assert torch.allclose(penalty, expected, atol=1e-6), "penalty = (||w|| - 1)^2 exactly"
    penalty.backward()  # create_graph=True: the penalty trains the critic's weights
    assert torch.allclose(w.grad, 2 * (w.norm() - 1) * w / w.norm(), atol=1e-5), "d penalty / dw by hand"
    unit = lambda x: (w.detach() / w.detach().norm() * x).sum(dim=(1, 2, 3))  # noqa: E731
    assert gradient_penalty(unit, real, fake).item() < 1e-10, "a critic with gradient norm 1 pays nothing"


def test_alpha_is_uniform_and_drawn_once_per_sample():
    real = _pair(256)[0]
    fake = real - 1  # every feature of real - fake is 1, so alpha can be read off x_hat exactly
    critic = Recorder()
    penalty = gradient_penalty(critic, real, fake, torch.Generator().manual_seed(7))
    (x_hat,) = critic.seen
    alpha = (x_hat - fake) / (real - fake)  # x_hat = alpha x + (1 - alpha) x_fake
    per_sample = alpha.flatten(1)
    assert torch.allclose(per_sample, per_sample[:, :1].expand_as(per_sample), atol=1e-4), "one alpha per sample"
    assert per_sample.min() >= 0 and per_sample.max() <= 1, "alpha lies in [0, 1]"
    assert per_sample[:, 0].std() > 0.2, "alphas differ from sample to sample (Uniform(0, 1) has std 0.29)"

    def by_hand(draw) -> torch.Tensor:  # the critic's gradient at x_hat is x_hat itself
        a = draw((256, 1, 1, 1), generator=torch.Generator().manual_seed(7))
        return ((a * real + (1 - a) * fake).flatten(1).norm(dim=1) - 1).pow(2).mean()

    assert torch.allclose(penalty, by_hand(torch.rand), atol=1e-5), "alpha ~ torch.rand from the given generator"
    assert not torch.allclose(penalty, by_hand(torch.randn), atol=1e-2), "alpha is not drawn from N(0, 1)"


def test_gradient_penalty_rejects_mismatched_batches_and_packed_critics():
    real, fake = _pair(8)
    with pytest.raises(ValueError, match="same shape"):
        gradient_penalty(Recorder(), real, fake[:4])
    with pytest.raises(ValueError, match="one score per sample"):
        gradient_penalty(Discriminator2D(hidden=8, depth=1, pack=2), torch.randn(8, 2), torch.randn(8, 2))


def test_penalised_critic_estimates_the_wasserstein_distance_of_a_shift():
    """N(0, I) against N(m, I) with ||m|| = 3: W1 = 3. The penalty is soft, so the critic's slope L settles a
    little above 1 (maximising 3 L - 10 (L - 1)^2 gives L = 1.15) and its estimate near 3 x 1.15 = 3.45;
    an unpenalised critic just keeps growing."""
    shift = torch.tensor([3.0, 0.0])
    estimates = {}
    for weight in (10.0, 0.0):
        torch.manual_seed(0)
        critic = Discriminator2D(hidden=32, depth=2)
        opt = torch.optim.Adam(critic.parameters(), lr=2e-3, betas=(0.5, 0.9))
        for _ in range(150):
            real, fake = torch.randn(64, 2) + shift, torch.randn(64, 2)
            loss = wasserstein_critic_loss(critic(real), critic(fake))
            if weight:
                loss = loss + weight * gradient_penalty(critic, real, fake)
            opt.zero_grad()
            loss.backward()
            opt.step()
        with torch.no_grad():
            real, fake = torch.randn(4000, 2) + shift, torch.randn(4000, 2)
            estimates[weight] = (critic(real).mean() - critic(fake).mean()).item()
    assert abs(estimates[10.0] - 3.45) < 0.25, f"WGAN-GP estimate {estimates[10.0]:.2f}, expected 3.45 (W1 = 3)"
    assert estimates[0.0] > 10, f"without the penalty the estimate is unbounded; got {estimates[0.0]:.2f}"


# --------------------------------------------------------------------------- clipping and critic checks


def test_clip_weights_bounds_every_parameter():
    critic = gan.MLPDiscriminator(hidden=(16,), minibatch_std=False)
    with torch.no_grad():
        for p in critic.parameters():
            p.mul_(100)
    clip_weights(critic, 0.01)
    values = torch.cat([p.detach().flatten() for p in critic.parameters()])
    assert values.abs().max() <= 0.01 and (values.abs() == 0.01).any(), "every weight and bias in [-c, c]"
    for bad in (0, -0.1, float("inf"), True):
        with pytest.raises(ValueError, match="clip c must be a finite number > 0"):
            clip_weights(critic, bad)


def test_check_critic_refuses_critics_that_mix_samples_under_wgan_gp():
    with pytest.raises(ValueError, match="loss must be one of"):
        check_critic(Discriminator2D(), "hinge")
    with pytest.raises(ValueError, match="BatchNorm.*norm='layer'"):
        check_critic(gan.DCGANDiscriminator(ndf=4), "wgan-gp")
    with pytest.raises(ValueError, match="minibatch_std=False"):
        check_critic(gan.MLPDiscriminator(hidden=(8,)), "wgan-gp")  # minibatch std is on by default
    with pytest.raises(ValueError, match="pack=1"):
        check_critic(Discriminator2D(pack=2), "wgan-gp")
    check_critic(gan.DCGANDiscriminator(ndf=4), "wgan")  # the original WGAN critic had BatchNorm
    for ok in (gan.DCGANDiscriminator(ndf=4, norm="layer"), gan.DCGANDiscriminator(ndf=4, spectral_norm=True)):
        check_critic(ok, "wgan-gp")


def test_layer_norm_critic_scores_each_image_on_its_own():
    torch.manual_seed(0)
    x = torch.rand(6, 1, 28, 28)
    y = x.clone()
    y[1:] = torch.rand(5, 1, 28, 28)  # same first image, different batch mates
    for norm, independent in (("layer", True), ("batch", False)):
        d = gan.DCGANDiscriminator(ndf=4, norm=norm).train()
        assert torch.allclose(d(x)[0], d(y)[0]) == independent, f"norm={norm!r}"
    assert gan.DCGANDiscriminator().config["norm"] == "batch"
    assert gan.DCGANDiscriminator(spectral_norm=True).config["norm"] == "none", "notebook 05's default is kept"
    with pytest.raises(ValueError, match="norm must be"):
        gan.DCGANDiscriminator(norm="instance")


# --------------------------------------------------------------------------- spectral norms


def test_power_iteration_finds_the_largest_singular_value():
    g = torch.Generator().manual_seed(0)
    dense = torch.randn(64, 32, generator=g)
    exact = torch.linalg.matrix_norm(dense, ord=2).item()
    assert abs(gan.spectral_norm_estimate(dense, iterations=200, generator=g) - exact) < 1e-3
    kernel = torch.randn(8, 4, 3, 3, generator=g)  # read as the (8, 36) matrix
    exact = torch.linalg.matrix_norm(kernel.reshape(8, -1), ord=2).item()
    assert abs(gan.spectral_norm_estimate(kernel, iterations=200) - exact) < 1e-3
    with pytest.raises(ValueError, match="at least 2 dimensions"):
        gan.spectral_norm_estimate(torch.ones(5))
    with pytest.raises(ValueError, match="iterations must be a positive integer"):
        gan.spectral_norm_estimate(dense, iterations=0)


def test_power_iteration_agrees_with_torch_spectral_norm():
    torch.manual_seed(0)
    layer = nn.utils.parametrizations.spectral_norm(nn.Linear(32, 16))
    for _ in range(100):  # in training mode each read of `weight` runs one power iteration
        weight = layer.weight
    original = layer.parametrizations.weight.original
    torch_sigma = (original.norm() / weight.norm()).item()  # what the parametrization divided by
    assert abs(gan.spectral_norm_estimate(original, iterations=200) - torch_sigma) < 1e-3


@pytest.mark.parametrize(
    "make",
    [
        lambda: Discriminator2D(hidden=16, depth=2, spectral_norm=True),
        lambda: gan.MLPDiscriminator(hidden=(32, 16), spectral_norm=True),
    ],
)
def test_spectral_norm_option_holds_every_layer_at_one(make):
    torch.manual_seed(0)
    d = make().train()
    for _ in range(30):
        d(torch.rand(4, 1, 28, 28) if isinstance(d, gan.MLPDiscriminator) else torch.randn(4, 2))
    layers = [m for m in d.modules() if isinstance(m, nn.Linear)]
    assert layers and all(abs(gan.spectral_norm_estimate(m.weight) - 1) < 0.05 for m in layers)
    assert type(d)(**d.config).config == d.config


# --------------------------------------------------------------------------- the loop: train_wgan


class Counted:
    """A re-iterable source that counts the batches it hands out."""

    def __init__(self, batches: TensorBatches) -> None:
        self.batches, self.served = batches, 0
        self.batch_size = batches.batch_size

    def __len__(self) -> int:
        return len(self.batches)

    def __iter__(self):
        for item in self.batches:
            self.served += 1
            yield item


def _mnist_like(n: int = 64) -> Counted:
    images = torch.rand(n, 1, 28, 28, generator=torch.Generator().manual_seed(0))
    return Counted(TensorBatches(images, batch_size=16, seed=0))


def _tiny() -> tuple[gan.Generator, nn.Module]:
    torch.manual_seed(0)
    return gan.MLPGenerator(latent_dim=8, hidden=(16,)), gan.MLPDiscriminator(hidden=(16,), minibatch_std=False)


def test_wgan_gp_on_the_ring_learns_a_distance_then_closes_it():
    """The critic's estimate rises to about W1 between the untrained G and the ring (~0.85), then falls as
    G's points move onto the ring. TTUR (lr_d = 10 x lr) keeps the critic ahead in so short a run."""
    data = ring_of_gaussians(2000, seed=0)
    torch.manual_seed(0)
    G, D = Generator2D(hidden=32, depth=2), Discriminator2D(hidden=32, depth=2)
    run = gan.train_wgan(
        G, D, TensorBatches(data.samples, batch_size=128, seed=0), steps=100, lr=5e-4, lr_d=5e-3,
        betas=(0.5, 0.9), n_critic=3, images=False, snapshot_every=100, fixed_z=torch.randn(1000, 2),
        progress=False,
    )  # fmt: skip
    h = run.history
    assert list(h) == ["loss_D", "loss_G", "critic(x)", "critic(G(z))", "W_estimate", "gp"]
    assert all(len(v) == 100 and all(math.isfinite(x) for x in v) for v in h.values())
    assert all(
        abs(w - (r - f)) < 1e-5 for w, r, f in zip(h["W_estimate"], h["critic(x)"], h["critic(G(z))"], strict=True)
    )
    smooth = [sum(h["W_estimate"][i : i + 10]) / 10 for i in range(0, 100, 10)]
    peak = max(smooth)
    assert 0.5 < peak < 1.5, f"peak W estimate {peak:.2f}: a 1-Lipschitz critic gives about 0.85 here"
    assert smooth[-1] < 0.8 * peak, f"W estimate fell from {peak:.2f} to only {smooth[-1]:.2f}"
    assert sorted(run.snapshots) == [0, 100] and run.snapshots[0].shape == (1000, 2), "raw 2D points, fixed z"

    def to_ring(x: torch.Tensor) -> float:
        return torch.cdist(x, data.centres).min(dim=1).values.mean().item()

    before, after = to_ring(run.snapshots[0]), to_ring(run.snapshots[100])
    assert after < 0.8 * before, f"mean distance to the nearest mode went from {before:.2f} to {after:.2f}"


def test_wgan_clips_the_critic_and_takes_n_critic_steps_on_fresh_batches():
    source = Counted(TensorBatches(ring_of_gaussians(256, seed=0).samples, batch_size=16, seed=0))
    torch.manual_seed(0)
    G, D = Generator2D(hidden=8, depth=1), Discriminator2D(hidden=8, depth=1)
    seen: list[torch.Tensor] = []
    D.register_forward_hook(lambda module, args, out: seen.append(args[0].detach().clone()))
    run = gan.train_wgan(
        G, D, source, steps=4, loss="wgan", n_critic=3, lr=5e-5, optimizer="rmsprop", images=False, progress=False
    )
    assert len(seen) == 4 * (3 * 2 + 1), "per generator step: 3 critic steps (real, fake) and one G step"
    assert source.served == 12, "steps counts generator steps: 4 x n_critic = 12 real batches"
    reals = seen[0::7] + seen[2::7] + seen[4::7]
    assert all(not torch.equal(a, b) for i, a in enumerate(reals) for b in reals[:i]), "each critic step: new batch"
    assert torch.equal(seen[6], seen[5]), "the G step scores the last critic step's fakes (G unchanged since)"
    assert all(p.abs().max() <= 0.01 for p in D.parameters()), "critic weights clipped to [-0.01, 0.01]"
    assert set(run.history) == {"loss_D", "loss_G", "critic(x)", "critic(G(z))", "W_estimate"}
    assert all(len(v) == 4 for v in run.history.values()) and run.images_per_second > 0
    assert not (G.training or D.training), "both left in eval mode"


def test_wgan_gp_on_images_with_ema_and_snapshots():
    g, d = _tiny()
    source = _mnist_like()
    seen: list[float] = []
    d.register_forward_hook(lambda module, args, out: seen.append(args[0].min().item()))
    run = gan.train_wgan(g, d, source, steps=3, n_critic=2, lr_d=4e-4, ema_decay=0.9, snapshot_every=2, progress=False)
    h = run.history
    assert list(h) == ["loss_D", "loss_G", "critic(x)", "critic(G(z))", "W_estimate", "gp"]
    assert all(len(v) == 3 and all(math.isfinite(x) for x in v) for v in h.values())
    assert all(v > 0 for v in h["gp"]) and source.served == 6
    assert seen[0] < -0.9, "real images in [0, 1] reach the critic mapped to [-1, 1]"
    assert sorted(run.snapshots) == [0, 2, 3] and run.snapshots[3].shape == (64, 1, 28, 28)
    assert all(0 <= s.min() and s.max() <= 1 for s in run.snapshots.values()), "snapshots are images in [0, 1]"
    assert run.generator_ema is not None
    z = g.latent(64, torch.Generator().manual_seed(0))  # the default fixed_z (seed 0)
    assert torch.allclose(run.snapshots[3], run.generator_ema.sample(64, z=z)), "snapshots come from the EMA"
    assert not torch.allclose(run.snapshots[3], g.sample(64, z=z)), "... not from the online generator"


def test_ns_with_one_critic_step_is_train_gan_basic():
    """With the options at their plain values, the loop 08 teaches is the loop of notebook 04, step for step
    (the critic's dropout included: both draw their random numbers in the same order)."""
    runs, weights = [], []
    for train in (gan.train_gan_basic, gan.train_wgan):
        g, d = _tiny()  # d has dropout: the random numbers must be drawn in the same order
        extra = {"loss": "ns", "n_critic": 1} if train is gan.train_wgan else {}
        runs.append(train(g, d, _mnist_like(), steps=5, lr=2e-4, betas=(0.5, 0.999), progress=False, **extra))
        weights.append([p.detach().clone() for p in (*g.parameters(), *d.parameters())])
    assert runs[0].history == runs[1].history
    assert all(torch.equal(a, b) for a, b in zip(*weights, strict=True)), "identical weights after 5 steps"


def test_train_wgan_ns_with_a_spectral_norm_critic_on_2d_points():
    """The other arm of 08's comparison: non-saturating loss, spectral norm, TTUR, through the same loop."""
    torch.manual_seed(0)
    G, D = Generator2D(hidden=8, depth=1), Discriminator2D(hidden=8, depth=1, spectral_norm=True)
    batches = TensorBatches(ring_of_gaussians(128, seed=0).samples, batch_size=32, seed=0)
    run = gan.train_wgan(G, D, batches, steps=3, loss="ns", n_critic=1, lr_d=4e-4, images=False, progress=False)
    assert list(run.history) == ["loss_D", "loss_G", "D(x)", "D(G(z))"]
    assert all(0 < p < 1 for key in ("D(x)", "D(G(z))") for p in run.history[key])


def test_train_wgan_checks_its_options_before_training():
    g, d = _tiny()
    source = _mnist_like()
    bad = [
        ({"loss": "hinge"}, "loss must be one of"),
        ({"n_critic": 0}, "n_critic must be a positive integer"),
        ({"steps": 0}, "steps must be a positive integer"),
        ({"gp_weight": -1.0}, "gp_weight must be >= 0"),
        ({"loss": "wgan", "clip": 0}, "clip c must be a finite number > 0"),
        ({"optimizer": "sgd"}, "optimizer must be"),
    ]
    for options, message in bad:
        with pytest.raises(ValueError, match=message):
            gan.train_wgan(g, d, source, **{"steps": 1, **options}, progress=False)
    with pytest.raises(ValueError, match="minibatch_std=False"):
        gan.train_wgan(g, gan.MLPDiscriminator(hidden=(8,)), source, steps=1, progress=False)
    assert source.served == 0, "bad options are refused before any training"


def test_train_wgan_with_a_layer_norm_conv_critic():
    torch.manual_seed(0)
    g, d = gan.DCGANGenerator(latent_dim=8, ngf=4), gan.DCGANDiscriminator(ndf=4, norm="layer")
    run = gan.train_wgan(g, d, _mnist_like(32), steps=2, n_critic=1, progress=False)
    assert all(math.isfinite(x) for v in run.history.values() for x in v)


def test_the_loops_of_notebooks_03_and_05_teach_no_wasserstein_options():
    """The loop shown is the loop taught: 03 shows `train_gan_2d`, 05 shows `train_gan`; WGAN is 08's loop."""
    from genvar_helpers.gan2d import train_gan_2d

    for loop in (gan.train_gan, train_gan_2d):
        options = set(inspect.signature(loop).parameters)
        assert not options & {"loss", "n_critic", "clip", "gp_weight", "optimizer"}, loop.__name__
