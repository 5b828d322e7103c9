"""Device choice, seeding, the quick/full switch and small training utilities."""

from __future__ import annotations

import inspect
import numbers
import os
import random
import re
import sys
from collections.abc import Callable
from typing import Any, TypeVar

import numpy as np
import torch

T = TypeVar("T")

DEVICE_ENV = "GENVAR_DEVICE"
QUICK_ENV = "GENVAR_QUICK"
PRETRAINED_ENV = "GENVAR_PRETRAINED"
KNOWN_DEVICES = ("cuda", "mps", "cpu")
SAMPLE_CHUNK = 1000  # `sample(n)` runs a model on this many latent codes at a time, so a large n fits in memory
_TRUE = ("1", "true", "yes", "on")
_FALSE = ("", "0", "false", "no", "off")
_DEVICE_FORMAT = re.compile(r"[a-z]+(:\d+)?")  # a type, optionally ":index", e.g. "cuda:1"


def available_devices() -> list[str]:
    """Device types usable on this machine, fastest first."""
    found = []
    if torch.cuda.is_available():
        found.append("cuda")
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        found.append("mps")
    found.append("cpu")
    return found


def get_device(name: str | None = None) -> torch.device:
    """Pick cuda, then mps, then cpu; `name` or $GENVAR_DEVICE overrides the choice.

    Accepts "cuda", "cuda:1", "mps" or "cpu". An unknown, malformed or unavailable
    device raises ValueError naming the devices that are available.
    """
    requested = name or os.environ.get(DEVICE_ENV) or ""
    available = available_devices()
    if not requested:
        return torch.device(available[0])
    kind = requested.split(":")[0].strip().lower()
    if kind not in KNOWN_DEVICES:
        raise ValueError(
            f"unknown device {requested!r}: choose one of {list(KNOWN_DEVICES)} "
            f"(available here: {available}); check the argument or ${DEVICE_ENV}"
        )
    if not _DEVICE_FORMAT.fullmatch(requested.strip().lower()):
        raise ValueError(
            f"malformed device {requested!r}: write a device type, optionally with an index, "
            f"e.g. 'cuda', 'cuda:1', 'mps' or 'cpu'; check the argument or ${DEVICE_ENV}"
        )
    if kind not in available:
        raise ValueError(
            f"device {requested!r} is not available on this machine; available: {available}. "
            f"Pass one of those or unset ${DEVICE_ENV}."
        )
    device = torch.device(requested.strip().lower())
    if device.type == "cuda" and device.index is not None and device.index >= torch.cuda.device_count():
        raise ValueError(
            f"device {requested!r} does not exist: this machine has {torch.cuda.device_count()} CUDA device(s)"
        )
    return device


def seed_everything(seed: int = 0) -> int:
    """Seed python, numpy and torch (all devices); returns the seed."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)  # also seeds CUDA and MPS generators
    return seed


def _env_flag(name: str) -> bool:
    """Read an on/off environment variable; any spelling outside _TRUE and _FALSE is an error, not "off"."""
    value = os.environ.get(name, "").strip().lower()
    if value not in _TRUE + _FALSE:
        raise ValueError(
            f"{name}={os.environ[name]!r} is not understood: set it to one of {list(_TRUE)} (on) "
            f"or {list(_FALSE[1:])} (off), or unset it"
        )
    return value in _TRUE


def is_quick() -> bool:
    """True when $GENVAR_QUICK is on (the test suite sets it): small, fast runs.

    On: "1", "true", "yes", "on"; off: unset, "", "0", "false", "no", "off" (any case).
    Any other value raises ValueError rather than silently meaning full mode.
    """
    return _env_flag(QUICK_ENV)


def pick(quick: T, full: T) -> T:
    """Return `quick` in quick mode and `full` otherwise, e.g. `epochs = pick(1, 30)`."""
    return quick if is_quick() else full


def use_pretrained() -> bool:
    """True when $GENVAR_PRETRAINED asks notebooks to load committed checkpoints instead of training (same spellings
    as `is_quick`)."""
    return _env_flag(PRETRAINED_ENV)


def in_colab() -> bool:
    """True inside Google Colab."""
    return "google.colab" in sys.modules


def check_finite(loss: torch.Tensor, step: int, what: str = "loss") -> None:
    """Raise FloatingPointError when `loss` is NaN or infinite, naming the step and what to try."""
    if not torch.isfinite(loss).all():
        raise FloatingPointError(
            f"{what} became {loss.detach().flatten()[0].item()} at step {step}. "
            "Try a smaller learning rate, check the data range, or re-run with another seed."
        )


def check_count(n: object, name: str = "n") -> int:
    """`n` when it is a whole number >= 0 (a number of samples); otherwise a ValueError saying what to pass."""
    if isinstance(n, bool) or not isinstance(n, numbers.Integral) or n < 0:
        raise ValueError(f"{name} must be a whole number >= 0 (how many to draw); got {n!r}")
    return int(n)


def environment_report() -> dict[str, Any]:
    """Versions and hardware, for the first cell of a notebook and for benchmark results."""
    import platform

    import matplotlib

    report: dict[str, Any] = {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "numpy": np.__version__,
        "matplotlib": matplotlib.__version__,
        "platform": platform.platform(),
        "cpu_threads": torch.get_num_threads(),
        "devices": available_devices(),
        "device": str(get_device()),
        "quick_mode": is_quick(),
        "colab": in_colab(),
    }
    if torch.cuda.is_available():
        report["gpu"] = torch.cuda.get_device_name(0)
    return report


def show_source(obj: Callable[..., Any] | type) -> Any:
    """Display the source of a package function or class in a notebook (syntax-highlighted when possible).

    This is how a notebook teaches code that lives in the package: what you read
    is exactly what later notebooks and `load_trained` import.
    """
    source = inspect.getsource(obj)
    try:
        from IPython.display import Code

        return Code(source, language="python")
    except ImportError:  # plain python: print it
        print(source)
        return source
