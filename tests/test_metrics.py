"""Tests of genvar_helpers.metrics: each check fails if the measure it guards were broken."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from genvar_helpers.data import grid_of_gaussians, ring_of_gaussians
from genvar_helpers.metrics import iwae_log_likelihood, mode_metrics

# ---------------------------------------------------------------- 2D mode metrics


@pytest.mark.parametrize("make", [ring_of_gaussians, grid_of_gaussians])
def test_mode_metrics_perfect_samples_cover_every_mode(make) -> None:
    data = make(2500, seed=0)
    m = mode_metrics(data.samples, data.centres, data.std)
    assert m["modes_covered"] == m["n_modes"] == len(data.centres)
    assert m["high_quality"] > 0.98  # 3 sigma in 2D holds 98.9% of a Gaussian's mass
    assert sum(m["per_mode_counts"]) == pytest.approx(m["high_quality"] * 2500)


def test_mode_metrics_collapsed_samples() -> None:
    data = grid_of_gaussians(2500, seed=0)
    # all samples on 3 modes; a few stragglers on a 4th mode, too few to count as covered
    collapsed = data.centres[torch.arange(2500) % 3] + 0.5 * data.std * torch.randn(2500, 2)
    collapsed[:5] = data.centres[10]
    m = mode_metrics(collapsed, data.centres, data.std)
    assert m["modes_covered"] == 3
    assert m["per_mode_counts"][10] == 5
    blurry = data.samples + 10 * data.std * torch.randn(2500, 2)  # right places, far too spread out
    assert mode_metrics(blurry, data.centres, data.std)["high_quality"] < 0.2


# ---------------------------------------------------------------- IWAE on a model whose likelihood is known


class TinyVAE(nn.Module):
    """1-D latent, 4 binary pixels, fixed linear decoder; a deliberately imperfect Gaussian encoder."""

    def __init__(self) -> None:
        super().__init__()
        self.w = nn.Parameter(torch.tensor([2.0, -1.5, 1.0, 3.0]))
        self.b = nn.Parameter(torch.tensor([0.5, 0.0, -1.0, 0.3]))

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mu = 0.3 * (x * self.w.sign()).sum(-1, keepdim=True) - 0.2
        return mu, torch.full_like(mu, math.log(0.6))

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        return z * self.w + self.b


def exact_log_px(model: TinyVAE, x: torch.Tensor) -> torch.Tensor:
    """log p(x) = log integral p(x|z) N(z; 0, 1) dz by the trapezoid rule on a fine grid."""
    z = torch.linspace(-12, 12, 20001, dtype=torch.float64).unsqueeze(-1)
    w, b = model.w.detach().double(), model.b.detach().double()
    logits = z * w + b  # (grid, 4)
    log_pxz = -nn.functional.binary_cross_entropy_with_logits(
        logits.unsqueeze(1).expand(-1, len(x), -1), x.double().unsqueeze(0).expand(len(z), -1, -1), reduction="none"
    ).sum(-1)
    log_joint = log_pxz - 0.5 * (math.log(2 * math.pi) + z**2)
    dz = float(z[1] - z[0])
    return torch.logsumexp(log_joint, dim=0) + math.log(dz)  # trapezoid ends are negligible


def test_iwae_converges_to_exact_likelihood_and_increases_with_k() -> None:
    model = TinyVAE()
    patterns = torch.tensor([[(i >> j) & 1 for j in range(4)] for i in range(16)], dtype=torch.float32)
    x = patterns.repeat(64, 1)  # 1,024 binary images (an average over many): binarisation leaves them as they are
    truth = -float(exact_log_px(model, patterns).mean())  # every pattern equally often
    ks = [1, 4, 32, 1024]
    nll = [iwae_log_likelihood(model, x, k=k, batch_size=1 << 16, binarize_seed=1)["nll_nats"] for k in ks]
    assert all(a > b for a, b in zip(nll, nll[1:], strict=False)), f"IWAE bound must tighten with k: {nll}"
    assert nll[0] - truth > 0.2, "with k = 1 the estimate is the ELBO, clearly below log p(x) for this encoder"
    assert abs(nll[-1] - truth) < 0.005, f"IWAE-1024 {nll[-1]:.4f} vs exact {truth:.4f}"
    out = iwae_log_likelihood(model, x[:100], k=64, batch_size=100, binarize_seed=1)  # chunked path
    assert out["neg_elbo_nats"] > out["nll_nats"]
    assert out["bits_per_dim"] == pytest.approx(out["nll_nats"] / (4 * math.log(2)))
    assert out["n"] == 100 and out["k"] == 64


def test_iwae_binarises_grey_images_reproducibly() -> None:
    model = TinyVAE()
    grey = torch.full((64, 4), 0.5)
    a = iwae_log_likelihood(model, grey, k=8, binarize_seed=3)
    b = iwae_log_likelihood(model, grey, k=8, binarize_seed=3)
    c = iwae_log_likelihood(model, grey, k=8, binarize_seed=4)
    assert a == b and a["nll_nats"] != c["nll_nats"]
