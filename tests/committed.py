"""Committed checkpoints as the tests read them: skip until committed, else load one and check its samples."""

from __future__ import annotations

import pytest
import torch

from genvar_helpers import checkpoints


def load_committed(name: str, labels: torch.Tensor | None = None, n: int = 6) -> torch.nn.Module:
    """Load the committed `name` on the CPU (skip if not committed yet), after checking that n samples (of the
    classes `labels`, for a conditional model) are images in [0, 1] and that the file stays under 5 MB."""
    path = checkpoints.trained_path(name)
    if not path.exists():
        pytest.skip(f"{path.name} not committed yet: run notebooks/{checkpoints.TRAINED_MODELS[name]} in full mode")
    model = checkpoints.load_trained(name, device="cpu")
    samples = model.sample(n) if labels is None else model.sample(len(labels), labels)
    assert samples.shape == (len(samples), 1, 28, 28) and len(samples) == (n if labels is None else len(labels))
    assert samples.min() >= 0 and samples.max() <= 1, "samples are images in [0, 1]"
    assert path.stat().st_size < 5_000_000, "checkpoints stay under 5 MB"
    return model
