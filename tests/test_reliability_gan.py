"""GAN loops on awkward inputs (empty or one-shot sources, zero steps), chunked sampling, basic loop == full loop."""

from __future__ import annotations

import copy
import inspect
import re

import pytest
import torch

from genvar_helpers import gan
from genvar_helpers.data import TensorBatches

LOOPS = ["train_gan", "train_gan_basic"]


class Guarded:
    """Iterates `source` each time, but fails after `limit` passes: a loop that never ends fails instead of hanging."""

    def __init__(self, source, limit: int = 50) -> None:
        self.source, self.limit, self.passes = source, limit, 0

    def __iter__(self):
        self.passes += 1
        if self.passes > self.limit:
            raise AssertionError(f"the training loop kept re-iterating an exhausted source ({self.passes} passes)")
        return iter(self.source)


def _images(n: int = 64, seed: int = 0) -> torch.Tensor:
    return torch.rand(n, 1, 28, 28, generator=torch.Generator().manual_seed(seed))


def _tiny_gan(seed: int = 0) -> tuple[gan.Generator, torch.nn.Module]:
    torch.manual_seed(seed)
    return gan.MLPGenerator(latent_dim=8, hidden=(32,)), gan.MLPDiscriminator(hidden=(64,), dropout=0.3)


@pytest.mark.parametrize("loop", LOOPS)
def test_empty_source_is_a_clear_error_not_an_endless_loop(loop):
    g, d = _tiny_gan()
    with pytest.raises(ValueError, match=r"batches yielded no data after 0 steps.*re-iterable.*fewer steps"):
        getattr(gan, loop)(g, d, Guarded([]), steps=3, progress=False)


@pytest.mark.parametrize("loop", LOOPS)
def test_one_shot_iterator_shorter_than_the_run_is_a_clear_error(loop):
    g, d = _tiny_gan()
    one_shot = ((x,) for x in _images(64).split(32))  # a generator: two batches, then exhausted for good
    with pytest.raises(ValueError, match=r"batches yielded no data after 2 steps.*TensorBatches or a DataLoader"):
        getattr(gan, loop)(g, d, Guarded(one_shot), steps=5, progress=False)


@pytest.mark.parametrize("loop", LOOPS)
def test_a_reiterable_source_is_cycled(loop):
    g, d = _tiny_gan()
    source = Guarded([(x,) for x in _images(64).split(32)])
    run = getattr(gan, loop)(g, d, source, steps=5, progress=False)
    assert all(len(v) == 5 for v in run.history.values()) and source.passes == 3


@pytest.mark.parametrize("loop", LOOPS)
@pytest.mark.parametrize("steps", [0, -2])
def test_zero_or_negative_steps_are_a_clear_error(loop, steps):
    g, d = _tiny_gan()
    with pytest.raises(ValueError, match=rf"steps must be a positive integer; got {steps}"):
        getattr(gan, loop)(g, d, [(_images(32),)], steps=steps, progress=False)


def test_zero_epochs_or_an_empty_sized_source_are_clear_errors():
    g, d = _tiny_gan()
    with pytest.raises(ValueError, match="epochs must be a positive integer; got 0"):
        gan.train_gan(g, d, [(_images(32),)], epochs=0, progress=False)
    with pytest.raises(ValueError, match=r"batches is empty \(len 0\)"):
        gan.train_gan(g, d, [], epochs=2, progress=False)


# --------------------------------------------------------------------------- sample(n)


@pytest.mark.parametrize(
    "make", [lambda: gan.MLPGenerator(latent_dim=8, hidden=(16,)), lambda: gan.DCGANGenerator(8, 4)]
)
def test_sample_runs_in_chunks_and_keeps_the_seeded_output(make):
    g = make()
    sizes: list[int] = []
    g.register_forward_pre_hook(lambda module, args: sizes.append(len(args[0])))
    torch.manual_seed(3)
    images = g.sample(2500)
    assert images.shape == (2500, 1, 28, 28)
    assert max(sizes) <= 1000, f"sample() ran batches of {sizes}: it must work in chunks"
    torch.manual_seed(3)
    z = torch.randn(2500, 8)
    with torch.no_grad():
        expected = ((g.eval()(z) + 1) / 2).clamp(0, 1)
    assert torch.allclose(images, expected, atol=1e-6), "same seed, same samples as one big batch"


@pytest.mark.parametrize("n", [-1, 2.5, "4", True])
def test_sample_rejects_a_bad_count(n):
    with pytest.raises(ValueError, match=r"n must be a whole number >= 0"):
        gan.MLPGenerator(latent_dim=8, hidden=(16,)).sample(n)


def test_sample_zero_is_empty_and_z_must_match_n():
    g = gan.MLPGenerator(latent_dim=8, hidden=(16,))
    assert g.sample(0).shape == (0, 1, 28, 28)
    with pytest.raises(ValueError, match=r"z holds 3 codes but n is 4"):
        g.sample(4, z=torch.randn(3, 8))


# --------------------------------------------------------------------------- the loop shown in notebook 04


def _equal_runs(**options) -> None:
    images = _images(96)
    g, d = _tiny_gan(seed=1)
    g2, d2 = copy.deepcopy(g), copy.deepcopy(d)
    full = gan.train_gan(g, d, TensorBatches(images, batch_size=32, seed=0), steps=20, progress=False, **options)
    basic = gan.train_gan_basic(
        g2, d2, TensorBatches(images, batch_size=32, seed=0), steps=20, progress=False, **options
    )
    assert full.history == basic.history, "same seed and data: the same history, step by step"
    weights = [*g.state_dict().values(), *d.state_dict().values()]
    weights2 = [*g2.state_dict().values(), *d2.state_dict().values()]
    assert all(torch.equal(a, b) for a, b in zip(weights, weights2, strict=True)), "same seed and data: same weights"
    assert sorted(full.snapshots) == sorted(basic.snapshots)
    assert all(torch.equal(full.snapshots[k], basic.snapshots[k]) for k in full.snapshots)
    assert (full.generator_ema is None) == (basic.generator_ema is None)
    if full.generator_ema is not None:
        for a, b in zip(full.generator_ema.parameters(), basic.generator_ema.parameters(), strict=True):
            assert torch.equal(a, b)
    assert not g2.training and not d2.training and basic.images_per_second > 0


def test_basic_loop_equals_the_full_loop_with_default_options():
    _equal_runs()


def test_basic_loop_equals_the_full_loop_with_notebook_04s_options():
    fixed_z = torch.randn(16, 8, generator=torch.Generator().manual_seed(0))
    _equal_runs(lr=3e-4, ema_decay=0.9, snapshot_every=7, fixed_z=fixed_z, seed=5)


def test_basic_loop_is_short_enough_to_read():
    source = inspect.getsource(gan.train_gan_basic)
    body = source.split('"""')[2].strip().splitlines()  # the code after the docstring
    assert len(body) <= 45, f"train_gan_basic has {len(body)} lines of code: notebook 04 shows it in full"
    for option in ("augment", "r1_weight", "amp", "autocast", "compile", "instance_noise"):
        assert not re.search(rf"\b{option}\b", "\n".join(body)), f"the basic loop has no {option}: that is train_gan's"
