"""Variational autoencoders on binarised MNIST (notebooks 06-07): loss, two models, one training loop, latent tools.

Conventions: images `x` are float tensors of shape (n, 1, 28, 28) in [0, 1]; the decoder
returns Bernoulli *logits* of the same shape; the prior is p(z) = N(0, I). Training data
are binarised dynamically: every batch draws fresh pixels x_bin ~ Bernoulli(x), so the
model sees a new binary version of each digit every epoch. Losses are sums over pixels
(and latent dimensions), means over the batch, in nats per image.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from .runtime import SAMPLE_CHUNK, check_count, check_finite

IMAGE_SHAPE = (1, 28, 28)
N_PIXELS = 28 * 28


# --------------------------------------------------------------------------- loss


def gaussian_kl(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """KL(N(mu, diag exp(logvar)) || N(0, I)) per latent dimension, shape (n, d), in nats."""
    return 0.5 * (mu.pow(2) + logvar.exp() - 1.0 - logvar)


def vae_loss(
    logits: torch.Tensor, x: torch.Tensor, mu: torch.Tensor, logvar: torch.Tensor, beta: float = 1.0
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Negative ELBO with a Bernoulli decoder: returns (loss, recon, kl), each a batch mean in nats per image.

    recon = -log p(x|z), summed over the 784 pixels (binary cross-entropy on logits);
    kl = KL(q(z|x) || p(z)) in closed form, summed over latent dimensions;
    loss = recon + beta * kl (beta < 1 during KL warm-up, 1 for the true negative ELBO).
    """
    recon = F.binary_cross_entropy_with_logits(logits, x, reduction="none").flatten(1).sum(dim=1)
    kl = gaussian_kl(mu, logvar).sum(dim=1)
    recon, kl = recon.mean(), kl.mean()
    return recon + beta * kl, recon, kl


