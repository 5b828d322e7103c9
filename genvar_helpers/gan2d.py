"""A GAN on 2D toy data (notebook 03): MLP generator and discriminator, packing (PacGAN), the R1 gradient
penalty, a training loop that keeps snapshots of the generator, and a slider to scrub through them.

Notebook 08 adds the Wasserstein losses, weight clipping and the WGAN-GP gradient penalty; they live here,
beside R1, and its loop `gan.train_wgan` uses them on 2D points and on images alike.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import matplotlib.pyplot as plt
import torch
from matplotlib.figure import Figure
from torch import nn
from torch.nn import functional as F
from tqdm.auto import tqdm

from .runtime import check_finite


def mlp(d_in: int, d_out: int, hidden: int, depth: int) -> nn.Sequential:
    """`depth` hidden layers of `hidden` ReLU units, then a linear output layer."""
    layers: list[nn.Module] = []
    for i in range(depth):
        layers += [nn.Linear(d_in if i == 0 else hidden, hidden), nn.ReLU()]
    layers.append(nn.Linear(hidden if depth > 0 else d_in, d_out))
    return nn.Sequential(*layers)


class Generator2D(nn.Module):
    """G_theta: z ~ N(0, I) in R^latent_dim -> x in R^2, an MLP with a linear output (no tanh: data is unbounded)."""

    def __init__(self, latent_dim: int = 2, hidden: int = 128, depth: int = 3) -> None:
        super().__init__()
        self.config = {"latent_dim": latent_dim, "hidden": hidden, "depth": depth}
        self.latent_dim = latent_dim
        self.net = mlp(latent_dim, 2, hidden, depth)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.net(z)

    @torch.no_grad()
    def sample(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """n samples of shape (n, 2) on the model's device (`generator`: a CPU torch.Generator for fixed z)."""
        device = next(self.parameters()).device
        z = torch.randn(n, self.latent_dim, generator=generator).to(device)
        return self(z)


