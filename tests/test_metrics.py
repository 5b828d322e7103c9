"""Tests of genvar_helpers.metrics: each check fails if the measure it guards were broken."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from genvar_helpers.data import MNISTData, grid_of_gaussians, load_mnist, ring_of_gaussians
from genvar_helpers.metrics import (
    CLASSIFIER_PATH,
    MnistClassifier,
    accuracy,
    class_coverage,
    classifier_features,
    confident_share,
    evaluate_generator,
    frechet_distance,
    frechet_distance_to_real,
    iwae_log_likelihood,
    load_classifier,
    mode_metrics,
    precision_recall,
    random_affine,
    real_floor,
)

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


# ---------------------------------------------------------------- the shipped classifier and sample metrics


@pytest.fixture(scope="module")
def classifier() -> MnistClassifier:
    return load_classifier(device="cpu")


@pytest.fixture(scope="module")
def test_digits() -> MNISTData:
    return load_mnist("test", source="bundled", verbose=False)


def test_shipped_classifier_reproduces_its_stated_accuracy(classifier, test_digits) -> None:
    acc = accuracy(classifier, test_digits.images, test_digits.labels)
    assert acc >= 0.98, f"accuracy {acc:.4f} on the 500 held-out bundled digits"
    assert abs(acc - classifier.meta["test_accuracy"]) <= 0.002, "the checkpoint's meta states the accuracy it has"
    assert CLASSIFIER_PATH.stat().st_size < 500_000, "weights stay small"
    assert classifier.features(test_digits.images[:4]).shape == (4, classifier.config["widths"][-1])


def test_random_affine_keeps_range_and_is_seeded(test_digits) -> None:
    x = test_digits.images[:64]
    a, b = random_affine(x, torch.Generator().manual_seed(0)), random_affine(x, torch.Generator().manual_seed(0))
    assert a.shape == x.shape and a.min() >= 0 and a.max() <= 1
    assert torch.equal(a, b) and not torch.allclose(a, x, atol=0.05)


def test_class_coverage_real_digits_vs_one_class(classifier, test_digits) -> None:
    real = class_coverage(test_digits.images, classifier)
    assert real["classes_present"] == 10 and real["n"] == 500
    assert real["kl_from_uniform"] < 0.01, "50 digits of each class give a near-uniform histogram"
    threes = class_coverage(test_digits.images[test_digits.labels == 3], classifier)
    assert threes["classes_present"] == 1 and threes["histogram"][3] > 0.95
    assert threes["kl_from_uniform"] > 2.0, "one class only: KL close to log 10 = 2.30"


def test_frechet_distance_exact_cases() -> None:
    g = torch.Generator().manual_seed(0)
    a = torch.randn(2000, 8, generator=g, dtype=torch.float64) @ torch.randn(8, 8, generator=g, dtype=torch.float64)
    assert frechet_distance(a, a) < 1e-8
    shift = torch.linspace(-1, 1, 8, dtype=torch.float64)
    # same covariance: FD is the squared distance of the means
    assert frechet_distance(a, a + shift) == pytest.approx(float(shift.square().sum()), rel=1e-6)
    assert frechet_distance(a, a + 2 * shift) > frechet_distance(a, a + shift)
    # b = 2a: tr(S) + tr(4S) - 2 tr(2S) + |mean(a)|^2 = tr(S) + |mean(a)|^2
    expected = float(torch.cov(a.T).trace() + a.mean(0).square().sum())
    assert frechet_distance(a, 2 * a) == pytest.approx(expected, rel=1e-6)


def test_frechet_floor_below_real_vs_noise(classifier, test_digits) -> None:
    floor = real_floor(test_digits.images, 250, classifier)
    noise = torch.rand(250, 1, 28, 28, generator=torch.Generator().manual_seed(0))
    to_noise = frechet_distance_to_real(noise, test_digits.images[:250], classifier)
    assert 0 < floor < 0.1 * to_noise, f"real-vs-real floor {floor:.2f} vs real-vs-noise {to_noise:.2f}"


def test_precision_recall_same_disjoint_and_collapsed() -> None:
    g = torch.Generator().manual_seed(0)
    real, fake = torch.randn(1000, 8, generator=g), torch.randn(1000, 8, generator=g)
    same = precision_recall(real, fake)
    assert same["precision"] > 0.85 and same["recall"] > 0.85, same
    far = precision_recall(real, fake + 10.0)
    assert far["precision"] < 0.01 and far["recall"] < 0.01, far
    collapsed = precision_recall(real, 0.5 * fake)  # realistic but too little variety
    assert collapsed["precision"] > 0.95 and collapsed["recall"] < 0.3, collapsed


def test_evaluate_generator_real_digits_vs_noise(classifier, test_digits) -> None:
    train = load_mnist("train", source="bundled", verbose=False).images
    g = torch.Generator().manual_seed(1)

    def real_generator(count: int) -> torch.Tensor:
        return train[torch.randint(len(train), (count,), generator=g)]

    def noise_generator(count: int) -> torch.Tensor:
        return torch.rand(count, 1, 28, 28, generator=g)

    good = evaluate_generator(real_generator, test_digits.images, n=250, classifier=classifier, batch_size=100)
    bad = evaluate_generator(noise_generator, test_digits.images, n=250, classifier=classifier, batch_size=100)
    assert good["n"] == bad["n"] == 250
    assert good["classes_present"] == 10 and bad["classes_present"] < 5
    assert good["kl_from_uniform"] < 0.1 < bad["kl_from_uniform"]
    assert good["fd"] < 2 * good["fd_real_floor"] and bad["fd"] > 10 * bad["fd_real_floor"]
    assert good["precision"] > 0.7 and good["recall"] > 0.7 and bad["precision"] < 0.05, (good, bad)
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        evaluate_generator(lambda c: 2 * noise_generator(c) - 1, test_digits.images, n=100, classifier=classifier)


# ---------------------------------------------------------------- inputs are checked at the entrance (issue 17)


def _with_nan(x: torch.Tensor) -> torch.Tensor:
    x = x.clone()
    x[0, 0, 14, 14] = float("nan")
    return x


BAD_IMAGES = {  # name: (how the images were broken, what the error must say)
    "tanh range": (lambda x: 2 * x - 1, r"\(x \+ 1\) / 2"),
    "0-255 integers": (lambda x: (x * 255).to(torch.uint8), "divide .*by 255"),
    "0-255 floats": (lambda x: x * 255, "divide .*by 255"),
    "NaN": (_with_nan, "NaN"),
    "flattened": (lambda x: x.reshape(len(x), -1), r"\(n, 1, 28, 28\)"),
    "empty": (lambda x: x[:0], "0 images given"),
}

METRICS = {  # name: call with (bad images, classifier, good real images)
    "classifier_features": lambda x, c, real: classifier_features(x, c),
    "class_coverage": lambda x, c, real: class_coverage(x, c),
    "confident_share": lambda x, c, real: confident_share(x, c),
    "frechet_distance_to_real(images)": lambda x, c, real: frechet_distance_to_real(x, real, c),
    "frechet_distance_to_real(real_images)": lambda x, c, real: frechet_distance_to_real(real, x, c),
    "real_floor": lambda x, c, real: real_floor(x, 5, c),
    "evaluate_generator(generate)": lambda x, c, real: evaluate_generator(lambda k: x[:k], real, n=10, classifier=c),
    "evaluate_generator(real_images)": lambda x, c, real: evaluate_generator(lambda k: real[:k], x, n=10, classifier=c),
}


@pytest.mark.parametrize("metric", METRICS)
@pytest.mark.parametrize("broken", BAD_IMAGES)
def test_metrics_reject_badly_scaled_or_broken_images(metric, broken, classifier, test_digits) -> None:
    make, message = BAD_IMAGES[broken]
    real = test_digits.images[:40]
    with pytest.raises((ValueError, TypeError), match=message):
        METRICS[metric](make(test_digits.images[:20]), classifier, real)


class FlatVAE(nn.Module):
    """A fixed VAE on 784 pixels: encoder mean from the image, decoder logits linear in z."""

    def __init__(self) -> None:
        super().__init__()
        self.w = nn.Parameter(torch.linspace(-1, 1, 784))

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mu = (x.reshape(len(x), -1) * self.w).sum(-1, keepdim=True) / 100
        return mu, torch.zeros_like(mu)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        return (z * self.w - 2).reshape(len(z), 1, 28, 28)


@pytest.mark.parametrize("broken", ["tanh range", "0-255 integers", "0-255 floats", "NaN", "empty"])
def test_iwae_rejects_badly_scaled_or_broken_images(broken, test_digits) -> None:
    make, message = BAD_IMAGES[broken]
    with pytest.raises((ValueError, TypeError), match=message):
        iwae_log_likelihood(FlatVAE(), make(test_digits.images[:8]), k=4)
    iwae_log_likelihood(FlatVAE(), test_digits.images[:8], k=4)  # the same images, correctly scaled: fine


def test_frechet_distance_and_precision_recall_check_their_features() -> None:
    g = torch.Generator().manual_seed(0)
    good = torch.randn(50, 8, generator=g)
    nan = good.clone()
    nan[3, 2] = float("nan")
    cases = [
        (lambda: frechet_distance(good[:1], good), "at least 2"),
        (lambda: frechet_distance(good.flatten(), good), "2-D"),
        (lambda: frechet_distance(good, nan), "NaN"),
        (lambda: frechet_distance(good, good[:, :7]), "same number of features"),
        (lambda: precision_recall(good, good[:3], k=3), "more than k = 3"),
        (lambda: precision_recall(good[:0], good), "more than k = 3"),
        (lambda: precision_recall(nan, good), "NaN"),
        (lambda: precision_recall(good, good[:, :7]), "same number of features"),
    ]
    for call, message in cases:
        with pytest.raises(ValueError, match=message):
            call()


def test_confident_share_real_digits_vs_noise(classifier, test_digits) -> None:
    real = confident_share(test_digits.images, classifier)
    ink = torch.full((200, 1, 28, 28), float(test_digits.images.mean()))
    noise = confident_share(torch.bernoulli(ink, generator=torch.Generator().manual_seed(0)), classifier)
    assert real > 0.9 > noise, (real, noise)
    assert confident_share(test_digits.images, classifier, threshold=0.5) >= real
    with pytest.raises(ValueError, match="threshold"):
        confident_share(test_digits.images, classifier, threshold=1.5)