def binarize(x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """Dynamic binarisation: each pixel becomes 1 with probability equal to its grey level."""
    return torch.bernoulli(x, generator=generator)


def random_shift(x: torch.Tensor, max_shift: int = 1, generator: torch.Generator | None = None) -> torch.Tensor:
    """Data augmentation: move each image by a random whole number of pixels in [-max_shift, max_shift] per axis.

    Whole-pixel moves keep strokes sharp (no interpolation blur); MNIST borders are empty, so rolling is a shift.
    """
    shifts = torch.randint(-max_shift, max_shift + 1, (len(x), 2), generator=generator)
    out = x.clone()
    for dy in range(-max_shift, max_shift + 1):
        for dx in range(-max_shift, max_shift + 1):
            chosen = (shifts[:, 0] == dy) & (shifts[:, 1] == dx)
            out[chosen] = torch.roll(x[chosen], shifts=(dy, dx), dims=(2, 3))
    return out


# --------------------------------------------------------------------------- models


class VAE(nn.Module):
    """What every VAE here shares: the reparameterised forward pass and sampling from the prior.

    Subclasses build `self.encoder` (x -> 2 * latent_dim numbers: mu and log-variance)
    and `self.decoder` (z -> logits of shape (n, 1, 28, 28)).
    """

    latent_dim: int
    config: dict[str, Any]
    encoder: nn.Module
    decoder: nn.Module

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """q_phi(z|x): mean and log-variance, each (n, latent_dim). Log-variance keeps the variance positive."""
        mu, logvar = self.encoder(x).chunk(2, dim=1)
        return mu, logvar

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """p_theta(x|z): Bernoulli logits of shape (n, 1, 28, 28); sigmoid(logits) is the pixel mean."""
        return self.decoder(z)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Encode, draw z = mu + sigma * eps (the reparameterisation trick), decode: (logits, mu, logvar)."""
        mu, logvar = self.encode(x)
        z = mu + torch.exp(0.5 * logvar) * torch.randn_like(mu)
        return self.decode(z), mu, logvar

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    @torch.no_grad()
    def sample(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """n images from the model, z ~ N(0, I): Bernoulli means in [0, 1], shape (n, 1, 28, 28), in eval mode.

        The codes are decoded in chunks of SAMPLE_CHUNK, so a large n fits in memory and gives the same
        images as one big batch. n = 0 gives an empty (0, 1, 28, 28) tensor.
        """
        n = check_count(n)
        z = torch.randn(n, self.latent_dim, generator=generator, device="cpu" if generator else self.device)
        if n == 0:
            return torch.empty(0, *IMAGE_SHAPE, device=self.device)
        was_training = self.training
        self.eval()  # dropout off while sampling; the previous mode is restored below
        images = torch.cat([torch.sigmoid(self.decode(chunk)) for chunk in z.to(self.device).split(SAMPLE_CHUNK)])
        self.train(was_training)
        return images

    @torch.no_grad()
    def reconstruct(self, x: torch.Tensor) -> torch.Tensor:
        """Decode the posterior mean of each input: Bernoulli means in [0, 1]."""
        mu, _ = self.encode(x.to(self.device))
        return torch.sigmoid(self.decode(mu))


class MLPVAE(VAE):
    """Fully connected VAE: 784 -> hidden... -> (mu, logvar) and back, ReLU, optional dropout in the hidden layers."""

    def __init__(self, latent_dim: int = 20, hidden: Sequence[int] = (400,), dropout: float = 0.0) -> None:
        super().__init__()
        self.latent_dim = latent_dim
        self.config = {"latent_dim": latent_dim, "hidden": list(hidden), "dropout": dropout}
        self.encoder = nn.Sequential(
            nn.Flatten(), _mlp([N_PIXELS, *hidden], dropout), nn.Linear(hidden[-1], 2 * latent_dim)
        )
        self.decoder = nn.Sequential(
            _mlp([latent_dim, *reversed(hidden)], dropout), nn.Linear(hidden[0], N_PIXELS), nn.Unflatten(1, IMAGE_SHAPE)
        )


def _mlp(sizes: Sequence[int], dropout: float) -> nn.Sequential:
    layers: list[nn.Module] = []
    for n_in, n_out in zip(sizes[:-1], sizes[1:], strict=True):
        layers += [nn.Linear(n_in, n_out), nn.ReLU()]
        if dropout > 0:
            layers.append(nn.Dropout(dropout))
    return nn.Sequential(*layers)


class ConvVAE(VAE):
    """Convolutional VAE: two stride-2 convolutions (28 -> 14 -> 7) and two transposed convolutions back."""

    def __init__(self, latent_dim: int = 20, channels: int = 32, hidden: int = 128, dropout: float = 0.0) -> None:
        super().__init__()
        self.latent_dim = latent_dim
        self.config = {"latent_dim": latent_dim, "channels": channels, "hidden": hidden, "dropout": dropout}
        c = channels
        self.encoder = nn.Sequential(
            nn.Conv2d(1, c, 4, stride=2, padding=1), nn.ReLU(),  # 28 -> 14
            nn.Conv2d(c, 2 * c, 4, stride=2, padding=1), nn.ReLU(),  # 14 -> 7
            nn.Flatten(), nn.Dropout(dropout),
            nn.Linear(2 * c * 7 * 7, hidden), nn.ReLU(),
            nn.Linear(hidden, 2 * latent_dim),
        )  # fmt: skip
        self.decoder = nn.Sequential(
            nn.Linear(latent_dim, hidden), nn.ReLU(), nn.Dropout(dropout),
            nn.Linear(hidden, 2 * c * 7 * 7), nn.ReLU(),
            nn.Unflatten(1, (2 * c, 7, 7)),
            nn.ConvTranspose2d(2 * c, c, 4, stride=2, padding=1), nn.ReLU(),  # 7 -> 14
            nn.ConvTranspose2d(c, 1, 4, stride=2, padding=1),  # 14 -> 28, logits
        )  # fmt: skip


# --------------------------------------------------------------------------- training


def train_val_split(
    images: torch.Tensor, n_val: int, seed: int = 0, labels: torch.Tensor | None = None
) -> tuple[torch.Tensor, ...]:
    """Carve a random validation part of size n_val out of the *training* split: (train, val[, train_y, val_y])."""
    order = torch.randperm(len(images), generator=torch.Generator().manual_seed(seed))
    val_idx, train_idx = order[:n_val], order[n_val:]
    parts = (images[train_idx], images[val_idx])
    if labels is not None:
        parts += (labels[train_idx], labels[val_idx])
    return parts


@torch.no_grad()
def evaluate_elbo(model: VAE, images: torch.Tensor, batch_size: int = 500, seed: int = 0) -> dict[str, float]:
    """Negative ELBO (one z per image) on images binarised with a fixed seed: {neg_elbo, recon, kl} in nats/image."""
    _check_images(images, "images")
    was_training = model.training
    model.eval()
    generator = torch.Generator().manual_seed(seed)
    torch_state = torch.random.get_rng_state()
    torch.manual_seed(seed)  # the z draws too, so the number is reproducible
    totals = {"neg_elbo": 0.0, "recon": 0.0, "kl": 0.0}
    for start in range(0, len(images), batch_size):
        x = binarize(images[start : start + batch_size].cpu(), generator).to(model.device)
        loss, recon, kl = _loss_of(model, x)
        for key, value in zip(totals, (loss, recon, kl), strict=True):
            totals[key] += value.item() * len(x)
    torch.random.set_rng_state(torch_state)
    model.train(was_training)
    return {key: value / len(images) for key, value in totals.items()}


def _loss_of(model: VAE, x: torch.Tensor, beta: float = 1.0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    logits, mu, logvar = model(x)
    return vae_loss(logits, x, mu, logvar, beta)


class TrainingDiverged(FloatingPointError):
    """The loss became NaN or infinite during `train_vae`; `.history` holds the epochs finished before it."""

    def __init__(self, message: str, history: dict[str, list[float]]) -> None:
        super().__init__(message)
        self.history = history


def _check_images(images: torch.Tensor, name: str) -> None:
    """Images to binarise or encode must be pixel probabilities: no NaN, every value in [0, 1]."""
    if len(images) == 0:
        raise ValueError(f"{name} is empty: pass at least one image (or val_images=None to skip validation)")
    with_nan = int(torch.isnan(images).reshape(len(images), -1).any(dim=1).sum())
    if with_nan:
        raise ValueError(f"{name} contain NaN ({with_nan} images): drop or repair those images first")
    low, high = images.min().item(), images.max().item()
    if low < 0 or high > 1:
        raise ValueError(
            f"{name} must lie in [0, 1] (each pixel is the probability of a 1); got [{low:.3g}, {high:.3g}]. "
            "If they come from tanh (range [-1, 1]) map them with (x + 1) / 2; if they are bytes, divide by 255"
        )


def _restore_best(model: VAE, best_state: dict[str, torch.Tensor] | None, best: float, progress: bool) -> None:
    """Load the weights of the best validation epoch, if one was kept, and switch to eval mode."""
    if best_state is not None:
        model.load_state_dict(best_state)
        if progress:
            print(f"restored the weights of the best validation epoch ({best:.2f} nats)")
    model.eval()


def train_vae(
    model: VAE,
    train_images: torch.Tensor,
    val_images: torch.Tensor | None = None,
    epochs: int = 30,
    batch_size: int = 128,
    lr: float = 1e-3,
    weight_decay: float = 0.0,
    warmup_epochs: int = 0,
    beta: float = 1.0,
    augment: int = 0,
    cosine_lr: bool = True,
    patience: int | None = None,
    seed: int = 0,
    progress: bool = True,
) -> dict[str, list[float]]:
    """Train by minimising the negative ELBO with Adam(W) on dynamically binarised batches.

    - KL weight: the loss is recon + beta * kl; beta = 1 is the negative ELBO (other values: a beta-VAE).
    - Augmentation: `augment` > 0 shifts each training image by up to that many pixels (`random_shift`).
    - KL warm-up: the KL weight rises linearly from 0 to `beta` over `warmup_epochs` (0: no warm-up).
    - LR schedule: cosine decay from `lr` to lr/20 over `epochs` when `cosine_lr`.
    - Validation: after each epoch the negative ELBO on `val_images` (fixed binarisation);
      the best epoch's weights are restored at the end, and training stops early when the
      validation loss has not improved for `patience` epochs (counted after the warm-up).
    Returns the history: per-epoch means of the training loss, recon, kl, beta, lr, and val.

    Images must lie in [0, 1] with no NaN, at least one batch of them (ValueError otherwise).
    A NaN or infinite loss stops training with `TrainingDiverged` (a FloatingPointError) after
    restoring the best validation epoch's weights; its `.history` holds the epochs finished before.
    """
    if epochs < 1 or batch_size < 1:
        raise ValueError(f"epochs and batch_size must be >= 1; got epochs={epochs}, batch_size={batch_size}")
    if len(train_images) < batch_size:
        raise ValueError(
            f"train_images holds {len(train_images)} images, fewer than one batch of {batch_size}: "
            "pass more images or a smaller batch_size"
        )
    _check_images(train_images, "train_images")
    if val_images is not None:
        _check_images(val_images, "val_images")
    device = model.device
    torch.manual_seed(seed)
    generator = torch.Generator().manual_seed(seed)
    data = train_images.cpu()
    optimiser = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=weight_decay)
    steps_per_epoch = len(data) // batch_size
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimiser, epochs * steps_per_epoch, eta_min=lr / 20)
    history: dict[str, list[float]] = {"loss": [], "recon": [], "kl": [], "beta": [], "lr": []}
    if val_images is not None:
        history["val"] = []
    best, best_state, bad_epochs, step = math.inf, None, 0, 0
    bar = tqdm(range(epochs), desc="training VAE", disable=not progress)
    for epoch in bar:
        model.train()
        sums = np.zeros(3)
        order = torch.randperm(len(data), generator=generator)
        for i in range(steps_per_epoch):
            ramp = min(1.0, (step + 1) / (warmup_epochs * steps_per_epoch)) if warmup_epochs > 0 else 1.0
            x = data[order[i * batch_size : (i + 1) * batch_size]]
            x = binarize(random_shift(x, augment, generator) if augment else x, generator).to(device)
            loss, recon, kl = _loss_of(model, x, ramp * beta)
            try:
                check_finite(loss, step)
            except FloatingPointError as err:  # keep what was learnt: best weights back, history attached
                _restore_best(model, best_state, best, progress)
                kept = "the best validation epoch's weights are restored" if best_state else "no best epoch was kept"
                message = f"{err} Training stopped: {kept}; the history so far is in err.history."
                raise TrainingDiverged(message, history) from err
            optimiser.zero_grad(set_to_none=True)
            loss.backward()
            optimiser.step()
            if cosine_lr:
                schedule.step()
            sums += (loss.item(), recon.item(), kl.item())
            step += 1
        for key, value in zip(("loss", "recon", "kl"), sums / steps_per_epoch, strict=True):
            history[key].append(float(value))
        history["beta"].append(ramp * beta)
        history["lr"].append(optimiser.param_groups[0]["lr"])
        postfix = {"loss": f"{history['loss'][-1]:.1f}", "kl": f"{history['kl'][-1]:.1f}"}
        if val_images is not None:
            val = evaluate_elbo(model, val_images)["neg_elbo"]
            history["val"].append(val)
            postfix["val"] = f"{val:.1f}"
            if ramp >= 1.0:  # compare only epochs after the warm-up
                if val < best:
                    best, best_state, bad_epochs = val, copy.deepcopy(model.state_dict()), 0
                else:
                    bad_epochs += 1
        bar.set_postfix(postfix)
        if patience is not None and bad_epochs >= patience:
            bar.write(f"early stop after epoch {epoch + 1}: validation has not improved for {patience} epochs")
            break
    _restore_best(model, best_state, best, progress)
    return history


# --------------------------------------------------------------------------- the latent space


@torch.no_grad()
def decode_grid(model: VAE, z: torch.Tensor) -> torch.Tensor:
    """Decode latent codes (m, latent_dim) to images in [0, 1] (Bernoulli means), shape (m, 1, 28, 28)."""
    model.eval()
    return torch.sigmoid(model.decode(z.to(model.device, torch.float32))).cpu()


def latent_plane(limit: float = 2.5, steps: int = 15) -> torch.Tensor:
    """A steps x steps grid of 2D codes over [-limit, limit]^2, row by row from top (z2 high) to bottom."""
    axis = torch.linspace(-limit, limit, steps)
    z2, z1 = torch.meshgrid(axis.flip(0), axis, indexing="ij")
    return torch.stack([z1.flatten(), z2.flatten()], dim=1)


def traversal_codes(base: torch.Tensor, dims: Sequence[int], values: Sequence[float]) -> torch.Tensor:
    """One row per dimension in `dims`: copies of `base` (latent_dim,) with that dimension set to each value."""
    rows = []
    for d in dims:
        row = base.repeat(len(values), 1)
        row[:, d] = torch.as_tensor(values, dtype=row.dtype)
        rows.append(row)
    return torch.cat(rows)


def explorer_image(model: VAE, base: torch.Tensor, values: dict[int, float]) -> np.ndarray:
    """The latent explorer's callback: set dims {dim: value} of `base`, decode, return a (28, 28) array in [0, 1]."""
    z = base.clone().float().reshape(1, -1)
    for dim, value in values.items():
        z[0, dim] = value
    return decode_grid(model, z)[0, 0].numpy()


def latent_explorer(model: VAE, base: torch.Tensor | None = None, dims: Sequence[int] = range(6)) -> Any:
    """A widget: one slider per latent dimension in `dims` beside the decoded digit, redrawn on every change.

    Without a live front end (a static viewer, nbval) the cell shows the digit of `base` as a picture.
    """
    import ipywidgets as widgets
    from matplotlib.figure import Figure

    from .plotting import SliderFigure

    base = torch.zeros(model.latent_dim) if base is None else base.detach().cpu().flatten()
    if base.numel() != model.latent_dim:
        raise ValueError(f"base must hold latent_dim = {model.latent_dim} values; got {base.numel()}")
    dims = [int(d) for d in dims]
    if not dims or not all(0 <= d < model.latent_dim for d in dims):
        raise ValueError(f"dims must be a non-empty list of latent dimensions in [0, {model.latent_dim}); got {dims}")
    sliders = {
        d: widgets.FloatSlider(value=float(base[d]), min=-3.0, max=3.0, step=0.1, description=f"z[{d}]") for d in dims
    }

    def draw(values: dict[int, float]) -> Figure:
        fig = Figure(figsize=(2.5, 2.5))
        ax = fig.subplots()
        ax.imshow(explorer_image(model, base, values), cmap="gray", vmin=0, vmax=1)
        ax.set_axis_off()
        return fig

    return SliderFigure(sliders, draw, row=True)


@torch.no_grad()
def posterior_stats(model: VAE, images: torch.Tensor, batch_size: int = 500) -> tuple[torch.Tensor, torch.Tensor]:
    """Posterior means and log-variances of `images` (not binarised: the grey levels), each (n, latent_dim), on CPU."""
    _check_images(images, "images")
    model.eval()
    mus, logvars = [], []
    for start in range(0, len(images), batch_size):
        mu, logvar = model.encode(images[start : start + batch_size].to(model.device))
        mus.append(mu.cpu())
        logvars.append(logvar.cpu())
    return torch.cat(mus), torch.cat(logvars)


def active_units(model: VAE, images: torch.Tensor, threshold: float = 0.01) -> tuple[int, torch.Tensor]:
    """Burda et al.'s activity: dimension u is active when Var_x(E_q[z_u|x]) > threshold. Returns (count, variances)."""
    mu, _ = posterior_stats(model, images)
    variances = mu.var(dim=0)
    return int((variances > threshold).sum()), variances


def kl_per_dim(model: VAE, images: torch.Tensor) -> torch.Tensor:
    """Average KL(q(z_u|x) || N(0, 1)) of each latent dimension u over `images`, shape (latent_dim,), in nats."""
    mu, logvar = posterior_stats(model, images)
    return gaussian_kl(mu, logvar).mean(dim=0)
