"""Checkpoints that must be refused (wrong model under a name, a function instead of a class), numpy in meta,
stale temporary files."""

from __future__ import annotations

import datetime
import fnmatch
import os
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from genvar_helpers import checkpoints, data, gan, metrics, runtime, vae


class Tiny(nn.Module):
    def __init__(self, width: int = 4) -> None:
        super().__init__()
        self.config = {"width": width}
        self.layer = nn.Linear(2, width)


def _forged(path: Path, class_path: str, config: dict) -> Path:
    torch.save({"format": 1, "class": class_path, "config": config, "state_dict": {}, "meta": {}}, path)
    return path


@pytest.mark.parametrize(
    "model",
    [lambda: vae.MLPVAE(latent_dim=2, hidden=(8,)), lambda: metrics.MnistClassifier(widths=(4, 4, 4))],
    ids=["vae", "classifier"],
)
def test_load_trained_refuses_another_model_saved_under_the_name(tmp_path, monkeypatch, model):
    monkeypatch.setenv(checkpoints.WEIGHTS_ENV, str(tmp_path))
    checkpoints.save_checkpoint(model(), tmp_path / "dcgan.pt")
    with pytest.raises(ValueError, match=r"dcgan.pt holds genvar_helpers\.\w+:\w+, not .*gan:DCGANGenerator"):
        checkpoints.load_trained("dcgan", device="cpu")


def test_load_trained_accepts_the_class_its_name_holds(tmp_path, monkeypatch):
    monkeypatch.setenv(checkpoints.WEIGHTS_ENV, str(tmp_path))
    checkpoints.save_checkpoint(gan.DCGANGenerator(latent_dim=4, ngf=2), tmp_path / "dcgan.pt")
    assert isinstance(checkpoints.load_trained("dcgan", device="cpu"), gan.DCGANGenerator)
    assert set(checkpoints.TRAINED_CLASSES) == set(checkpoints.TRAINED_MODELS)


@pytest.mark.parametrize(
    ("owner", "name", "config"),
    [(runtime, "seed_everything", {"seed": 3}), (data, "load_mnist", {"split": "train", "source": "full"})],
)
@pytest.mark.parametrize("route", ["load_checkpoint", "load_trained"])
def test_a_checkpoint_naming_a_function_is_refused_and_never_called(tmp_path, monkeypatch, owner, name, config, route):
    calls = []
    monkeypatch.setattr(owner, name, lambda *args, **kwargs: calls.append((args, kwargs)))
    monkeypatch.setenv(checkpoints.WEIGHTS_ENV, str(tmp_path))
    path = _forged(tmp_path / "gan_mlp.pt", f"{owner.__name__}:{name}", config)
    if route == "load_checkpoint":
        with pytest.raises(ValueError, match=rf"gan_mlp.pt names {owner.__name__}:{name}, which is not a model class"):
            checkpoints.load_checkpoint(path, device="cpu")
    else:
        with pytest.raises(ValueError, match=rf"gan_mlp.pt holds {owner.__name__}:{name}, not .*gan:MLPGenerator"):
            checkpoints.load_trained("gan_mlp", device="cpu")
    assert calls == [], f"{name} was called while loading a checkpoint"


@pytest.mark.parametrize(
    "class_path",
    [
        "genvar_helpers.gan:nn",
        "genvar_helpers.gan:torch.nn.Linear",
        "genvar_helpers.nowhere:Model",
        "genvar_helpersX:M",
    ],
)
def test_other_names_are_refused_with_the_file_named(tmp_path, class_path):
    path = _forged(tmp_path / "odd.pt", class_path, {})
    with pytest.raises(ValueError, match=r"odd.pt names .*(not a model class|only genvar_helpers models)"):
        checkpoints.load_checkpoint(path, device="cpu")


def test_load_checkpoint_can_demand_a_class(tmp_path):
    path = checkpoints.save_checkpoint(vae.MLPVAE(latent_dim=2, hidden=(8,)), tmp_path / "m.pt")
    with pytest.raises(ValueError, match="m.pt holds genvar_helpers.vae:MLPVAE, not genvar_helpers.vae:ConvVAE"):
        checkpoints.load_checkpoint(path, device="cpu", expected_class="genvar_helpers.vae:ConvVAE")


# --------------------------------------------------------------------------- numpy in meta and config


def test_numpy_values_in_meta_round_trip_as_python_values(tmp_path):
    model = Tiny(4)
    model.config = {"width": np.int64(4)}
    meta = {"fid": np.float32(1.5), "curve": np.arange(3), "nested": {"best": [np.float64(0.25)]}}
    path = checkpoints.save_checkpoint(model, tmp_path / "tiny.pt", meta=meta)
    loaded = checkpoints.load_checkpoint(path, Tiny(4), device="cpu")
    assert loaded.meta == {"fid": 1.5, "curve": [0, 1, 2], "nested": {"best": [0.25]}}
    assert type(loaded.meta["fid"]) is float and type(loaded.meta["curve"][0]) is int
    assert model.config["width"] == 4 and isinstance(meta["fid"], np.float32), "the caller's dicts are not changed"


def test_an_unsaveable_meta_value_is_named(tmp_path):
    with pytest.raises(TypeError, match=r"meta\['when'\] .*weights_only"):
        checkpoints.save_checkpoint(Tiny(4), tmp_path / "tiny.pt", meta={"ok": 1, "when": datetime.date(2024, 1, 1)})
    assert list(tmp_path.iterdir()) == [], "nothing is written"


# --------------------------------------------------------------------------- temporary files


def test_stale_temporary_files_of_the_checkpoint_are_removed(tmp_path):
    old, fresh, other = tmp_path / "tiny.pt.k3j2_x.tmp", tmp_path / "tiny.pt.a81b.tmp", tmp_path / "other.pt.zz.tmp"
    for f in (old, fresh, other):
        f.write_bytes(b"half a checkpoint")
    two_hours_ago = time.time() - 7200
    os.utime(old, (two_hours_ago, two_hours_ago))
    os.utime(other, (two_hours_ago, two_hours_ago))
    checkpoints.save_checkpoint(Tiny(4), tmp_path / "tiny.pt")
    assert not old.exists(), "a temporary file left by a killed save is cleaned up"
    assert fresh.exists(), "a recent one may belong to a save in progress"
    assert other.exists(), "temporary files of other checkpoints are not touched"


def test_gitignore_covers_the_temporary_files():
    patterns = (Path(__file__).parents[1] / ".gitignore").read_text().split()
    assert any(fnmatch.fnmatch("dcgan.pt.k3j2_x.tmp", p.lstrip("/")) for p in patterns)
