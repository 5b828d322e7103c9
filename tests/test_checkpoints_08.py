"""The two generators notebook 08 saves, `wgan_gp` and `sngan`: registered, round-tripped with the record the
notebook writes (the whole comparison, loadable with weights_only=True), and, once committed, loadable."""

import math
from pathlib import Path

import pytest
import torch
from committed import load_committed

from genvar_helpers import checkpoints, gan

NAMES = ("wgan_gp", "sngan")
NOTEBOOKS = Path(__file__).resolve().parent.parent / "notebooks"
ARMS = ("NS", "WGAN-GP", "NS + SN + TTUR", "NS + R1")


@pytest.mark.parametrize("name", NAMES)
def test_registered_as_dcgan_generators_of_notebook_08(name):
    assert checkpoints.TRAINED_MODELS[name] == "08_stabilising_gans.ipynb"
    assert (NOTEBOOKS / checkpoints.TRAINED_MODELS[name]).exists()
    assert checkpoints.TRAINED_CLASSES[name] == "genvar_helpers.gan:DCGANGenerator"


@pytest.mark.parametrize("name", NAMES)
def test_missing_checkpoint_names_notebook_08(name, tmp_path, monkeypatch):
    monkeypatch.setenv(checkpoints.WEIGHTS_ENV, str(tmp_path))
    with pytest.raises(FileNotFoundError, match=r"run notebooks/08_stabilising_gans.ipynb in full mode"):
        checkpoints.load_trained(name)


def _protocol_like(draws: int = 3) -> dict:
    """The shape of an evaluate_protocol result: nested dicts, lists, strings, a nan standard error."""
    measure = {"mean": 1.5, "se": math.nan if draws == 1 else 0.1, "values": [1.4, 1.5, 1.6][:draws]}
    return {"fd": measure, "classes_present": measure, "n": 250, "draws": draws, "source": "bundled", "description": ""}


def test_the_notebooks_record_round_trips_with_weights_only(tmp_path, monkeypatch):
    monkeypatch.setenv(checkpoints.WEIGHTS_ENV, str(tmp_path))
    torch.manual_seed(0)
    model = gan.DCGANGenerator(latent_dim=64, ngf=32)
    comparison = {
        "source": "bundled", "d_steps": 40, "batch_size": 64,
        "protocol": {arm: _protocol_like() for arm in ARMS},
        "curves": {arm: {"loss_D": [1.3, 1.2], "d_update": [50, 60]} for arm in ARMS},
        "seconds": dict.fromkeys(ARMS, 1.0),
        "samples": {arm: torch.zeros(32, 1, 28, 28, dtype=torch.uint8) for arm in ARMS},
    }  # fmt: skip
    recipe = {"critic": {"norm": "layer"}, "train": {"loss": "wgan-gp", "n_critic": 5, "lr": 1e-4, "betas": (0.0, 0.9)}}
    meta = {"arm": "WGAN-GP", "recipe": recipe, "protocol": {"fd": 1.5}, "comparison": comparison}
    checkpoints.save_trained(model, "wgan_gp", meta, force=True)
    loaded = checkpoints.load_trained("wgan_gp", device="cpu")
    assert isinstance(loaded, gan.DCGANGenerator)
    assert torch.equal(loaded.net[0].weight, model.net[0].weight)
    assert loaded.meta["recipe"]["train"]["betas"] == (0.0, 0.9)
    assert set(loaded.meta["comparison"]["samples"]) == set(ARMS)
    assert loaded.meta["comparison"]["samples"]["NS"].dtype == torch.uint8


@pytest.mark.parametrize("name", NAMES)
def test_committed_checkpoint_loads_samples_and_holds_the_comparison(name):
    model = load_committed(name)
    comparison = model.meta["comparison"]
    assert set(comparison["protocol"]) == set(comparison["samples"]) == set(ARMS)
    assert model.meta["source"] in ("bundled", "full") and model.meta["d_steps"] == comparison["d_steps"]
