"""Hybrids of the two families (notebook 10): a VAE-GAN, an adversarial autoencoder and a GAN conditioned on a
VAE's clusters, with their training loops.

Both reuse the parts of notebooks 05-08: the encoder and decoder of `vae.ConvVAE` / `vae.MLPVAE`, the
Bernoulli decoder (logits; `sample(n)` returns pixel means in [0, 1]), `vae.gaussian_kl`, the discriminator
of `gan.DCGANDiscriminator`, the GAN losses, `gan.ema_update`, `gan.cycle_batches` and `data.TensorBatches`.
Losses are sums over pixels (or features), means over the batch, in nats per image.
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from .conditional import ConditionalGenerator
from .data import TensorBatches
from .gan import (
    DCGANDiscriminator,
    GANRun,
    cycle_batches,
    discriminator_loss,
    ema_update,
    generator_loss,
    to_tanh_range,
)
from .gan2d import mlp
from .runtime import check_count, check_finite
from .vae import IMAGE_SHAPE, MLPVAE, ConvVAE, binarize, gaussian_kl

PRIORS = ("gaussian", "mixture", "ring")


def _check_batch(images: torch.Tensor, batch_size: int, steps: int) -> None:
    """Training images (n, 1, 28, 28) in [0, 1], at least one batch of them, and a positive step count."""
    if steps < 1 or batch_size < 1:
        raise ValueError(f"steps and batch_size must be >= 1; got steps={steps}, batch_size={batch_size}")
    if images.ndim != 4 or tuple(images.shape[1:]) != IMAGE_SHAPE or len(images) < batch_size:
        raise ValueError(
            f"images must be (n, 1, 28, 28) with n >= batch_size = {batch_size}; got {tuple(images.shape)}: "
            "pass MNIST images as load_mnist returns them, or a smaller batch_size"
        )
    if not torch.isfinite(images).all() or images.min() < 0 or images.max() > 1:
        raise ValueError("images must be finite and lie in [0, 1]: divide bytes by 255, map tanh output by (x + 1) / 2")


def pixel_nll(logits: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """-log p(x|z) of a Bernoulli decoder: binary cross-entropy summed over pixels, batch mean, nats per image."""
    return F.binary_cross_entropy_with_logits(logits, x, reduction="none").flatten(1).sum(1).mean()


# --------------------------------------------------------------------------- VAE-GAN (Larsen et al. 2016)


class VAEGAN(ConvVAE):
    """A conv VAE (encoder, decoder, `sample`, `reconstruct` inherited) and a DCGAN discriminator, trained together.

    `features(x)` is the discriminator's last hidden layer, D_l(x) (2 ndf maps of 7x7): the space in which
    `feature_loss` measures reconstructions. The discriminator is saved with the model but plays no part in
    `sample` or `reconstruct`.
    """

    def __init__(self, latent_dim: int = 20, channels: int = 32, hidden: int = 128, ndf: int = 32) -> None:
        super().__init__(latent_dim=latent_dim, channels=channels, hidden=hidden)
        self.config = {"latent_dim": latent_dim, "channels": channels, "hidden": hidden, "ndf": ndf}
        self.discriminator = DCGANDiscriminator(ndf=ndf, norm="layer")  # per-sample norm: D_l(x) ignores the batch

    def features(self, images: torch.Tensor) -> torch.Tensor:
        """D_l(x) for images in [0, 1]: the discriminator's hidden feature maps, flattened to (n, 2 ndf 7 7)."""
        return self.discriminator.net(to_tanh_range(images)).flatten(1)

    def critic(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """D(x) and D_l(x) for images in [0, 1]: (one logit per image, the flattened features), in one pass."""
        hidden = self.discriminator.net(to_tanh_range(images))
        return self.discriminator.head(self.discriminator.minibatch_std(hidden)).flatten(), hidden.flatten(1)


def feature_loss(features: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """-log N(D_l(x); D_l(x~), I) up to its constant: 0.5 ||D_l(x) - D_l(x~)||^2 summed over features, batch mean.

    Larsen et al.'s reconstruction error: a distance between what the discriminator sees, not between pixels.
    `features` = D_l(x~) of the reconstructions, `target` = D_l(x) of their inputs, each (n, features).
    """
    if features.shape != target.shape:
        raise ValueError(
            f"features and target must have the same shape; got {tuple(features.shape)}, {tuple(target.shape)}"
        )
    return 0.5 * (features - target).pow(2).sum(1).mean()


def train_vae_gan(
    model: VAEGAN,
    images: torch.Tensor,
    *,
    steps: int,
    batch_size: int = 64,
    feature_weight: float = 1.0,
    adversarial_weight: float = 1.0,
    lr: float = 1e-3,
    lr_d: float = 2e-4,
    ema_decay: float = 0.995,
    seed: int = 0,
    progress: bool = True,
) -> GANRun:
    """Train a VAE-GAN; each step one discriminator update, then one update of the encoder and decoder.

    Encoder + decoder minimise, in nats per image (x binarised for the encoder and the pixel term):
        -log p(x|z) [pixels] + KL(q(z|x) || p(z)) + feature_weight * feature_loss(x, x~)
        + adversarial_weight * (-log D(x~) - log D(x_p)),
    with x~ = Dec(z), z ~ q(z|x) (a reconstruction) and x_p = Dec(z_p), z_p ~ p(z) (a sample). The first two
    terms are the negative ELBO of notebook 06. D minimises -log D(x) - log(1 - D(x~)) - log(1 - D(x_p)).
    Returns a `GANRun`: per-step history, seconds, images per second and `generator_ema`, an exponential
    moving average of the whole model (`ema_decay`), which is the one to sample from.
    """
    _check_batch(images, batch_size, steps)
    torch.manual_seed(seed)
    device = model.device
    d_params = list(model.discriminator.parameters())
    vae_params = [p for name, p in model.named_parameters() if not name.startswith("discriminator.")]
    opt = torch.optim.Adam(vae_params, lr=lr)
    opt_d = torch.optim.Adam(d_params, lr=lr_d, betas=(0.5, 0.999))
    ema = copy.deepcopy(model).requires_grad_(False)
    keys = ("pixel", "kl", "feature", "adversarial", "loss_D", "D(x)", "D(x_p)")
    rows: list[torch.Tensor] = []
    batches = TensorBatches(images, batch_size=batch_size, device=device, seed=seed)
    model.train()
    start = time.perf_counter()
    for step, real in enumerate(tqdm(cycle_batches(batches, steps), total=steps, desc="VAE-GAN", disable=not progress)):
        x_bin, n = binarize(real), len(real)
        mu, logvar = model.encode(x_bin)
        logits = model.decode(mu + torch.exp(0.5 * logvar) * torch.randn_like(mu))
        x_tilde = torch.sigmoid(logits)
        x_p = torch.sigmoid(model.decode(torch.randn_like(mu)))
        # Discriminator step, one pass over real digits (-> 1), reconstructions and samples (-> 0, detached).
        logits_d = model.critic(torch.cat([real, x_tilde.detach(), x_p.detach()]))[0].split(n)
        loss_d = discriminator_loss(logits_d[0], logits_d[1]) + discriminator_loss(logits_d[0], logits_d[2])
        check_finite(loss_d, step, "discriminator loss")
        opt_d.zero_grad(set_to_none=True)
        loss_d.backward()
        opt_d.step()
        # Encoder and decoder step: gradients flow through D into them; only their optimiser steps.
        with torch.no_grad():
            target = model.features(real)  # D_l(x): a fixed target; D is not trained on the feature loss
        fake_logits, fake_features = model.critic(torch.cat([x_tilde, x_p]))
        pixel, kl = pixel_nll(logits, x_bin), gaussian_kl(mu, logvar).sum(1).mean()
        feature = feature_loss(fake_features[:n], target)
        adversarial = generator_loss(fake_logits[:n]) + generator_loss(fake_logits[n:])
        loss = pixel + kl + feature_weight * feature + adversarial_weight * adversarial
        check_finite(loss, step, "VAE-GAN loss")
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        ema_update(ema, model, ema_decay)
        d_real, d_fake = torch.sigmoid(logits_d[0]).mean(), torch.sigmoid(logits_d[2]).mean()
        rows.append(torch.stack([pixel, kl, feature, adversarial, loss_d, d_real, d_fake]).detach())
    seconds = time.perf_counter() - start
    history = dict(zip(keys, torch.stack(rows).cpu().T.tolist(), strict=True))
    model.eval()
    return GANRun(history, seconds=seconds, images_per_second=steps * batch_size / seconds, generator_ema=ema.eval())


# ------------------------------------------------------------- adversarial autoencoder (Makhzani et al. 2015)


def prior_centres(prior: str, latent_dim: int = 2, radius: float = 4.0, modes: int = 10) -> torch.Tensor:
    """The component means of a prior: (1, d) zeros for "gaussian"; `modes` points on a circle for "mixture"."""
    if prior not in PRIORS:
        raise ValueError(f"prior must be one of {PRIORS}; got {prior!r}")
    if prior != "gaussian" and latent_dim != 2:
        raise ValueError(
            f"the {prior!r} prior lives in 2D; got latent_dim={latent_dim}: use latent_dim=2 or 'gaussian'"
        )
    if prior == "gaussian":
        return torch.zeros(1, latent_dim)
    angles = torch.arange(modes, dtype=torch.float32) * (2 * math.pi / modes)
    return radius * torch.stack([torch.cos(angles), torch.sin(angles)], dim=1)


def sample_prior(
    prior: str, n: int, latent_dim: int = 2, generator: torch.Generator | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """n codes from a prior, with the component each came from: (codes (n, d), components (n,)), on the CPU.

    "gaussian": N(0, I). "mixture": an equal mixture of 10 Gaussians (std 0.5) centred on a circle of radius 4.
    "ring": a circle of radius 4, uniform in angle, radius jittered with std 0.1 (components: 10 angle sectors).
    """
    n = check_count(n)
    centres = prior_centres(prior, latent_dim)
    if prior == "gaussian":
        return torch.randn(n, latent_dim, generator=generator), torch.zeros(n, dtype=torch.long)
    if prior == "mixture":
        k = torch.randint(len(centres), (n,), generator=generator)
        return centres[k] + 0.5 * torch.randn(n, 2, generator=generator), k
    angle = 2 * math.pi * torch.rand(n, generator=generator)
    r = 4.0 + 0.1 * torch.randn(n, generator=generator)
    return torch.stack([r * torch.cos(angle), r * torch.sin(angle)], 1), (angle / (2 * math.pi) * 10).long().clamp(
        max=9
    )


class AAE(MLPVAE):
    """An adversarial autoencoder: the MLP encoder of notebook 06, used deterministically (its mean is the code), its
    Bernoulli decoder, a prior chosen from PRIORS, and a code discriminator (an MLP on z, one logit) that compares
    codes with prior draws.

    `sample(n)` decodes draws from that prior; the code discriminator plays no part in it.
    """

    def __init__(
        self, latent_dim: int = 2, hidden: Sequence[int] = (512, 256), prior: str = "gaussian", code_hidden: int = 256
    ) -> None:
        prior_centres(prior, latent_dim)  # checks prior and latent_dim
        super().__init__(latent_dim=latent_dim, hidden=hidden)
        self.prior = prior
        self.config = {"latent_dim": latent_dim, "hidden": list(hidden), "prior": prior, "code_hidden": code_hidden}
        self.code_discriminator = mlp(latent_dim, 1, code_hidden, depth=2)

    @torch.no_grad()
    def sample(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """n images decoded from z ~ the model's prior: pixel means in [0, 1], shape (n, 1, 28, 28), eval mode."""
        z, _ = sample_prior(self.prior, check_count(n), self.latent_dim, generator)
        was_training = self.training
        self.eval()
        images = torch.sigmoid(self.decode(z.to(self.device))) if n else torch.empty(0, *IMAGE_SHAPE)
        self.train(was_training)
        return images.to(self.device)


def train_aae(
    model: AAE,
    images: torch.Tensor,
    *,
    steps: int,
    batch_size: int = 64,
    lr: float = 1e-3,
    lr_adversarial: float = 2e-4,
    seed: int = 0,
    progress: bool = True,
) -> GANRun:
    """Train an AAE; each step has Makhzani et al.'s two phases, each with its own optimiser.

    1. Reconstruction: encoder and decoder minimise -log p(x|z) at z = the encoder's mean (binarised x, nats per
       image). The encoder is deterministic: a noisy one could match the prior by drowning its codes in noise.
       Its log-variance output is left untrained, so the AAE gives no q(z|x) for a likelihood estimate.
    2. Regularisation: the code discriminator learns to tell prior draws z_p (-> 1) from codes z (-> 0), then
       the encoder minimises -log D(z): it moves the aggregate posterior q(z) = E_x q(z|x) towards the prior.
    No KL term: the adversarial phase replaces it. Returns a `GANRun` (history, seconds, images per second).
    """
    _check_batch(images, batch_size, steps)
    torch.manual_seed(seed)
    device = model.device
    autoencoder = list(model.encoder.parameters()) + list(model.decoder.parameters())
    opt_ae = torch.optim.Adam(autoencoder, lr=lr)
    opt_d = torch.optim.Adam(model.code_discriminator.parameters(), lr=lr_adversarial, betas=(0.5, 0.999))
    opt_e = torch.optim.Adam(model.encoder.parameters(), lr=lr_adversarial, betas=(0.5, 0.999))
    prior_rng = torch.Generator().manual_seed(seed)
    rows: list[torch.Tensor] = []
    batches = TensorBatches(images, batch_size=batch_size, device=device, seed=seed)
    model.train()
    start = time.perf_counter()
    for step, real in enumerate(tqdm(cycle_batches(batches, steps), total=steps, desc="AAE", disable=not progress)):
        x = binarize(real)
        # Phase 1, reconstruction. The code is the encoder's mean: a deterministic encoder, as in Makhzani et al.
        z = model.encode(x)[0]
        recon = pixel_nll(model.decode(z), x)
        check_finite(recon, step, "reconstruction loss")
        opt_ae.zero_grad(set_to_none=True)
        recon.backward()
        opt_ae.step()
        # Phase 2, regularisation: first the code discriminator, then the encoder against it.
        z_p = sample_prior(model.prior, len(x), model.latent_dim, prior_rng)[0].to(device)
        loss_d = discriminator_loss(
            model.code_discriminator(z_p).squeeze(1), model.code_discriminator(z.detach()).squeeze(1)
        )
        opt_d.zero_grad(set_to_none=True)
        loss_d.backward()
        opt_d.step()
        z = model.encode(x)[0]
        loss_e = generator_loss(model.code_discriminator(z).squeeze(1))
        check_finite(loss_e + loss_d, step, "adversarial loss")
        opt_e.zero_grad(set_to_none=True)
        loss_e.backward()
        opt_e.step()
        rows.append(torch.stack([recon, loss_d, loss_e]).detach())
    seconds = time.perf_counter() - start
    history = dict(zip(("recon", "loss_D", "loss_E"), torch.stack(rows).cpu().T.tolist(), strict=True))
    model.eval()
    return GANRun(history, seconds=seconds, images_per_second=steps * batch_size / seconds)


# --------------------------------------------------------------------------- a GAN conditioned on a VAE's clusters


def cluster_codes(
    model: MLPVAE | ConvVAE, images: torch.Tensor, k: int, seed: int = 0
) -> tuple[torch.Tensor, torch.Tensor]:
    """Group `images` into `k` clusters of a VAE's posterior means, without labels: (cluster of each image, shares).

    k-means (scikit-learn's `KMeans`, 4 restarts, seeded) on mu(x) = E[z|x]: digits the VAE codes close together
    share a cluster. Returns the cluster index of each image (n,) and each cluster's share of the images (k,).
    """
    from sklearn.cluster import KMeans  # scikit-learn: the established k-means; imported here, where it is used

    if not 2 <= k <= len(images):
        raise ValueError(f"k must lie in [2, number of images = {len(images)}]; got {k}")
    with torch.no_grad():
        codes = torch.cat([model.encode(chunk.to(model.device))[0].cpu() for chunk in images.split(500)])
    assignments = torch.as_tensor(KMeans(k, n_init=4, random_state=seed).fit_predict(codes.numpy()), dtype=torch.long)
    return assignments, torch.bincount(assignments, minlength=k).float() / len(images)


class ClusterConditionalGenerator(ConditionalGenerator):
    """The cGAN generator of notebook 09 with clusters for classes (a self-conditioned GAN, Liu et al. 2020).

    It is trained like the cGAN (`train_cgan`) on (image, cluster) pairs; `cluster_shares` (a buffer, saved with
    the weights) holds how often each cluster occurs, so `sample(n)` draws clusters by those shares and is an
    unconditional generator of p(x) = sum_c p(c) p(x|c). `sample(n, labels)` asks for given clusters.
    """

    def __init__(self, latent_dim: int = 64, ngf: int = 32, n_classes: int = 50, embed_dim: int = 16) -> None:
        super().__init__(latent_dim=latent_dim, ngf=ngf, n_classes=n_classes, embed_dim=embed_dim)
        self.register_buffer("cluster_shares", torch.full((n_classes,), 1.0 / n_classes))

    @torch.no_grad()
    def sample(self, n: int, labels: torch.Tensor | None = None, z: torch.Tensor | None = None) -> torch.Tensor:
        """n images (n, 1, 28, 28) in [0, 1]; clusters drawn by their training shares unless `labels` names them."""
        if labels is None:
            labels = torch.multinomial(self.cluster_shares.cpu(), check_count(n), replacement=True)
        return super().sample(n, labels, z)
