"""Conditional and disentangled models (notebook 09): a conditional DCGAN with a projection discriminator, a
conditional VAE, and one small VAE loop with the KL weight as a knob (beta, warm-up, cyclical annealing, free bits).

Conditional models take class labels: `sample(n, labels=None)` returns n images in [0, 1] of shape (n, 1, 28, 28),
`labels` being n class indices (None: classes drawn uniformly). The pieces come from `gan` and `vae`.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from . import gan, vae
from .data import TensorBatches
from .metrics import check_images
from .runtime import SAMPLE_CHUNK, check_count, check_finite

N_CLASSES = 10


def check_labels(labels: torch.Tensor | None, n: int, n_classes: int = N_CLASSES, device: Any = "cpu") -> torch.Tensor:
    """n class indices on `device`: `labels` checked (an integer tensor of n values in [0, n_classes)) or, for None,
    drawn uniformly. Anything else raises an error that says what to pass."""
    n = check_count(n)
    if labels is None:
        return torch.randint(0, n_classes, (n,), device=device)
    if not isinstance(labels, torch.Tensor):
        raise TypeError(f"labels must be a torch.Tensor of class indices; got {type(labels).__name__}: "
                        "wrap them with torch.tensor([...])")  # fmt: skip
    if labels.is_floating_point() or labels.is_complex() or labels.dtype == torch.bool:
        raise TypeError(f"labels must be integer class indices; got dtype {labels.dtype}: use labels.long()")
    if labels.ndim != 1 or len(labels) != n:
        raise ValueError(f"labels must hold one class per image, shape ({n},); got shape {tuple(labels.shape)}: "
                         f"pass n=len(labels) or flatten them")  # fmt: skip
    if n and (labels.min() < 0 or labels.max() >= n_classes):
        raise ValueError(f"labels must lie in [0, {n_classes - 1}]; got values from {int(labels.min())} "
                         f"to {int(labels.max())}")  # fmt: skip
    return labels.to(device=device, dtype=torch.long)


class ConditionalGenerator(gan.Generator):
    """(z, y) -> image: the DCGAN generator of notebook 05, fed z concatenated with a learnt embedding of y."""

    def __init__(self, latent_dim: int = 64, ngf: int = 32, n_classes: int = N_CLASSES, embed_dim: int = 16) -> None:
        super().__init__()
        self.latent_dim, self.n_classes = latent_dim, n_classes
        self.config = {"latent_dim": latent_dim, "ngf": ngf, "n_classes": n_classes, "embed_dim": embed_dim}
        self.embed = nn.Embedding(n_classes, embed_dim)  # one learnt vector per class
        self.body = gan.DCGANGenerator(latent_dim + embed_dim, ngf)

    def forward(self, z: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """Images in [-1, 1] (tanh), shape (n, 1, 28, 28)."""
        return self.body(torch.cat([z, self.embed(labels)], dim=1))

    @torch.no_grad()
    def sample(self, n: int, labels: torch.Tensor | None = None, z: torch.Tensor | None = None) -> torch.Tensor:
        """n images (n, 1, 28, 28) in [0, 1] of the classes `labels` (None: uniform), in eval mode, in chunks."""
        labels = check_labels(labels, n, self.n_classes, self.device)
        z = self.latent(n) if z is None else z.to(self.device)
        if len(z) != n:
            raise ValueError(f"z holds {len(z)} codes but n is {n}: pass n=len(z)")
        was_training = self.training
        self.eval()
        chunks = zip(z.split(SAMPLE_CHUNK), labels.split(SAMPLE_CHUNK), strict=True)
        images = [(self(zc, yc) + 1) / 2 for zc, yc in chunks]
        self.train(was_training)
        return torch.cat(images).clamp(0, 1) if images else torch.empty(0, *gan.IMAGE_SHAPE, device=self.device)


class ProjectionDiscriminator(nn.Module):
    """D(x, y) = psi(phi(x)) + <V_y, phi(x)> (Miyato & Koyama 2018): the DCGAN discriminator's features phi(x)
    (its 7x7 maps, flattened), its head psi, plus the inner product with a learnt vector V_y of the class."""

    def __init__(
        self, ndf: int = 32, n_classes: int = N_CLASSES, minibatch_std: bool = True, spectral_norm: bool = True
    ) -> None:
        super().__init__()
        self.config = {"ndf": ndf, "n_classes": n_classes, "minibatch_std": minibatch_std,
                       "spectral_norm": spectral_norm}  # fmt: skip
        self.base = gan.DCGANDiscriminator(ndf, minibatch_std=minibatch_std, spectral_norm=spectral_norm)
        self.embed = nn.Embedding(n_classes, (2 * ndf + int(minibatch_std)) * 7 * 7)  # V: one row per class
        nn.init.normal_(self.embed.weight, 0.0, 0.02)
        if spectral_norm:
            nn.utils.parametrizations.spectral_norm(self.embed)

    def forward(self, x: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """One logit per image (no sigmoid)."""
        phi = self.base.minibatch_std(self.base.net(x))
        return self.base.head(phi).flatten() + (self.embed(labels) * phi.flatten(1)).sum(dim=1)


class _WholeBatches:
    """Each batch (images, labels) as one item: `gan.cycle_batches` yields an item's first element, here the pair."""

    def __init__(self, batches: Iterable[tuple[torch.Tensor, ...]]) -> None:
        self.batches = batches

    def __iter__(self) -> Iterator[tuple[tuple[torch.Tensor, ...]]]:
        return ((batch,) for batch in self.batches)


