"""genvar_helpers: the small shared toolkit of the genvar course (GANs and VAEs side by side)."""

from .checkpoints import load_checkpoint, load_trained, save_checkpoint, save_trained
from .runtime import check_finite, get_device, is_quick, pick, seed_everything, show_source, use_pretrained

__version__ = "0.1.0"

__all__ = [
    "check_finite",
    "get_device",
    "is_quick",
    "load_checkpoint",
    "load_trained",
    "pick",
    "save_checkpoint",
    "save_trained",
    "seed_everything",
    "show_source",
    "use_pretrained",
]
