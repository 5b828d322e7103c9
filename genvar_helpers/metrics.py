"""Measures of the series: 2D mode coverage, IWAE log-likelihood, and sample metrics in an MNIST classifier's space.

Conventions (see each function for details):
- 2D toys: a sample is *high quality* when it lies within 3 std of its nearest mode centre; a mode is *covered*
  when it receives at least 20% of its expected share of samples as high-quality ones (PacGAN's rule: 20 of
  the 100 samples per mode expected from 2,500 samples on 25 modes).
- Likelihoods: dynamic binarisation (pixels drawn as Bernoulli(intensity) with a fixed seed), a Bernoulli
  decoder, nats per image; bits/dim = nats / (D ln 2) with D = 784 for MNIST.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn

# ---------------------------------------------------------------- 2D mode metrics


def mode_metrics(samples: torch.Tensor, centres: torch.Tensor, std: float, min_share: float = 0.2) -> dict[str, Any]:
    """Modes covered and share of high-quality samples for a 2D Gaussian mixture (PacGAN / VEEGAN protocol).

    Each sample is assigned to its nearest centre; it is high quality when within 3 * std of it. A mode is
    covered when it holds at least `min_share * n / k` high-quality samples (default 20% of the expected
    count: 20 samples for 2,500 samples on 25 modes, 62 on 8). Intended for about 2,500 samples.
    """
    samples, centres = torch.as_tensor(samples).float().cpu(), torch.as_tensor(centres).float().cpu()
    if samples.ndim != 2 or samples.shape[1] != 2 or centres.ndim != 2 or centres.shape[1] != 2:
        raise ValueError(
            f"expected samples (n, 2) and centres (k, 2); got {tuple(samples.shape)}, {tuple(centres.shape)}"
        )
    n, k = len(samples), len(centres)
    dist = torch.cdist(samples, centres)
    nearest_dist, nearest = dist.min(dim=1)
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


def _model_device(model: nn.Module) -> torch.device:
    param = next(iter(model.parameters()), None)
    return param.device if param is not None else torch.device("cpu")


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
    device = _model_device(model)
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
            log_pxz = -nn.functional.binary_cross_entropy_with_logits(
                logits, x.reshape(1, m, -1).expand_as(logits), reduction="none"
            ).sum(-1)
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
