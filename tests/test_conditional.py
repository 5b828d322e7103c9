"""Notebook 09's package code: conditional sampling (shape, range, labels checked), the KL-weight schedule, the two
training loops on a tiny batch, class accuracy, and the `cgan` / `cvae` checkpoints (round trip and committed)."""

from pathlib import Path

import pytest
import torch
from committed import load_committed

from genvar_helpers import checkpoints, conditional, vae
from genvar_helpers.data import TensorBatches

NAMES = {"cgan": conditional.ConditionalGenerator, "cvae": conditional.CVAE}
NOTEBOOKS = Path(__file__).resolve().parent.parent / "notebooks"
SMALL = {"cgan": lambda: conditional.ConditionalGenerator(latent_dim=8, ngf=8, embed_dim=4),
         "cvae": lambda: conditional.CVAE(latent_dim=4, hidden=(32,))}  # fmt: skip


def _digits(n: int = 64, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Labelled stand-ins for digits: class c is a bright square at a place set by c, values in [0, 1]."""
    g = torch.Generator().manual_seed(seed)
    labels = torch.arange(n) % 10
    x = torch.zeros(n, 1, 28, 28)
    for i, c in enumerate(labels.tolist()):
        r, col = 4 + 2 * (c // 5) * 5, 4 + 4 * (c % 5)
        x[i, 0, r : r + 6, col : col + 6] = 0.8 + 0.2 * torch.rand(1, generator=g)
    return x, labels


@pytest.mark.parametrize("name", NAMES)
def test_sample_with_labels_has_the_requested_shape_and_range(name):
    torch.manual_seed(0)
    model = SMALL[name]()
    for n, labels in ((10, torch.arange(10)), (3, torch.tensor([7, 7, 7])), (0, torch.zeros(0, dtype=torch.long))):
        images = model.sample(n, labels)
        assert images.shape == (n, 1, 28, 28)
        if n:
            assert images.min() >= 0 and images.max() <= 1
    assert model.training, "sample restores the training mode"


@pytest.mark.parametrize("name", NAMES)
def test_default_labels_are_uniform_classes(name):
    torch.manual_seed(0)
    labels = conditional.check_labels(None, 5000)
    counts = torch.bincount(labels, minlength=10)
    assert labels.dtype == torch.long and counts.min() > 400 and counts.max() < 600, "None: classes drawn uniformly"
    images = SMALL[name]().sample(12)
    assert images.shape == (12, 1, 28, 28) and images.min() >= 0 and images.max() <= 1


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize(
    ("labels", "error", "message"),
    [
        (torch.arange(9), ValueError, r"one class per image, shape \(10,\)"),
        (torch.arange(10).view(2, 5), ValueError, r"shape \(10,\)"),
        (torch.tensor([0, 1, 2, 3, 4, 5, 6, 7, 8, 10]), ValueError, r"labels must lie in \[0, 9\]"),
        (torch.tensor([-1, 1, 2, 3, 4, 5, 6, 7, 8, 9]), ValueError, r"labels must lie in \[0, 9\]"),
        (torch.arange(10).float(), TypeError, r"integer class indices.*labels.long\(\)"),
        (list(range(10)), TypeError, r"torch.Tensor"),
    ],
)
def test_bad_labels_are_rejected_with_a_clear_message(name, labels, error, message):
    with pytest.raises(error, match=message):
        SMALL[name]().sample(10, labels)


def test_generator_rejects_codes_of_the_wrong_count():
    with pytest.raises(ValueError, match="z holds 4 codes but n is 3"):
        SMALL["cgan"]().sample(3, torch.arange(3), z=torch.randn(4, 8))


def test_projection_discriminator_uses_the_label():
    torch.manual_seed(0)
    d = conditional.ProjectionDiscriminator(ndf=8)
    with torch.no_grad():
        d.embed.parametrizations.weight.original.normal_()  # a trained-looking V, so classes differ
    x = torch.rand(4, 1, 28, 28) * 2 - 1
    a, b = d(x, torch.zeros(4, dtype=torch.long)), d(x, torch.ones(4, dtype=torch.long))
    assert a.shape == (4,) and not torch.allclose(a, b), "one logit per image, and it depends on the class"


def test_kl_weight_schedules():
    assert conditional.kl_weight(0, 100, beta=4.0) == 4.0
    warm = [conditional.kl_weight(s, 100, beta=2.0, warmup_steps=50) for s in range(100)]
    assert warm[0] == pytest.approx(0.04) and warm[49] == 2.0 and warm[-1] == 2.0
    assert all(a <= b for a, b in zip(warm, warm[1:], strict=False)), "warm-up rises monotonically"
    cyc = [conditional.kl_weight(s, 100, beta=1.0, cycles=4) for s in range(100)]
    assert cyc[0] == 0 and cyc[25] == 0 and cyc[24] == 1.0 and cyc[12] == pytest.approx(12 / 12.5)


def test_cgan_loop_trains_and_its_discriminator_loss_falls():
    x, y = _digits(64)
    batches = TensorBatches(x, y, batch_size=32, seed=0)
    torch.manual_seed(0)
    g, d = SMALL["cgan"](), conditional.ProjectionDiscriminator(ndf=8)
    run = conditional.train_cgan(g, d, batches, steps=30, lr=1e-3, lr_d=2e-3, ema_decay=0.9, progress=False)
    loss_d = run.history["loss_D"]
    assert len(loss_d) == 30 and run.generator_ema is not None and run.seconds > 0
    assert sum(loss_d[-5:]) / 5 < sum(loss_d[:5]) / 5, "D learns to tell the squares from G's first images"
    assert run.generator_ema.sample(4, torch.arange(4)).shape == (4, 1, 28, 28)


def test_vae_loop_reduces_the_loss_with_labels_and_with_free_bits():
    x, y = _digits(64)
    torch.manual_seed(0)
    history = conditional.train_vae_steps(SMALL["cvae"](), x, y, steps=60, batch_size=32, lr=3e-3, progress=False)
    assert sum(history["loss"][-10:]) / 10 < sum(history["loss"][:10]) / 10 - 50, "CVAE loss falls by 50 nats"
    plain = vae.MLPVAE(latent_dim=4, hidden=(32,))
    history = conditional.train_vae_steps(plain, x, steps=60, batch_size=32, lr=3e-3, beta=784, free_bits=0.5,
                                          progress=False)  # fmt: skip
    assert sum(history["loss"][-10:]) / 10 < sum(history["loss"][:10]) / 10, "free-bits loss falls"
    history = conditional.train_vae_steps(plain, x, steps=3, batch_size=32, beta=784, warmup_steps=10, progress=False)
    assert history["weight"] == pytest.approx([78.4, 156.8, 235.2]), "the loop applies the warm-up schedule"


def test_vae_loop_checks_its_inputs():
    x, y = _digits(32)
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        conditional.train_vae_steps(SMALL["cvae"](), x * 2, y, steps=1, batch_size=16, progress=False)
    with pytest.raises(ValueError, match="labels must lie"):
        conditional.train_vae_steps(SMALL["cvae"](), x, y + 5, steps=1, batch_size=16, progress=False)
    with pytest.raises(ValueError, match=">= 0"):
        conditional.train_vae_steps(SMALL["cvae"](), x, y, steps=1, batch_size=16, free_bits=-1, progress=False)


def test_class_accuracy_counts_what_the_classifier_sees():
    class Oracle(torch.nn.Module):  # "classifies" by the mean brightness the fake sampler encodes the class in
        def __init__(self):
            super().__init__()
            self.w = torch.nn.Parameter(torch.zeros(1))

        def forward(self, x):
            c = (x.mean(dim=(1, 2, 3)) * 10).round().long().clamp(0, 9)
            return torch.nn.functional.one_hot(c, 10).float()

    def sample(n, labels):  # right for every class but 3, which it draws as 5
        wanted = torch.where(labels == 3, 5, labels)
        return (wanted.float() / 10).view(-1, 1, 1, 1).expand(n, 1, 28, 28).clone()

    result = conditional.class_accuracy(sample, Oracle(), n_per_class=7)
    assert result["n"] == 70 and result["accuracy"] == pytest.approx(0.9)
    assert result["per_class"][3] == 0 and result["per_class"][4] == 1
    assert result["confusion"][3, 5] == 7 and int(result["confusion"].sum()) == 70


@pytest.mark.parametrize("name", NAMES)
def test_registered_for_notebook_09(name):
    assert checkpoints.TRAINED_MODELS[name] == "09_conditional_and_disentangled.ipynb"
    assert (NOTEBOOKS / checkpoints.TRAINED_MODELS[name]).exists()
    cls = NAMES[name]
    assert checkpoints.TRAINED_CLASSES[name] == f"{cls.__module__}:{cls.__qualname__}"


@pytest.mark.parametrize("name", NAMES)
def test_round_trip_through_save_and_load_trained(name, tmp_path, monkeypatch):
    monkeypatch.setenv(checkpoints.WEIGHTS_ENV, str(tmp_path))
    with pytest.raises(FileNotFoundError, match=r"run notebooks/09_conditional_and_disentangled.ipynb in full mode"):
        checkpoints.load_trained(name)
    torch.manual_seed(0)
    model = SMALL[name]()
    meta = {"class_accuracy": 0.98, "per_class_accuracy": [0.98] * 10, "history": {"loss": [1.0, 0.5]}}
    checkpoints.save_trained(model, name, meta, force=True)
    loaded = checkpoints.load_trained(name, device="cpu")
    assert type(loaded) is NAMES[name] and loaded.config == model.config
    assert loaded.meta["per_class_accuracy"] == [0.98] * 10
    model.eval()
    torch.manual_seed(1)
    a = model.sample(5, torch.arange(5))
    torch.manual_seed(1)
    b = loaded.sample(5, torch.arange(5))
    assert torch.equal(a, b), "the loaded model draws the same images from the same seed"


@pytest.mark.parametrize("name", NAMES)
def test_committed_checkpoint_loads_and_samples_by_class(name):
    model = load_committed(name, labels=torch.arange(10))
    assert model.meta["class_accuracy"] >= {"cgan": 0.97, "cvae": 0.95}[name]
    assert model.meta["source"] in ("bundled", "full") and len(model.meta["per_class_accuracy"]) == 10
