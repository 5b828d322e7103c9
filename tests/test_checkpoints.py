"""Checkpoints: atomic write, weights_only load, architecture mismatch, load_trained errors, quick-mode guard."""

import pytest
import torch
from torch import nn

from genvar_helpers import checkpoints


class Tiny(nn.Module):
    def __init__(self, width: int = 4) -> None:
        super().__init__()
        self.config = {"width": width}
        self.layer = nn.Linear(2, width)


def test_round_trip_into_given_model(tmp_path):
    model = Tiny(4)
    path = checkpoints.save_checkpoint(model, tmp_path / "tiny.pt", meta={"acc": 0.9})
    loaded = checkpoints.load_checkpoint(path, Tiny(4), device="cpu")
    assert torch.equal(loaded.layer.weight, model.layer.weight) and loaded.meta == {"acc": 0.9}
    assert not loaded.training
    assert [p.name for p in tmp_path.iterdir()] == ["tiny.pt"], "no temporary file is left behind"


def test_failed_write_keeps_the_old_file(tmp_path, monkeypatch):
    path = checkpoints.save_checkpoint(Tiny(4), tmp_path / "tiny.pt")
    before = path.read_bytes()

    def broken_save(obj, f):
        open(f, "wb").write(b"half")
        raise OSError("disk full")

    monkeypatch.setattr(checkpoints.torch, "save", broken_save)
    with pytest.raises(OSError, match="disk full"):
        checkpoints.save_checkpoint(Tiny(8), path)
    assert path.read_bytes() == before and len(list(tmp_path.iterdir())) == 1


def test_architecture_mismatch_is_a_clear_error(tmp_path):
    path = checkpoints.save_checkpoint(Tiny(4), tmp_path / "tiny.pt")
    with pytest.raises(
        ValueError, match=r"does not fit this model: shape mismatch .*layer.weight.*config \{'width': 4\}"
    ):
        checkpoints.load_checkpoint(path, Tiny(8))


def test_rebuild_only_package_classes(tmp_path):
    path = checkpoints.save_checkpoint(Tiny(4), tmp_path / "tiny.pt")
    with pytest.raises(ValueError, match="only genvar_helpers models"):
        checkpoints.load_checkpoint(path)


def test_model_without_config_cannot_be_saved(tmp_path):
    with pytest.raises(TypeError, match="config"):
        checkpoints.save_checkpoint(nn.Linear(2, 2), tmp_path / "x.pt")


def test_garbage_file_is_a_clear_error(tmp_path):
    path = tmp_path / "bad.pt"
    path.write_bytes(b"garbage")
    with pytest.raises(ValueError, match="not a readable genvar checkpoint"):
        checkpoints.load_checkpoint(path, Tiny(4))


def test_load_trained_names_the_notebook(tmp_path, monkeypatch):
    monkeypatch.setenv(checkpoints.WEIGHTS_ENV, str(tmp_path))
    with pytest.raises(FileNotFoundError, match=r"run notebooks/05_dcgan.ipynb in full mode"):
        checkpoints.load_trained("dcgan")
    with pytest.raises(ValueError, match="unknown model 'gan'.*dcgan"):
        checkpoints.load_trained("gan")


def test_quick_mode_never_overwrites(tmp_path, monkeypatch):
    monkeypatch.setenv(checkpoints.WEIGHTS_ENV, str(tmp_path))
    monkeypatch.setenv("GENVAR_QUICK", "1")
    assert checkpoints.save_trained(Tiny(4), "dcgan") is None
    assert not (tmp_path / "dcgan.pt").exists()
    monkeypatch.setenv("GENVAR_QUICK", "0")
    assert checkpoints.save_trained(Tiny(4), "dcgan") == tmp_path / "dcgan.pt"