def train_cgan(
    generator: ConditionalGenerator,
    discriminator: ProjectionDiscriminator,
    batches: Iterable[tuple[torch.Tensor, torch.Tensor]],
    *,
    steps: int,
    lr: float = 2e-4,
    lr_d: float = 4e-4,
    betas: tuple[float, float] = (0.5, 0.999),
    ema_decay: float | None = 0.999,
    seed: int = 0,
    progress: bool = True,
) -> gan.GANRun:
    """The loop of `gan.train_gan_basic` with labels: batches yield (images in [0, 1], labels); fakes get uniform
    labels, and D judges each image together with its label. Returns a GANRun (EMA generator if `ema_decay`)."""
    steps = gan._positive("steps", steps)
    torch.manual_seed(seed)
    opt_g = torch.optim.Adam(generator.parameters(), lr=lr, betas=betas)
    opt_d = torch.optim.Adam(discriminator.parameters(), lr=lr_d, betas=betas)
    ema = copy.deepcopy(generator).requires_grad_(False) if ema_decay else None
    run = gan.GANRun({"loss_D": [], "loss_G": [], "D(x)": [], "D(G(z))": []}, generator_ema=ema)
    generator.train()
    discriminator.train()
    start, rows = time.perf_counter(), []
    for step, (real, y_real) in enumerate(tqdm(gan.cycle_batches(_WholeBatches(batches), steps), total=steps,
                                               desc="cGAN training", disable=not progress)):  # fmt: skip
        if step == 0:
            check_images(real, "real images")
        real = gan.to_tanh_range(real)
        y_fake = torch.randint(0, generator.n_classes, (len(real),), device=real.device)
        fake = generator(generator.latent(len(real)), y_fake)
        # D step: (real, its label) -> 1, (fake, the label it was asked for) -> 0; fakes detached.
        real_logits, fake_logits = discriminator(real, y_real), discriminator(fake.detach(), y_fake)
        loss_d = gan.discriminator_loss(real_logits, fake_logits)
        check_finite(loss_d, step, "discriminator loss")
        opt_d.zero_grad(set_to_none=True)
        loss_d.backward()
        opt_d.step()
        # G step (non-saturating): make D call (fake, y) a real digit of class y.
        loss_g = gan.generator_loss(discriminator(fake, y_fake))
        check_finite(loss_g, step, "generator loss")
        opt_g.zero_grad(set_to_none=True)
        loss_g.backward()
        opt_g.step()
        if ema is not None:
            gan.ema_update(ema, generator, ema_decay)  # type: ignore[arg-type]
        rows.append(torch.stack([loss_d, loss_g, real_logits.sigmoid().mean(), fake_logits.sigmoid().mean()]).detach())
    for key, column in zip(run.history, torch.stack(rows).cpu().T.tolist(), strict=True):
        run.history[key] = column
    run.seconds = time.perf_counter() - start
    run.images_per_second = steps * len(real) / run.seconds
    generator.eval()
    discriminator.eval()
    return run