def pack_samples(x: torch.Tensor, pack: int) -> torch.Tensor:
    """Concatenate groups of `pack` consecutive samples: (n, d) -> (n // pack, pack * d)."""
    n, d = x.shape
    if n % pack != 0:
        raise ValueError(
            f"batch of {n} samples cannot be cut into packs of {pack}: use a batch size divisible by pack={pack}"
        )
    return x.reshape(n // pack, pack * d)


class Discriminator2D(nn.Module):
    """D_psi: a pack of `pack` points (all real or all generated) -> one logit.

    `minibatch_std=True` appends one feature to every pack: the mean standard deviation of the
    packs in the batch, so D can also see how spread out a whole batch is.
    `spectral_norm=True` holds every layer's largest singular value at 1 (Miyato et al. 2018, notebook 08).
    """

    def __init__(
        self, hidden: int = 128, depth: int = 3, pack: int = 1, minibatch_std: bool = False, spectral_norm: bool = False
    ) -> None:
        super().__init__()
        if pack < 1:
            raise ValueError(f"pack must be >= 1; got {pack}")
        self.config = {
            "hidden": hidden,
            "depth": depth,
            "pack": pack,
            "minibatch_std": minibatch_std,
            "spectral_norm": spectral_norm,
        }
        self.pack = pack
        self.minibatch_std = minibatch_std
        self.net = mlp(2 * pack + int(minibatch_std), 1, hidden, depth)
        if spectral_norm:
            for layer in self.net:
                if isinstance(layer, nn.Linear):
                    nn.utils.parametrizations.spectral_norm(layer)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: (n, 2) with n divisible by pack -> logits (n // pack,)."""
        h = pack_samples(x, self.pack)
        if self.minibatch_std:
            spread = h.std(dim=0, unbiased=False).mean().expand(h.shape[0], 1)
            h = torch.cat([h, spread], dim=1)
        return self.net(h).squeeze(1)


def r1_penalty(logits: torch.Tensor, real: torch.Tensor) -> torch.Tensor:
    """R1 (Mescheder et al. 2018): mean over D's decisions of the squared norm of grad_x D(x) on real data.

    `real` must have `requires_grad=True` and `logits = D(real)`. The graph is kept (`create_graph=True`) so
    the penalty can be backpropagated into D's weights. With packing, each decision's gradient covers its pack.
    """
    (grad,) = torch.autograd.grad(logits.sum(), real, create_graph=True)
    return grad.pow(2).sum() / len(logits)


# ---------------------------------------------------------------- Wasserstein GANs (notebook 08)

LOSSES = ("ns", "wgan", "wgan-gp")  # non-saturating; WGAN with weight clipping; WGAN with gradient penalty


def wasserstein_critic_loss(real_scores: torch.Tensor, fake_scores: torch.Tensor) -> torch.Tensor:
    """mean D(G(z)) - mean D(x): minimising it maximises the critic's Wasserstein estimate (Arjovsky et al. 2017)."""
    return fake_scores.mean() - real_scores.mean()


def wasserstein_generator_loss(fake_scores: torch.Tensor) -> torch.Tensor:
    """-mean D(G(z)): the generator moves its samples up the critic's slope."""
    return -fake_scores.mean()


def gradient_penalty(
    critic: nn.Module, real: torch.Tensor, fake: torch.Tensor, generator: torch.Generator | None = None
) -> torch.Tensor:
    """WGAN-GP (Gulrajani et al. 2017): mean of (||grad D(x_hat)||_2 - 1)^2 at x_hat = alpha x + (1 - alpha) G(z).

    alpha ~ Uniform(0, 1), one per sample, puts x_hat on the segment from a generated sample to a real one.
    `generator` (a torch.Generator) fixes the alphas. The graph is kept (`create_graph=True`), so the penalty
    trains the critic. The critic must score each sample on its own (no BatchNorm, minibatch std or packing).
    """
    if real.shape != fake.shape or len(real) == 0:
        raise ValueError(
            f"real {list(real.shape)} and fake {list(fake.shape)} must be non-empty batches of the same shape: "
            "pass as many generated samples as real ones"
        )
    shape = (len(real),) + (1,) * (real.ndim - 1)  # one alpha per sample, broadcast over its features
    device = generator.device if generator is not None else real.device
    alpha = torch.rand(shape, generator=generator, device=device, dtype=real.dtype).to(real.device)
    x_hat = (alpha * real.detach() + (1 - alpha) * fake.detach()).requires_grad_(True)
    scores = critic(x_hat)
    if scores.shape != (len(real),):
        raise ValueError(
            f"the critic gave scores of shape {list(scores.shape)} for {len(real)} samples: the gradient penalty "
            "needs one score per sample (use pack=1)"
        )
    (grad,) = torch.autograd.grad(scores.sum(), x_hat, create_graph=True)
    return (grad.flatten(1).norm(dim=1) - 1).pow(2).mean()


@torch.no_grad()
def clip_weights(module: nn.Module, c: float) -> None:
    """Clamp every parameter of `module` into [-c, c], in place: the original WGAN's crude Lipschitz constraint."""
    if isinstance(c, bool) or not isinstance(c, numbers.Real) or not 0 < c < math.inf:
        raise ValueError(f"clip c must be a finite number > 0 (WGAN used 0.01); got {c!r}")
    for p in module.parameters():
        p.clamp_(-c, c)


def check_critic(critic: nn.Module, loss: str) -> None:
    """Entrance check of the training loops: `loss` is one of LOSSES, and a WGAN-GP critic scores samples one by one.

    The gradient penalty is about each sample's own gradient; BatchNorm, minibatch std or packing mix
    the samples of a batch, so each score would also depend on (and pass gradient to) the others.
    """
    if loss not in LOSSES:
        raise ValueError(f"loss must be one of {LOSSES}; got {loss!r}")
    if loss != "wgan-gp":
        return
    config = getattr(critic, "config", {})
    if any(isinstance(m, nn.BatchNorm1d | nn.BatchNorm2d | nn.BatchNorm3d) for m in critic.modules()):
        raise ValueError(
            "the WGAN-GP critic has BatchNorm, which mixes the samples of a batch: build it with "
            "norm='layer' or norm='none' (or spectral_norm=True)"
        )
    if config.get("minibatch_std") or config.get("pack", 1) > 1:
        raise ValueError(
            "the WGAN-GP critic uses minibatch std or packing, which mix the samples of a batch: "
            "build it with minibatch_std=False and pack=1"
        )


def make_optimizer(
    params: Iterable[nn.Parameter], lr: float, betas: tuple[float, float], name: str = "adam"
) -> torch.optim.Optimizer:
    """Adam(lr, betas), or RMSprop(lr) as in the original WGAN (which found momentum unsettled the clipped critic)."""
    if name == "adam":
        return torch.optim.Adam(params, lr=lr, betas=betas)
    if name == "rmsprop":
        return torch.optim.RMSprop(params, lr=lr)
    raise ValueError(f"optimizer must be 'adam' or 'rmsprop'; got {name!r}")


@dataclass
class GanRun:
    """What `train_gan_2d` returns: losses per step and generator samples at chosen steps (fixed z, on CPU)."""

    history: dict[str, list[float]]
    snapshots: dict[int, torch.Tensor] = field(default_factory=dict)
    seconds: float = 0.0


def train_gan_2d(
    G: Generator2D,
    D: Discriminator2D,
    data: torch.Tensor,
    steps: int = 5000,
    batch_size: int = 256,
    lr: float = 1e-3,
    lr_end: float | None = None,
    betas: tuple[float, float] = (0.5, 0.999),
    r1_weight: float = 0.0,
    snapshot_steps: list[int] | None = None,
    n_snapshot: int = 1000,
    seed: int = 0,
    progress: bool = True,
) -> GanRun:
    """Train G and D with the non-saturating loss (BCE with logits), one D step then one G step.

    `data` is an (N, 2) tensor of real points; each step draws `batch_size` of them at random.
    `lr_end`, if given, decays both learning rates linearly from `lr` to `lr_end` over the run
    (meant to let G settle on the narrow modes with late small steps; notebook 03 measures whether it helps).
    `r1_weight` (gamma) > 0 adds gamma / 2 * `r1_penalty` to D's loss: D is kept flat on the real data, so it
    cannot overshoot and G's samples are led to the modes instead of oscillating (history gains "r1").
    `snapshot_steps` (default: 10 evenly spaced, 0 and `steps` included) are the steps at which
    `n_snapshot` generator samples, always from the same z, are stored.
    """
    import time

    torch.manual_seed(seed)
    device = next(G.parameters()).device
    data = data.to(device)
    if snapshot_steps is None:
        snapshot_steps = [round(steps * i / 9) for i in range(10)]
    z_fixed = torch.randn(n_snapshot, G.latent_dim, generator=torch.Generator().manual_seed(seed + 1)).to(device)
    opt_g = torch.optim.Adam(G.parameters(), lr=lr, betas=betas)
    opt_d = torch.optim.Adam(D.parameters(), lr=lr, betas=betas)
    shrink = 1.0 - (lr if lr_end is None else lr_end) / lr  # the learning rate falls by this fraction
    schedules = [torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 1.0 - shrink * s / steps) for opt in (opt_g, opt_d)]
    ones = torch.ones(batch_size // D.pack, device=device)
    zeros = torch.zeros_like(ones)
    if r1_weight < 0:
        raise ValueError(f"r1_weight must be >= 0; got {r1_weight}")
    run = GanRun(history={"loss_d": [], "loss_g": [], "d_real": [], "d_fake": []})
    if r1_weight > 0:
        run.history["r1"] = []

    def snapshot(step: int) -> None:
        if step in snapshot_steps:
            with torch.no_grad():
                run.snapshots[step] = G(z_fixed).cpu()

    start = time.perf_counter()
    snapshot(0)
    for step in tqdm(range(1, steps + 1), desc="GAN 2D", disable=not progress, mininterval=1.0):
        real = data[torch.randint(len(data), (batch_size,), device=device)].requires_grad_(r1_weight > 0)
        fake = G(torch.randn(batch_size, G.latent_dim, device=device))
        # Discriminator: real packs -> 1, generated packs -> 0 (fake detached: no gradient into G here).
        logit_real, logit_fake = D(real), D(fake.detach())
        loss_d = F.binary_cross_entropy_with_logits(logit_real, ones) + F.binary_cross_entropy_with_logits(
            logit_fake, zeros
        )
        if r1_weight > 0:  # penalise D's gradient on real points: no steep walls for G to bounce off
            penalty = r1_penalty(logit_real, real)
            loss_d = loss_d + 0.5 * r1_weight * penalty
            run.history["r1"].append(penalty.item())
        check_finite(loss_d, step, "discriminator loss")
        opt_d.zero_grad(set_to_none=True)
        loss_d.backward()
        opt_d.step()
        # Generator, non-saturating: maximise log D(G(z)), i.e. BCE against the label "real".
        loss_g = F.binary_cross_entropy_with_logits(D(fake), ones)
        check_finite(loss_g, step, "generator loss")
        opt_g.zero_grad(set_to_none=True)
        loss_g.backward()
        opt_g.step()
        for schedule in schedules:
            schedule.step()
        run.history["loss_d"].append(loss_d.item())
        run.history["loss_g"].append(loss_g.item())
        run.history["d_real"].append(torch.sigmoid(logit_real).mean().item())
        run.history["d_fake"].append(torch.sigmoid(logit_fake).mean().item())
        snapshot(step)
    run.seconds = time.perf_counter() - start
    return run


def draw_snapshot(
    snapshots: dict[int, torch.Tensor],
    index: int,
    real: torch.Tensor,
    centres: torch.Tensor,
    ax: plt.Axes | None = None,
) -> Figure:
    """Draw the `index`-th snapshot (in step order) over the real data; the slider's callback, pure and headless."""
    from .plotting import plot_2d_samples

    steps = sorted(snapshots)
    if not 0 <= index < len(steps):
        raise IndexError(f"snapshot index {index} out of range: there are {len(steps)} snapshots")
    step = steps[index]
    return plot_2d_samples(real, snapshots[step], centres, title=f"step {step}", ax=ax)


def snapshot_grid(
    snapshots: dict[int, torch.Tensor], real: torch.Tensor, centres: torch.Tensor, ncols: int = 5
) -> Figure:
    """All snapshots side by side: the static version of `snapshot_slider`."""
    n = len(snapshots)
    nrows = math.ceil(n / ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(3 * ncols, 3 * nrows), squeeze=False)
    for i, ax in enumerate(axes.flat):
        if i < n:
            draw_snapshot(snapshots, i, real, centres, ax=ax)
            ax.get_legend().remove()
        else:
            ax.axis("off")
    fig.tight_layout()
    return fig


def snapshot_slider(snapshots: dict[int, torch.Tensor], real: torch.Tensor, centres: torch.Tensor) -> Any:
    """A widget: a slider over the training snapshots and the snapshot it points at, redrawn as it moves.

    Without a live front end (a static viewer, nbval) the cell shows the last snapshot as a picture.
    """
    import ipywidgets as widgets

    from .plotting import SliderFigure

    if not snapshots:
        raise ValueError("no snapshots to scrub through: train with snapshot_steps holding at least one step")

    def draw(values: dict[str, int]) -> Figure:
        ax = Figure(figsize=(4.5, 4.5)).subplots()
        return draw_snapshot(snapshots, values["index"], real, centres, ax=ax)

    last = len(snapshots) - 1
    slider = widgets.IntSlider(value=last, min=0, max=last, description="snapshot")
    return SliderFigure({"index": slider}, draw)
