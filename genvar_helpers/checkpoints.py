"""Checkpoints: atomic save, verified `weights_only` load, and `load_trained(name)`.

A checkpoint is a plain dict (safe for `torch.load(..., weights_only=True)`):
the model's class as "module:Class", the keyword arguments that rebuild it
(`model.config`), its `state_dict`, and free-form metadata (metrics, data source).
"""

from __future__ import annotations

import importlib
import os
import tempfile
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .runtime import get_device, is_quick

WEIGHTS_ENV = "GENVAR_WEIGHTS_DIR"
PACKAGE_WEIGHTS = Path(__file__).parent / "weights"

# Every trained model of the series, and the notebook that trains and saves it.
TRAINED_MODELS: dict[str, str] = {
    "gan_mlp": "04_gan_mnist_mlp.ipynb",
    "dcgan": "05_dcgan.ipynb",
    "vae_mlp": "06_vae_mnist_mlp.ipynb",
    "vae_conv": "07_conv_vae_latent_space.ipynb",
}


def weights_dir() -> Path:
    """Folder of trained checkpoints: the package's `weights/`, or $GENVAR_WEIGHTS_DIR."""
    return Path(os.environ.get(WEIGHTS_ENV) or PACKAGE_WEIGHTS)


def _class_path(model: nn.Module) -> str:
    cls = type(model)
    return f"{cls.__module__}:{cls.__qualname__}"


def save_checkpoint(model: nn.Module, path: str | Path, meta: dict[str, Any] | None = None) -> Path:
    """Write `model` to `path` atomically (temporary file, verified, then renamed).

    The model must have a `config` dict holding its constructor's keyword arguments.
    """
    config = getattr(model, "config", None)
    if not isinstance(config, dict):
        raise TypeError(f"{type(model).__name__} needs a `config` dict of constructor arguments to be saved")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {
        "format": 1,
        "class": _class_path(model),
        "config": config,
        "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
        "meta": meta or {},
    }
    fd, tmp_name = tempfile.mkstemp(prefix=path.name + ".", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        torch.save(payload, tmp_name)
        torch.load(tmp_name, map_location="cpu", weights_only=True)  # verify it reads back
        os.chmod(tmp_name, 0o644)  # mkstemp makes owner-only files; a checkpoint is for everyone to read
        os.replace(tmp_name, path)
    finally:
        if os.path.exists(tmp_name):
            os.remove(tmp_name)
    return path


def _read(path: Path) -> dict[str, Any]:
    if not path.exists():
        raise FileNotFoundError(f"no checkpoint at {path}")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # truncated or foreign file
        raise ValueError(f"{path} is not a readable genvar checkpoint ({err}); delete it and train again") from err
    if not isinstance(payload, dict) or payload.get("format") != 1:
        raise ValueError(f"{path} is not a genvar checkpoint (expected a dict with format 1)")
    return payload


def _check_compatible(model: nn.Module, payload: dict[str, Any], path: Path) -> None:
    expected = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    found = {k: tuple(v.shape) for k, v in payload["state_dict"].items()}
    problems = []
    if payload["class"] != _class_path(model):
        problems.append(f"it holds a {payload['class']}, not a {_class_path(model)}")
    missing, extra = sorted(expected.keys() - found.keys()), sorted(found.keys() - expected.keys())
    if missing:
        problems.append(f"missing weights {missing[:3]}")
    if extra:
        problems.append(f"unexpected weights {extra[:3]}")
    wrong = [
        f"{k}: {found[k]} vs model {expected[k]}" for k in expected.keys() & found.keys() if found[k] != expected[k]
    ]
    if wrong:
        problems.append("shape mismatch " + "; ".join(sorted(wrong)[:3]))
    if problems:
        raise ValueError(
            f"checkpoint {path} does not fit this model: {', '.join(problems)}. "
            f"It was saved with config {payload['config']}; build the model with that config "
            "or call load_checkpoint(path) without a model to rebuild it."
        )


def load_checkpoint(
    path: str | Path, model: nn.Module | None = None, device: str | torch.device | None = None
) -> nn.Module:
    """Load a checkpoint with `weights_only=True` into `model`, or rebuild the model it holds.

    Only classes from `genvar_helpers` are rebuilt. The model is returned on
    `device` (default: `get_device()`), in eval mode, with `.meta` attached.
    """
    path = Path(path)
    payload = _read(path)
    if model is None:
        module_name, _, class_name = payload["class"].partition(":")
        if not module_name.startswith("genvar_helpers"):
            raise ValueError(f"{path} names class {payload['class']}; only genvar_helpers models are rebuilt")
        cls = getattr(importlib.import_module(module_name), class_name)
        model = cls(**payload["config"])
    _check_compatible(model, payload, path)
    model.load_state_dict(payload["state_dict"])
    model.meta = payload["meta"]
    target = device if isinstance(device, torch.device) else get_device(device)
    return model.to(target).eval()


def trained_path(name: str) -> Path:
    """Where the checkpoint of the series model `name` lives."""
    if name not in TRAINED_MODELS:
        raise ValueError(f"unknown model {name!r}; the series trains {sorted(TRAINED_MODELS)}")
    return weights_dir() / f"{name}.pt"


def save_trained(
    model: nn.Module, name: str, meta: dict[str, Any] | None = None, *, force: bool = False
) -> Path | None:
    """Save a series model under its name. Quick-mode runs never overwrite: they return None."""
    path = trained_path(name)
    if is_quick() and not force:
        print(f"quick mode: not saving {name} (the committed checkpoint {path.name} stays as it is)")
        return None
    saved = save_checkpoint(model, path, meta)
    print(f"saved {name} to {saved}")
    return saved


def load_trained(name: str, device: str | torch.device | None = None) -> nn.Module:
    """Load a trained model of the series by name, e.g. `load_trained("dcgan").sample(16)`."""
    path = trained_path(name)
    if not path.exists():
        raise FileNotFoundError(
            f"no trained checkpoint for {name!r} at {path}: run notebooks/{TRAINED_MODELS[name]} "
            "in full mode (unset GENVAR_QUICK) to train and save it"
        )
    return load_checkpoint(path, device=device)