class CVAE(vae.VAE):
    """Conditional VAE (Sohn et al. 2015): q(z|x, y) and p(x|z, y) are MLPs that also read the one-hot label;
    the prior stays N(0, I), so z only has to hold what the label does not say (style)."""

    def __init__(self, latent_dim: int = 16, hidden: tuple[int, ...] = (512, 256), n_classes: int = N_CLASSES) -> None:
        super().__init__()
        self.latent_dim, self.n_classes = latent_dim, n_classes
        self.config = {"latent_dim": latent_dim, "hidden": list(hidden), "n_classes": n_classes}
        self.encoder = nn.Sequential(vae._mlp([vae.N_PIXELS + n_classes, *hidden], 0.0),
                                     nn.Linear(hidden[-1], 2 * latent_dim))  # fmt: skip
        self.decoder = nn.Sequential(vae._mlp([latent_dim + n_classes, *reversed(hidden)], 0.0),
                                     nn.Linear(hidden[0], vae.N_PIXELS), nn.Unflatten(1, vae.IMAGE_SHAPE))  # fmt: skip

    def _one_hot(self, labels: torch.Tensor) -> torch.Tensor:
        return F.one_hot(labels, self.n_classes).float()

    def encode(self, x: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:  # type: ignore[override]
        """q_phi(z|x, y): mean and log-variance, each (n, latent_dim)."""
        mu, logvar = self.encoder(torch.cat([x.flatten(1), self._one_hot(labels)], dim=1)).chunk(2, dim=1)
        return mu, logvar

    def decode(self, z: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        """p_theta(x|z, y): Bernoulli logits (n, 1, 28, 28)."""
        return self.decoder(torch.cat([z, self._one_hot(labels)], dim=1))

    def forward(self, x: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:  # type: ignore[override]
        mu, logvar = self.encode(x, labels)
        z = mu + torch.exp(0.5 * logvar) * torch.randn_like(mu)
        return self.decode(z, labels), mu, logvar

    @torch.no_grad()
    def sample(self, n: int, labels: torch.Tensor | None = None) -> torch.Tensor:  # type: ignore[override]
        """n images of the classes `labels` (None: uniform): Bernoulli means in [0, 1], (n, 1, 28, 28), eval mode."""
        labels = check_labels(labels, n, self.n_classes, self.device)
        z = torch.randn(n, self.latent_dim, device=self.device)
        was_training = self.training
        self.eval()
        chunks = zip(z.split(SAMPLE_CHUNK), labels.split(SAMPLE_CHUNK), strict=True)
        images = [torch.sigmoid(self.decode(zc, yc)) for zc, yc in chunks]
        self.train(was_training)
        return torch.cat(images) if images else torch.empty(0, *vae.IMAGE_SHAPE, device=self.device)


def kl_weight(step: int, steps: int, beta: float = 1.0, warmup_steps: int = 0, cycles: int = 0) -> float:
    """The KL weight at `step`: `beta`, reached by a linear warm-up over `warmup_steps` (Bowman et al. 2016), or with
    `cycles` > 0 cyclical annealing (Fu et al. 2019): in each of `cycles` equal periods, 0 -> beta over the first
    half, then beta."""
    if cycles > 0:
        period = steps / cycles
        return beta * min(1.0, (step % period) / (period / 2))
    if warmup_steps > 0:
        return beta * min(1.0, (step + 1) / warmup_steps)
    return beta


def train_vae_steps(
    model: vae.VAE,
    images: torch.Tensor,
    labels: torch.Tensor | None = None,
    *,
    steps: int,
    batch_size: int = 128,
    lr: float = 1e-3,
    beta: float = 1.0,
    warmup_steps: int = 0,
    cycles: int = 0,
    free_bits: float = 0.0,
    augment: int = 0,
    seed: int = 0,
    progress: bool = True,
) -> dict[str, list[float]]:
    """Train a VAE (a CVAE when `labels` are given) for `steps` Adam steps on dynamically binarised batches.

    Loss = recon + w * KL term, w = `kl_weight(step, ...)` (beta, warm-up or cycles). KL term: the KL summed over
    latent dimensions, or with `free_bits` = lambda > 0, sum_u max(lambda, KL_u), KL_u being dimension u's batch
    mean (Kingma et al. 2016): a dimension carrying under lambda nats is not pushed further towards the prior.
    `augment` > 0 shifts each image by up to that many pixels before binarisation (`vae.random_shift`).
    Returns per-step "loss", "recon", "kl" (the true KL, nats per image) and "weight".
    """
    steps = gan._positive("steps", steps)
    check_images(images, "images")
    if labels is not None:
        labels = check_labels(labels, len(images), getattr(model, "n_classes", N_CLASSES))
    if beta < 0 or free_bits < 0 or warmup_steps < 0 or cycles < 0:
        raise ValueError("beta, free_bits, warmup_steps and cycles must be >= 0; got "
                         f"{beta}, {free_bits}, {warmup_steps}, {cycles}")  # fmt: skip
    torch.manual_seed(seed)
    tensors = (images,) if labels is None else (images, labels)
    batches = TensorBatches(*tensors, batch_size=batch_size, device=model.device, seed=seed)
    optimiser = torch.optim.Adam(model.parameters(), lr=lr)
    history: dict[str, list[float]] = {"loss": [], "recon": [], "kl": [], "weight": []}
    rows = []
    model.train()
    for step, batch in enumerate(tqdm(gan.cycle_batches(_WholeBatches(batches), steps), total=steps,
                                      desc="training VAE", disable=not progress)):  # fmt: skip
        x = vae.binarize(vae.random_shift(batch[0], augment) if augment else batch[0])
        logits, mu, logvar = model(x, *batch[1:])
        _, recon, kl = vae.vae_loss(logits, x, mu, logvar)
        kl_term = vae.gaussian_kl(mu, logvar).mean(0).clamp(min=free_bits).sum() if free_bits > 0 else kl
        w = kl_weight(step, steps, beta, warmup_steps, cycles)
        loss = recon + w * kl_term
        check_finite(loss, step)
        optimiser.zero_grad(set_to_none=True)
        loss.backward()
        optimiser.step()
        rows.append(torch.stack([loss.detach(), recon.detach(), kl.detach(), torch.tensor(w, device=x.device)]))
    for key, column in zip(history, torch.stack(rows).cpu().T.tolist(), strict=True):
        history[key] = column
    model.eval()
    return history


@torch.no_grad()
def class_accuracy(
    sample: Callable[..., torch.Tensor], classifier: nn.Module, n_per_class: int = 100, seed: int = 0
) -> dict[str, Any]:
    """Ask `sample(n, labels)` for `n_per_class` images of each of the 10 classes and check them with `classifier`.

    Returns "accuracy" (share classified as the class asked for), "per_class" (10 shares), "confusion" (10x10 counts,
    row = asked, column = seen) and "n". Torch is seeded from `seed` inside `fork_rng` (the caller's stream is kept).
    """
    n_per_class = gan._positive("n_per_class", n_per_class)
    labels = torch.arange(N_CLASSES).repeat_interleave(n_per_class)
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        images = check_images(sample(len(labels), labels), "samples")
    device = next(classifier.parameters()).device
    classifier.eval()
    seen = torch.cat([classifier(chunk.to(device)).argmax(1).cpu() for chunk in images.split(500)])
    confusion = torch.zeros(N_CLASSES, N_CLASSES, dtype=torch.long)
    confusion.index_put_((labels, seen), torch.ones_like(labels), accumulate=True)
    per_class = (confusion.diag().float() / n_per_class).tolist()
    return {"accuracy": float((seen == labels).float().mean()), "per_class": per_class,
            "confusion": confusion, "n": len(labels)}  # fmt: skip
