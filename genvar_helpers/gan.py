"""GANs on MNIST (notebooks 04 and 05): MLP and DCGAN models, the two losses, DiffAugment and the training loops;
the Wasserstein loop of notebook 08, `train_wgan`, for images and 2D points.

Conventions: generators map z ~ N(0, I) to images in [-1, 1] (tanh), so real
data is rescaled from [0, 1] to [-1, 1] before the discriminator sees it.
Discriminators return logits (no sigmoid): the losses use BCE-with-logits.
`sample(n)` maps back to [0, 1], the range every model of the series returns.
"""

from __future__ import annotations

import contextlib
import copy
import math
import numbers
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from .gan2d import (
    Generator2D,
    check_critic,
    clip_weights,
    gradient_penalty,
    make_optimizer,
    r1_penalty,
    wasserstein_critic_loss,
    wasserstein_generator_loss,
)
from .runtime import SAMPLE_CHUNK, check_count, check_finite

IMAGE_SHAPE = (1, 28, 28)
Augment = Callable[[torch.Tensor], torch.Tensor]


def to_tanh_range(images: torch.Tensor) -> torch.Tensor:
    """Map images from [0, 1] (how data is stored) to [-1, 1] (what a tanh generator produces)."""
    return images * 2 - 1


class Generator(nn.Module):
    """Base class of the generators: `forward(z)` gives images in [-1, 1]; `sample(n)` gives them in [0, 1]."""

    latent_dim: int
    config: dict

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    def latent(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """n latent codes z ~ N(0, I) on the model's device."""
        z = torch.randn(n, self.latent_dim, generator=generator, device="cpu" if generator else self.device)
        return z.to(self.device)

    @torch.no_grad()
    def sample(self, n: int, z: torch.Tensor | None = None) -> torch.Tensor:
        """n images (n, 1, 28, 28) in [0, 1] on the model's device; eval mode inside, previous mode restored.

        `z` (n codes) fixes the draw. The codes go through G in chunks of SAMPLE_CHUNK, so a large n
        fits in memory and gives the same images as one big batch. n = 0 gives an empty (0, 1, 28, 28) tensor.
        """
        n = check_count(n)
        if z is not None and len(z) != n:
            raise ValueError(f"z holds {len(z)} codes but n is {n}: pass n=len(z)")
        if n == 0:
            return torch.empty(0, *IMAGE_SHAPE, device=self.device)
        was_training = self.training
        self.eval()
        try:
            z = self.latent(n) if z is None else z.to(self.device)
            images = torch.cat([(self(chunk) + 1) / 2 for chunk in z.split(SAMPLE_CHUNK)])
        finally:
            self.train(was_training)
        return images.clamp(0, 1)


class MLPGenerator(Generator):
    """z -> fully connected layers (BatchNorm, ReLU) -> 784 pixels -> tanh."""

    def __init__(self, latent_dim: int = 64, hidden: tuple[int, ...] = (256, 512)) -> None:
        super().__init__()
        self.latent_dim = latent_dim
        self.config = {"latent_dim": latent_dim, "hidden": tuple(hidden)}
        layers: list[nn.Module] = []
        width = latent_dim
        for h in hidden:
            layers += [nn.Linear(width, h), nn.BatchNorm1d(h), nn.ReLU()]
            width = h
        layers += [nn.Linear(width, math.prod(IMAGE_SHAPE)), nn.Tanh()]
        self.net = nn.Sequential(*layers)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.net(z).view(-1, *IMAGE_SHAPE)


class MinibatchStd(nn.Module):
    """Append one feature: the average standard deviation of the features across the batch (Karras et al. 2018).

    A collapsed generator makes batches with little variety, and this feature lets D see it.
    """

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        """(n, c) or (n, c, height, width) -> one more channel holding the batch-variety number."""
        # sqrt(var + eps), as in Karras et al.: a feature with no spread gives a finite gradient, also for R1.
        std = (h.float().var(dim=0, unbiased=False) + 1e-8).sqrt().mean().to(h.dtype)
        return torch.cat([h, std.expand(h.shape[0], 1, *h.shape[2:])], dim=1)


class MLPDiscriminator(nn.Module):
    """784 pixels -> fully connected layers (LeakyReLU, dropout) -> one logit (no sigmoid).

    `spectral_norm=True` holds every layer's largest singular value at 1 (Miyato et al. 2018, notebook 08).
    """

    def __init__(
        self,
        hidden: tuple[int, ...] = (512, 256),
        dropout: float = 0.3,
        minibatch_std: bool = True,
        spectral_norm: bool = False,
    ) -> None:
        super().__init__()
        self.config = {
            "hidden": tuple(hidden),
            "dropout": dropout,
            "minibatch_std": minibatch_std,
            "spectral_norm": spectral_norm,
        }
        layers: list[nn.Module] = [nn.Flatten()]
        width = math.prod(IMAGE_SHAPE)
        for h in hidden:
            layers += [nn.Linear(width, h), nn.LeakyReLU(0.2), nn.Dropout(dropout)]
            width = h
        if minibatch_std:
            layers.append(MinibatchStd())
            width += 1
        layers.append(nn.Linear(width, 1))
        self.net = nn.Sequential(*layers)
        if spectral_norm:
            for layer in self.net:
                if isinstance(layer, nn.Linear):
                    nn.utils.parametrizations.spectral_norm(layer)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x).squeeze(1)


