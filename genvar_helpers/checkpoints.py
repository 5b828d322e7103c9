"""Checkpoints: atomic save, verified `weights_only` load, and `load_trained(name)`.

A checkpoint is a plain dict (safe for `torch.load(..., weights_only=True)`):
the model's class as "module:Class", the keyword arguments that rebuild it
(`model.config`), its `state_dict`, and free-form metadata (metrics, data source).
"""

from __future__ import annotations

import glob
import importlib
import io
import os
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
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
    "wgan_gp": "08_stabilising_gans.ipynb",
    "sngan": "08_stabilising_gans.ipynb",
    "cgan": "09_conditional_and_disentangled.ipynb",
    "cvae": "09_conditional_and_disentangled.ipynb",
    "vae_gan": "10_hybrids.ipynb",
    "aae": "10_hybrids.ipynb",
    "cluster_gan": "10_hybrids.ipynb",
}
# The class each of them holds: `load_trained(name)` refuses a file holding anything else.
TRAINED_CLASSES: dict[str, str] = {
    "gan_mlp": "genvar_helpers.gan:MLPGenerator",
    "dcgan": "genvar_helpers.gan:DCGANGenerator",
    "vae_mlp": "genvar_helpers.vae:MLPVAE",
    "vae_conv": "genvar_helpers.vae:ConvVAE",
    "wgan_gp": "genvar_helpers.gan:DCGANGenerator",
    "sngan": "genvar_helpers.gan:DCGANGenerator",
    "cgan": "genvar_helpers.conditional:ConditionalGenerator",
    "cvae": "genvar_helpers.conditional:CVAE",
    "vae_gan": "genvar_helpers.hybrid:VAEGAN",
    "aae": "genvar_helpers.hybrid:AAE",
    "cluster_gan": "genvar_helpers.hybrid:ClusterConditionalGenerator",
}
STALE_TMP_SECONDS = 3600  # temporary files of a save older than this were left by a killed run


def weights_dir() -> Path:
    """Folder of trained checkpoints: the package's `weights/`, or $GENVAR_WEIGHTS_DIR."""
    return Path(os.environ.get(WEIGHTS_ENV) or PACKAGE_WEIGHTS)


def _class_path(cls: type) -> str:
    """"module:Class", how a checkpoint names the class of its model."""
    return f"{cls.__module__}:{cls.__qualname__}"


def _plain(value: Any) -> Any:
    """numpy scalars -> python numbers and numpy arrays -> lists, inside dicts, lists and tuples too."""
    if isinstance(value, np.ndarray | np.generic):
        return value.tolist()
    if isinstance(value, dict):
        return {_plain(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return type(value)(_plain(v) for v in value)
    return value


def _unreadable(part: str, values: dict[str, Any]) -> list[str]:
    """Keys of `values` that torch.load(weights_only=True) could not read back, as "part['key']"."""
    bad = []
    for key, value in values.items():
        buffer = io.BytesIO()
        torch.save(value, buffer)
        buffer.seek(0)
        try:
            torch.load(buffer, weights_only=True)
        except Exception:
            bad.append(f"{part}[{key!r}]")
    return bad


def _remove_stale_tmp(path: Path) -> None:
    """Delete temporary files of `path` (made by a save that was killed) older than STALE_TMP_SECONDS."""
    for tmp in glob.glob(glob.escape(str(path)) + ".*.tmp"):
        try:
            if time.time() - os.path.getmtime(tmp) > STALE_TMP_SECONDS:
                os.remove(tmp)
        except OSError:  # removed meanwhile by another process: nothing to do
            pass


def save_checkpoint(model: nn.Module, path: str | Path, meta: dict[str, Any] | None = None) -> Path:
    """Write `model` to `path` atomically (temporary file, verified, then renamed).

    The model must have a `config` dict holding its constructor's keyword arguments.
    numpy numbers and arrays in `config` and `meta` are stored as python numbers and lists;
    other values must be plain numbers, strings, lists, dicts or tensors. Temporary files
    of the same checkpoint left by a killed save (older than an hour) are removed.
    """
    config = getattr(model, "config", None)
    if not isinstance(config, dict):
        raise TypeError(f"{type(model).__name__} needs a `config` dict of constructor arguments to be saved")
    path = Path(path)
    payload = {
        "format": 1,
        "class": _class_path(type(model)),
        "config": _plain(config),
        "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
        "meta": _plain(meta or {}),
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    _remove_stale_tmp(path)
    fd, tmp_name = tempfile.mkstemp(prefix=path.name + ".", suffix=".tmp", dir=path.parent)  # .gitignore: *.pt.*.tmp
    os.close(fd)
    try:
        torch.save(payload, tmp_name)
        try:
            torch.load(tmp_name, map_location="cpu", weights_only=True)  # verify it reads back
        except Exception as err:
            bad = _unreadable("config", payload["config"]) + _unreadable("meta", payload["meta"])
            if not bad:
                raise
            raise TypeError(
                f"cannot save {path.name}: {', '.join(bad)} would not load back with torch.load(weights_only=True); "
                "store plain numbers, strings, lists, dicts or tensors there (e.g. float(x), str(x) or x.tolist())"
            ) from err
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
    if payload["class"] != _class_path(type(model)):
        problems.append(f"it holds a {payload['class']}, not a {_class_path(type(model))}")
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


def _model_class(payload: dict[str, Any], path: Path) -> type[nn.Module]:
    """The class a checkpoint names, checked *before* anything is called: an nn.Module defined in genvar_helpers."""
    name = str(payload["class"])
    module_name, _, attr = name.partition(":")
    if module_name != "genvar_helpers" and not module_name.startswith("genvar_helpers."):
        raise ValueError(f"{path} names class {name}; only genvar_helpers models are rebuilt")
    try:
        cls = getattr(importlib.import_module(module_name), attr, None)
    except ImportError:
        cls = None
    if not (isinstance(cls, type) and issubclass(cls, nn.Module) and _class_path(cls) == name):
        raise ValueError(
            f"{path} names {name}, which is not a model class of genvar_helpers; the file is damaged or "
            "was not written by save_checkpoint: delete it and save the model again"
        )
    return cls


def load_checkpoint(
    path: str | Path,
    model: nn.Module | None = None,
    device: str | torch.device | None = None,
    *,
    expected_class: str | None = None,
) -> nn.Module:
    """Load a checkpoint with `weights_only=True` into `model`, or rebuild the model it holds.

    Only nn.Module classes defined in `genvar_helpers` are rebuilt; `expected_class`
    ("module:Class") refuses a file holding any other. The model is returned on
    `device` (default: `get_device()`), in eval mode, with `.meta` attached.
    """
    path = Path(path)
    payload = _read(path)
    if expected_class is not None and payload["class"] != expected_class:
        raise ValueError(
            f"{path} holds {payload['class']}, not {expected_class}: the file was overwritten or misnamed; "
            f"restore it (e.g. `git checkout -- {path.name}`) or train and save that model again"
        )
    if model is None:
        model = _model_class(payload, path)(**payload["config"])
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
    """Load a trained model of the series by name, e.g. `load_trained("dcgan").sample(16)`.

    The file must hold the class listed for that name in TRAINED_CLASSES; anything else is refused.
    """
    path = trained_path(name)
    if not path.exists():
        raise FileNotFoundError(
            f"no trained checkpoint for {name!r} at {path}: run notebooks/{TRAINED_MODELS[name]} "
            "in full mode (unset GENVAR_QUICK) to train and save it"
        )
    return load_checkpoint(path, device=device, expected_class=TRAINED_CLASSES[name])
