"""The one evaluation protocol: unseen test digits, a stated sample size, several draws, mean and standard error."""

from __future__ import annotations

import math

import pytest
import torch

from genvar_helpers.data import load_mnist
from genvar_helpers.metrics import PROTOCOL_MEASURES, evaluate_protocol, format_protocol, load_classifier


@pytest.fixture(scope="module")
def classifier():
    return load_classifier(device="cpu")


@pytest.fixture(scope="module")
def train_images() -> torch.Tensor:
    return load_mnist("train", source="bundled", verbose=False).images


def digits_generator(images: torch.Tensor):
    """A perfect generator: real digits the test split never holds (bundled train digits)."""

    def generate(count: int) -> torch.Tensor:
        return images[torch.randint(len(images), (count,))]

    return generate


def noise_generator(count: int) -> torch.Tensor:
    """Pixels drawn from Bernoulli(mean intensity of real digits): right ink, no strokes."""
    return torch.bernoulli(torch.full((count, 1, 28, 28), 0.13))


def test_perfect_generator_scores_the_floor_and_noise_does_not(classifier, train_images) -> None:
    good = evaluate_protocol(digits_generator(train_images), n=200, draws=2, classifier=classifier)
    bad = evaluate_protocol(noise_generator, n=200, draws=2, classifier=classifier)
    assert set(PROTOCOL_MEASURES) <= set(good) and good["n"] == 200 and good["draws"] == 2
    assert (good["split"], good["source"]) == ("test", "bundled") and "200" in good["description"]
    for measure in PROTOCOL_MEASURES:
        assert len(good[measure]["values"]) == 2 and math.isfinite(good[measure]["se"]), measure
    assert 0.5 < good["fd_ratio"]["mean"] < 2.0, good["fd_ratio"]
    assert bad["fd_ratio"]["mean"] > 10, bad["fd_ratio"]
    real_share = good["real_confident_share"]["mean"]
    assert abs(good["confident_share"]["mean"] - real_share) < 0.05 and real_share > 0.9
    assert bad["confident_share"]["mean"] < 0.5 * real_share
    assert good["classes_present"]["mean"] == 10 and good["precision"]["mean"] > 0.6 > bad["precision"]["mean"]
    assert abs(good["precision"]["mean"] - good["real_precision"]["mean"]) < 0.1, "real digits set the bar"
    assert bad["fd_real_floor"] == good["fd_real_floor"], "the floor depends on the real sets only, not the model"
    row = format_protocol(good)
    assert "±" in row and "200" in row and f"{real_share:.2f}" in row, row


def test_protocol_is_reproducible_with_a_seed(classifier, train_images) -> None:
    torch.manual_seed(123)
    a = evaluate_protocol(digits_generator(train_images), n=50, draws=2, seed=3, classifier=classifier)
    after = torch.rand(1)
    torch.manual_seed(123)
    assert torch.equal(after, torch.rand(1)), "the caller's random stream is left as it was"
    b = evaluate_protocol(digits_generator(train_images), n=50, draws=2, seed=3, classifier=classifier)
    assert a["fd"] == b["fd"] and a["fd_real_floor"] == b["fd_real_floor"]
    other = evaluate_protocol(digits_generator(train_images), n=50, draws=2, seed=4, classifier=classifier)
    assert a["fd"] != other["fd"], "another seed, other draws"


def test_protocol_rejects_tanh_output(classifier) -> None:
    with pytest.raises(ValueError, match=r"\(x \+ 1\) / 2"):
        evaluate_protocol(lambda count: 2 * noise_generator(count) - 1, n=50, draws=1, classifier=classifier)


def test_one_draw_has_no_standard_error_and_n_is_capped_to_disjoint_sets(classifier, train_images) -> None:
    one = evaluate_protocol(digits_generator(train_images), n=1000, draws=1, classifier=classifier)
    assert one["n"] == 250 and one["n_requested"] == 1000, "the 500 bundled test digits hold two disjoint sets of 250"
    assert "250" in one["description"] and "capped" in one["description"]
    assert math.isnan(one["fd"]["se"]), "one draw gives no spread: se is nan, not 0"
    assert "no se" in format_protocol(one)
    with pytest.raises(ValueError, match="draws"):
        evaluate_protocol(noise_generator, n=50, draws=0, classifier=classifier)