def dcgan_init(module: nn.Module) -> None:
    """Radford et al. (2016): conv weights ~ N(0, 0.02); BatchNorm scale ~ N(1, 0.02), shift 0."""
    if isinstance(module, nn.Conv2d | nn.ConvTranspose2d | nn.Linear):
        nn.init.normal_(module.weight, 0.0, 0.02)
        if module.bias is not None:
            nn.init.zeros_(module.bias)
    elif isinstance(module, nn.BatchNorm2d):
        nn.init.normal_(module.weight, 1.0, 0.02)
        nn.init.zeros_(module.bias)


class DCGANGenerator(Generator):
    """z -> 7x7 -> 14x14 -> 28x28 by transposed convolutions, BatchNorm and ReLU; tanh output."""

    def __init__(self, latent_dim: int = 64, ngf: int = 32) -> None:
        super().__init__()
        self.latent_dim = latent_dim
        self.config = {"latent_dim": latent_dim, "ngf": ngf}
        self.net = nn.Sequential(
            nn.ConvTranspose2d(latent_dim, ngf * 4, 7, 1, 0, bias=False),  # 1x1 -> 7x7 ("project and reshape")
            nn.BatchNorm2d(ngf * 4),
            nn.ReLU(),
            nn.ConvTranspose2d(ngf * 4, ngf * 2, 4, 2, 1, bias=False),  # 7x7 -> 14x14
            nn.BatchNorm2d(ngf * 2),
            nn.ReLU(),
            nn.ConvTranspose2d(ngf * 2, 1, 4, 2, 1),  # 14x14 -> 28x28, no BatchNorm on the output
            nn.Tanh(),
        )
        self.apply(dcgan_init)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.net(z.view(-1, self.latent_dim, 1, 1))


def norm_2d(kind: str, channels: int) -> nn.Module:
    """A normalisation layer: "batch" (statistics over the batch), "layer" (over one image: per sample) or "none"."""
    if kind == "batch":
        return nn.BatchNorm2d(channels)
    if kind == "layer":
        return nn.GroupNorm(1, channels)  # a single group: layer normalisation with a scale and shift per channel
    if kind == "none":
        return nn.Identity()
    raise ValueError(f"norm must be 'batch', 'layer' or 'none'; got {kind!r}")


class DCGANDiscriminator(nn.Module):
    """28x28 -> 14x14 -> 7x7 by strided convolutions (LeakyReLU 0.2, BatchNorm but not on the input) -> one logit.

    `minibatch_std=True` adds the batch-variety channel (`MinibatchStd`) before the last layer.
    `spectral_norm=True` replaces BatchNorm by spectral normalisation of every convolution
    (Miyato et al. 2018): the largest singular value of each reshaped kernel matrix is held at 1, which bounds
    how fast D can change only up to a factor set by kernel size and stride (notebook 05 measures it).
    `norm` ("batch", "layer" or "none"; default "batch", or "none" with spectral_norm) picks the
    normalisation of the middle layer; a WGAN-GP critic needs a per-sample one (notebook 08).
    """

    def __init__(
        self, ndf: int = 32, minibatch_std: bool = False, spectral_norm: bool = False, norm: str | None = None
    ) -> None:
        super().__init__()
        norm = norm or ("none" if spectral_norm else "batch")
        self.config = {"ndf": ndf, "minibatch_std": minibatch_std, "spectral_norm": spectral_norm, "norm": norm}
        self.net = nn.Sequential(
            nn.Conv2d(1, ndf, 4, 2, 1),  # 28 -> 14, no normalisation on the input layer
            nn.LeakyReLU(0.2),
            nn.Conv2d(ndf, ndf * 2, 4, 2, 1, bias=False),  # 14 -> 7
            norm_2d(norm, ndf * 2),
            nn.LeakyReLU(0.2),
        )
        self.minibatch_std = MinibatchStd() if minibatch_std else nn.Identity()
        self.head = nn.Conv2d(ndf * 2 + int(minibatch_std), 1, 7, 1, 0)  # 7x7 -> one logit
        self.apply(dcgan_init)  # before spectral_norm, which turns `weight` into a computed attribute
        if spectral_norm:
            for conv in (self.net[0], self.net[2], self.head):
                nn.utils.parametrizations.spectral_norm(conv)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.minibatch_std(self.net(x))).flatten()


def spectral_norm_estimate(
    weight: torch.Tensor, iterations: int = 100, generator: torch.Generator | None = None
) -> float:
    """The largest singular value of `weight` by power iteration, what spectral normalisation divides by.

    A conv kernel (out, in, k, k) is read as the matrix (out, in * k * k), as torch's `spectral_norm` reads
    it. From a random unit u, repeat v = W^T u / ||W^T u||, u = W v / ||W v||; then sigma = u^T W v.
    `generator` (a torch.Generator) fixes the start.
    """
    if weight.ndim < 2 or weight.numel() == 0 or not torch.isfinite(weight).all():
        raise ValueError(
            f"weight must be a finite tensor with at least 2 dimensions (a layer's weight); got {list(weight.shape)}"
        )
    iterations = _positive("iterations", iterations)
    w = weight.detach().float().reshape(len(weight), -1)
    device = generator.device if generator is not None else w.device
    u = F.normalize(torch.randn(len(w), generator=generator, device=device).to(w.device), dim=0)
    for _ in range(iterations):
        v = F.normalize(w.T @ u, dim=0)
        u = F.normalize(w @ v, dim=0)
    return (u @ w @ v).item()


def discriminator_loss(real_logits: torch.Tensor, fake_logits: torch.Tensor, real_target: float = 1.0) -> torch.Tensor:
    """-log D(x) - log(1 - D(G(z))), batch means, from logits; `real_target` < 1 is one-sided label smoothing."""
    real = F.binary_cross_entropy_with_logits(real_logits, torch.full_like(real_logits, real_target))
    fake = F.binary_cross_entropy_with_logits(fake_logits, torch.zeros_like(fake_logits))
    return real + fake


def generator_loss(fake_logits: torch.Tensor) -> torch.Tensor:
    """Non-saturating generator loss -log D(G(z)) = softplus(-logit), batch mean (Goodfellow et al. 2014)."""
    return F.binary_cross_entropy_with_logits(fake_logits, torch.ones_like(fake_logits))


def diff_augment(x: torch.Tensor, translation: float = 0.125, cutout: float = 0.5, fill: float = -1.0) -> torch.Tensor:
    """Differentiable augmentation for D's inputs (Zhao et al. 2020): random shift and a cut-out square.

    Applied to real and fake images alike, and differentiable, so G still gets
    gradients through it. Shifts up to `translation` x size pixels, pads with
    `fill` (the background, -1 in tanh range); cuts out a square of `cutout` x size.
    """
    n, _, h, w = x.shape
    if translation > 0:
        s = max(1, round(h * translation))
        padded = F.pad(x, (s, s, s, s), value=fill)
        dy = torch.randint(0, 2 * s + 1, (n, 1, 1), device=x.device)
        dx = torch.randint(0, 2 * s + 1, (n, 1, 1), device=x.device)
        rows = torch.arange(h, device=x.device).view(1, h, 1) + dy
        cols = torch.arange(w, device=x.device).view(1, 1, w) + dx
        batch = torch.arange(n, device=x.device).view(n, 1, 1)
        x = padded[batch, :, rows, cols].permute(0, 3, 1, 2)  # (n, h, w, c) -> (n, c, h, w)
    if cutout > 0:
        size = round(h * cutout)
        top = torch.randint(-(size // 2), h - size // 2 + 1, (n, 1, 1), device=x.device)
        left = torch.randint(-(size // 2), w - size // 2 + 1, (n, 1, 1), device=x.device)
        r = torch.arange(h, device=x.device).view(1, h, 1)
        c = torch.arange(w, device=x.device).view(1, 1, w)
        hole = (r >= top) & (r < top + size) & (c >= left) & (c < left + size)
        x = torch.where(hole.unsqueeze(1), torch.full_like(x, fill), x)
    return x


@torch.no_grad()
def ema_update(ema: nn.Module, model: nn.Module, decay: float) -> None:
    """ema <- decay * ema + (1 - decay) * model for parameters; buffers (BatchNorm statistics) copied."""
    for p_ema, p in zip(ema.parameters(), model.parameters(), strict=True):
        p_ema.lerp_(p, 1 - decay)
    for b_ema, b in zip(ema.buffers(), model.buffers(), strict=True):
        b_ema.copy_(b)


@dataclass
class GANRun:
    """What the GAN loops return: per-step history, fixed-noise snapshots, timing and the EMA generator (if any)."""

    history: dict[str, list[float]]
    snapshots: dict[int, torch.Tensor] = field(default_factory=dict)  # step -> images in [0, 1] on the CPU
    seconds: float = 0.0
    images_per_second: float = 0.0  # real images through D per second of training
    generator_ema: Generator | None = None


def _positive(name: str, value: object) -> int:
    """`value` when it is a whole number >= 1; otherwise a ValueError naming the argument."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
        raise ValueError(f"{name} must be a positive integer; got {value!r}")
    return int(value)


def cycle_batches(batches: Iterable[tuple[torch.Tensor, ...]], steps: int) -> Iterator[torch.Tensor]:
    """The real images of `steps` batches, pass after pass over `batches` (each item is (images, ...)).

    A pass that yields nothing (an empty source, or a one-shot iterator already used up)
    raises ValueError: cycling it would loop forever.
    """
    done = 0
    while done < steps:
        before = done
        for real, *_ in batches:
            yield real
            done += 1
            if done == steps:
                return
        if done == before:
            raise ValueError(
                f"batches yielded no data after {done} steps: pass a re-iterable source such as "
                "TensorBatches or a DataLoader, or fewer steps"
            )


def train_gan_basic(
    generator: Generator,
    discriminator: nn.Module,
    batches: Iterable[tuple[torch.Tensor, ...]],
    *,
    steps: int,
    lr: float = 2e-4,
    betas: tuple[float, float] = (0.5, 0.999),
    ema_decay: float | None = None,
    snapshot_every: int = 0,
    fixed_z: torch.Tensor | None = None,
    seed: int = 0,
    progress: bool = True,
) -> GANRun:
    """The plain GAN loop: per batch of real images in [0, 1], one D step, then one G step (non-saturating loss).

    `ema_decay` keeps a moving average of G's weights (`run.generator_ema`); every `snapshot_every`
    steps G (its average, if kept) draws `fixed_z` into `run.snapshots`. `train_gan` is this loop
    plus options (augmentation, R1, mixed precision...): with the same arguments both give the same run.
    """
    _positive("steps", steps)
    torch.manual_seed(seed)
    opt_g = torch.optim.Adam(generator.parameters(), lr=lr, betas=betas)
    opt_d = torch.optim.Adam(discriminator.parameters(), lr=lr, betas=betas)
    ema = copy.deepcopy(generator).requires_grad_(False) if ema_decay else None
    if snapshot_every and fixed_z is None:
        fixed_z = generator.latent(64, torch.Generator().manual_seed(seed))
    run = GANRun({"loss_D": [], "loss_G": [], "D(x)": [], "D(G(z))": []}, generator_ema=ema)
    generator.train()
    discriminator.train()
    start, n_images = time.perf_counter(), 0
    bar = tqdm(cycle_batches(batches, steps), total=steps, desc="GAN training", disable=not progress)
    for step, real in enumerate(bar):
        if snapshot_every and step % snapshot_every == 0:
            run.snapshots[step] = (ema or generator).sample(len(fixed_z), z=fixed_z).cpu()  # type: ignore[arg-type]
        real = to_tanh_range(real)
        fake = generator(generator.latent(len(real)))
        # Discriminator step: real -> 1, fake -> 0. The fakes are detached, so this step does not touch G.
        real_logits, fake_logits = discriminator(real), discriminator(fake.detach())
        loss_d = discriminator_loss(real_logits, fake_logits)
        check_finite(loss_d, step, "discriminator loss")
        opt_d.zero_grad(set_to_none=True)
        loss_d.backward()
        opt_d.step()
        # Generator step: gradients flow through D into G; only G's optimizer steps.
        loss_g = generator_loss(discriminator(fake))
        check_finite(loss_g, step, "generator loss")
        opt_g.zero_grad(set_to_none=True)
        loss_g.backward()
        opt_g.step()
        if ema is not None:
            ema_update(ema, generator, ema_decay)  # type: ignore[arg-type]
        d_real, d_fake = torch.sigmoid(real_logits).mean(), torch.sigmoid(fake_logits).mean()
        for key, value in zip(run.history, (loss_d, loss_g, d_real, d_fake), strict=True):
            run.history[key].append(value.item())
        n_images += len(real)
    if snapshot_every:
        run.snapshots[steps] = (ema or generator).sample(len(fixed_z), z=fixed_z).cpu()  # type: ignore[arg-type]
    run.seconds = time.perf_counter() - start
    run.images_per_second = n_images / run.seconds
    generator.eval()
    discriminator.eval()
    return run


def train_gan(
    generator: Generator,
    discriminator: nn.Module,
    batches: Iterable[tuple[torch.Tensor, ...]],
    *,
    epochs: int | None = None,
    steps: int | None = None,
    lr: float = 2e-4,
    lr_d: float | None = None,
    betas: tuple[float, float] = (0.5, 0.999),
    augment: Augment | None = None,
    real_target: float = 1.0,
    instance_noise: float = 0.0,
    r1_weight: float = 0.0,
    ema_decay: float | None = None,
    snapshot_every: int = 0,
    fixed_z: torch.Tensor | None = None,
    amp: bool = False,
    compile: bool = False,
    seed: int = 0,
    progress: bool = True,
) -> GANRun:
    """Train a GAN with the non-saturating loss and Adam(beta1=0.5); batches yield (images in [0, 1], ...).

    The loop of `train_gan_basic` with options. Give `epochs` or `steps`; `batches` is cycled
    (a one-shot iterator that runs out raises ValueError). `lr_d` defaults to `lr`. `augment` (e.g. `diff_augment`)
    is applied to every input of D, real and fake. `instance_noise` is the std of
    Gaussian noise added to D's inputs, annealed linearly to 0. `r1_weight` (gamma) adds
    gamma / 2 times the R1 penalty on real inputs to D's loss (history gains "r1"). `ema_decay` keeps an
    exponential moving average of G's weights. `amp` (mixed precision) and `compile`
    (`torch.compile`) act only on CUDA; elsewhere they are switched off, with a message.
    """
    if (epochs is None) == (steps is None):
        raise ValueError("give exactly one of `epochs` or `steps`")
    per_epoch = len(batches) if hasattr(batches, "__len__") else None  # type: ignore[arg-type]
    if steps is None:
        if per_epoch is None:
            raise ValueError("`epochs` needs batches with a len(); pass `steps` instead")
        if per_epoch == 0:
            raise ValueError("batches is empty (len 0): check the data and the batch size, which may exceed it")
        steps = _positive("epochs", epochs) * per_epoch
    steps = _positive("steps", steps)
    if r1_weight < 0:
        raise ValueError(f"r1_weight must be >= 0; got {r1_weight}")
    device = generator.device
    use_amp, use_compile = amp and device.type == "cuda", compile and device.type == "cuda"
    if (amp and not use_amp) or (compile and not use_compile):
        print(f"train_gan: amp/compile act only on CUDA; running without them on {device.type}")
    torch.manual_seed(seed)

    opt_g = torch.optim.Adam(generator.parameters(), lr=lr, betas=betas)
    opt_d = torch.optim.Adam(discriminator.parameters(), lr=lr_d or lr, betas=betas)
    amp_dtype = torch.bfloat16 if use_amp and torch.cuda.is_bf16_supported() else torch.float16
    scaler = torch.amp.GradScaler("cuda", enabled=use_amp and amp_dtype == torch.float16)

    def autocast() -> contextlib.AbstractContextManager:
        return torch.autocast("cuda", dtype=amp_dtype) if use_amp else contextlib.nullcontext()

    g_fn = torch.compile(generator) if use_compile else generator
    d_fn = torch.compile(discriminator) if use_compile else discriminator
    ema = copy.deepcopy(generator).requires_grad_(False) if ema_decay else None
    if snapshot_every and fixed_z is None:
        fixed_z = generator.latent(64, torch.Generator().manual_seed(seed))

    def d_input(x: torch.Tensor, step: int) -> torch.Tensor:
        if instance_noise > 0:
            x = x + torch.randn_like(x) * instance_noise * (1 - step / steps)
        return augment(x) if augment is not None else x

    def snapshot(step: int) -> None:
        if snapshot_every and (step % snapshot_every == 0 or step == steps):
            run.snapshots[step] = (ema or generator).sample(len(fixed_z), z=fixed_z).cpu()  # type: ignore[arg-type]

    history: dict[str, list[float]] = {"loss_D": [], "loss_G": [], "D(x)": [], "D(G(z))": []}
    if r1_weight > 0:
        history["r1"] = []
    stats: list[torch.Tensor] = []  # kept on the device, read once at the end (no sync per step)
    run = GANRun(history, generator_ema=ema)
    generator.train()
    discriminator.train()
    snapshot(0)
    start = time.perf_counter()
    bar = tqdm(cycle_batches(batches, steps), total=steps, desc="GAN training", disable=not progress)
    for step, real in enumerate(bar):
        real = to_tanh_range(real)
        z = torch.randn(len(real), generator.latent_dim, device=device)
        # Discriminator step: fakes are detached, so this step does not touch G.
        with autocast():
            fake = g_fn(z)
            real_in = d_input(real, step).requires_grad_(r1_weight > 0)
            real_logits = d_fn(real_in)
            fake_logits = d_fn(d_input(fake.detach(), step))
            loss_d = discriminator_loss(real_logits.float(), fake_logits.float(), real_target)
        if r1_weight > 0:  # keep D flat on the real digits (Mescheder et al. 2018)
            penalty = r1_penalty(real_logits.float(), real_in)
            loss_d = loss_d + 0.5 * r1_weight * penalty
        check_finite(loss_d, step, "discriminator loss")
        opt_d.zero_grad(set_to_none=True)
        scaler.scale(loss_d).backward()
        scaler.step(opt_d)
        # Generator step: gradients flow through D into G; only G's optimizer steps.
        with autocast():
            loss_g = generator_loss(d_fn(d_input(fake, step)).float())
        check_finite(loss_g, step, "generator loss")
        opt_g.zero_grad(set_to_none=True)
        scaler.scale(loss_g).backward()
        scaler.step(opt_g)
        scaler.update()
        if ema is not None:
            ema_update(ema, generator, ema_decay)  # type: ignore[arg-type]
        d_real, d_fake = torch.sigmoid(real_logits.detach().float()), torch.sigmoid(fake_logits.detach().float())
        row = [loss_d.detach(), loss_g.detach(), d_real.mean(), d_fake.mean()]
        stats.append(torch.stack(row + ([penalty.detach()] if r1_weight > 0 else [])))
        if (step + 1) % 50 == 0:
            bar.set_postfix(loss_D=f"{loss_d.item():.3f}", loss_G=f"{loss_g.item():.3f}")
        snapshot(step + 1)
    bar.close()
    for name, column in zip(history, torch.stack(stats).cpu().T.tolist(), strict=True):
        history[name] = column
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    run.seconds = time.perf_counter() - start
    run.images_per_second = steps * getattr(batches, "batch_size", len(real)) / run.seconds
    generator.eval()
    discriminator.eval()
    return run


def train_wgan(
    generator: Generator | Generator2D,
    critic: nn.Module,
    batches: Iterable[tuple[torch.Tensor, ...]],
    *,
    steps: int,
    loss: str = "wgan-gp",
    n_critic: int = 5,
    lr: float = 1e-4,
    lr_d: float | None = None,
    betas: tuple[float, float] = (0.0, 0.9),
    optimizer: str = "adam",
    clip: float = 0.01,
    gp_weight: float = 10.0,
    images: bool = True,
    ema_decay: float | None = None,
    snapshot_every: int = 0,
    fixed_z: torch.Tensor | None = None,
    seed: int = 0,
    progress: bool = True,
) -> GANRun:
    """The loop of notebook 08: per generator step, `n_critic` critic steps, each on the next batch from `batches`.

    `loss`: "wgan-gp" (Gulrajani et al. 2017): the critic minimises mean D(G(z)) - mean D(x) plus gp_weight
    x `gradient_penalty`; "wgan" (Arjovsky et al. 2017): no penalty, the critic's weights are clipped to
    [-clip, clip] (their recipe: optimizer="rmsprop", lr=5e-5); G minimises -mean D(G(z)). "ns" is the
    non-saturating loss, for comparison: with n_critic=1 and lr_d=None this is `train_gan_basic`.
    `steps` counts generator steps, so a run reads steps x n_critic batches. `lr_d` (default `lr`) is the
    critic's learning rate (TTUR). `images=True`: batches yield images in [0, 1], mapped to [-1, 1], and
    snapshots are `sample(z=fixed_z)` in [0, 1]; `images=False`: batches yield points used as they are
    (2D toy data), and snapshots are G(fixed_z). `ema_decay`, `snapshot_every` and `fixed_z` (64 codes by
    default) act as in `train_gan_basic`. History, one row per generator step, the critic's numbers from its
    last step: "loss_D", "loss_G", then for "ns" the mean D(x), D(G(z)) as probabilities; for WGAN the mean
    raw scores "critic(x)", "critic(G(z))" and their difference "W_estimate", and "gp" (unweighted) for "wgan-gp".
    """
    check_critic(critic, loss)
    steps, n_critic = _positive("steps", steps), _positive("n_critic", n_critic)
    if gp_weight < 0:
        raise ValueError(f"gp_weight must be >= 0; got {gp_weight}")
    if loss == "wgan":
        clip_weights(critic, clip)  # the critic starts inside the box (this also checks clip)
    torch.manual_seed(seed)
    device = next(generator.parameters()).device
    opt_g = make_optimizer(generator.parameters(), lr, betas, optimizer)
    opt_d = make_optimizer(critic.parameters(), lr_d or lr, betas, optimizer)
    ema = copy.deepcopy(generator).requires_grad_(False) if ema_decay else None
    if snapshot_every and fixed_z is None:
        fixed_z = torch.randn(64, generator.latent_dim, generator=torch.Generator().manual_seed(seed)).to(device)
    names = ["D(x)", "D(G(z))"] if loss == "ns" else ["critic(x)", "critic(G(z))", "W_estimate"]
    run = GANRun({key: [] for key in ["loss_D", "loss_G", *names] + ["gp"] * (loss == "wgan-gp")}, generator_ema=ema)

    @torch.no_grad()
    def snapshot(step: int) -> None:
        if snapshot_every and (step % snapshot_every == 0 or step == steps):
            g = ema or generator
            run.snapshots[step] = (g.sample(len(fixed_z), z=fixed_z) if images else g(fixed_z)).cpu()  # type: ignore

    rows: list[torch.Tensor] = []  # kept on the device, read once at the end (no sync per step)
    generator.train()
    critic.train()
    source, start, n_real = cycle_batches(batches, steps * n_critic), time.perf_counter(), 0
    for step in tqdm(range(steps), desc=f"{loss} training", disable=not progress):
        snapshot(step)
        for _ in range(n_critic):  # critic steps: the fakes are detached, so they do not touch G
            real = next(source)
            real = to_tanh_range(real) if images else real
            fake = generator(torch.randn(len(real), generator.latent_dim, device=device))
            real_scores, fake_scores = critic(real), critic(fake.detach())
            if loss == "ns":
                loss_d = discriminator_loss(real_scores, fake_scores)
            else:  # real scores up, generated ones down, with no ceiling: only the constraint bounds them
                loss_d = wasserstein_critic_loss(real_scores, fake_scores)
            if loss == "wgan-gp":  # gradient norm 1 between real and generated samples: a soft Lipschitz constraint
                gp = gradient_penalty(critic, real, fake)
                loss_d = loss_d + gp_weight * gp
            check_finite(loss_d, step, "critic loss")
            opt_d.zero_grad(set_to_none=True)
            loss_d.backward()
            opt_d.step()
            if loss == "wgan":  # the hard constraint: every weight back into [-clip, clip]
                clip_weights(critic, clip)
            n_real += len(real)
        # Generator step, on the last fakes (G has not changed since): gradients flow through the critic into G.
        scores = critic(fake)
        loss_g = generator_loss(scores) if loss == "ns" else wasserstein_generator_loss(scores)
        check_finite(loss_g, step, "generator loss")
        opt_g.zero_grad(set_to_none=True)
        loss_g.backward()
        opt_g.step()
        if ema is not None:
            ema_update(ema, generator, ema_decay)  # type: ignore[arg-type]
        if loss == "ns":
            stats = [real_scores.sigmoid().mean(), fake_scores.sigmoid().mean()]
        else:
            stats = [real_scores.mean(), fake_scores.mean(), real_scores.mean() - fake_scores.mean()]
        if loss == "wgan-gp":
            stats.append(gp)
        rows.append(torch.stack([loss_d, loss_g, *stats]).detach())
    snapshot(steps)
    for key, column in zip(run.history, torch.stack(rows).cpu().T.tolist(), strict=True):
        run.history[key] = column
    run.seconds = time.perf_counter() - start
    run.images_per_second = n_real / run.seconds
    generator.eval()
    critic.eval()
    return run
